"""After a broker lost its store (SPEC §7), the gates put back the retained state they own: the status and
the walk-in key are published on every connection anyway; the site mode this gate holds is put back here.

The broker may still have a retained mode (only the session was lost), or another gate may have put back a
newer one already: writing ours over it would hand an older mode to every gate that joins later. So, on a
connection without a session, the gate waits RESTORE_WAIT_S for what its `mode` subscription brings: a mode
as new as ours or newer means the broker has it; an older one, or none at all by then, and ours goes back,
retained, with its original version, actor and reason, and the time it took effect here (the version
ordering makes that harmless to the gates that saw it already). A broker's retained message comes right
after the subscription, long before the wait ends.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Callable

from edge.core.model import Mode
from edge.core.modes import Modes
from edge.store import Store
from edge.store.journal import rfc3339

log = logging.getLogger(__name__)

RESTORE_WAIT_S = 3.0


class ModeRestore:
    def __init__(self, modes: Modes, store: Store, publish: Callable[[dict], None], wait_s: float = RESTORE_WAIT_S):
        self.modes = modes
        self.store = store
        self.publish = publish  # (SPEC §2 site-mode body) -> published retained on `acs/{site}/mode`
        self.wait_s = wait_s
        self.due: float | None = None  # when to put ours back unless the broker shows it has it

    def _held(self) -> tuple[int, str] | None:
        """(version, actor) of the site mode in force here, if the mode in force came from a site change."""
        st = self.modes.state
        if st.scope != "site" or st.version <= 0 or st.mode is Mode.FIRE:
            return None
        return st.version, st.actor

    def no_session(self) -> None:
        """The broker kept no session for us: it may have lost its store, retained messages with it."""
        self.due = time.monotonic() + self.wait_s if self._held() else None

    def heard(self, version: int, actor: str) -> None:
        """A site mode from the broker (before it is applied): as new as ours means it has it already. An
        older one, at any time, means the broker now retains it: a site bridge that came back re-read the
        central broker's retained mode, older than one a gate set while the central was away (SPEC §7)."""
        held = self._held()
        if held is None or (version, actor) >= held:
            self.due = None
        else:
            self.due = time.monotonic()  # the broker's is older than ours: ours goes back at once

    def wait(self) -> float | None:
        return None if self.due is None else max(0.0, self.due - time.monotonic())

    def check(self) -> None:
        if self.due is None or time.monotonic() < self.due:
            return
        self.due = None
        if (held := self._held()) is None:
            return
        version, actor = held
        reason, at = self._origin(version)
        body = {"mode": self.modes.state.mode.value, "actor": actor, "reason": reason, "time": at, "version": version}
        log.warning("putting the site mode back on the broker: %s v%d from %s", body["mode"], version, actor)
        self.publish(body)

    def _origin(self, version: int) -> tuple[str, str]:
        """The reason and time the change carried, from its mode.changed entry (a later same-mode message
        that only raised the version has none: then the latest change's reason)."""
        rows = self.store.conn.execute(
            "SELECT time, data FROM journal WHERE type='mode.changed' ORDER BY seq DESC LIMIT 50").fetchall()
        for t, data in rows:
            d = json.loads(data)
            if d.get("scope") == "site" and d.get("version") == version:
                return str(d.get("reason") or "")[:200], t
        for t, data in rows:
            d = json.loads(data)
            if d.get("scope") == "site" and d.get("mode") == self.modes.state.mode.value:
                return str(d.get("reason") or "")[:200], rfc3339(time.time())
        return "restored after the broker lost its store", rfc3339(time.time())

"""The gate's mode (P15 lockdown, P16 fire, P28 drill) and the one rule that orders changes to it.

SPEC §2 orders site-mode changes by a `version` that needs no clock: whoever changes the mode uses one
more than the highest version it has seen, ties are broken by the larger `actor`, and a change whose
(version, actor) is not above the one in force changes nothing. Local changes (a guard's lockdown, the
key switch, the fire panel) take a version the same way, so a replayed or late site message can never
undo a newer change made here.
"""
from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from typing import Callable

from edge.core.model import Mode

log = logging.getLogger(__name__)

# The modes in which people gather at the assembly point and guards account for them (P16, P28): the muster
# list, its marks and its publication follow this set. Only fire frees doors and lanes (Modes.fire).
MUSTERING = frozenset({Mode.FIRE, Mode.DRILL})
# P15: what a lockdown may take over from: a real threat outranks an exercise, never a fire.
LOCKABLE = frozenset({Mode.NORMAL, Mode.DRILL})

META_KEYS = ("mode", "mode_by", "mode_scope", "mode_version", "mode_actor", "mode_seen")


@dataclass
class ModeState:
    mode: Mode = Mode.NORMAL
    by: str | None = None  # who made the change in force ("fire_input", "lockdown_input", a person)
    scope: str = "gate"
    version: int = 0  # of the change in force
    actor: str = ""
    seen: int = 0  # the highest version seen, applied or not

    def newer(self, version: int, actor: str) -> bool:
        return (version, actor) > (self.version, self.actor)

    def next_version(self) -> int:
        return max(self.seen, self.version) + 1

    def see(self, version: int) -> None:
        self.seen = max(self.seen, version)

    def adopt(self, mode: Mode, by: str, scope: str, version: int, actor: str) -> None:
        self.mode, self.by, self.scope, self.version, self.actor = mode, by, scope, version, actor
        self.see(version)

    def meta(self) -> dict[str, str]:
        return {"mode": self.mode.value, "mode_by": self.by or "", "mode_scope": self.scope,
                "mode_version": str(self.version), "mode_actor": self.actor, "mode_seen": str(self.seen)}

    @classmethod
    def from_meta(cls, get) -> "ModeState":
        return cls(mode=Mode(get("mode", Mode.NORMAL.value)), by=get("mode_by") or None,
                   scope=get("mode_scope", "gate"), version=int(get("mode_version", "0")),
                   actor=get("mode_actor", ""), seen=int(get("mode_seen", "0")))


class ModeRefused(Exception):
    """A person may not make this change (`status`: 403 not theirs to make, 409 not now; `code`: the API's
    stable error code, edge/api/problems.py)."""

    def __init__(self, status: int, detail: str, code: str | None = None):
        super().__init__(detail)
        self.status, self.detail, self.code = status, detail, code

    def __reduce__(self):  # crosses from the gate to the API process whole
        return self.__class__, (self.status, self.detail, self.code)


class Modes:
    """The gate's mode and every rule that changes it: a person's request (P15, P16), a site message
    (SPEC §2), the fire panel and the key switch. Each change is journaled (held back while the database
    refuses writes, in force at once all the same) and announced to `listeners(previous, mode)`."""

    def __init__(self, store, journal, holdback, clock):
        self.store, self.journal, self.holdback, self.clock = store, journal, holdback, clock
        self.state = ModeState.from_meta(store.meta)
        self.fire_input = False  # the fire panel's input as last read (P16)
        self.key_switch: bool | None = None  # the lockdown key switch as last read (P15)
        self.listeners: list[Callable[[Mode, Mode], None]] = []

    @property
    def mode(self) -> Mode:
        return self.state.mode

    @property
    def fire(self) -> bool:
        """P16: doors and lanes are freed; never in a drill (P28)."""
        return self.state.mode is Mode.FIRE

    @property
    def mustering(self) -> bool:
        return self.state.mode in MUSTERING

    def request(self, target: Mode, person: str, role: str, reason: str, scope: str):
        """P15: a guard starts a lockdown; only a supervisor ends one. P16: fire mode on and off by a
        supervisor, never off while the fire input is active. P28: a drill started and ended by a
        supervisor, never during a fire. A site change always takes a new version, even when this gate is
        in that mode already. The entry journaled (None when nothing changed)."""
        if (target is not Mode.LOCKDOWN or self.fire) and role != "supervisor":
            raise ModeRefused(403, "only a supervisor ends a lockdown, changes fire mode or runs a drill",
                              "mode_not_yours")
        if self.fire and target is not Mode.FIRE and self.fire_input:
            raise ModeRefused(409, "the fire input is still active", "fire_input_active")
        if self.fire and target is Mode.DRILL:  # ending the fire is `normal`; an exercise never replaces it
            raise ModeRefused(409, "a drill cannot start during a fire", "drill_during_fire")
        if scope == "site" and target is not Mode.FIRE:
            return self.set(target, person, reason, scope="site", version=self.state.next_version(), role=role)
        return self.set(target, person, reason, scope=scope, role=role)

    def set(self, mode: Mode, by: str, reason: str, now: float | None = None, scope: str = "gate",
            version: int | None = None, role: str | None = None):
        """Change and journal the mode; no event when nothing changes. A local change (no `version`)
        takes the next version; a site message's change applies only if it is newer. `by` is the actor
        (a person, or "fire_input", "lockdown_input", a site message's actor) and `role` that person's
        role, None when the actor is no person of this gate's tokens (SPEC §2 `actor_role`)."""
        st = self.state
        if st.mode is Mode.FIRE and mode is not Mode.FIRE and self.fire_input:
            log.warning("mode %s by %s refused: the fire input is still active (P16)", mode.value, by)
            return None
        if version is None:
            if mode is st.mode:
                return None
            version = st.next_version()
        else:
            seen = st.seen
            st.see(version)
            if not st.newer(version, by):
                log.info("site mode %s v%d from %s is not newer than v%d from %s: ignored", mode.value, version,
                         by, st.version, st.actor)
                if st.seen != seen:
                    self._keep(st.meta())
                return None
            if mode is st.mode:  # the same mode, newer: adopt its version so an older message cannot undo it
                st.adopt(mode, st.by or by, st.scope, version, by)
                self._keep(st.meta())
                return None
        now = self.clock() if now is None else now
        previous = st.mode
        st.adopt(mode, by, scope, version, by)  # the mode holds at once, written or not
        state = st.meta()

        def write():
            with self.store.tx():
                for k, v in state.items():
                    self.store.set_meta(k, v)
                self.store.set_meta("mode_at", repr(now))
                return self.journal.append("mode.changed", {
                    "mode": mode.value, "previous": previous.value, "actor": by, "actor_role": role,
                    "reason": reason, "scope": scope, "version": version}, now)
        log.warning("mode %s by %s (v%d): %s", mode.value, by, version, reason)
        entry = self.holdback.run(write)
        for fn in self.listeners:
            fn(previous, mode)
        return entry

    def _keep(self, state: dict[str, str]) -> None:
        """The ordering state, committed now: a crash that lost an adopted version would let the message
        it outranked, replayed, win after a restart. While the database refuses writes it rides along
        with the first commit it takes (it is no event: nothing to journal or count as lost)."""
        for k, v in state.items():
            self.store.defer_meta(k, v)
        if not self.holdback.held:  # else it would overtake the held writes; the flush carries it
            try:
                self.store.flush_deferred()
            except sqlite3.OperationalError as e:
                log.warning("mode ordering state waits for the database: %s", e)

    def from_site(self, mode: Mode, actor: str, reason: str, version: int):
        """SPEC §2 `acs/{site}/mode` from the central system or another gate. Never ends fire mode (P16:
        only a supervisor here does), and never ends the key switch's lockdown while it is on (P15), neither
        by `normal` nor by a drill (P28)."""
        st = self.state
        if st.mode is Mode.FIRE or (mode is not Mode.LOCKDOWN and self.key_switch and st.mode is Mode.LOCKDOWN):
            seen = st.seen
            st.see(version)
            if st.seen != seen:  # kept: after a restart, this gate's next change must still outrank it
                self._keep(st.meta())
            log.warning("site mode %s from %s ignored: %s", mode.value, actor,
                        "fire mode" if st.mode is Mode.FIRE else "the lockdown key switch is on")
            return None
        return self.set(mode, actor, reason, scope="site", version=version)

    def inputs(self, fire: bool | None, key_switch: bool | None) -> list:
        """P16: the fire panel starts fire mode (only a supervisor ends it, never while the input is on),
        a drill included (P28: the real alarm ends the exercise). `fire` None: not known now (the fire
        line in fault, P28), the last reading holds. P15: the lockdown key switch locks the gate down and, returning, ends the lockdown it made."""
        out = []
        if fire is not None:
            self.fire_input = fire
            if fire and not self.fire:
                out.append(self.set(Mode.FIRE, "fire_input", "fire alarm from the fire panel"))
        if key_switch is not None:
            # On its turns, not its level: a supervisor may end the lockdown while the key is still turned,
            # and it is not made again a moment later. The first reading after a start counts as a turn.
            turned, self.key_switch = key_switch != self.key_switch, key_switch
            if turned and key_switch and self.mode in LOCKABLE:
                out.append(self.set(Mode.LOCKDOWN, "lockdown_input", "key switch on"))
            elif turned and not key_switch and self.mode is Mode.LOCKDOWN and self.state.by in (None, "lockdown_input"):
                out.append(self.set(Mode.NORMAL, "lockdown_input", "key switch off"))
        return out

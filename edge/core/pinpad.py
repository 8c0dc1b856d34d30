"""P34 card and PIN at a gate: the card waiting for its PIN at each keypad reader, and the wrong PINs that lock a
credential out of this gate's keypads for a while.

The decision stays pure (edge/core/policy.py reads the PIN as a fact); this keeps what lies between a card and
its PIN. A card at a reader that needs the PIN is not decided at once: it waits here for 10 s. The PIN that
follows at that reader decides it; a second card, or the 10 s running out, ends it as `pin_required`.
"""
from __future__ import annotations

from dataclasses import dataclass

from edge.core.model import Credential

PIN_WAIT_S = 10.0  # P34: the PIN follows the card within this
MAX_FAILURES = 5  # P34: wrong PINs ...
FAILURE_WINDOW_S = 600.0  # ... within this lock the credential ...
LOCK_S = 600.0  # ... for this long, at this gate's keypad readers


@dataclass(frozen=True, slots=True)
class WaitingCard:
    """A card read at a reader that wants its PIN next."""
    reader: str
    cred: Credential
    at: float  # the card's scan (the decision's time if the PIN never comes)
    deadline: float


class PinPad:
    """The cards waiting at each reader, and the wrong PINs of each credential (a copy of `pin_failures`)."""

    def __init__(self, failures: dict[str, list[float]] | None = None):
        self.waiting: dict[str, WaitingCard] = {}  # reader -> its card
        self.failures: dict[str, list[float]] = failures or {}

    def wait(self, reader: str, cred: Credential, now: float) -> WaitingCard | None:
        """The card waits for its PIN at `reader`; returns the one it replaces (it ends as `pin_required`)."""
        before = self.waiting.pop(reader, None)
        self.waiting[reader] = WaitingCard(reader, cred, now, now + PIN_WAIT_S)
        return before

    def take(self, reader: str, now: float) -> WaitingCard | None:
        """The card the PIN just given at `reader` is for: None when no card waits there, or it waited too long
        (the expiry ends it, as `pin_required`, on its own)."""
        w = self.waiting.get(reader)
        if w is None or now > w.deadline:
            return None
        del self.waiting[reader]
        return w

    def expired(self, now: float) -> list[WaitingCard]:
        """The cards whose PIN did not come in time, oldest first; they wait no more."""
        gone = sorted((w for w in self.waiting.values() if now > w.deadline), key=lambda w: w.at)
        for w in gone:
            del self.waiting[w.reader]
        return gone

    def locked(self, ref: str, now: float) -> bool:
        """P34: 5 wrong PINs within 10 minutes, the last less than 10 minutes ago. (While it is locked no PIN is
        checked, so no failure is added: the lock ends 10 minutes after the fifth.)"""
        times = self.failures.get(ref)
        if not times or len(times) < MAX_FAILURES:
            return False
        last = times[-MAX_FAILURES:]
        return last[-1] - last[0] <= FAILURE_WINDOW_S and now - last[-1] < LOCK_S

    def failed(self, ref: str, now: float) -> None:
        """A wrong PIN for `ref`; only what can still count is kept."""
        times = [t for t in self.failures.get(ref, ()) if now - t < FAILURE_WINDOW_S + LOCK_S]
        times.append(now)
        self.failures[ref] = times[-MAX_FAILURES:]

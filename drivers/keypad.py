"""A reader's keypad presses assembled into PIN entries (P34, SPEC §5 OSDP keypad).

Keys arrive in OSDP encoding (ASCII '0'..'9', `*` = 0x7F, `#` = 0x0D), any number a poll, an entry possibly
split over several polls. `#` or a pause longer than `pause_s` ends an entry: it becomes a PIN Presentation
when it has 4 to 8 digits, else nothing. `*` clears it; a card read discards it (the card starts anew).
Keys that did not come over a secure channel are dropped. No digit ever reaches a log line: a PIN is a secret.

Pure and single-threaded: the caller holds any lock and gives the time (time.monotonic_ns()).
"""
from __future__ import annotations

import logging

from drivers.interfaces import Presentation

log = logging.getLogger(__name__)

PAUSE_S = 3.0  # SPEC §5: a pause longer than this ends the entry
PIN_DIGITS = (4, 8)  # P34 / SPEC §5: a PIN has 4 to 8 digits
CLEAR = 0x7F  # `*` in OSDP encoding
ENTER = 0x0D  # `#` in OSDP encoding
_DIGITS = range(0x30, 0x3A)


class KeypadEntry:
    """One reader's entry under way. `keys`, `expire` and `card` return the PINs they end (0 or more)."""

    def __init__(self, reader: str, *, pause_s: float = PAUSE_S):
        self.reader = reader
        self.pause_ns = int(pause_s * 1e9)
        self._digits: list[str] = []
        self._overlong = False  # more digits than a PIN has: kept out of memory, the entry yields nothing
        self._last_ns: int | None = None  # when the entry's last key came; None: no entry under way

    @property
    def typing(self) -> bool:
        return self._last_ns is not None

    def keys(self, data: bytes, now_ns: int, *, secure: bool) -> list[Presentation]:
        """One KeyPress event's keys. `secure`: the reader's secure channel is up (P34: else they are dropped,
        and the entry under way with them)."""
        if not secure:
            self._reset()
            log.warning("keypad entry at reader %s dropped: secure channel down", self.reader)
            return []
        out = self.expire(now_ns)
        for key in data:
            if key == ENTER:
                if self.typing:
                    out += self._end(now_ns)
            elif key == CLEAR:
                if self.typing:
                    log.info("keypad entry at reader %s cleared", self.reader)
                self._reset()
            elif key in _DIGITS:
                if len(self._digits) < PIN_DIGITS[1]:
                    self._digits.append(chr(key))
                else:
                    self._overlong = True
                self._last_ns = now_ns
            else:  # not a key of a PIN pad (a function key): it means nothing here, and is no digit to hide
                log.warning("reader %s: keypad key 0x%02X ignored", self.reader, key)
        return out

    def expire(self, now_ns: int) -> list[Presentation]:
        """The entry ends when its last key is more than the pause ago; called on every poll and before new keys."""
        if self._last_ns is not None and now_ns - self._last_ns > self.pause_ns:
            return self._end(self._last_ns)
        return []

    def card(self) -> None:
        """A card read while digits are being typed ends the entry without a PIN."""
        if self.typing:
            log.info("keypad entry at reader %s discarded: a card was read", self.reader)
        self._reset()

    def discard(self, why: str) -> None:
        """The entry goes unfinished (the reader went offline): its digits are lost, never half-delivered."""
        if self.typing:
            log.info("keypad entry at reader %s discarded: %s", self.reader, why)
        self._reset()

    def _end(self, t_ns: int) -> list[Presentation]:
        """`t_ns`: when the entry's last key (`#` or the last digit before the pause) came."""
        digits, overlong = "".join(self._digits), self._overlong
        self._reset()
        if overlong or not PIN_DIGITS[0] <= len(digits) <= PIN_DIGITS[1]:
            log.warning("keypad entry at reader %s ignored: a PIN has %d to %d digits", self.reader, *PIN_DIGITS)
            return []
        return [Presentation(self.reader, "pin", digits, t_ns)]

    def _reset(self) -> None:
        self._digits, self._overlong, self._last_ns = [], False, None

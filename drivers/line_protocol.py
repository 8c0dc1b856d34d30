"""The serial reader line protocol of SPEC §5: one credential a line, CR and/or LF terminated.

An even count of 8–20 hex digits is a badge UID (`badge:<UPPER HEX>`); a line starting `GK1:` is a pass;
`PLATE:<text>` is a licence plate from a plate camera (`plate:<TEXT>`, P26); `PIN:<4–8 digits>` is a PIN typed on
the reader's keypad (P34: kind `pin`, the digits as value; they are a secret: what is said of a malformed PIN line
never repeats them); anything else is `malformed`. Pure functions: the serial reader, the camera, the OSDP reader (a card number
is a badge UID too) and the tests share them, so a credential is classified alike whichever reader saw it.
"""
from __future__ import annotations

import re

from drivers.interfaces import Presentation

# A pass is at most 2 KB (SPEC §3); a little room beyond lets an oversized pass reach the verifier,
# which names it, while a runaway line without terminator is cut off and reported.
MAX_LINE = 4096

UID_BYTES = (4, 10)  # a badge UID: 4 to 10 bytes, 8 to 20 hex digits
_BADGE = re.compile(r"(?:[0-9A-Fa-f]{2}){%d,%d}" % UID_BYTES)
_TERMINATORS = re.compile(rb"\r|\n")
OVERLONG = "\x00overlong"  # what LineBuffer yields for a line it had to drop
PLATE_PREFIX = "PLATE:"
PIN_PREFIX = "PIN:"
_PIN = re.compile(r"[0-9]{4,8}")
MAX_PLATE = 16  # characters of a normalized plate; the longest national formats are well below
# What no plate holds: whitespace (removed first), control characters, line and paragraph separators and
# bidirectional overrides (they would disguise the plate on the guard's screen), the replacement character (bytes
# the reader's encoding could not decode) and the ref's own separator.
_NOT_IN_PLATE = re.compile("[\x00-\x1F\x7F-\x9F\u2028\u2029\u202A-\u202E\u2066-\u2069\uFFFD:]")


def normalize_plate(text: str) -> str | None:
    """P26: a plate as the allow-list keys it: upper case, no spaces (`京a 12345` -> `京A12345`); None when what
    is left is empty, too long or holds a character no plate has."""
    plate = "".join(text.split()).upper()
    if not plate or len(plate) > MAX_PLATE or _NOT_IN_PLATE.search(plate):
        return None
    return plate


def classify(line: str) -> tuple[str, str]:
    """(`badge`, `badge:HEX`) | (`pass`, text) | (`plate`, `plate:TEXT`) | (`pin`, digits) | (`malformed`, why)."""
    text = line.strip()
    if text.startswith("GK1:"):
        return "pass", text
    if text[:len(PIN_PREFIX)].upper() == PIN_PREFIX:  # P34: the why never quotes the line (a mistyped PIN is a PIN)
        pin = text[len(PIN_PREFIX):]
        if _PIN.fullmatch(pin):
            return "pin", pin
        return "malformed", "a PIN line without 4 to 8 digits"
    if text[:len(PLATE_PREFIX)].upper() == PLATE_PREFIX:
        plate = normalize_plate(text[len(PLATE_PREFIX):])
        if plate is None:
            return "malformed", "a plate line without a readable plate"
        return "plate", "plate:" + plate
    if _BADGE.fullmatch(text):
        return "badge", "badge:" + text.upper()
    if text == OVERLONG:
        return "malformed", f"line longer than {MAX_LINE} bytes"
    if not text:
        return "malformed", "empty line"
    if len(text) > MAX_LINE:
        return "malformed", f"line of {len(text)} characters"
    return "malformed", "neither a badge UID nor a pass"


def presentation(reader: str, line: str, t_ns: int) -> Presentation:
    """A line (or a decoded QR text) as what was shown at `reader`."""
    kind, value = classify(line)
    return Presentation(reader, kind, value, t_ns)


def qr_presentation(reader: str, text: str, t_ns: int) -> Presentation:
    """A QR code's text as what was shown: as a line, except that a plate is never read from a QR code (P26: a
    printed `PLATE:` code must not pass for the car a plate camera saw)."""
    kind, value = classify(text)
    if kind == "plate":
        return Presentation(reader, "malformed", "a QR code is not a licence plate", t_ns)
    if kind == "pin":  # P34: PINs come from a keypad only, never from a printed code
        return Presentation(reader, "malformed", "a QR code is not a PIN", t_ns)
    return Presentation(reader, kind, value, t_ns)


def card(reader: str, uid: bytes, t_ns: int) -> Presentation:
    """A card number read as bytes (OSDP): a badge when its length is a UID's, as if its hex were a line."""
    lo, hi = UID_BYTES
    if lo <= len(uid) <= hi:
        return Presentation(reader, "badge", "badge:" + uid.hex().upper(), t_ns)
    return Presentation(reader, "malformed", f"a card number of {len(uid)} bytes: a badge UID has {lo} to {hi}",
                        t_ns)


class LineBuffer:
    """Bytes in, whole lines out. Partial reads are kept until their terminator (pyserial returns
    partial lines on timeout); a line longer than `max_line` is dropped whole and reported as OVERLONG. Bytes the
    encoding cannot decode become U+FFFD, which no badge, pass or plate holds: such a line is `malformed`."""

    def __init__(self, max_line: int = MAX_LINE, encoding: str = "utf-8"):
        self.max_line = max_line
        self.encoding = encoding  # P26: a plate camera may send its lines in another (GBK for 京A12345)
        self._buf = b""
        self._overflow = False

    def feed(self, data: bytes) -> list[str]:
        parts = _TERMINATORS.split(self._buf + data)
        self._buf = parts.pop()  # the unterminated tail waits for more bytes
        lines = []
        for raw in parts:
            if self._overflow:
                self._overflow = False
                lines.append(OVERLONG)
            elif len(raw) > self.max_line:
                lines.append(OVERLONG)
            elif raw:  # CRLF leaves an empty piece between CR and LF: not a scan
                lines.append(raw.decode(self.encoding, errors="replace"))
        if len(self._buf) > self.max_line:
            self._overflow = True
            self._buf = b""
        elif self._overflow and self._buf:
            self._buf = b""  # still inside the overlong line
        return lines

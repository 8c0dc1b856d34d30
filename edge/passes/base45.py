"""Base45 (RFC 9285): binary to the QR alphanumeric alphabet, so a pass fits a small QR code."""
from __future__ import annotations

import sys
from array import array

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
_TABLE = bytes(ALPHABET.index(chr(b)) if chr(b) in ALPHABET else 0xFF for b in range(256))


def encode(data: bytes) -> str:
    out = []
    for i in range(0, len(data) - 1, 2):
        n = data[i] * 256 + data[i + 1]
        n, c = divmod(n, 45)
        e, d = divmod(n, 45)
        out.append(ALPHABET[c] + ALPHABET[d] + ALPHABET[e])
    if len(data) % 2:
        d, c = divmod(data[-1], 45)
        out.append(ALPHABET[c] + ALPHABET[d])
    return "".join(out)


def decode(text: str) -> bytes:
    """Raises ValueError on a character outside the alphabet, a dangling character or an out-of-range group.

    Table-driven and done in bulk: this runs on every QR scan, before the signature check.
    """
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError("not base45: non-ASCII character") from None
    vals = raw.translate(_TABLE)
    if 0xFF in vals:
        raise ValueError(f"not base45: character {chr(raw[vals.index(0xFF)])!r}")
    tail = len(vals) % 3
    if tail == 1:
        raise ValueError("not base45: dangling character")
    body = len(vals) - tail
    groups = [a + b * 45 + c * 2025 for a, b, c in zip(vals[0:body:3], vals[1:body:3], vals[2:body:3])]
    if groups and max(groups) > 0xFFFF:
        raise ValueError("not base45: group out of range")
    out = array("H", groups)
    if sys.byteorder == "little":
        out.byteswap()
    data = out.tobytes()
    if tail == 2:
        n = vals[-2] + vals[-1] * 45
        if n > 0xFF:
            raise ValueError("not base45: group out of range")
        data += bytes((n,))
    return data

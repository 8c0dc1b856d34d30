"""Base45 (RFC 9285): binary to the QR alphanumeric alphabet, so a pass fits a small QR code."""
from __future__ import annotations

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
_INVALID = 0xFF
# byte -> its value in the alphabet, or _INVALID: one bytes.translate() turns the text into digit values
_TABLE = bytes(ALPHABET.index(chr(b)) if chr(b) in ALPHABET else _INVALID for b in range(256))


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

    This runs on every QR scan, before the signature check, so it works on whole slices instead of looping
    over groups in Python: each of the three digit positions goes into its own 4-byte lane of one big
    integer, the groups are computed all at once as c + 45*d + 2025*e (at most 91124, so no lane carries
    into the next), and the low two bytes of every lane are the output.
    """
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError("not base45: non-ASCII character") from None
    vals = raw.translate(_TABLE)
    if _INVALID in vals:
        raise ValueError(f"not base45: character {chr(raw[vals.index(_INVALID)])!r}")
    tail = len(vals) % 3
    if tail == 1:
        raise ValueError("not base45: dangling character")
    body = len(vals) - tail
    groups = body // 3
    out = bytearray(2 * groups + tail // 2)
    if groups:
        lane = bytearray(4 * groups)
        lane[3::4] = vals[0:body:3]
        c = int.from_bytes(lane, "big")
        lane[3::4] = vals[1:body:3]
        d = int.from_bytes(lane, "big")
        lane[3::4] = vals[2:body:3]
        e = int.from_bytes(lane, "big")
        lanes = (c + 45 * d + 2025 * e).to_bytes(4 * groups, "big")
        if lanes[1::4].strip(b"\0"):  # a lane above 0xFFFF: "GGW" and the like
            raise ValueError("not base45: group out of range")
        out[0:2 * groups:2] = lanes[2::4]
        out[1:2 * groups:2] = lanes[3::4]
    if tail == 2:
        n = vals[-2] + vals[-1] * 45
        if n > 0xFF:
            raise ValueError("not base45: group out of range")
        out[-1] = n
    return bytes(out)

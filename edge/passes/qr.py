"""The printable QR code of a pass: error correction M, alphanumeric mode (base45 is QR's alphanumeric set)."""
from __future__ import annotations

from pathlib import Path

import qrcode
from qrcode.constants import ERROR_CORRECT_M


def _code(text: str, box_size: int = 6, border: int = 4) -> qrcode.QRCode:
    qr = qrcode.QRCode(error_correction=ERROR_CORRECT_M, box_size=box_size, border=border)
    qr.add_data(text, optimize=0)  # one alphanumeric segment: the whole text is in that set
    qr.make(fit=True)
    return qr


def qr_version(text: str) -> int:
    return _code(text).version


def write_png(text: str, path: Path | str, *, box_size: int = 6, border: int = 4) -> int:
    """Write the QR as PNG; returns its version."""
    qr = _code(text, box_size, border)
    qr.make_image().save(str(path))
    return qr.version


def png_bytes(text: str, *, box_size: int = 6, border: int = 4) -> bytes:
    import io
    buf = io.BytesIO()
    _code(text, box_size, border).make_image().save(buf)
    return buf.getvalue()

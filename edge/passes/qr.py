"""The printable QR code of a pass: error correction M, one alphanumeric segment.

Base45 and the `GK1:` prefix use only QR's alphanumeric set (5.5 bits a character instead of 8 in byte
mode); that is what keeps a full pass within version 13 (SPEC §3), so the mode is set, not left to guessing.
"""
from __future__ import annotations

import io
from pathlib import Path

import qrcode
from qrcode.constants import ERROR_CORRECT_M
from qrcode.util import MODE_ALPHA_NUM, QRData


def _code(text: str, box_size: int = 6, border: int = 4) -> qrcode.QRCode:
    try:
        data = QRData(text, mode=MODE_ALPHA_NUM)
    except ValueError:
        raise ValueError("not QR-alphanumeric text (a pass is GK1: and base45)") from None
    qr = qrcode.QRCode(error_correction=ERROR_CORRECT_M, box_size=box_size, border=border)
    qr.add_data(data)
    qr.make(fit=True)  # the smallest version that holds the data at level M
    return qr


def qr_version(text: str) -> int:
    return _code(text).version


def write_png(text: str, path: Path | str, *, box_size: int = 6, border: int = 4) -> int:
    """Write the QR as PNG; returns its version."""
    qr = _code(text, box_size, border)
    qr.make_image().save(str(path))
    return qr.version


def png_bytes(text: str, *, box_size: int = 6, border: int = 4) -> bytes:
    buf = io.BytesIO()
    _code(text, box_size, border).make_image().save(buf)
    return buf.getvalue()

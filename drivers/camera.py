"""A camera reading QR passes (SPEC §5): an OpenCV capture source, frames decoded with pyzbar.

The source is a device index ("0"), a video file, or an RTSP/HTTP URL. Decoding runs on the reader's own
thread, never on the event loop. The same text in view is acted on once per `dedup_s` window, since a
pass held up to the lens is seen in every frame for as long as it is there. Each text is classified as a
serial reader's line is (a pass, or malformed: a QR code that is not ours).
"""
from __future__ import annotations

import logging
import time

import cv2
import numpy as np
from pyzbar.pyzbar import ZBarSymbol, decode

from drivers.interfaces import LinkState, PresentationCallback, StateCallback
from drivers.source_thread import MAX_BACKOFF_S, ThreadedSource
from drivers.line_protocol import qr_presentation

log = logging.getLogger(__name__)

FAILED_READS = 10  # consecutive failed reads that mean the stream is gone


def decode_frame(frame: np.ndarray) -> list[str]:
    """The QR texts in one frame (BGR or grey). QR only: three times faster than every symbology."""
    gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    try:
        found = decode(gray, symbols=[ZBarSymbol.QRCODE])
    except Exception:  # zbar on a corrupt frame: nothing in it
        return []
    return [s.data.decode("utf-8", errors="replace") for s in found]


class Dedup:
    """Each text passes once per window."""

    def __init__(self, window_s: float):
        self.window_s = window_s
        self.seen: dict[str, float] = {}

    def fresh(self, text: str, now: float) -> bool:
        if len(self.seen) > 256:
            self.seen = {t: at for t, at in self.seen.items() if now - at < self.window_s}
        at = self.seen.get(text)
        if at is not None and now - at < self.window_s:
            return False
        self.seen[text] = now
        return True


class CameraReader(ThreadedSource):
    """A CredentialSource; decodes on a thread of its own and calls back from it."""

    thread_kind = "camera"

    def __init__(self, name: str, source: str, *, on_presentation: PresentationCallback, on_state: StateCallback,
                 dedup_s: float = 3.0, max_backoff_s: float = MAX_BACKOFF_S):
        super().__init__(name, on_presentation=on_presentation, on_state=on_state, max_backoff_s=max_backoff_s)
        self.source: int | str = int(source) if str(source).isdigit() else source
        self.dedup = Dedup(dedup_s)

    @classmethod
    def from_section(cls, s, *, on_presentation: PresentationCallback, on_state: StateCallback,
                     loop=None, scbk: bytes | None = None) -> "CameraReader":
        return cls(s.name, s.source, on_presentation=on_presentation, on_state=on_state, dedup_s=s.dedup_s)

    def _run(self) -> None:
        down_reported = False
        while not self._stop.is_set():
            cap = cv2.VideoCapture(self.source)
            if not cap.isOpened():
                cap.release()
                if not down_reported:
                    self.on_state(self.name, LinkState.DOWN, f"cannot open {self.source}")
                    down_reported = True
                self._retry_later()
                continue
            why = self._read(cap)
            cap.release()
            if why is None:
                return
            self.on_state(self.name, LinkState.DOWN, why)
            down_reported = True
            self._retry_later()

    def _read(self, cap) -> str | None:
        """Frames until stopped (None) or the stream is gone (why). Frames are read in order: a stream
        delivers at its own pace, and decoding (~15 ms) keeps up with 10-30 fps."""
        failed = 0
        up = False
        while not self._stop.is_set():
            ok, frame = cap.read()
            if not ok:
                failed += 1
                if failed >= FAILED_READS:
                    return "the stream ended or stopped sending frames"
                continue
            failed = 0
            if not up:
                up = True
                self._connected()
                self.on_state(self.name, LinkState.UP, None)
            t_ns = time.monotonic_ns()
            for text in decode_frame(frame):
                if self.dedup.fresh(text, t_ns / 1e9):
                    self.on_presentation(qr_presentation(self.name, text, t_ns))
        return None

"""What every credential source shares that opens its device on a thread of its own (pyserial, OpenCV and
libosdp all open blocking): start, stop, and the capped exponential backoff between attempts."""
from __future__ import annotations

import threading
from typing import ClassVar

from drivers.interfaces import PresentationCallback, StateCallback

MIN_BACKOFF_S = 0.2
MAX_BACKOFF_S = 5.0


class ThreadedSource:
    """Subclasses write `_run`: open, read until stopped or failed, `_retry_later` after a failure."""

    on_loop: ClassVar[bool] = False
    thread_kind: ClassVar[str] = "reader"

    def __init__(self, name: str, *, on_presentation: PresentationCallback, on_state: StateCallback,
                 max_backoff_s: float = MAX_BACKOFF_S):
        self.name = name
        self.on_presentation = on_presentation
        self.on_state = on_state
        self.max_backoff_s = max_backoff_s
        self.backoff = MIN_BACKOFF_S
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{self.thread_kind}:{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def feedback(self, granted: bool) -> None:
        """Most readers only send: they have no way to show the decision."""

    def prompt_pin(self) -> None:
        """P34: nor to ask for a PIN (an OSDP reader can: its LED)."""

    def _run(self) -> None:
        raise NotImplementedError

    def _connected(self) -> None:
        self.backoff = MIN_BACKOFF_S

    def _retry_later(self) -> None:
        """Wait the backoff (less if stopped meanwhile), then double it, up to the cap."""
        self._stop.wait(self.backoff)
        self.backoff = min(self.backoff * 2, self.max_backoff_s)

"""A serial badge or QR reader (SPEC §5) on its own thread: a device path, `socket://host:port`,
`rfc2217://...` or a pty. Lines go to `on_line`; losing and regaining the device goes to `on_state`.

A thread rather than asyncio because pyserial is blocking; the callbacks are expected to hop onto the
event loop themselves (`loop.call_soon_threadsafe`).
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

import serial

from drivers.line_protocol import LineBuffer

log = logging.getLogger(__name__)

MIN_BACKOFF_S = 0.2
MAX_BACKOFF_S = 5.0
READ_TIMEOUT_S = 0.1  # how often a blocked read looks at the stop flag

LineCallback = Callable[[str, str, int], None]  # reader name, line, monotonic ns at the terminator
StateCallback = Callable[[str, str, "str | None"], None]  # reader name, "up" | "down", error


class SerialLineReader:
    def __init__(self, name: str, url: str, *, baudrate: int = 9600, on_line: LineCallback,
                 on_state: StateCallback, max_backoff_s: float = MAX_BACKOFF_S):
        self.name = name
        self.url = url
        self.baudrate = baudrate
        self.on_line = on_line
        self.on_state = on_state
        self.max_backoff_s = max_backoff_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"reader:{name}", daemon=True)
        self._port: serial.SerialBase | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        backoff = MIN_BACKOFF_S
        while not self._stop.is_set():
            try:
                port = serial.serial_for_url(self.url, baudrate=self.baudrate, timeout=READ_TIMEOUT_S)
            except (serial.SerialException, OSError, ValueError) as e:
                self.on_state(self.name, "down", f"cannot open {self.url}: {e}")
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
                continue
            self._port = port
            backoff = MIN_BACKOFF_S
            self.on_state(self.name, "up", None)
            error = self._read(port)
            try:
                port.close()
            except Exception:  # closing a port that already failed may fail again; nothing to save
                pass
            self._port = None
            if error is not None:
                self.on_state(self.name, "down", error)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)

    def _read(self, port: serial.SerialBase) -> str | None:
        """Read until stopped (None) or the line fails (the error)."""
        buf = LineBuffer()
        while not self._stop.is_set():
            try:
                data = port.read(max(1, port.in_waiting))
            except (serial.SerialException, OSError) as e:
                return str(e)
            if not data:  # timed out; a peer that went away raises instead (socket:// and pty alike)
                continue
            t = time.monotonic_ns()
            for line in buf.feed(data):
                self.on_line(self.name, line, t)
        return None


"""A serial badge or QR reader (SPEC §5): a device path, `socket://host:port`, `rfc2217://...` or a pty.
Each line, classified, goes to `on_presentation`; losing and regaining the device goes to `on_state`.

Opening, reopening and backing off run on a thread of their own, because pyserial opens blocking. The
reading itself: given an event loop, a port with a file descriptor (a device, a pty, `socket://`) is read by
the loop when it becomes readable, and `on_presentation` runs right there, on the loop's thread, with no
hand-over between threads on a scan's path. For a port with no descriptor (`rfc2217://`) the thread reads
too, and hands what it read to the loop. Given a loop, every callback runs on it; without one, on the thread.
"""
from __future__ import annotations

import asyncio
import io
import logging
import os
import threading
import time

import serial

from drivers.interfaces import LinkState, PresentationCallback, StateCallback
from drivers.source_thread import MAX_BACKOFF_S, ThreadedSource
from drivers.line_protocol import LineBuffer, presentation

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 0.1  # how often a blocked read looks at the stop flag


class SerialLineReader(ThreadedSource):
    """A CredentialSource. Made from the config it is given the loop, so it calls back on it (`on_loop`);
    built without one (as some tests do) it calls back from its own thread."""

    on_loop = True

    def __init__(self, name: str, url: str, *, baudrate: int = 9600, on_presentation: PresentationCallback,
                 on_state: StateCallback, max_backoff_s: float = MAX_BACKOFF_S,
                 loop: asyncio.AbstractEventLoop | None = None, encoding: str = "utf-8"):
        super().__init__(name, on_presentation=on_presentation, on_state=on_state, max_backoff_s=max_backoff_s)
        self.url = url
        self.baudrate = baudrate
        self.encoding = encoding  # P26: what the line's bytes are (a plate camera may send GBK)
        self.loop = loop
        self._port: serial.SerialBase | None = None
        self._watched: int | None = None  # the descriptor the loop reads, while it does
        self._failed: str | None = None
        self._gone = threading.Event()  # the loop's read failed (or we stop): the thread takes the port back

    @classmethod
    def from_section(cls, s, *, on_presentation: PresentationCallback, on_state: StateCallback,
                     loop: asyncio.AbstractEventLoop | None, scbk: bytes | None = None) -> "SerialLineReader":
        return cls(s.name, s.url, baudrate=s.baudrate or 9600, on_presentation=on_presentation,
                   on_state=on_state, loop=loop, encoding=getattr(s, "encoding", None) or "utf-8")

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self.loop is not None and self._watched is not None:
            self._call(self._unwatch, None)  # the loop lets go of the port before the thread closes it
        super().stop(timeout)

    def _call(self, fn, *args) -> None:
        """fn(*args) where callbacks run: on the loop when there is one (at once if we are on it)."""
        if self.loop is None:
            fn(*args)
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            fn(*args)
        else:
            try:
                self.loop.call_soon_threadsafe(fn, *args)
            except RuntimeError:  # the loop has closed: the daemon is stopping
                pass

    def _state(self, state: LinkState, error: str | None) -> None:
        self._call(self.on_state, self.name, state, error)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                port = serial.serial_for_url(self.url, baudrate=self.baudrate, timeout=READ_TIMEOUT_S)
            except (serial.SerialException, OSError, ValueError) as e:
                self._state(LinkState.DOWN, f"cannot open {self.url}: {e}")
                self._retry_later()
                continue
            self._port = port
            self._connected()
            self._state(LinkState.UP, None)
            error = self._on_loop(port) if self._loop_reads(port) else self._read(port)
            try:
                port.close()
            except Exception:  # closing a port that already failed may fail again; nothing to save
                pass
            self._port = None
            if error is not None:
                self._state(LinkState.DOWN, error)
                self._retry_later()

    def _loop_reads(self, port: serial.SerialBase) -> bool:
        if self.loop is None:
            return False
        try:
            port.fileno()
        except (AttributeError, NotImplementedError, io.UnsupportedOperation, serial.SerialException):
            return False  # rfc2217:// and loop:// say so with io's UnsupportedOperation
        return True

    def _read(self, port: serial.SerialBase) -> str | None:
        """Read on this thread until stopped (None) or the line fails (the error)."""
        buf = LineBuffer(encoding=self.encoding)
        while not self._stop.is_set():
            try:
                data = port.read(max(1, port.in_waiting))
            except (serial.SerialException, OSError) as e:
                return str(e)
            if not data:  # timed out; a peer that went away raises instead (socket:// and pty alike)
                continue
            t = time.monotonic_ns()
            for line in buf.feed(data):
                self._call(self.on_presentation, presentation(self.name, line, t))
        return None

    def _on_loop(self, port: serial.SerialBase) -> str | None:
        """Hand the port to the loop and wait until stopped (None) or its read fails (the error)."""
        port.timeout = 0  # the loop reads only what is there
        self._failed = None
        self._gone.clear()
        self._call(self._watch, port)
        while not self._stop.is_set() and not self._gone.wait(READ_TIMEOUT_S):
            pass
        if not self._gone.is_set():  # stopping: the loop lets go of the port before we close it
            self._call(self._unwatch, None)
            self._gone.wait(1.0)
        return self._failed

    def _watch(self, port: serial.SerialBase) -> None:
        if self._stop.is_set():
            self._gone.set()
            return
        buf = LineBuffer(encoding=self.encoding)
        fd = port.fileno()

        def readable() -> None:
            # os.read, not port.read: the descriptor is non-blocking and was just reported readable, so one
            # read takes what is there; pyserial's own read costs two selects more on every scan's path
            try:
                data = os.read(fd, 4096)
            except BlockingIOError:  # woken for nothing (another reader of the line took it)
                return
            except OSError as e:
                self._unwatch(f"read failed: {e}")
                return
            if not data:  # readable with nothing to read: the other end is gone (pyserial says the same)
                self._unwatch("the line reports readiness to read but returned no data (disconnected?)")
                return
            t = time.monotonic_ns()
            for line in buf.feed(data):
                self.on_presentation(presentation(self.name, line, t))

        self.loop.add_reader(fd, readable)
        self._watched = fd

    def _unwatch(self, error: str | None) -> None:
        if self._watched is not None:
            self.loop.remove_reader(self._watched)
            self._watched = None
        if error is not None:
            self._failed = error
        self._gone.set()

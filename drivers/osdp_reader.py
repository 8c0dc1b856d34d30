"""An OSDP reader (IEC 60839-11-5) through libosdp, this gate as the control panel, secure channel on.

A card read's number is a badge UID: it is presented as `badge:<HEX>`, exactly as the same card held to a
serial reader would be. The reader's LED and buzzer show each decision (`feedback`). A reader
without the site's secure channel key never comes online: nothing it sends is acted on.

Its keypad's presses become a PIN Presentation (`kind="pin"`, P34) as drivers/keypad.py assembles them, only
while the secure channel is up; `prompt_pin` shows the reader's "enter PIN" colour (amber).
"""
from __future__ import annotations

import logging
import threading
import time

import serial
from osdp import Channel, Command, CommandLEDColor, ControlPanel, Event, LibFlag, LogLevel, PDInfo

from drivers.errors import DriverError
from drivers.interfaces import LinkState, PresentationCallback, StateCallback
from drivers.source_thread import MAX_BACKOFF_S, MIN_BACKOFF_S, ThreadedSource
from drivers.keypad import PAUSE_S, KeypadEntry
from drivers.line_protocol import card

log = logging.getLogger(__name__)

ONLINE_WITHIN_S = 3.0  # secure channel set-up takes 1-2 s over a serial line
LED_TENTHS = 15  # how long the decision colour shows, in 100 ms units
PROMPT_COLOUR = CommandLEDColor.Amber  # "enter PIN": neither a grant's green nor a refusal's red
PROMPT_TENTHS = 100  # the prompt shows while the core waits for the PIN (P34: 10 s), or until the decision


class SerialChannel(Channel):
    """libosdp reads and writes without blocking; a line that breaks reads as empty and is reported."""

    def __init__(self, port: serial.SerialBase):
        super().__init__()
        self.port = port
        self.error: str | None = None

    def read(self, max_bytes: int) -> bytes:
        try:
            return self.port.read(max_bytes)
        except (serial.SerialException, OSError) as e:
            self.error = str(e)
            return b""

    def write(self, buf: bytes) -> int:
        try:
            return self.port.write(buf)
        except (serial.SerialException, OSError) as e:
            self.error = str(e)
            return 0

    def flush(self) -> None:
        try:
            self.port.reset_input_buffer()
        except (serial.SerialException, OSError):
            pass


class OsdpReader(ThreadedSource):
    """A CredentialSource that shows each decision; polls on a thread of its own and calls back from it."""

    thread_kind = "osdp"

    def __init__(self, name: str, device: str, *, address: int = 101, scbk: bytes, baudrate: int = 115200,
                 on_presentation: PresentationCallback, on_state: StateCallback, max_backoff_s: float = MAX_BACKOFF_S,
                 pin_pause_s: float = PAUSE_S):
        super().__init__(name, on_presentation=on_presentation, on_state=on_state, max_backoff_s=max_backoff_s)
        self.device = device
        self.address = address
        self.scbk = scbk
        self.baudrate = baudrate
        self._cp: ControlPanel | None = None
        # libosdp calls `_event` from its own thread; the poll loop ends paused entries from ours
        self._keypad = KeypadEntry(name, pause_s=pin_pause_s)
        self._keypad_lock = threading.Lock()

    @classmethod
    def from_section(cls, s, *, on_presentation: PresentationCallback, on_state: StateCallback,
                     loop=None, scbk: bytes | None = None) -> "OsdpReader":
        """`scbk`: the key the config's scbk_file holds (the caller reads it, knowing where the file is)."""
        if scbk is None:
            raise DriverError(s.name, "an OSDP reader needs its secure channel key (scbk_file)")
        return cls(s.name, s.url, address=s.address, scbk=scbk, baudrate=s.baudrate or 115200,
                   on_presentation=on_presentation, on_state=on_state)

    def feedback(self, granted: bool) -> None:
        """Green and one beep for a grant; red and two beeps for a refusal."""
        cp = self._cp
        if cp is None:
            return
        self._led(CommandLEDColor.Green if granted else CommandLEDColor.Red, LED_TENTHS, "feedback")
        try:
            cp.submit_command(self.address, {
                "command": Command.Buzzer, "reader": 0, "control_code": 2, "on_count": 1, "off_count": 1,
                "rep_count": 1 if granted else 2})
        except Exception as e:  # the reader went away between the decision and its feedback
            log.warning("reader %s: feedback not sent: %s", self.name, e)

    def prompt_pin(self) -> None:
        """P34: the core waits for this reader's PIN: the LED shows steady amber, for up to 10 s (the next
        decision's colour replaces it)."""
        self._led(PROMPT_COLOUR, PROMPT_TENTHS, "PIN prompt")

    def _led(self, colour: int, tenths: int, what: str) -> None:
        cp = self._cp
        if cp is None:
            return
        try:
            cp.submit_command(self.address, {
                "command": Command.LED, "reader": 0, "led_number": 0, "control_code": 1, "on_count": tenths,
                "off_count": 0, "on_color": colour, "off_color": CommandLEDColor.Black, "timer_count": tenths,
                "temporary": True})
        except Exception as e:  # the reader went away meanwhile
            log.warning("reader %s: %s not sent: %s", self.name, what, e)

    def _secure(self, pd: int) -> bool:
        """Whether the event at hand came over the secure channel. libosdp calls `_event` from its refresh
        thread with its lock held, so `is_sc_active` (which takes that lock) would never return: ask the
        binding's context directly; `pd` is the reader's index there."""
        cp = self._cp
        return cp is not None and bool(cp.ctx.sc_status() & (1 << pd))

    def _event(self, pd: int, event: dict) -> int:
        kind, data = event.get("event"), event.get("data")
        if not isinstance(data, (bytes, bytearray)):
            return 0
        now = time.monotonic_ns()
        # handed over under the keypad's lock, so that the core gets a card and a PIN the pause ended on
        # the poll thread in the order the keypad saw them (a PIN after a card is that card's); the callbacks
        # only hand over to the caller's loop (CredentialSource), never wait on this reader
        with self._keypad_lock:
            if kind == Event.CardRead:
                self._keypad.card()
                self.on_presentation(card(self.name, bytes(data), now))
            elif kind == Event.KeyPress:
                for p in self._keypad.keys(bytes(data), now, secure=self._secure(pd)):
                    self.on_presentation(p)
        return 0

    def _keypad_tick(self) -> None:
        """An entry paused longer than the keypad's pause ends now (checked on every 100 ms poll)."""
        with self._keypad_lock:
            for p in self._keypad.expire(time.monotonic_ns()):
                self.on_presentation(p)

    def _run(self) -> None:
        down_said = False
        while not self._stop.is_set():
            try:
                port = serial.serial_for_url(self.device, baudrate=self.baudrate, timeout=0)
            except (serial.SerialException, OSError, ValueError) as e:
                if not down_said:
                    self.on_state(self.name, LinkState.DOWN, f"cannot open {self.device}: {e}")
                    down_said = True
                self._retry_later()
                continue
            channel = SerialChannel(port)
            cp = ControlPanel([PDInfo(self.address, channel, scbk=self.scbk, flags=[LibFlag.EnforceSecure])],
                              log_level=LogLevel.Error, event_handler=self._event)
            cp.start()
            self._cp = cp
            up = False
            # libosdp waits minutes before trying an offline reader again; a reader that is not up within
            # the backoff (or drops) gets a fresh control panel instead, with our capped backoff
            give_up_at = time.monotonic() + max(self.backoff, ONLINE_WITHIN_S)
            while not self._stop.is_set() and channel.error is None:
                now_up = cp.is_online(self.address) and cp.is_sc_active(self.address)
                if now_up and not up:
                    up = True
                    self._connected()
                    self.on_state(self.name, LinkState.UP, None)
                    down_said = False
                elif up and not now_up:
                    self.on_state(self.name, LinkState.DOWN, "reader offline or secure channel lost")
                    down_said = True
                    break
                elif not up and time.monotonic() > give_up_at:
                    if not down_said:
                        self.on_state(self.name, LinkState.DOWN,
                                      "reader does not answer or lacks the secure channel key")
                        down_said = True
                    self.backoff = min(self.backoff * 2, self.max_backoff_s)
                    break
                self._keypad_tick()
                # libosdp also queues every event it hands to `_event`, for get_event: drained so that the
                # queue neither grows for as long as the reader is up nor keeps a keypad's digits
                while cp.get_event(self.address, timeout=-1) is not None:
                    pass
                self._stop.wait(0.1)
            self._cp = None
            with self._keypad_lock:
                self._keypad.discard("reader offline")
            cp.stop()
            port.close()
            if channel.error is not None and not down_said:
                self.on_state(self.name, LinkState.DOWN, channel.error)
                down_said = True
            self._stop.wait(MIN_BACKOFF_S)

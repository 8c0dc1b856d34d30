"""A serial relay board (SPEC §5): the common `A0 <channel> <state> <checksum>` byte protocol.

Four bytes a command: 0xA0, the channel (1-based), 0x01 on / 0x00 off, and the low byte of their sum.
The board never answers, so nothing here can tell whether it is alive: the gate reports it as
`unsupervised`, and a write fails only when the serial line itself does.
"""
from __future__ import annotations

import asyncio

import serial

from drivers.errors import DriverError

START = 0xA0


def frame(channel: int, on: bool) -> bytes:
    if not 1 <= channel <= 255:
        raise ValueError(f"relay channel {channel}: 1-255")
    state = 1 if on else 0
    return bytes((START, channel, state, (START + channel + state) & 0xFF))


def parse(data: bytes) -> tuple[int, bool] | None:
    """(channel, on) of one 4-byte frame, or None if it is not a valid one."""
    if len(data) != 4 or data[0] != START or data[2] not in (0, 1) or (data[0] + data[1] + data[2]) & 0xFF != data[3]:
        return None
    return data[1], data[2] == 1


class RelayBoardIO:
    """A DoorIO that can only switch outputs: nothing can be read back from it."""

    supervised = False

    def __init__(self, name: str, url: str, *, baudrate: int = 9600, timeout_s: float = 1.0):
        self.name = name
        self.url = url
        self.baudrate = baudrate
        self.timeout_s = timeout_s
        self._port: serial.SerialBase | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def from_section(cls, s) -> "RelayBoardIO":
        return cls(s.name, s.device, baudrate=s.baudrate, timeout_s=s.timeout_s)

    @property
    def connected(self) -> bool:
        return self._port is not None and self._port.is_open

    async def connect(self) -> None:
        await self.close()
        try:
            self._port = await asyncio.to_thread(serial.serial_for_url, self.url, baudrate=self.baudrate,
                                                 timeout=self.timeout_s, write_timeout=self.timeout_s)
        except (serial.SerialException, OSError, ValueError) as e:
            raise DriverError(self.name, f"cannot open {self.url}: {e}") from None

    async def close(self) -> None:
        if self._port is not None:
            try:
                self._port.close()
            except Exception:  # already broken: nothing left to release
                pass
            self._port = None

    async def write_coil(self, address: int, value: bool, *, undo_on_timeout: bool = False) -> None:
        """`address` is the relay channel (1-based, as printed on the board). The board never answers, so
        a write never times out: `undo_on_timeout` has nothing to undo here."""
        if self._port is None:
            raise DriverError(self.name, "not connected")
        async with self._lock:
            try:
                await asyncio.to_thread(self._port.write, frame(address, value))
            except (serial.SerialException, OSError) as e:
                raise DriverError(self.name, f"write failed: {e}") from None

    async def read_coils(self, address: int, *, count: int = 1) -> list[bool]:
        raise DriverError(self.name, "a relay board cannot be read (it is unsupervised)")

    async def read_discrete_inputs(self, address: int, *, count: int = 1) -> list[bool]:
        raise DriverError(self.name, "a relay board has no inputs (the config gives its doors none)")

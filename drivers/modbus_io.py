"""A Modbus I/O module over TCP or RTU: lock coils out, door and site inputs in (SPEC §5 register map).

One client, configured by its transport as pymodbus' own clients are: the requests, the timeouts and the
error handling are the same on a TCP socket and on an RS-485 line; only the pymodbus client built differs.
Reconnection is the caller's business (it knows the backoff and what to do after a reconnect: drive
every lock to locked), so pymodbus' own reconnect and retries are switched off and every failure is
raised at once as ModbusUnavailable.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from drivers.errors import ModbusUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TcpTransport:
    host: str
    port: int = 502

    def client(self, **common):
        return AsyncModbusTcpClient(self.host, port=self.port, **common)

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class SerialTransport:
    """RS-485, RTU framing. One master per line: this gate."""

    device: str
    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1

    def client(self, **common):
        return AsyncModbusSerialClient(self.device, baudrate=self.baudrate, parity=self.parity,
                                       stopbits=self.stopbits, **common)

    def __str__(self) -> str:
        return f"{self.device} at {self.baudrate} baud"


class ModbusIO:
    """A DoorIO: a Modbus module answers every request, so it is supervised."""

    supervised = True

    def __init__(self, name: str, transport: TcpTransport | SerialTransport, *, unit: int = 1,
                 timeout_s: float = 1.0):
        self.name = name
        self.transport = transport
        self.unit = unit
        self.timeout_s = timeout_s
        self._client = None
        self.where = str(transport)
        self._lock = asyncio.Lock()  # one request at a time: the relock timer and the poller share a socket

    @classmethod
    def from_section(cls, s) -> "ModbusIO":
        """`modbus_tcp` reaches host:port; `modbus_rtu` the serial device."""
        if s.type == "modbus_rtu":
            transport = SerialTransport(s.device, baudrate=s.baudrate, parity=s.parity, stopbits=s.stopbits)
        else:
            transport = TcpTransport(s.host, s.port)
        return cls(s.name, transport, unit=s.unit, timeout_s=s.timeout_s)

    def _make_client(self):
        return self.transport.client(timeout=self.timeout_s, retries=0, reconnect_delay=0, name=self.name)

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    async def connect(self) -> None:
        await self.close()
        client = self._make_client()
        try:
            ok = await asyncio.wait_for(client.connect(), self.timeout_s + 0.5)
        except (asyncio.TimeoutError, OSError, ModbusException) as e:
            client.close()
            raise ModbusUnavailable(self.name, f"cannot connect to {self.where}: {e or 'timeout'}") from None
        if not ok:
            client.close()
            raise ModbusUnavailable(self.name, f"cannot connect to {self.where}")
        self._client = client

    async def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def write_coil(self, address: int, value: bool, *, undo_on_timeout: bool = False) -> None:
        """With `undo_on_timeout`, a write that gets no answer is followed at once, on the same connection
        and before any other request, by the opposite write, sent without waiting for an answer: a module
        that hung with the first write unread carries out both when it resumes, in order."""
        undo = None
        if undo_on_timeout:
            undo = lambda c: c.write_coil(address, not value, device_id=self.unit,  # noqa: E731
                                          no_response_expected=True)
        await self._call("write coil", address, lambda c: c.write_coil(address, value, device_id=self.unit), undo)

    async def read_coils(self, address: int, *, count: int = 1) -> list[bool]:
        r = await self._call("read coils", address, lambda c: c.read_coils(address, count=count, device_id=self.unit))
        return list(r.bits[:count])

    async def read_discrete_inputs(self, address: int, *, count: int = 1) -> list[bool]:
        r = await self._call("read inputs", address,
                             lambda c: c.read_discrete_inputs(address, count=count, device_id=self.unit))
        return list(r.bits[:count])

    async def read_holding_registers(self, address: int, *, count: int = 1) -> list[int]:
        r = await self._call("read registers", address,
                             lambda c: c.read_holding_registers(address, count=count, device_id=self.unit))
        return list(r.registers[:count])

    async def _call(self, what: str, address: int, request, undo=None):
        client = self._client
        if client is None or not client.connected:
            raise ModbusUnavailable(self.name, "not connected")
        async with self._lock:
            try:
                # asyncio.timeout, not wait_for: the request goes out in this very step of the loop, not
                # one step later in a task of its own (a door opens that much sooner)
                async with asyncio.timeout(self.timeout_s + 0.5):
                    r = await request(client)
            except (asyncio.TimeoutError, ModbusException, OSError) as e:
                if undo is not None:
                    try:
                        async with asyncio.timeout(0.5):
                            await undo(client)
                        log.warning("%s: %s %d got no answer; the opposite write was sent right behind it",
                                    self.name, what, address)
                    except (asyncio.TimeoutError, ModbusException, OSError) as e2:
                        log.error("%s: could not send the write undoing %s %d: %s", self.name, what, address, e2)
                raise ModbusUnavailable(self.name, f"{what} {address}: {e or 'timeout'}") from None
        if r.isError():
            raise ModbusUnavailable(self.name, f"{what} {address}: device answered {r}")
        return r


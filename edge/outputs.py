"""Lock outputs and site inputs over Modbus: pulses, supervision, reconnection with capped backoff."""
from __future__ import annotations

import asyncio
import logging
from typing import Callable

from drivers.errors import DriverError
from drivers.modbus_io import ModbusTcpIO
from edge.config import DoorSection, GateConfig, IoModuleSection
from edge.devices import DeviceBoard

log = logging.getLogger(__name__)

SUPERVISE_S = 1.0  # a module without site inputs is still read this often, to notice it is gone
MAX_BACKOFF_S = 10.0


class IoModule:
    """One Modbus I/O module: keeps a connection, drives its doors' locks, reads the site inputs."""

    def __init__(self, cfg: IoModuleSection, doors: list[DoorSection], board: DeviceBoard,
                 inputs: dict[str, int], poll_s: float, on_inputs: Callable[[dict[str, bool]], None]):
        self.cfg = cfg
        self.doors = doors
        self.board = board
        self.inputs = inputs  # name -> discrete input address (fire, lockdown)
        self.poll_s = poll_s if inputs else SUPERVISE_S
        self.on_inputs = on_inputs
        self.io = ModbusTcpIO(cfg.name, cfg.host, cfg.port, unit=cfg.unit, timeout_s=cfg.timeout_s)
        self.ready = asyncio.Event()
        self._relock: dict[int, asyncio.TimerHandle] = {}
        board.register(cfg.name, "io_module")

    async def run(self, stop: asyncio.Event) -> None:
        backoff = 0.2
        while not stop.is_set():
            try:
                if not self.io.connected:
                    await self.io.connect()
                    await self._lock_all()  # P18: locked first, never a pulse, on every (re)connect
                    self.board.up(self.cfg.name)
                    self.ready.set()
                    backoff = 0.2
                await self._poll()
            except DriverError as e:
                self.ready.clear()
                self.board.down(self.cfg.name, str(e))
                await self.io.close()
                await _wait(stop, backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            await _wait(stop, self.poll_s)
        await self.io.close()

    async def _lock_all(self) -> None:
        for d in self.doors:
            await self.io.write_coil(d.lock_coil, False)

    async def _poll(self) -> None:
        if self.inputs:
            values = {}
            for name, addr in self.inputs.items():
                values[name] = (await self.io.read_discrete_inputs(addr, count=1))[0]
            self.on_inputs(values)
        else:
            await self.io.read_coils(self.doors[0].lock_coil if self.doors else 0, count=1)

    async def pulse(self, door: DoorSection) -> bool:
        """Unlock for the door's pulse time; a new grant during a pulse extends it."""
        try:
            await self.io.write_coil(door.lock_coil, True)
        except DriverError as e:
            self.board.down(self.cfg.name, str(e))
            await self.io.close()
            return False
        old = self._relock.pop(door.lock_coil, None)
        if old:
            old.cancel()
        loop = asyncio.get_running_loop()
        self._relock[door.lock_coil] = loop.call_later(door.pulse_s, lambda: asyncio.ensure_future(self._lock(door)))
        return True

    async def _lock(self, door: DoorSection) -> None:
        self._relock.pop(door.lock_coil, None)
        try:
            await self.io.write_coil(door.lock_coil, False)
        except DriverError as e:
            # The reconnect loop relocks everything when the module is back.
            self.board.down(self.cfg.name, str(e))
            await self.io.close()


class Outputs:
    """All I/O modules of the site, by name, and which module drives which door."""

    def __init__(self, cfg: GateConfig, board: DeviceBoard, on_inputs: Callable[[dict[str, bool]], None]):
        self.doors = {d.name: d for d in cfg.doors}
        si = cfg.site_inputs
        self.modules: dict[str, IoModule] = {}
        for m in cfg.io_modules:
            inputs: dict[str, int] = {}
            if si and si.io == m.name:
                if si.fire_input is not None:
                    inputs["fire"] = si.fire_input
                if si.lockdown_input is not None:
                    inputs["lockdown"] = si.lockdown_input
            self.modules[m.name] = IoModule(m, [d for d in cfg.doors if d.io == m.name], board, inputs,
                                            (si.poll_ms / 1000) if si else SUPERVISE_S, on_inputs)

    async def pulse(self, door_name: str) -> bool:
        door = self.doors[door_name]
        mod = self.modules[door.io]
        if not mod.io.connected:
            log.error("door %s not opened: module %s is down", door_name, mod.cfg.name)
            return False
        return await mod.pulse(door)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except asyncio.TimeoutError:
        pass

"""Lock outputs and site inputs through each module's DoorIO driver: pulses, supervision, reconnection with
capped backoff."""
from __future__ import annotations

import asyncio
import logging
from typing import Callable

import time

from drivers.errors import DriverError
from drivers.interfaces import DoorIO
from drivers.registry import make_door_io
from edge.config import DoorSection, GateConfig, IoModuleSection
from edge.hardware.devices import DeviceBoard
from edge.hardware.doors import FREE, RELOCK, UNLOCK_REX, DoorState, extended_times, supervise
from edge.hardware.interlock import Interlock

log = logging.getLogger(__name__)

SUPERVISE_S = 1.0  # a module without inputs to watch is still read this often, to notice it is gone
DOOR_POLL_S = 0.1  # door contacts and request-to-exit buttons, when no site_inputs section sets poll_ms
MAX_BACKOFF_S = 10.0
RELOCK_RETRY_S = 0.1
CLAIM_S = 5.0  # P32: an unlock decided counts until its pulse is driven, or this long if it never is


class IoModule:
    """One I/O module: keeps a connection, drives its doors' locks, reads the site inputs."""

    def __init__(self, cfg: IoModuleSection, doors: list[DoorSection], board: DeviceBoard,
                 inputs: dict[str, int], poll_s: float, on_inputs: Callable[[dict[str, bool]], None],
                 record: Callable[[str, dict], object] | None = None, fire: Callable[[], bool] = lambda: False,
                 on_passage=None, extended_factor: float = 3.0, on_collector=None,
                 interlock: Interlock | None = None):
        self.cfg = cfg
        self.interlock = interlock or Interlock([])  # P32
        self.claimed: dict[str, float] = {}  # P32: door -> until when an unlock decided but not yet driven counts
        self.doors = doors
        self.board = board
        self.inputs = inputs  # name -> discrete input address (fire, lockdown, fire_trouble)
        supervised = any(d.contact_input is not None or d.rex_input is not None or d.kind == "turnstile"
                         or d.collector_input is not None or d.loop_input is not None for d in doors)
        self.poll_s = poll_s if (inputs or supervised) else SUPERVISE_S
        self.on_inputs = on_inputs
        self.record = record or (lambda etype, data: None)
        self.fire = fire
        self.states = {d.name: _state(d, extended_factor) for d in doors}
        self._seen: dict[int, bool] = {}  # passage inputs as last read, for rising edges
        self.on_passage = on_passage
        self.on_collector = on_collector  # P27: a card captured by a door's collector (door name)
        self.io: DoorIO = make_door_io(cfg)
        self.attempted = asyncio.Event()  # the first connection was tried (for the daemon's readiness)
        self._relock: dict[int, asyncio.TimerHandle] = {}
        self._relock_at: dict[int, float] = {}  # when each pending relock falls due (loop time)
        self.unlocked: set[int] = set()  # coils this gate last commanded on
        self.relock_due = False  # an unlock got no answer: relock as soon as the module answers
        # P26: a barrier never closes on a vehicle. Its loop as last read, and the closes put off while it was
        # occupied (each done at the first poll that reads the loop clear).
        self.loops = {d.lock_coil: d.loop_input for d in doors if d.kind == "barrier" and d.loop_input is not None}
        self._names = {d.lock_coil: d.name for d in doors if d.kind == "barrier"}
        self.occupied: dict[int, bool] = {}  # barrier coil -> a vehicle on its loop at the last read
        self.closing: set[int] = set()
        self.last_error = ""
        board.register(cfg.name, "io_module")

    async def run(self, stop: asyncio.Event) -> None:
        backoff = 0.2
        while not stop.is_set():
            try:
                if not self.io.connected:
                    try:
                        await self.io.connect()
                    finally:
                        self.attempted.set()
                    await self._lock_all()  # P18: locked first, never a pulse, on every (re)connect
                    self.relock_due = False
                    for st in self.states.values():
                        st.freed = False  # fire mode frees them again on the next poll if it is still on
                    self.board.up(self.cfg.name)
                    if not self.io.supervised:
                        self.board.unsupervised(self.cfg.name)
                    await self._poll()  # the doors' state is known before anyone is told the module is ready
                    log.info("io module %s ready: %d doors locked, inputs read", self.cfg.name, len(self.doors))
                    backoff = 0.2
                    await _wait(stop, self.poll_s)
                await self._poll()
            except Exception as e:  # anything else is a bug: logged, and the module retried
                if not isinstance(e, DriverError):
                    log.exception("io module %s: unexpected failure", self.cfg.name)
                # P18: the hardware now does what each door declares; say which
                self.board.down(self.cfg.name, str(e), {"doors": {d.name: d.fail_mode for d in self.doors}})
                await self.io.close()
                # an unlock that got no answer may be carried out late: until a relock is confirmed, the
                # module is tried again at once, not after a growing backoff
                await _wait(stop, RELOCK_RETRY_S if self.relock_due else backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            await _wait(stop, self.poll_s)
        # stopping: the daemon relocks and closes (shutdown), after the last pulse was cut short

    async def shutdown(self) -> None:
        """At a stop: pulses under way end now, every lock is left locked, the connection closed."""
        for timer in self._relock.values():
            timer.cancel()
        self._relock.clear()
        if self.io.connected:
            try:
                await self._lock_all()  # a barrier with a car under it is left up (P26)
            except DriverError as e:
                log.warning("io module %s: locks not confirmed locked at stop: %s", self.cfg.name, e)
        await self.io.close()

    async def _lock_all(self) -> None:
        for d in self.doors:
            for coil in _outputs(d):
                await self._close(coil)  # P26: the loop is read first; a barrier with a car under it stays up

    async def _write(self, coil: int, on: bool) -> None:
        """One output, remembered as commanded (a relock then knows what to undo)."""
        if on:
            self.unlocked.add(coil)
        # An unlock that times out may be waiting inside a module that stopped answering (a hung module
        # resumes and carries out what it had read): the driver then sends a relock right behind it on
        # the same connection, so that late unlock lasts a moment, never a pulse. It cannot be recalled.
        try:
            await self.io.write_coil(coil, on, undo_on_timeout=on)
        except DriverError:
            if on:
                # and should the module drop that relock (some process one request per read), the
                # reconnection relocks everything as soon as the module answers again
                self.relock_due = True
            raise
        if not on:
            self.unlocked.discard(coil)

    async def _poll(self) -> None:
        addrs = set(self.inputs.values())
        for d in self.doors:
            addrs.update(a for a in (d.contact_input, d.rex_input, d.passage_in_input, d.passage_out_input,
                                     d.collector_input, d.loop_input) if a is not None)
        if addrs:
            bits = await self._read_inputs(sorted(addrs))
        else:
            bits = {}
            if self.io.supervised:  # an unsupervised module (a relay board) cannot be asked anything
                await self.io.read_coils(_outputs(self.doors[0])[0] if self.doors else 0, count=1)
        if self.inputs:
            self.on_inputs({name: bits[a] for name, a in self.inputs.items()})
        for coil, addr in self.loops.items():  # P26: a close put off for a car is done once the loop is clear
            self.occupied[coil] = bits[addr]
            if coil in self.closing and not bits[addr]:
                self.closing.discard(coil)
                log.info("barrier %s: its loop is clear, closing", self._names[coil])
                if coil not in self._relock:  # a new grant meanwhile keeps it up for its own pulse
                    await self._write(coil, False)
        now, fire = time.monotonic(), self.fire()
        for d in self.doors:
            if d.kind == "turnstile":
                await self._lane(d, bits, fire)
                continue
            # P32: a request to exit unlocks no door of a mantrap while another of it is open (fire lifts it)
            blocked = not fire and bool(self.interlock.blocking(d.name, now))
            step = supervise(self.states[d.name], bits.get(d.contact_input), bits.get(d.rex_input), now, fire,
                             blocked)
            for etype, data in step.events:
                self.record(etype, data)
            for action in step.actions:
                await self._act(d, action)
        for d in self.doors:
            if d.collector_input is not None:
                await self._collector(d, bits)

    async def _collector(self, d: DoorSection, bits: dict[int, bool]) -> None:
        """P27: one pulse per card the collector captured (a rising edge); the first read only learns the line."""
        addr = d.collector_input
        now_on, was_on = bits.get(addr, False), self._seen.get(addr)
        self._seen[addr] = now_on
        if now_on and was_on is False and self.on_collector is not None:
            await self.on_collector(d.name)

    async def _lane(self, d: DoorSection, bits: dict[int, bool], fire: bool) -> None:
        """A turnstile lane: one passage pulse per person; fire mode lets it wheel freely (P16)."""
        st = self.states[d.name]
        if fire and not st.freed and d.free_coil is not None:
            st.freed = True
            await self._write(d.free_coil, True)
        elif not fire and st.freed:
            st.freed = False  # P16 cleared: the lane stops wheeling freely
            await self._write(d.free_coil, False)
        for addr, direction in ((d.passage_in_input, "in"), (d.passage_out_input, "out")):
            now_on, was_on = bits.get(addr, False), self._seen.get(addr, False)
            self._seen[addr] = now_on
            if now_on and not was_on:
                await self.on_passage(d.name, direction)

    async def _read_inputs(self, addrs: list[int]) -> dict[int, bool]:
        """One request for all of them when they sit close together (they usually do)."""
        lo, hi = addrs[0], addrs[-1]
        if hi - lo < 2000:
            bits = await self.io.read_discrete_inputs(lo, count=hi - lo + 1)
            return {a: bool(bits[a - lo]) for a in addrs}
        return {a: (await self.io.read_discrete_inputs(a, count=1))[0] for a in addrs}

    async def _act(self, door: DoorSection, action: str) -> None:
        if action == RELOCK:
            old = self._relock.pop(door.lock_coil, None)
            if old:
                old.cancel()
            if old or door.lock_coil in self.unlocked:  # a pulse under way, or a door freed for a fire
                await self._close(door.lock_coil)
        elif action == UNLOCK_REX:
            await self.pulse(door)
        elif action == FREE:
            old = self._relock.pop(door.lock_coil, None)
            if old:
                old.cancel()
            await self._write(door.lock_coil, True)  # held, no relock timer: the evacuation route

    def busy(self, door: DoorSection, now: float) -> bool:
        """P32: the door is open or not known closed (never read, or its module silent), unlocked, or about to
        be (a grant decided, a pulse under way, freed for a fire)."""
        st = self.states[door.name]
        return (st.open is not False or not self.io.connected or st.freed or door.lock_coil in self.unlocked
                or door.lock_coil in self._relock or now < st.authorized_until
                or now < self.claimed.get(door.name, 0.0))

    def claim(self, door: DoorSection, now: float) -> None:
        """P32: a grant or an override at the door was decided; its pulse follows (and takes over)."""
        self.claimed[door.name] = now + CLAIM_S

    async def pulse(self, door: DoorSection, direction: str = "in", extended: bool = False) -> bool:
        """Unlock (or, at a lane, release one way) for the pulse time (`extended`: the door's extended time,
        P30); a new grant during a pulse extends it. False when the output could not be driven (the caller
        journals it)."""
        st = self.states[door.name]
        # the opening that follows is not a forced door (P17)
        seconds = st.authorize(time.monotonic(), extended=extended and door.kind == "door")
        self.claimed.pop(door.name, None)  # P32: the pulse's own window (or a freed door) counts from here
        if st.freed:
            return True  # already free (fire mode)
        if door.kind == "turnstile":
            coil = door.pass_in_coil if direction == "in" else door.pass_out_coil
        else:
            coil = door.lock_coil
        try:
            await self._write(coil, True)
        except DriverError as e:
            self.last_error = str(e)
            self.board.down(self.cfg.name, str(e))
            await self.io.close()
            return False
        old = self._relock.pop(coil, None)
        if old:
            old.cancel()
        loop = asyncio.get_running_loop()
        if old is not None and coil in self._relock_at:  # a shorter grant during a longer pulse cuts nothing short
            seconds = max(seconds, self._relock_at[coil] - loop.time())
        self._relock[coil] = loop.call_later(seconds, lambda: asyncio.ensure_future(self._lock(coil)))
        self._relock_at[coil] = loop.time() + seconds
        return True

    async def _close(self, coil: int) -> None:
        """Lock a door, end a lane's pass; a barrier with a vehicle on its loop is closed later (P26)."""
        if coil in self.loops:
            # read the loop now, not at the last poll: a car that drove on since then is under the arm
            self.occupied[coil] = (await self.io.read_discrete_inputs(self.loops[coil], count=1))[0]
        if self.occupied.get(coil):
            if coil not in self.closing:
                log.info("barrier %s: a vehicle on its loop, closing put off until it is clear", self._names[coil])
            self.closing.add(coil)
            return
        self.closing.discard(coil)
        await self._write(coil, False)

    async def _lock(self, coil: int) -> None:
        self._relock.pop(coil, None)
        try:
            await self._close(coil)
        except DriverError as e:
            # The reconnect loop relocks everything when the module is back.
            self.board.down(self.cfg.name, str(e))
            await self.io.close()


class Outputs:
    """All I/O modules of the site, by name, and which module drives which door."""

    def __init__(self, cfg: GateConfig, board: DeviceBoard, on_inputs: Callable[[dict[str, bool]], None],
                 record: Callable[[str, dict], object] | None = None, fire: Callable[[], bool] = lambda: False,
                 on_passage=None, on_collector=None):
        self.doors = {d.name: d for d in cfg.doors}
        si = cfg.site_inputs
        self.interlock = Interlock(cfg.doors)  # P32: the mantraps, across modules
        self.modules: dict[str, IoModule] = {}
        for m in cfg.io_modules:
            inputs: dict[str, int] = {}
            if si and si.io == m.name:
                if si.fire_input is not None:
                    inputs["fire"] = si.fire_input
                if si.lockdown_input is not None:
                    inputs["lockdown"] = si.lockdown_input
                if si.fire_trouble_input is not None:
                    inputs["fire_trouble"] = si.fire_trouble_input  # P28: the fire line's fault
            self.modules[m.name] = IoModule(m, [d for d in cfg.doors if d.io == m.name], board, inputs,
                                            (si.poll_ms / 1000) if si else DOOR_POLL_S, on_inputs, record, fire,
                                            on_passage, cfg.policy.extended_access_factor, on_collector,
                                            self.interlock)
        for name in self.interlock.others:
            mod, door = self.modules[self.doors[name].io], self.doors[name]
            self.interlock.busy[name] = lambda now, mod=mod, door=door: mod.busy(door, now)
            self.interlock.claims[name] = lambda now, mod=mod, door=door: mod.claim(door, now)

    def ready(self, door_name: str) -> bool:
        """Whether the door's output answers now (a grant is flagged when it does not: P18, P19)."""
        door = self.doors.get(door_name)
        return door is not None and self.modules[door.io].io.connected

    async def pulse(self, door_name: str, direction: str = "in", extended: bool = False) -> bool:
        """Open a door once (for the extended time: P30); False when its output could not be driven (`failure`
        says why)."""
        door = self.doors[door_name]
        mod = self.modules[door.io]
        if not mod.io.connected:
            mod.claimed.pop(door_name, None)  # P32: nothing will be unlocked
            log.error("door %s not opened: module %s is down", door_name, mod.cfg.name)
            mod.last_error = f"module {mod.cfg.name} is down"
            return False
        return await mod.pulse(door, direction, extended)

    def failure(self, door_name: str) -> str:
        return self.modules[self.doors[door_name].io].last_error


def _state(d: DoorSection, factor: float) -> DoorState:
    pulse, held = extended_times(d, factor)
    return DoorState(d, extended_pulse_s=pulse, extended_held_s=held)


def _outputs(d: DoorSection) -> list[int]:
    """Every coil a door or lane drives, all of them off (locked, no pass) at start."""
    if d.kind == "turnstile":
        return [c for c in (d.pass_in_coil, d.pass_out_coil, d.free_coil) if c is not None]
    return [d.lock_coil]


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except asyncio.TimeoutError:
        pass

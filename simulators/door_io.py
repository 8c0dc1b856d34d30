"""A Modbus TCP door I/O module (SPEC §5): lock coils, door contacts, request-to-exit, fire and lockdown inputs,
and the fire panel's trouble (line-fault) input.

    python -m simulators.door_io --port 15020 --door main:lock=0,contact=0,rex=1 --fire-input 100 --fire-trouble-input 102
    python -m simulators.door_io --site config/demo.toml --module io1

A door opens when its lock is released and someone walks through (`--walk-through`, or `walk DOOR` on
stdin), and closes after. For tests that only speak Modbus, each lock coil has a holding register at the
same address counting its unlocks (so a 3 s pulse can be seen after it ended), and writing coil
1000+N sets discrete input N (a contact, a button, the fire panel, its trouble output).

A vehicle barrier (from `--site`, P26) is a door whose coil raises it and whose vehicle loop is an input:
`car BARRIER on|off` puts a car on its loop or drives it off (as does `input N on|off`, or coil 1000+N).

Turnstile lanes (from `--site`) pulse their passage input once per person: with `--walk-through` after
every pass pulse, or on `pass LANE in|out`. A card collector (a door's `collector_input` in `--site`, or
`--collector DOOR=N`) pulses its input once per card captured, on `collect DOOR`.

A two-door mantrap (P32) is walked through with `mantrap DOOR_A DOOR_B`: someone waits at A until its lock is
released, walks through (A opens, then swings shut), waits in between until B's lock is released, and walks
through B; each step prints (`door_io mantrap ...`), a lock not released within `--mantrap-wait-s` ends the walk.
`open DOOR` / `close DOOR` hold a door's contact open or shut it (someone propping a door, then letting go).

Stdin commands: `input N on|off`, `open DOOR`, `close DOOR`, `mantrap DOOR_A DOOR_B`, `car BARRIER on|off`, `fire on|off` and `trouble on|off` (the fire panel's inputs, when known), `walk DOOR`, `pass LANE in|out`, `collect DOOR`, `down` (drop every connection and stop answering;
the port stays held), `up`, `status`; faults on demand: `slow MS` (every reply late), `mute` / `unmute` (no replies
at all), `flap N MS` / `flap N off` (input N toggling like a loose contact). Prints `door_io listening on HOST:PORT`
when serving.
"""
from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import socket
import sys
import threading
import time
import tomllib
from dataclasses import dataclass

from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.exceptions import ModbusIOException
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.transaction import TransactionManager
from pymodbus.simulator import DataType, SimData, SimDevice

log = logging.getLogger("door_io")

SIZE = 2048  # addresses of each table
SITE_INPUTS = ("fire_input", "lockdown_input", "fire_trouble_input")  # a gate config's [site_inputs] keys
INPUT_COIL_BASE = 1000  # coil 1000+N drives discrete input N
FC_READ_COILS, FC_READ_INPUTS, FC_READ_HOLDING = 1, 2, 3
FC_WRITE_COIL, FC_WRITE_COILS = 5, 15


@dataclass
class Door:
    name: str
    lock: int
    contact: int | None = None
    rex: int | None = None
    loop: int | None = None  # a barrier's vehicle loop (P26)


@dataclass
class Lane:
    """A turnstile lane: pass coils out, one passage pulse in per person."""
    name: str
    pass_in: int
    pass_out: int
    passage_in: int
    passage_out: int
    free: int | None = None


class Module:
    """The module's state; the pymodbus datastore is only a view refreshed from it on every read."""

    def __init__(self, doors: list[Door], walk_through: bool, open_s: float, lanes: list[Lane] | None = None,
                 collectors: dict[str, int] | None = None):
        self.doors = doors
        self.collectors = collectors or {}  # door name -> the input its card collector pulses per card (P27)
        self.lanes = lanes or []
        self.walk_through = walk_through
        self.open_s = open_s
        self.coils: dict[int, bool] = {}
        self.inputs: dict[int, bool] = {}
        self.unlocks: dict[int, int] = {}
        self.delay_s = 0.0  # faults on demand: every reply this late (`slow MS`), or never (`mute`)
        self.flapping: dict[int, asyncio.Task] = {}
        self.tasks: set[asyncio.Task] = set()  # mantrap walks under way (kept referenced until done)
        self.mantrap_wait_s = 30.0

    def write_coil(self, addr: int, value: bool) -> None:
        if addr >= INPUT_COIL_BASE:
            self.set_input(addr - INPUT_COIL_BASE, value)
            return
        was = self.coils.get(addr, False)
        self.coils[addr] = value
        if value and not was:
            self.unlocks[addr] = (self.unlocks.get(addr, 0) + 1) & 0xFFFF
            lane = next((ln for ln in self.lanes if addr in (ln.pass_in, ln.pass_out)), None)
            if lane and self.walk_through:
                asyncio.get_running_loop().create_task(self.pass_through(lane, "in" if addr == lane.pass_in else "out"))
            door = next((d for d in self.doors if d.lock == addr), None)
            # at= is CLOCK_MONOTONIC, shared by every process on the machine: latency benchmarks use it
            print(f"door_io coil {addr} unlocked" + (f" ({door.name})" if door else "") +
                  f" at={time.monotonic_ns()}", flush=True)
            if door and self.walk_through:
                asyncio.get_running_loop().create_task(self.walk(door))
        elif was and not value:
            print(f"door_io coil {addr} locked at={time.monotonic_ns()}", flush=True)

    def set_input(self, n: int, value: bool) -> None:
        if self.inputs.get(n, False) != value:
            self.inputs[n] = value
            print(f"door_io input {n} {'on' if value else 'off'}", flush=True)

    async def walk(self, door: Door) -> None:
        """Someone pushes the door open, walks through, and it swings shut."""
        if door.contact is None:
            return
        await asyncio.sleep(0.2)
        self.set_input(door.contact, True)
        await asyncio.sleep(self.open_s)
        self.set_input(door.contact, False)

    async def mantrap(self, first: Door, second: Door, wait_s: float) -> None:
        """P32: someone walks through a mantrap: through `first` once its lock is released, shut behind them,
        then through `second` once its lock is released."""
        for door in (first, second):
            print(f"door_io mantrap waiting at {door.name}", flush=True)
            deadline = time.monotonic() + wait_s
            while not self.coils.get(door.lock, False):
                if time.monotonic() > deadline:
                    print(f"door_io mantrap stopped: {door.name} not unlocked within {wait_s:g} s", flush=True)
                    return
                await asyncio.sleep(0.02)
            await self.walk(door)
            print(f"door_io mantrap through {door.name}", flush=True)
        print(f"door_io mantrap done: {first.name} then {second.name}", flush=True)

    async def flap(self, n: int, period_s: float) -> None:
        """A loose contact: the input toggles until told to stop."""
        while True:
            self.set_input(n, not self.inputs.get(n, False))
            await asyncio.sleep(period_s)

    async def pass_through(self, lane: Lane, direction: str) -> None:
        """One person through the lane: the passage input pulses once (long enough for any poll)."""
        await asyncio.sleep(0.2)
        addr = lane.passage_in if direction == "in" else lane.passage_out
        self.set_input(addr, True)
        await asyncio.sleep(0.3)
        self.set_input(addr, False)

    async def collect(self, door: str) -> None:
        """A visitor card dropped into the door's collector and captured: its input pulses once."""
        addr = self.collectors[door]
        self.set_input(addr, True)
        await asyncio.sleep(0.3)  # long enough for any poll
        self.set_input(addr, False)

    def fill_bits(self, table: dict[int, bool], regs: list[int]) -> None:
        # Bit tables are packed 16 to a register in pymodbus' simulator.
        for i in range(len(regs)):
            regs[i] = 0
        for addr, on in table.items():
            if on and addr < SIZE:
                regs[addr // 16] |= 1 << (addr % 16)

    async def action(self, fc: int, start: int, address: int, count: int, regs: list[int], values) -> None:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if fc in (FC_WRITE_COIL, FC_WRITE_COILS) and values is not None:
            for i, v in enumerate(values):
                self.write_coil(address + i, bool(v))
        elif fc == FC_READ_COILS or fc in (FC_WRITE_COIL, FC_WRITE_COILS):
            self.fill_bits(self.coils, regs)
        elif fc == FC_READ_INPUTS:
            self.fill_bits(self.inputs, regs)
        elif fc == FC_READ_HOLDING:
            for i in range(len(regs)):
                regs[i] = self.unlocks.get(start + i, 0)
        return None


def device(module: Module, unit: int) -> SimDevice:
    bits = lambda: [SimData(0, count=SIZE, values=False, datatype=DataType.BITS)]  # noqa: E731
    regs = lambda: [SimData(0, count=SIZE, values=0, datatype=DataType.REGISTERS)]  # noqa: E731
    return SimDevice(unit, (bits(), bits(), regs(), regs()), action=module.action)


def lanes_from_site(path: str, module_name: str) -> list[Lane]:
    with open(path, "rb") as f:
        site = tomllib.load(f)
    return [Lane(d["name"], d["pass_in_coil"], d["pass_out_coil"], d["passage_in_input"], d["passage_out_input"],
                 d.get("free_coil"))
            for d in site.get("doors", []) if d.get("io") == module_name and d.get("kind") == "turnstile"]


def collectors_from_site(path: str, module_name: str) -> dict[str, int]:
    """The card collectors a gate config wires to one module: door name -> input."""
    with open(path, "rb") as f:
        site = tomllib.load(f)
    return {d["name"]: d["collector_input"] for d in site.get("doors", [])
            if d.get("io") == module_name and isinstance(d.get("collector_input"), int)}


def parse_collector(spec: str) -> tuple[str, int]:
    """`DOOR=N`"""
    name, _, n = spec.partition("=")
    try:
        return name, int(n)
    except ValueError:
        raise argparse.ArgumentTypeError(f"collector {spec!r}: expected DOOR=N") from None


def doors_from_site(path: str, module_name: str) -> tuple[list[Door], list[int], str, int, int]:
    """The doors and site inputs a gate config wires to one module, and where it listens."""
    with open(path, "rb") as f:
        site = tomllib.load(f)
    mod = next((m for m in site.get("io_modules", []) if m.get("name") == module_name), None)
    if mod is None:
        raise SystemExit(f"door_io: {path}: no io_modules entry named {module_name!r}")
    doors = [Door(d["name"], d["lock_coil"], d.get("contact_input"), d.get("rex_input"), d.get("loop_input"))
             for d in site.get("doors", [])
             if d.get("io") == module_name and d.get("kind", "door") in ("door", "barrier")]
    si = site.get("site_inputs") or {}
    inputs = [si[k] for k in SITE_INPUTS if si.get("io") == module_name and k in si]
    return doors, inputs, mod.get("host", "127.0.0.1"), int(mod.get("port", 502)), int(mod.get("unit", 1))


def parse_door(spec: str) -> Door:
    """`NAME:lock=0,contact=0,rex=1`"""
    try:
        name, _, rest = spec.partition(":")
        fields = dict(kv.split("=", 1) for kv in rest.split(",") if kv)
        return Door(name, int(fields["lock"]), _opt_int(fields.get("contact")), _opt_int(fields.get("rex")))
    except (KeyError, ValueError):
        raise argparse.ArgumentTypeError(f"door {spec!r}: expected NAME:lock=N[,contact=N][,rex=N]") from None


def _opt_int(v: str | None) -> int | None:
    return None if v is None else int(v)


class InOrderHandler(ServerRequestHandler):
    """Every complete request in what arrives, one after the other, as a real module does.

    pymodbus' server decodes only the first frame of each chunk read from the socket and keeps the rest
    until more bytes come. A module that was paused (SIGSTOP) and resumes finds several requests waiting
    in one read, an unlock and the relock queued right behind it: a real module executes both, in order.
    """

    def datagram_received(self, data: bytes, addr) -> None:
        self.recv_buffer += data
        while self.recv_buffer:
            try:
                cut = TransactionManager.callback_data(self, self.recv_buffer, addr)  # one frame into last_pdu
            except ModbusIOException:
                self.recv_buffer = b""  # garbage: what a module does with a frame it cannot parse
                return
            pdu, self.recv_buffer = self.last_pdu, self.recv_buffer[cut:]
            if pdu is not None:
                self._queue.put_nowait((pdu, addr))
            if not cut:
                break

    def callback_connected(self) -> None:
        super().callback_connected()
        self._queue: asyncio.Queue = asyncio.Queue()
        self._worker = asyncio.get_running_loop().create_task(self._work())

    def callback_disconnected(self, exc) -> None:
        super().callback_disconnected(exc)
        # what was read before the peer hung up is still executed (a write already sent is not recalled)
        self._queue.put_nowait(None)

    async def _work(self) -> None:
        while (item := await self._queue.get()) is not None:
            self.last_pdu, self.last_addr = item
            try:
                await self.handle_request()
            except Exception:  # the peer hung up before its answer: the request was still carried out
                log.debug("reply not sent", exc_info=True)


class InOrderTcpServer(ModbusTcpServer):
    def callback_new_connection(self):
        return InOrderHandler(self, self.trace_packet, self.trace_pdu, self.trace_connect)


class Server:
    """The pymodbus server, which can be taken down and brought back on the same port (`down`/`up`).

    While it is down the port stays ours: a socket bound to it, not listening, so the gate's connections
    are refused as with a module that is gone, and no other process can take the port in the meantime (a
    port bound from 0 is in the range the kernel hands out for outgoing connections)."""

    def __init__(self, module: Module, host: str, port: int, unit: int, rtu: str | None = None, baudrate: int = 9600):
        self.module, self.host, self.port, self.unit = module, host, port, unit
        self.rtu, self.baudrate = rtu, baudrate
        self.server: ModbusTcpServer | None = None
        self.task: asyncio.Task | None = None
        self.held: socket.socket | None = None

    async def up(self) -> None:
        if self.server is not None:
            return
        if self.rtu:
            self.server = ModbusSerialServer(device(self.module, self.unit), port=self.rtu, baudrate=self.baudrate)
            self.task = asyncio.create_task(self.server.serve_forever())
            while self.server.transport is None:
                if self.task.done():
                    self.task.result()
                await asyncio.sleep(0.01)
            return
        self.server = InOrderTcpServer(device(self.module, self.unit), address=(self.host, self.port))
        # SO_REUSEPORT on the listener, so that the socket holding the port while down can share it
        self.server.call_create = functools.partial(self.server.call_create, reuse_port=True)
        self.task = asyncio.create_task(self.server.serve_forever())
        while self.server.transport is None:
            if self.task.done():
                self.task.result()  # raises the bind error
            await asyncio.sleep(0.01)
        self.port = self.server.transport.sockets[0].getsockname()[1]
        if self.held is not None:
            self.held.close()
            self.held = None

    async def down(self) -> None:
        if self.server is None:
            return
        if not self.rtu:
            self.held = socket.socket()
            self.held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            self.held.bind((self.host, self.port))
        await self.server.shutdown()
        self.server = None
        if self.task:
            await asyncio.gather(self.task, return_exceptions=True)


async def serve(args: argparse.Namespace) -> None:
    doors: list[Door] = list(args.door)
    inputs: list[int] = []
    host, port, unit = args.host, args.port, args.unit
    lanes: list[Lane] = []
    collectors = dict(args.collector)
    if args.site:
        doors, inputs, host, site_port, unit = doors_from_site(args.site, args.module)
        lanes = lanes_from_site(args.site, args.module)
        collectors = {**collectors_from_site(args.site, args.module), **collectors}
        port = site_port if args.port is None else args.port
    module = Module(doors, args.walk_through, args.open_s, lanes, collectors)
    module.mantrap_wait_s = args.mantrap_wait_s
    for n in inputs + [d.loop for d in doors if d.loop is not None] + [i for i in (args.fire_input, args.lockdown_input, args.fire_trouble_input) if i is not None]:
        module.inputs.setdefault(n, False)
    panel = panel_inputs(args)
    server = Server(module, host, port or 0, unit, args.rtu, args.baudrate)
    await server.up()
    print(f"door_io listening on {args.rtu if args.rtu else f'{host}:{server.port}'}", flush=True)

    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[str | None] = asyncio.Queue()

    def read_stdin() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(commands.put_nowait, line.strip())
        loop.call_soon_threadsafe(commands.put_nowait, None)

    if sys.stdin is not None:
        threading.Thread(target=read_stdin, daemon=True).start()
    while True:
        cmd = await commands.get()
        if cmd is None:
            await asyncio.Event().wait()  # stdin closed: keep serving until killed
        await run_command(cmd, module, server, panel)


def panel_inputs(args: argparse.Namespace) -> dict[str, int]:
    """The fire panel's inputs by their stdin word: `fire`, `trouble` (the command line's, else the site's)."""
    si = {}
    if args.site:
        with open(args.site, "rb") as f:
            si = tomllib.load(f).get("site_inputs") or {}
        if si.get("io") != args.module:
            si = {}
    out = {}
    for word, key, given in (("fire", "fire_input", args.fire_input), ("trouble", "fire_trouble_input",
                                                                          args.fire_trouble_input)):
        n = given if given is not None else si.get(key)
        if isinstance(n, int):
            out[word] = n
    return out


async def run_command(cmd: str, module: Module, server: Server, panel: dict[str, int] | None = None) -> None:
    words = cmd.split()
    panel = panel or {}
    try:
        if words[:1] == ["input"] and len(words) == 3 and words[2] in ("on", "off"):
            module.set_input(int(words[1]), words[2] == "on")
        elif words[:1] in (["fire"], ["trouble"]) and len(words) == 2 and words[1] in ("on", "off"):
            if words[0] not in panel:
                print(f"door_io: no {words[0]} input wired (--{'fire-trouble' if words[0] == 'trouble' else 'fire'}-input)",
                      flush=True)
            else:
                module.set_input(panel[words[0]], words[1] == "on")
        elif words[:1] == ["pass"] and len(words) == 3 and words[2] in ("in", "out"):
            lane = next(ln for ln in module.lanes if ln.name == words[1])
            await module.pass_through(lane, words[2])
        elif words[:1] == ["collect"] and len(words) == 2:
            if words[1] not in module.collectors:
                print(f"door_io: no card collector at {words[1]!r} (collector_input, --collector DOOR=N)", flush=True)
            else:
                await module.collect(words[1])
        elif words[:1] == ["car"] and len(words) == 3 and words[2] in ("on", "off"):
            door = next(d for d in module.doors if d.name == words[1] and d.loop is not None)
            module.set_input(door.loop, words[2] == "on")
        elif words[:1] in (["open"], ["close"]) and len(words) == 2:
            door = next(d for d in module.doors if d.name == words[1] and d.contact is not None)
            module.set_input(door.contact, words[0] == "open")
        elif words[:1] == ["mantrap"] and len(words) == 3:
            first, second = [next(d for d in module.doors if d.name == w and d.contact is not None) for w in words[1:]]
            # in the background: the other commands (a contact held open, the fire panel) go on meanwhile
            module.tasks.add(t := asyncio.get_running_loop().create_task(module.mantrap(first, second, module.mantrap_wait_s)))
            t.add_done_callback(module.tasks.discard)
        elif words[:1] == ["walk"] and len(words) == 2:
            door = next(d for d in module.doors if d.name == words[1])
            await module.walk(door)
        elif words == ["down"]:
            await server.down()
            print("door_io down", flush=True)
        elif words == ["up"]:
            await server.up()
            print(f"door_io listening on {server.host}:{server.port}", flush=True)
        elif words[:1] == ["slow"] and len(words) == 2:
            module.delay_s = int(words[1]) / 1000
            print(f"door_io replies {words[1]} ms late", flush=True)
        elif words == ["mute"]:
            module.delay_s = 3600.0
            print("door_io muted: requests get no reply", flush=True)
        elif words == ["unmute"]:
            module.delay_s = 0.0
            print("door_io answering again", flush=True)
        elif words[:1] == ["flap"] and len(words) == 3:
            n = int(words[1])
            old = module.flapping.pop(n, None)
            if old:
                old.cancel()
            if words[2] != "off":
                module.flapping[n] = asyncio.get_running_loop().create_task(module.flap(n, int(words[2]) / 1000))
            print(f"door_io input {n} flapping {words[2]}", flush=True)
        elif words == ["status"]:
            print(f"door_io coils {sorted(a for a, v in module.coils.items() if v)} "
                  f"inputs {sorted(a for a, v in module.inputs.items() if v)}", flush=True)
        elif words:
            print(f"door_io: unknown command {cmd!r} (input N on|off, open DOOR, close DOOR, mantrap DOOR_A DOOR_B, car BARRIER on|off, fire on|off, trouble on|off, walk DOOR, pass LANE in|out, collect DOOR, down, up, status, "
                  "slow MS, mute, unmute, flap N MS|off)", flush=True)
    except (ValueError, StopIteration):
        print(f"door_io: cannot do {cmd!r}", flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m simulators.door_io", description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=None, help="TCP port (0: any free port; default 502 or the site's)")
    p.add_argument("--unit", type=int, default=1, help="Modbus unit id")
    p.add_argument("--rtu", metavar="DEVICE", help="serve Modbus RTU on this serial device instead of TCP")
    p.add_argument("--baudrate", type=int, default=9600, help="with --rtu")
    p.add_argument("--door", type=parse_door, action="append", default=[], help="NAME:lock=N[,contact=N][,rex=N]")
    p.add_argument("--collector", type=parse_collector, action="append", default=[],
                   help="DOOR=N: the door's card collector pulses input N per card (P27; a site's collector_input too)")
    p.add_argument("--fire-input", type=int)
    p.add_argument("--lockdown-input", type=int)
    p.add_argument("--fire-trouble-input", type=int, help="the fire panel's line-fault output (P28)")
    p.add_argument("--site", help="a gate config (TOML): serve the doors and inputs it wires to --module")
    p.add_argument("--module", default="io1")
    p.add_argument("--walk-through", action="store_true", help="someone walks through every door that unlocks")
    p.add_argument("--open-s", type=float, default=1.0, help="how long a walked-through door stays open")
    p.add_argument("--mantrap-wait-s", type=float, default=30.0,
                   help="`mantrap A B`: how long the walker waits for each lock to be released")
    p.add_argument("--log-level", default="warning")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr, format="door_io %(levelname)s %(message)s")
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # a client hanging up is not news here
    if args.port is None and not args.site and not args.rtu:
        args.port = 502
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass
    except OSError as e:
        raise SystemExit(f"door_io: cannot listen: {e}") from None


if __name__ == "__main__":
    main()

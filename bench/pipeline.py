"""Badge to lock coil through the whole gate, against a floor that does only what any gate must.

    .venv/bin/python bench/pipeline.py                         # 300 scans at 10/s, API at 50 requests/s, MQTT on
    .venv/bin/python bench/pipeline.py --scans 50 --no-api --no-mqtt

One run, two sides, the same scans on each: an allow-listed staff badge on a serial line (`socket://`, the
bench writing each line on the server side), sent open loop at fixed times, whether or not the door opened
for the last one yet. Both sides are up for the whole run and take turns in blocks (floor, gate, gate, floor,
...; `--blocks`), so a background load that comes and goes during the run weighs on both alike; while the floor
scans, the API load pauses and the idle gate only supervises its module (ten small reads a second).

- The floor: a bare client in its own process reads the line with pyserial, commits one row to a fresh SQLite
  file (WAL, synchronous=FULL) and writes coil 0 = 1 over Modbus TCP, waiting for the reply; it relocks after,
  off the clock. No gatekeeper code is on its path.
- The gate: `gatekeeper run` in its own process, at its default log level as the service runs it, with
  mosquitto and a subscriber of the bench's draining `acs/#`, and the local API loaded open loop (GET /status,
  /events, /health, /metrics in turn) from another process while the scans are measured.

A scan's latency is taken at the Modbus server, which the bench owns and runs in a process of its own: the time
the coil-0 write (value 1) arrives there minus the time the bench wrote the badge line. Both are CLOCK_MONOTONIC,
which every process on the machine shares. Each grant makes exactly one unlock write and the scans are 1/rate
apart, so writes and scans pair in order. The first grant of each side proves the line and the module up and
is not measured.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import multiprocessing
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import NoReturn

from common import ROOT, guard_token, mqtt_peer, pct, print_table, site_toml  # noqa: E402  (puts the project on sys.path)

from demo.procs import listen_port  # noqa: E402
from simulators.mosquitto import Broker  # noqa: E402

BADGE = b"04A1B2C3\r\n"
STAFF = {"credential": "badge:04A1B2C3", "holder": "h-1", "category": "staff", "areas": ["site"]}
API_PATHS = ("/status", "/events?limit=20", "/health", "/metrics")
DELAYED_MS = 50.0
WAIT_S = 60.0  # the limit of every wait for an event: a slow start on a busy machine is not a failure
FC_WRITE_COIL, FC_WRITE_COILS = 5, 15
SPAWN = multiprocessing.get_context("spawn")  # children start clean: no threads or sockets of the bench copied


def fail(what: str) -> NoReturn:
    raise SystemExit(f"pipeline: {what}")


def stop_process(p: subprocess.Popen | multiprocessing.Process) -> None:
    """Terminate, then kill if it will not go: nothing the bench started outlives it."""
    if isinstance(p, subprocess.Popen):
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        return
    if p.is_alive():
        p.terminate()
        p.join(10)
    if p.is_alive():
        p.kill()
        p.join()


def start_child(stack: contextlib.ExitStack, target, *args) -> Connection:
    """`target(*args, pipe)` in a process of its own, stopped with the stack; returns the pipe's reading end."""
    rx, tx = SPAWN.Pipe(duplex=False)
    p = SPAWN.Process(target=target, args=(*args, tx), daemon=True)
    p.start()
    stack.callback(stop_process, p)
    tx.close()  # only the child writes: its exit shows here as EOF
    return rx


def first_message(rx: Connection, what: str):
    try:
        if rx.poll(WAIT_S):
            return rx.recv()
    except EOFError:
        fail(f"{what}: the process exited")
    fail(f"{what}: nothing within {WAIT_S:.0f} s")


# -- the I/O module the lock hangs on -------------------------------------------------------------------------

def coil_server(out) -> None:
    """Child process: a Modbus TCP server on a free port. Sends its port, then (value, monotonic ns) for every
    write to coil 0; answers reads too (the gate supervises the module with them)."""
    import logging

    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # clients hanging up at the end are not news

    async def action(fc, start, address, count, regs, values):
        # pymodbus calls this with the written values, then again (values None) to build the reply
        if fc in (FC_WRITE_COIL, FC_WRITE_COILS) and values is not None and address == 0:
            t = time.monotonic_ns()  # first: the arrival, as near the wire as the server sees it
            out.send((bool(values[0]), t))
        return None

    async def serve() -> None:
        tables = tuple([SimData(0, count=16, values=v, datatype=t)] for v, t in
                       ((False, DataType.BITS), (False, DataType.BITS), (0, DataType.REGISTERS),
                        (0, DataType.REGISTERS)))
        server = ModbusTcpServer(SimDevice(1, tables, action=action), address=("127.0.0.1", 0))
        task = asyncio.create_task(server.serve_forever())
        while server.transport is None:  # pymodbus has no "listening" event to await
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        out.send(server.transport.sockets[0].getsockname()[1])
        await task

    asyncio.run(serve())


class Coils:
    """The bench's view of the Modbus server: every write to coil 0 as (value, arrival ns), in order."""

    def __init__(self, stack: contextlib.ExitStack):
        rx = start_child(stack, coil_server)
        self.port = first_message(rx, "the Modbus server")
        self.writes: list[tuple[bool, int]] = []
        self.changed = threading.Condition()
        threading.Thread(target=self._pump, args=(rx,), daemon=True).start()

    def _pump(self, rx) -> None:
        while True:
            try:
                w = rx.recv()
            except (EOFError, OSError):
                return
            with self.changed:
                self.writes.append(w)
                self.changed.notify_all()

    def wait(self, done, timeout: float = WAIT_S) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: done(self.writes), timeout)

    def need(self, done, what: str) -> None:
        if not self.wait(done):
            fail(f"{what}: not within {WAIT_S:.0f} s")

    def unlocks(self, since: int) -> list[int]:
        with self.changed:
            return [t for on, t in self.writes[since:] if on]


# -- the badge reader's line ----------------------------------------------------------------------------------

class Line:
    """The reader's serial line, served by the bench: the client opens socket://127.0.0.1:PORT."""

    def __init__(self, stack: contextlib.ExitStack):
        self.srv = socket.create_server(("127.0.0.1", 0))
        stack.callback(self.srv.close)
        self.port = self.srv.getsockname()[1]
        self.url = f"socket://127.0.0.1:{self.port}"
        self.stack = stack
        self.conn: socket.socket | None = None

    def accept(self) -> None:
        self.srv.settimeout(WAIT_S)
        try:
            self.conn, _ = self.srv.accept()
        except socket.timeout:
            fail(f"nobody opened the serial line within {WAIT_S:.0f} s")
        self.stack.callback(self.conn.close)
        self.conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # each line leaves at once, like a UART

    def scan(self) -> int:
        t = time.monotonic_ns()
        self.conn.sendall(BADGE)
        return t


def first_grant(line: Line, coils: Coils, retry_s: float = 5.0) -> None:
    """Scan until a grant's unlock and relock reach the module. pyserial empties its input buffer as it opens the
    line, so a scan sent in that instant is lost and is sent again; the first scan's one-off costs (imports,
    first transaction, first connection use) stay out of the measurement."""
    mark = len(coils.writes)
    deadline = time.monotonic() + WAIT_S
    while True:
        line.scan()
        if coils.wait(lambda w: any(on for on, _ in w[mark:]), retry_s):
            break
        if time.monotonic() > deadline:
            fail(f"no grant reached the Modbus server within {WAIT_S:.0f} s of the first scan")
    coils.need(lambda w: not w[-1][0], "the relock after the first grant")


def timed_scans(line: Line, coils: Coils, n: int, rate: float) -> list[float]:
    """n scans open loop, each at its fixed time; the latency of each, in ms, from the unlock writes."""
    mark = len(coils.writes)
    period_ns = 1e9 / rate
    start = time.monotonic_ns()
    sent = []
    for i in range(n):
        # against an absolute schedule, so one late wake-up does not shift every later scan
        delay = (start + i * period_ns - time.monotonic_ns()) / 1e9
        if delay > 0:
            time.sleep(delay)
        sent.append(line.scan())
    # the last unlock and its relock: the door at rest, nothing of this phase still on the way
    if not coils.wait(lambda w: sum(on for on, _ in w[mark:]) >= n and not w[-1][0]):
        fail(f"{len(coils.unlocks(mark))} of {n} unlock writes reached the Modbus server within {WAIT_S:.0f} s")
    unlocks = coils.unlocks(mark)
    if len(unlocks) != n or any(u < s for s, u in zip(sent, unlocks)):
        fail(f"{len(unlocks)} unlock writes for {n} scans, or one before its scan: scans and writes do not pair")
    return [(u - s) / 1e6 for s, u in zip(sent, unlocks)]


# -- the floor ------------------------------------------------------------------------------------------------

def floor_client(url: str, modbus_port: int, db_path: str, out) -> None:
    """Child process: the least a gate does for a scan, with the same libraries and nothing of gatekeeper."""
    import serial
    from pymodbus.client import ModbusTcpClient

    db = sqlite3.connect(db_path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE scans(id INTEGER PRIMARY KEY, credential TEXT NOT NULL, at_ns INTEGER NOT NULL)")
    io = ModbusTcpClient("127.0.0.1", port=modbus_port, timeout=5, retries=0)
    if not io.connect():
        raise SystemExit(f"floor: cannot connect to the Modbus server on port {modbus_port}")
    port = serial.serial_for_url(url, timeout=None)
    out.send("ready")  # the line is open and emptied: nothing the bench sends from now on is lost
    buf = b""
    while True:
        try:
            buf += port.read(max(1, port.in_waiting))
        except serial.SerialException:
            return  # the bench hung up
        while b"\r\n" in buf:
            badge, buf = buf.split(b"\r\n", 1)
            with db:  # one committed row a scan, durable before the door opens
                db.execute("INSERT INTO scans(credential, at_ns) VALUES(?, ?)",
                           ("badge:" + badge.decode("ascii", "replace"), time.monotonic_ns()))
            io.write_coil(0, True, device_id=1)
            io.write_coil(0, False, device_id=1)  # relock: the clock stopped when the unlock reached the module


def floor(d: Path, rate: float, stack: contextlib.ExitStack):
    """The floor, up and through its first grant; returns what runs k timed scans on it."""
    coils, line = Coils(stack), Line(stack)
    rx = start_child(stack, floor_client, line.url, coils.port, str(d / "floor.db"))
    line.accept()
    first_message(rx, "the floor client")
    first_grant(line, coils)
    return lambda k: timed_scans(line, coils, k, rate)


# -- the gate and its load ------------------------------------------------------------------------------------

class Daemon:
    """`gatekeeper run` with its stdout read to the end (a full pipe would stall it) and stderr in a file."""

    def __init__(self, config: Path, log: Path, stack: contextlib.ExitStack):
        self.log = log
        with open(log, "w") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(config)], cwd=ROOT,
                                         stdout=subprocess.PIPE, stderr=err, text=True)
        stack.callback(stop_process, self.proc)
        self.ready, self.said_ready = threading.Event(), False
        self.api, self.api_url = threading.Event(), ""
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for text in self.proc.stdout:
            if text.startswith("gatekeeper api on"):  # the config asks for port 0: the port it got
                self.api_url = f"http://127.0.0.1:{listen_port(text)}"
                self.api.set()
            if text.startswith("gatekeeper ready"):
                self.said_ready = True
                self.ready.set()
        self.ready.set()  # it exited: wake the waiters
        self.api.set()

    def wait_api(self) -> str:
        if not self.api.wait(WAIT_S) or not self.api_url:
            fail(f"gatekeeper's API did not listen within {WAIT_S:.0f} s (exit code {self.proc.poll()}):\n"
                 + self.log.read_text()[-3000:])
        return self.api_url

    def wait_ready(self) -> None:
        if not self.ready.wait(WAIT_S) or not self.said_ready:
            fail(f"gatekeeper did not say it was ready within {WAIT_S:.0f} s (exit code {self.proc.poll()}):\n"
                 + self.log.read_text()[-3000:])


class Subscriber:
    """The central system's side of the link: drains everything under acs/ and counts the gate's events."""

    def __init__(self, port: int, stack: contextlib.ExitStack):
        self.events = self.grants = 0
        self.changed = threading.Condition()
        self.c = mqtt_peer(port, "acs/#", self._on_message, "bench-pipeline", WAIT_S)
        stack.callback(self.stop)

    def _on_message(self, c, u, msg) -> None:
        with self.changed:
            if "/events/" in msg.topic:
                self.events += 1
                self.grants += msg.topic.endswith("/events/access.granted")
                self.changed.notify_all()

    def wait_grants(self, n: int) -> None:
        """Until every grant of the run was delivered (the outbox publishes after the door opened)."""
        with self.changed:
            self.changed.wait_for(lambda: self.grants >= n, WAIT_S)

    def stop(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def api_load(base: str, token: str, rate: float, go, stop, out) -> None:
    """Child process: once /health answers, says "started", then GETs open loop at `rate`/s while `go` is set
    (the gate's blocks of scans), until `stop`; then sends back (latencies in ms, errors). A latency counts from
    the request's scheduled time, so a slow answer cannot hide the ones queued behind it."""
    import httpx

    async def run() -> None:
        lat: list[float] = []
        errors = 0

        async def one(client: httpx.AsyncClient, path: str, at: float) -> None:
            nonlocal errors
            try:
                ok = (await client.get(path)).status_code == 200
            except httpx.HTTPError:
                ok = False
            lat.append((time.perf_counter() - at) * 1000)
            errors += not ok

        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30,
                                     limits=httpx.Limits(max_connections=100)) as client:
            deadline = time.monotonic() + WAIT_S
            while True:  # the daemon says it is ready before uvicorn has bound its port
                try:
                    if (await client.get("/health")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    return
                await asyncio.sleep(0.05)
            out.send("started")
            tasks, start, i = [], time.perf_counter(), 0
            for path in itertools.cycle(API_PATHS):
                if stop.is_set():
                    break
                if not go.is_set():  # a floor block: no load, the schedule starts again with the next block
                    while not go.is_set() and not stop.is_set():
                        await asyncio.sleep(0.005)
                    start, i = time.perf_counter(), 0
                    continue
                at = start + i / rate
                i += 1
                if (delay := at - time.perf_counter()) > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(client, path, at)))
            await asyncio.gather(*tasks)
        out.send((lat, errors))

    asyncio.run(run())


class Gate:
    """The gate, up and through its first grant, with its broker, subscriber and API load ready; `block(k)`
    runs k timed scans with the API loaded."""

    def __init__(self, d: Path, rate: float, api_rate: float, mqtt_on: bool, api_on: bool,
                 stack: contextlib.ExitStack):
        self.rate = rate
        self.coils, self.line = coils, line = Coils(stack), Line(stack)
        extra, self.sub = "", None
        if mqtt_on:
            broker = Broker(d / "broker", persistence=False).start()
            stack.callback(broker.stop)
            self.sub = Subscriber(broker.port, stack)  # subscribed before the gate publishes anything
            extra += f"[mqtt]\nport = {broker.port}\n"
        if api_on:
            extra += "[api]\nport = 0\n"  # any free port: the daemon binds it and prints which
        config = d / "site.toml"
        config.write_text(site_toml(coils.port, line.port, pulse_s=0.05, extra=extra))
        (d / "staff.jsonl").write_text(json.dumps(STAFF) + "\n")
        subprocess.run([sys.executable, "-m", "edge.cli", "allowlist", "import", "--config", str(config),
                        str(d / "staff.jsonl")], cwd=ROOT, capture_output=True, timeout=60, check=True)
        token = guard_token(config) if api_on else ""

        daemon = Daemon(config, d / "daemon.log", stack)
        daemon.wait_ready()
        line.accept()
        # P18: every lock driven to locked when the module connects; scans before that would find it down
        coils.need(lambda w: any(not on for on, _ in w), "the daemon's first lock write")
        first_grant(line, coils)

        self.load_rx, self.go, self.stop_load = None, SPAWN.Event(), SPAWN.Event()
        if api_on:
            self.load_rx = start_child(stack, api_load, daemon.wait_api(), token, api_rate, self.go, self.stop_load)
            if first_message(self.load_rx, "the API load") != "started":
                fail("the API load did not start")

    def block(self, k: int) -> list[float]:
        self.go.set()
        try:
            return timed_scans(self.line, self.coils, k, self.rate)
        finally:
            self.go.clear()

    def results(self) -> dict:
        out = {}
        if self.load_rx is not None:
            self.stop_load.set()
            out["api"] = first_message(self.load_rx, "the API load's results")
        if self.sub:
            grants = len(self.coils.unlocks(0))
            self.sub.wait_grants(grants)
            out["mqtt"] = (self.sub.events, self.sub.grants, grants)
        return out


def interleaved(n: int, blocks: int) -> list[tuple[str, int]]:
    """n scans for each side in `blocks` blocks each, in the order floor, gate, gate, floor, floor, gate...: a
    machine whose background load drifts during the run weighs on both sides alike."""
    sizes = [n // blocks + (i < n % blocks) for i in range(blocks)]
    order = []
    for i, k in enumerate(sizes):
        pair = [("floor", k), ("gate", k)]
        order += pair if i % 2 == 0 else pair[::-1]
    return order


# -- the table ------------------------------------------------------------------------------------------------

def rows(fl: list[float], res: dict, api_rate: float) -> list[tuple[str, str, str, str]]:
    gk = res["lat"]

    def three(v: list[float]) -> str:
        return f"{pct(v, .5):.2f} / {pct(v, .99):.2f} / {max(v):.2f} ms"

    out = [
        ("floor: badge line to coil", f"p50 / p99 / max of {len(fl)}", three(fl), "-"),
        ("gatekeeper: badge line to coil", f"p50 / p99 / max of {len(gk)}", three(gk), "-"),
        ("gatekeeper / floor", "p50", f"{pct(gk, .5) / pct(fl, .5):.2f}×", "≤ 1.3×"),
        ("gatekeeper / floor", "p99", f"{pct(gk, .99) / pct(fl, .99):.2f}×", "≤ 1.5×"),
        (f"scans delayed > {DELAYED_MS:g} ms", f"gatekeeper, of {len(gk)}", str(sum(x > DELAYED_MS for x in gk)),
         "0"),
    ]
    if "api" in res:
        lat, errors = res["api"]
        out.append(("API requests during the scans", f"{api_rate:g}/s open loop, p50 / p99",
                    f"{len(lat)} done, {pct(lat, .5):.1f} / {pct(lat, .99):.1f} ms" if lat else "0 done", "-"))
        out.append(("API errors", f"non-200 or failed, of {len(lat)}", str(errors), "-"))
    else:
        out.append(("API requests during the scans", "--no-api", "none", "-"))
    if "mqtt" in res:
        events, grants, want = res["mqtt"]
        out.append(("MQTT events received", "subscriber on acs/#", f"{events} ({grants} of {want} grants)", "-"))
    else:
        out.append(("MQTT events received", "--no-mqtt", "none", "-"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scans", type=int, default=300, help="measured scans in each phase")
    ap.add_argument("--rate", type=float, default=10, help="scans per second, open loop")
    ap.add_argument("--api-rate", type=float, default=50, help="API requests per second, open loop")
    ap.add_argument("--no-mqtt", action="store_true", help="no broker, no [mqtt]: the gate journals alone")
    ap.add_argument("--no-api", action="store_true", help="no [api], no API load")
    ap.add_argument("--blocks", type=int, default=6, help="blocks of scans a side, floor and gate taking turns")
    args = ap.parse_args()
    if args.scans < 1 or args.rate <= 0 or args.api_rate <= 0 or args.blocks < 1:
        ap.error("--scans and --blocks must be 1 or more, --rate and --api-rate above 0")
    args.blocks = min(args.blocks, args.scans)
    # a terminated bench still unwinds its stacks, so it stops what it started
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="gk-bench-") as tmp:
        d = Path(tmp)
        (d / "floor").mkdir()
        (d / "gate").mkdir()
        with contextlib.ExitStack() as stack:
            run_floor = floor(d / "floor", args.rate, stack)
            gate = Gate(d / "gate", args.rate, args.api_rate, not args.no_mqtt, not args.no_api, stack)
            fl, gk = [], []
            for side, k in interleaved(args.scans, args.blocks):
                (fl if side == "floor" else gk).extend(run_floor(k) if side == "floor" else gate.block(k))
            res = {"lat": gk, **gate.results()}
    print_table(rows(fl, res, args.api_rate))


if __name__ == "__main__":
    main()

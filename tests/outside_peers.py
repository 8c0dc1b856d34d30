"""Peers for tests/test_outside.py, written from SPEC.md alone: nothing here imports `edge` or `simulators`.

- `ModbusModule`: a Modbus TCP I/O module (pymodbus) in its own process, so that it can be paused
  (SIGSTOP) or killed and started again on the same port. The process prints every coil write and every
  read with CLOCK_MONOTONIC (shared by every process of the machine), so the test reads what actually
  reached the hardware, on the same clock as its own actions.
- `SerialLine`: a serial reader on a TCP port of the test process; the daemon opens it as `socket://`.
- `Central`: the central system on MQTT (paho, VERSION2 callbacks): sees everything under `acs/#`.
- `SlowClients`: HTTP clients that send one byte every half second and never finish a request.
- `connected_to`: whether a process holds a TCP connection to a port, read from /proc (when the gate is
  between two attempts to reach its module).
- `sign_pass`, `pass_claims`: SPEC §3 passes (COSE_Sign1 over CWT claims, base45) with `cryptography` and
  `cbor2`, for the passes the CLI will not make (an unknown category, a non-empty unprotected header).

Run `python tests/outside_peers.py modbus --port N --input ADDR=0|1 ...` for the module process; its stdin
takes `input ADDR 0|1`, answered on stdout once applied.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# -- the Modbus module process ---------------------------------------------------------------------
BITS = 2048  # addresses of each bit table
FC_READ_COILS, FC_READ_INPUTS, FC_WRITE_COIL, FC_WRITE_COILS = 1, 2, 5, 15


def _emit(**fields) -> None:
    fields.setdefault("t", time.monotonic())
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def serve_modbus(port: int, inputs: dict[int, bool]) -> None:
    """The module: coils start at 0 (a module that powers up has its outputs off), inputs as given."""
    import asyncio
    import logging

    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # a client hanging up is not news here
    state = dict(inputs)

    def pack(regs: list[int]) -> None:
        # bit tables are 16 bits to a register; the runtime reads the bits back out of these
        for i in range(len(regs)):
            regs[i] = 0
        for addr, on in state.items():
            if on and addr < BITS:
                regs[addr // 16] |= 1 << (addr % 16)

    async def action(fc, start, address, count, regs, values):
        # a write calls this twice: with the values (logged), then with None to build the answer
        if fc in (FC_WRITE_COIL, FC_WRITE_COILS):
            if values is not None:
                for i, v in enumerate(values):
                    _emit(ev="write", addr=address + i, value=int(bool(v)))
        elif fc == FC_READ_INPUTS:
            pack(regs)
            _emit(ev="read")
        elif fc == FC_READ_COILS:
            _emit(ev="read")
        return None

    async def main() -> None:
        bits = lambda: [SimData(0, count=BITS, values=False, datatype=DataType.BITS)]  # noqa: E731
        regs = lambda: [SimData(0, count=16, values=0, datatype=DataType.REGISTERS)]  # noqa: E731
        server = ModbusTcpServer(SimDevice(1, (bits(), bits(), regs(), regs()), action=action),
                                 address=("127.0.0.1", port))
        task = asyncio.create_task(server.serve_forever())
        while server.transport is None:
            if task.done():
                task.result()  # the bind error, to stderr and a non-zero exit
            await asyncio.sleep(0.005)
        _emit(ev="listening", port=server.transport.sockets[0].getsockname()[1])
        loop = asyncio.get_running_loop()
        commands: asyncio.Queue = asyncio.Queue()

        def read_stdin() -> None:
            for line in sys.stdin:
                loop.call_soon_threadsafe(commands.put_nowait, line.split())
            loop.call_soon_threadsafe(commands.put_nowait, None)

        threading.Thread(target=read_stdin, daemon=True).start()
        while (words := await commands.get()) is not None:
            if len(words) == 3 and words[0] == "input":
                state[int(words[1])] = words[2] == "1"
                _emit(ev="input", addr=int(words[1]), value=int(words[2] == "1"))
        await asyncio.Event().wait()  # the test closed stdin: keep serving until killed

    asyncio.run(main())


class ModbusModule:
    """The test's handle on the module process. `log` is one timeline (monotonic `t`) of what the
    module did (`write`, `read`, `boot`) and what the test did to it (`pause`, `resume`, `kill`)."""

    def __init__(self, workdir: Path, inputs: dict[int, bool]):
        self.workdir = workdir
        self.inputs = dict(inputs)
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.log: list[dict] = []
        self.cond = threading.Condition()
        self.generation = 0
        self.state = "down"  # up | paused | down

    def _note(self, **fields) -> dict:
        fields.setdefault("t", time.monotonic())
        with self.cond:
            fields["i"] = len(self.log)
            self.log.append(fields)
            self.cond.notify_all()
        return fields

    def start(self, timeout: float = 20.0) -> None:
        """Start (or start again, on the same port once it has one); retried while the port is still
        held by the killed process's sockets."""
        deadline = time.monotonic() + timeout
        while True:
            self.generation += 1
            gen = self.generation
            args = [sys.executable, str(HERE / "outside_peers.py"), "modbus", "--port", str(self.port)]
            for a, v in sorted(self.inputs.items()):
                args += ["--input", f"{a}={int(v)}"]
            err = open(self.workdir / f"modbus-{gen}.err", "w")
            self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
                                         bufsize=1, start_new_session=True)
            err.close()
            listening = threading.Event()
            threading.Thread(target=self._pump, args=(self.proc, gen, listening), daemon=True).start()
            while not listening.is_set() and self.proc.poll() is None and time.monotonic() < deadline:
                listening.wait(0.05)
            if listening.is_set():
                self.state = "up"
                return
            self.proc.kill()
            self.proc.wait()
            if time.monotonic() >= deadline:
                raise AssertionError("the Modbus module did not start: " +
                                     (self.workdir / f"modbus-{gen}.err").read_text()[-2000:])
            time.sleep(0.1)  # the port is still held: try again shortly (a retry pace, not a sync)

    def _pump(self, proc: subprocess.Popen, gen: int, listening: threading.Event) -> None:
        for line in proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if ev["ev"] == "listening":
                self.port = ev["port"]
                self._note(ev="boot", gen=gen, t=ev["t"])
                listening.set()
                continue
            ev["gen"] = gen
            self._note(**ev)

    def set_input(self, addr: int, value: bool, timeout: float = 10.0) -> None:
        """Set a discrete input; returns once the module holds the new value."""
        self.inputs[addr] = bool(value)
        if self.state == "down":
            return  # the next start brings it
        mark = len(self.log)
        self.proc.stdin.write(f"input {addr} {int(bool(value))}\n")
        self.proc.stdin.flush()
        self.wait(lambda e: e["ev"] == "input" and e["addr"] == addr, after=mark, timeout=timeout,
                  what=f"the module setting input {addr}")

    def pause(self) -> float:
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.state = "paused"
        return self._note(ev="pause")["t"]

    def resume(self) -> float:
        t = self._note(ev="resume")["t"]
        os.kill(self.proc.pid, signal.SIGCONT)
        self.state = "up"
        return t

    def kill(self) -> float:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.state = "down"
        return self._note(ev="kill")["t"]

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            if self.state == "paused":
                os.kill(self.proc.pid, signal.SIGCONT)
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.state = "down"

    def wait(self, pred, after: int = 0, timeout: float = 10.0, what: str = "module event"):
        """The first log entry from index `after` on matching `pred`, or None at the deadline."""
        deadline = time.monotonic() + timeout
        with self.cond:
            i = after
            while True:
                while i < len(self.log):
                    if pred(self.log[i]):
                        return self.log[i]
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)

    def entries(self) -> list[dict]:
        with self.cond:
            return list(self.log)

    def coil(self, addr: int) -> int:
        """The coil as the module holds it now (0 after a boot or a kill)."""
        value = 0
        for e in self.entries():
            if e["ev"] in ("boot", "kill"):
                value = 0
            elif e["ev"] == "write" and e["addr"] == addr:
                value = e["value"]
        return value


def connected_to(pid: int, port: int) -> bool:
    """Whether process `pid` holds an established TCP connection to local port `port` (from /proc): how
    the test sees, from outside, whether the gate is between two attempts to reach its module."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
        for table in ("tcp", "tcp6"):
            with open(f"/proc/{pid}/net/{table}") as f:
                for row in f.read().splitlines()[1:]:
                    cols = row.split()
                    if cols[3] == "01" and int(cols[2].rsplit(":", 1)[1], 16) == port and cols[9] in inodes:
                        return True
    except OSError:
        pass
    return False


# -- serial lines ----------------------------------------------------------------------------------
class SerialLine:
    """A serial reader line on a TCP port (bound on port 0): the daemon connects as `socket://`.
    The newest connection is the line; a daemon that restarts connects again."""

    def __init__(self, name: str):
        self.name = name
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.conn: socket.socket | None = None
        self.generation = 0
        self.cond = threading.Condition()
        self.closed = False
        self.thread = threading.Thread(target=self._accept, daemon=True, name=f"line-{name}")
        self.thread.start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.cond:
                old, self.conn = self.conn, conn
                self.generation += 1
                self.cond.notify_all()
            if old is not None:
                old.close()

    def wait_connection(self, newer_than: int, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.generation > newer_than, timeout)

    def send(self, text: str | bytes) -> bool:
        data = text if isinstance(text, bytes) else text.encode()
        with self.cond:
            conn = self.conn
        if conn is None:
            return False
        try:
            conn.sendall(data + b"\r\n")
            return True
        except OSError:
            return False

    def close(self) -> None:
        self.closed = True
        try:
            self.server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept (closing alone does not, on Linux)
        except OSError:
            pass
        self.server.close()
        with self.cond:
            if self.conn is not None:
                self.conn.close()
        self.thread.join(10)


# -- the central system ----------------------------------------------------------------------------
class Central:
    """A paho client on the site's broker: records every message under `acs/#` (with the monotonic
    time it arrived) and publishes as the central system."""

    def __init__(self, port: int, client_id: str):
        import paho.mqtt.client as mqtt
        from paho.mqtt.subscribeoptions import SubscribeOptions

        self.messages: list[tuple[float, str, bytes, bool]] = []
        self.cond = threading.Condition()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        subscribed = threading.Event()

        def on_connect(client, userdata, flags, reason, props):
            # noLocal: what this client publishes is the test's own doing, not news
            client.subscribe("acs/#", options=SubscribeOptions(qos=1, noLocal=True))

        def on_message(client, userdata, msg):
            with self.cond:
                self.messages.append((time.monotonic(), msg.topic, bytes(msg.payload), bool(msg.retain)))
                self.cond.notify_all()

        self.c.on_connect = on_connect
        self.c.on_message = on_message
        self.c.on_subscribe = lambda *a: subscribed.set()
        self.c.reconnect_delay_set(0.1, 1)
        self.c.connect("127.0.0.1", port, keepalive=30)
        self.c.loop_start()
        if not subscribed.wait(15):
            raise AssertionError("the central peer got no SUBACK from the broker")

    def publish(self, topic: str, payload, qos: int = 1, retain: bool = False) -> float:
        """Publish and wait for the broker to take it (QoS 1: its PUBACK); returns when it was sent."""
        body = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
        t = time.monotonic()
        info = self.c.publish(topic, body, qos=qos, retain=retain)
        info.wait_for_publish(15)
        return t

    def since(self, index: int) -> list[tuple[float, str, bytes, bool]]:
        with self.cond:
            return self.messages[index:]

    def mark(self) -> int:
        with self.cond:
            return len(self.messages)

    def wait(self, pred, after: int = 0, timeout: float = 15.0):
        """The first message from index `after` on with pred(topic, payload, retain), or None."""
        deadline = time.monotonic() + timeout
        with self.cond:
            i = after
            while True:
                while i < len(self.messages):
                    t, topic, payload, retain = self.messages[i]
                    if pred(topic, payload, retain):
                        return self.messages[i]
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


# -- slow API clients ------------------------------------------------------------------------------
class SlowClients:
    """`n` connections to an HTTP server, each sending one byte of a request that never ends, every
    half second, from one thread. A server that closes one is within its rights: it stays closed."""

    DRIP = b"GET /health HTTP/1.1\r\nHost: gate\r\nX-Slow: " + b"a" * 4000

    def __init__(self, port: int, n: int):
        self.socks: list[socket.socket] = []
        self.refused = 0
        for _ in range(n):
            s = socket.socket()
            s.settimeout(2)
            try:
                s.connect(("127.0.0.1", port))
            except OSError:
                self.refused += 1
                s.close()
                continue
            s.setblocking(False)
            self.socks.append(s)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._drip, daemon=True, name="slow-clients")
        self.thread.start()

    def _drip(self) -> None:
        pos = 0
        while not self.stop.wait(0.5):
            byte = self.DRIP[pos % len(self.DRIP): pos % len(self.DRIP) + 1]
            pos += 1
            for s in list(self.socks):
                try:
                    s.send(byte)
                except BlockingIOError:
                    pass
                except OSError:  # the server hung up on this one
                    self.socks.remove(s)
                    s.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        for s in self.socks:
            s.close()
        self.socks = []


# -- passes (SPEC §3) ------------------------------------------------------------------------------
B45 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"


def b45encode(data: bytes) -> str:
    out = []
    for i in range(0, len(data) - 1, 2):
        n = data[i] * 256 + data[i + 1]
        out += [B45[n % 45], B45[n // 45 % 45], B45[n // 2025]]
    if len(data) % 2:
        n = data[-1]
        out += [B45[n % 45], B45[n // 45]]
    return "".join(out)


def b45decode(text: str) -> bytes:
    vals = [B45.index(c) for c in text]
    out = bytearray()
    for i in range(0, len(vals) - 2, 3):
        n = vals[i] + vals[i + 1] * 45 + vals[i + 2] * 2025
        out += bytes((n // 256, n % 256))
    if len(vals) % 3 == 2:
        out.append(vals[-2] + vals[-1] * 45)
    return bytes(out)


def sign_pass(private_pem: bytes, kid: str, claims: dict, unprotected: dict | None = None) -> str:
    """`GK1:` + base45 of a COSE_Sign1 (tag 18) signed with Ed25519, exactly as SPEC §3 describes; the
    unprotected header is `{}` unless a test wants it otherwise."""
    import cbor2
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key = load_pem_private_key(private_pem, password=None)
    protected = cbor2.dumps({1: -8, 4: kid.encode()})
    payload = cbor2.dumps(claims)
    signature = key.sign(cbor2.dumps(["Signature1", protected, b"", payload]))
    message = cbor2.dumps(cbor2.CBORTag(18, [protected, unprotected or {}, payload, signature]))
    return "GK1:" + b45encode(message)


def pass_claims(text: str) -> dict:
    """The claims of a pass (unverified): how the test learns the `cti` of a pass the CLI issued."""
    import cbor2

    tag = cbor2.loads(b45decode(text[len("GK1:"):]))
    return cbor2.loads(tag.value[2])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="peers of tests/test_outside.py")
    sub = p.add_subparsers(dest="what", required=True)
    m = sub.add_parser("modbus", help="a Modbus TCP I/O module that prints every coil write")
    m.add_argument("--port", type=int, default=0)
    m.add_argument("--input", action="append", default=[], help="ADDR=0|1, a discrete input at start")
    args = p.parse_args(argv)
    inputs = {int(a): v == "1" for a, v in (x.split("=", 1) for x in args.input)}
    try:
        serve_modbus(args.port, inputs)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

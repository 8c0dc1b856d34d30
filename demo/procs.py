"""Child processes for the demo: start, wait for a readiness line, stop — and never leave one behind.

Ports: every listener binds port 0 and prints the port it got, and the config is written with that port
afterwards. A port picked free by one process and bound later by another can be taken in between (by any
process on the machine); a port bound once and held cannot.
"""
from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time


def listen_port(line: str) -> int:
    """The port in a listening line: `... on HOST:PORT`, or `... on http://HOST:PORT/...`."""
    m = re.search(r":(\d+)(?:/\S*)?\s*$", line)
    if not m:
        raise ValueError(f"no port in {line!r}")
    return int(m.group(1))


class HeldPort:
    """A loopback port bound (from port 0) but not listening, kept for a listener that comes and goes.

    Connecting to it is refused, as to a device that is not there; no other process can bind it, and no
    outgoing connection takes it as its local port (the kernel skips bound ports). Both sockets set
    SO_REUSEPORT, so a simulator started with `--reuse-port` listens on the port beside this one (same
    user); when the simulator stops, the port is still ours and a new one can be started on it.
    With `port`, the port a `--reuse-port` listener already holds is held too, before that listener goes."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1"):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            self.sock.bind((host, port))
        except OSError:
            self.sock.close()
            raise
        self.port = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()


def set_entry_port(text: str, table: str, name: str, port: int) -> str:
    """A TOML config with the `[[table]]` entry called `name` moved to `port`, the rest untouched: a
    `port = N` line (an I/O module), or the port of a `url = "socket://HOST:N"` (a serial reader on TCP)."""
    parts = re.split(r"(?m)^(?=\[)", text)
    for i, part in enumerate(parts):
        if part.startswith(f"[[{table}]]") and re.search(rf'(?m)^name = "{re.escape(name)}"\s*$', part):
            new, n = re.subn(r'(?m)^(port = )\d+', rf"\g<1>{port}", part)
            if not n:
                new, n = re.subn(r'(?m)^(url = "socket://[^"]*:)\d+"', rf'\g<1>{port}"', part)
            if not n:
                raise ValueError(f"[[{table}]] {name} has no port to set")
            parts[i] = new
            return "".join(parts)
    raise ValueError(f"no [[{table}]] entry named {name}")


class Child:
    """A child process whose stdout lines are read on a thread, so waiting for one never blocks forever."""

    def __init__(self, name: str, args: list[str], *, stdin: bool = False, env: dict | None = None, cwd=None):
        self.name = name
        self.proc = subprocess.Popen(
            args, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=None if os.environ.get("GATEKEEPER_DEMO_VERBOSE") else subprocess.DEVNULL,
            text=True, bufsize=1, env=env, cwd=cwd, start_new_session=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self.eof = threading.Event()  # every line the child wrote is in `lines`
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            self.output.append(line)
            self.lines.put(line)
        self.eof.set()

    def wait_for(self, prefix: str, timeout: float = 60.0, already: bool = False) -> str:
        """The next line starting with `prefix`; with `already`, an earlier line counts too (the latest). A busy
        machine can take its time: the limit is generous, and the wait ends with the line."""
        if already:
            for line in reversed(list(self.output)):
                if line.startswith(prefix):
                    return line
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or self.eof.is_set() and self.lines.empty():
                raise RuntimeError(f"{self.name} did not say {prefix!r} (exit code {self.proc.poll()})")
            try:
                line = self.lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if line.startswith(prefix):
                return line

    def send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]

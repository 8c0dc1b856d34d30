"""Child processes for the demo, the tests and the benchmarks: start, wait for a readiness line, stop, and
never leave one behind; and a reader of the journal they write.

Ports: every listener binds port 0 and prints the port it got, and the config is written with that port
afterwards. A port picked free by one process and bound later by another can be taken in between (by any
process on the machine); a port bound once and held cannot.
"""
from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path


WAIT_S = 60.0  # the limit of every wait: a slow start on a busy machine is not a failure


def listen_port(line: str) -> int:
    """The port in a listening line: `... on HOST:PORT`, or `... on http://HOST:PORT/...`. The first such, not
    the last: another thread of the same process may have printed its own line before this one's newline
    (`print` writes the text and the newline apart), e.g. `... on 127.0.0.1:36145badge_reader connected from
    127.0.0.1:49758`."""
    m = re.search(r" on (?:[a-z]+://)?(?:\[[^\]]*\]|[^\s:/\[]+):(\d+)", line)
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
    """A child process whose output lines are read on a thread, so waiting for one never blocks for ever. It
    runs in a session of its own: stopping it stops whatever it started too. `stderr`: "merge" (with the
    output, as a test wants to see it), "quiet" or "inherit"."""

    def __init__(self, name: str, args: list[str], *, stdin: bool = False, env: dict | None = None, cwd=None,
                 stderr: str = "merge"):
        self.name = name
        self.args = args
        err = {"merge": subprocess.STDOUT, "quiet": subprocess.DEVNULL, "inherit": None}[stderr]
        self.p = subprocess.Popen(
            args, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
            text=True, bufsize=1, cwd=cwd, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self.eof = threading.Event()  # every line the child wrote is in `lines`
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.p.stdout:
            line = line.rstrip("\n")
            self.output.append(line)
            self.lines.put(line)
        self.eof.set()

    def wait_for(self, needle: str, timeout: float = WAIT_S, already: bool = False) -> str:
        """The next output line containing `needle`; with `already`, an earlier line counts too (the latest).
        A busy machine can take its time: the limit is generous, and the wait ends with the line."""
        if already:
            for line in reversed(list(self.output)):
                if needle in line:
                    return line
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=min(left, 0.2))
            except queue.Empty:
                if self.eof.is_set() and self.lines.empty():
                    break
                continue
            if needle in line:
                return line
        raise AssertionError(f"{self.name} never printed {needle!r} (exit code {self.p.poll()}); output:\n"
                             + "\n".join(self.output[-40:]))

    def send(self, line: str) -> None:
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, sig)
            except ProcessLookupError:
                pass
        self.p.wait(10)

    def stop(self, timeout: float = 10.0) -> int:
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                return self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.p.returncode


class JournalWatch:
    """Waits on the daemon's journal, read-only: what a central consumer will see. Shared by the demo's story
    and the tests."""

    def __init__(self, db: Path):
        self.db = db
        self.after = 0

    def rows(self, after: int = 0) -> list[tuple[int, str, dict]]:
        if not self.db.exists():
            return []
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5)
        try:
            return [(s, t, json.loads(d)) for s, t, d in
                    conn.execute("SELECT seq, type, data FROM journal WHERE seq > ? ORDER BY seq", (after,))]
        except sqlite3.OperationalError:
            return []
        finally:
            conn.close()

    def last_seq(self) -> int:
        if not self.db.exists():
            return 0
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5)
        try:
            return conn.execute("SELECT coalesce(max(seq), 0) FROM journal").fetchone()[0]
        except sqlite3.OperationalError:
            return 0
        finally:
            conn.close()

    def poll(self, types: tuple[str, ...] | str, timeout: float = WAIT_S, **match) -> tuple[int, str, dict] | None:
        """The next entry of one of `types` (and matching `match`) after the last one returned, or None. The
        journal is read at least once, so an entry committed with the last one is found with timeout 0 too."""
        if isinstance(types, str):
            types = (types,)
        deadline = time.monotonic() + timeout
        while True:
            for seq, etype, data in self.rows(self.after):
                self.after = seq
                if etype in types and all(data.get(k) == v for k, v in match.items()):
                    return seq, etype, data
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.02)

    def next(self, types: tuple[str, ...] | str, timeout: float = WAIT_S, **match) -> tuple[int, str, dict]:
        """As `poll`, and a test fails when it does not come."""
        got = self.poll(types, timeout, **match)
        if got is None:
            raise AssertionError(f"no {types} {match or ''} in the journal within {timeout} s; "
                                 f"last: {self.rows(max(0, self.after - 5))}")
        return got


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]

"""Slow API clients cannot starve the doors: 1,100 connections each sending one byte every half second,
against a daemon held to systemd's default of 1,024 open files (`prlimit`; this machine allows more).

What a site saw before: /health answered none of 10, the I/O module could not reconnect for 19 s, nine of
ten granted scans opened nothing, and the log grew by tens of megabytes of identical tracebacks.
"""
from __future__ import annotations

import socket
import sys
import threading
import time

import httpx
import pytest

from sitekit import Proc, make_site, wait_until
from test_e2e_gate import STAFF, Gate

pytestmark = pytest.mark.e2e

ATTACKERS = 1100


HEAD = b"GET /health HTTP/1.1\r\nHost: gate\r\nX-Slow: "  # a valid request whose last header never ends


def _byte(i: int) -> bytes:
    return HEAD[i:i + 1] if i < len(HEAD) else b"a"


class SlowClients:
    """Connections that start a request and never finish it: one byte every half second each, and a new
    connection for every one the server closes (the worst a slow or hostile client can do)."""

    def __init__(self, port: int, n: int):
        self.port, self.n = port, n
        self.stop = threading.Event()
        self.socks: list[socket.socket | None] = [None] * n
        self.sent = [0] * n  # bytes of the never-ending request each connection has sent
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.opened = 0

    def _connect(self) -> socket.socket | None:
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect_ex(("127.0.0.1", self.port))
        except OSError:
            s.close()
            return None
        self.opened += 1
        return s

    def _run(self) -> None:
        while not self.stop.is_set():
            for i in range(self.n):
                s = self.socks[i]
                if s is None:
                    self.socks[i] = self._connect()
                    continue
                try:
                    s.send(_byte(self.sent[i]))
                    self.sent[i] += 1
                except OSError:  # not connected yet, or closed by the server: start again
                    s.close()
                    self.socks[i] = None
                    self.sent[i] = 0
            self.stop.wait(0.5)

    def __enter__(self) -> "SlowClients":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(10)
        for s in self.socks:
            if s is not None:
                s.close()


def test_slow_api_clients_do_not_starve_the_doors_under_1024_open_files(tmp_path, procs):
    site = make_site(tmp_path / "site", api=True)
    assert site.import_lines([{"credential": f"badge:{STAFF}", "holder": "h-1", "category": "staff",
                               "areas": ["site"]}]).returncode == 0
    g = Gate(site, procs)
    g.start_hardware()
    g.daemon = Proc("daemon", ["prlimit", "--nofile=1024", sys.executable, "-m", "edge.cli", "run", "--config",
                               str(site.config)])
    procs.all.append(g.daemon)
    site.daemon = g.daemon  # where the API's port is read from
    g.daemon.wait_for("gatekeeper ready")
    for r in g.readers.values():
        r.wait_for("badge_reader connected")
    site.wait_api()
    port = int(site.api_url.rsplit(":", 1)[1])
    with SlowClients(port, ATTACKERS) as attack:
        wait_until(lambda: attack.opened >= ATTACKERS, timeout=30, what="every slow client connected once")
        # guards keep their API (a console asks again when a request fails, as a browser's page does)
        answered = 0
        for _ in range(10):
            for _attempt in range(2):
                try:
                    if httpx.get(site.api_url + "/health", timeout=5).status_code == 200:
                        answered += 1
                        break
                except httpx.TransportError:
                    pass
        assert answered == 10
        # every granted scan opens the door
        for i in range(10):
            g.settle()
            before = g.unlocks(0)
            _, etype, _ = g.scan("main-in", STAFF)
            assert etype == "access.granted"
            wait_until(lambda: g.unlocks(0) == before + 1, what=f"scan {i + 1} opening the door")
        # the I/O module, dropped, is reconnected at once
        g.door_io.send("down")
        g.journal.next("device.fault", device="io1")
        g.door_io.send("up")
        t0 = time.monotonic()
        g.journal.next("device.recovered", device="io1", timeout=30)
        assert time.monotonic() - t0 < 15  # the reconnect backoff, not a descriptor famine
    assert g.daemon.p.poll() is None
    # faults that repeat are logged once with a count, not once each
    assert len(g.daemon.output) < 300, "\n".join(g.daemon.output[-20:])

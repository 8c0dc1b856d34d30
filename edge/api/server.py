"""Serving the local API without letting it take what the doors need.

uvicorn 0.54 has no timeout for a request's headers or body, and accepts connections until the process
runs out of file descriptors, which is when the door I/O module can no longer reconnect. Here every
connection is counted and watched: at most `max_connections` at a time (a new one pushes out the one that
has waited longest for its request, so a flood of slow clients cannot lock guards out), and a request's
headers and its body each have a deadline. The socket is bound by the daemon, so a port that is taken or a
certificate that is missing is a named fault that is retried, never a dead daemon.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from edge.api.facade import GateServices
from edge.config import ApiSection, resolve
from edge.hardware.devices import DeviceBoard

log = logging.getLogger(__name__)

SWEEP_S = 0.5
ACCEPT_BATCH = 64  # connections accepted per turn of the loop, so requests already in are read in between
MAX_BACKOFF_S = 30.0
# What a connection is doing, from the most to the least worth keeping when one must go.
BUSY, BODY, HEAD, IDLE = "busy", "body", "head", "idle"
EVICT_ORDER = (IDLE, HEAD, BODY)  # a request being answered (or a live feed) is never pushed out


@dataclass
class Guard:
    """The connections of one API server and their limits (shared by all its protocol instances)."""

    max_connections: int = 100
    header_timeout_s: float = 10.0
    body_timeout_s: float = 10.0
    conns: dict = field(default_factory=dict)  # protocol -> (phase, since)
    refused: int = 0  # new connections closed: every slot answering a request
    evicted: int = 0  # waiting connections pushed out by a new one
    timed_out: int = 0

    def admit(self, proto: "GuardedProtocol") -> bool:
        if len(self.conns) >= self.max_connections:
            victim = self._oldest()
            if victim is None:
                self.refused += 1
                return False
            self.evicted += 1
            self.drop(victim)
        self.conns[proto] = (HEAD, time.monotonic())
        return True

    def phase(self, proto: "GuardedProtocol", phase: str) -> None:
        if proto in self.conns:
            self.conns[proto] = (phase, time.monotonic())

    def gone(self, proto: "GuardedProtocol") -> None:
        self.conns.pop(proto, None)

    def drop(self, proto: "GuardedProtocol") -> None:
        self.conns.pop(proto, None)
        if proto.transport is not None and not proto.transport.is_closing():
            proto.transport.abort()

    def _oldest(self):
        """The connection to push out: idle first, then the one waiting longest for its request (a guard's
        request comes whole at once: it is read before a hundred more connections push it out)."""
        for phase in EVICT_ORDER:
            waiting = [(since, id(p), p) for p, (ph, since) in self.conns.items() if ph == phase]
            if waiting:
                return min(waiting)[2]
        return None

    def sweep(self) -> None:
        """Close connections whose headers or body are overdue (a slow client holding a descriptor)."""
        now = time.monotonic()
        for proto, (phase, since) in list(self.conns.items()):
            if (phase == HEAD and now - since > self.header_timeout_s) or \
               (phase == BODY and now - since > self.body_timeout_s):
                self.timed_out += 1
                self.drop(proto)


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol, reporting each connection's phase to the server's Guard."""

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.guard: Guard = self.config.guard
        super().connection_made(transport)
        if not self.guard.admit(self):
            transport.abort()

    def connection_lost(self, exc) -> None:
        self.guard.gone(self)
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        self.guard.phase(self, HEAD)
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self.guard.phase(self, BODY)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self.guard.phase(self, BUSY)
        super().on_message_complete()

    def on_response_complete(self) -> None:
        self.guard.phase(self, IDLE)
        super().on_response_complete()


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so that a taken port is an error we can name and retry."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP said explicitly: asyncio sets TCP_NODELAY only on sockets that say so, and without it a
    # response written in two parts waits for the client's delayed ACK (40 ms)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


async def sweep_forever(guard: Guard) -> None:
    while True:
        await asyncio.sleep(SWEEP_S)
        guard.sweep()


class ApiService:
    """The API as one of the gate's parts: bound, served, and when that fails (a port taken, a certificate
    missing or unreadable) a `device.fault` named `api` that is retried while the doors go on."""

    def __init__(self, services: GateServices, cfg: ApiSection, base: Path, board: DeviceBoard):
        self.services, self.cfg, self.base, self.board = services, cfg, base, board
        self.guard = Guard(cfg.max_connections, cfg.header_timeout_s, cfg.body_timeout_s)
        self.attempted = asyncio.Event()
        self.server: uvicorn.Server | None = None
        self.port: int | None = None
        board.register("api", "api")

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True

    async def run(self, stop: asyncio.Event) -> None:
        from edge.api.app import create_app
        backoff = 1.0
        sweeper = asyncio.create_task(sweep_forever(self.guard), name="api-sweep")
        try:
            while not stop.is_set():
                sock = None
                try:
                    a = self.cfg
                    for key in ("tls_cert_file", "tls_key_file"):  # named in the fault, not just "no such file"
                        name = getattr(a, key)
                        if name and not os.access(resolve(self.base, name), os.R_OK):
                            raise OSError(f"cannot read {key} {resolve(self.base, name)}")
                    app = create_app(self.services, secure_cookie=bool(a.tls_cert_file))
                    config = uvicorn.Config(
                        # uvicorn's lines go to the wire logger (edge/runtime/logsetup.py): no handlers of its own
                        app, log_config=None, log_level=None, access_log=False, lifespan="off",
                        http=GuardedProtocol, timeout_keep_alive=5, backlog=ACCEPT_BATCH,
                        timeout_graceful_shutdown=2,  # live feeds (server-sent events) do not hold up a stop
                        ssl_certfile=str(resolve(self.base, a.tls_cert_file)) if a.tls_cert_file else None,
                        ssl_keyfile=str(resolve(self.base, a.tls_key_file)) if a.tls_key_file else None)
                    config.load()  # the TLS files are read here: a missing one is a fault, not a crash
                    config.guard = self.guard
                    sock = bind(a.bind, a.port)
                    self.port = sock.getsockname()[1]
                    self.server = uvicorn.Server(config)
                    self.server.capture_signals = contextlib.nullcontext  # the daemon owns SIGTERM and SIGINT
                    scheme = "https" if a.tls_cert_file else "http"
                    log.info("local API on %s://%s:%d", scheme, a.bind, self.port)
                    print(f"gatekeeper api on {scheme}://{a.bind}:{self.port}", flush=True)
                    self.board.up("api")
                    self.attempted.set()
                    backoff = 1.0
                    await self.server.serve(sockets=[sock])
                    if stop.is_set() or self.server.should_exit:
                        return
                    raise OSError("the API server stopped by itself")
                except (Exception, SystemExit) as e:  # uvicorn exits on some startup errors: never the daemon
                    self.board.down("api", f"{e.__class__.__name__}: {e}"[:200])
                    self.attempted.set()
                finally:
                    if sock is not None:
                        sock.close()
                    self.server = None
                try:
                    await asyncio.wait_for(stop.wait(), backoff)
                except asyncio.TimeoutError:
                    pass
                backoff = min(backoff * 2, MAX_BACKOFF_S)
        finally:
            sweeper.cancel()

"""Serving the local API without letting it take what the doors need (in the API process, edge/api/child.py).

uvicorn 0.54 has no timeout for a request's headers or body, and accepts connections until the process
runs out of file descriptors. Here every connection is counted and watched: at most `max_connections` at a
time (a new one pushes out the one that has waited longest for its request, so a flood of slow clients
cannot lock guards out), and a request's headers and its body each have a deadline.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

SWEEP_S = 0.5
ACCEPT_BATCH = 64  # connections accepted per turn of the loop, so requests already in are read in between
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


async def sweep_forever(guard: Guard) -> None:
    while True:
        await asyncio.sleep(SWEEP_S)
        guard.sweep()

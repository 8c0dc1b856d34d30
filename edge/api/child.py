"""The API process: uvicorn and the routes, started by the gate (edge/api/host.py) with two descriptors, its
end of their socket pair and the listening socket the gate bound.

A request's HTTP parsing, validation and JSON take a millisecond or more of CPU; here they are spent on a core
of their own, not in front of a badge on the gate's loop. What a route needs of the gate it awaits from
`RemoteServices`, which asks the gate by name. It ends when the gate says stop or is gone; SIGINT and SIGTERM
are the gate's to act on (a service stop reaches every process of the unit), so they do not end it early.

    python -m edge.api.child CONTROL_FD LISTEN_FD
"""
from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import itertools
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from edge.api import wire
from edge.core.metrics import Exposition
from edge.runtime import logsetup

log = logging.getLogger("edge.api")
PR_SET_PDEATHSIG = 1
API_NICE = 10  # lower CPU priority than the gate's


class GateLink:
    """The API's end of the socket pair: calls out, answers and the journal's news in."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.pending: dict[int, asyncio.Future] = {}
        self.ids = itertools.count(1)
        self.appended: set[asyncio.Event] = set()
        self.stopping = asyncio.Event()

    async def call(self, target: str, method: str, *args, **kwargs):
        if self.stopping.is_set():
            raise ConnectionError("the gate is stopping")
        cid = next(self.ids)
        answer = asyncio.get_running_loop().create_future()
        self.pending[cid] = answer
        try:
            wire.send(self.writer, ("call", cid, target, method, args, kwargs))
            return await answer
        finally:
            self.pending.pop(cid, None)

    async def listen(self) -> None:
        """Until the gate says stop or is gone: then nothing pending waits any longer."""
        try:
            while True:
                message = await wire.receive(self.reader)
                kind = message[0]
                if kind == "reply":
                    _, cid, ok, value = message
                    answer = self.pending.get(cid)
                    if answer is not None and not answer.done():
                        answer.set_result(value) if ok else answer.set_exception(value)
                elif kind == "appended":
                    for grew in self.appended:
                        grew.set()
                elif kind == "log":  # the gate's [log] changed on SIGHUP
                    logsetup.configure(*message[1])
                elif kind == "stop":
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.stopping.set()
            for grew in self.appended:
                grew.set()
            for answer in self.pending.values():
                if not answer.done():
                    answer.set_exception(ConnectionError("the gate is stopping"))


class Remote:
    """One of the gate's objects (the desk, the permits, the tokens): each allowed method, awaited."""

    def __init__(self, link: GateLink, target: str):
        self._link, self._target = link, target

    def __getattr__(self, name: str):
        if name not in wire.CALLS[self._target]:
            raise AttributeError(name)
        return functools.partial(self._link.call, self._target, name)


class RemoteServices(Remote):
    """What the routes hold: GateServices' calls awaited across the socket, and what does not change
    while the gate runs (the site, the doors, the events' source) kept here."""

    def __init__(self, link: GateLink, hello: dict):
        super().__init__(link, "svc")
        self.site = hello["site"]
        self.source, self.epoch = hello["source"], hello["epoch"]
        self._doors = frozenset(hello["site"].doors)
        self.desk = Remote(link, "desk") if hello["site"].walkin else None  # P13, P4
        self.permits = Remote(link, "permits")  # P14
        self.tokens = Remote(link, "tokens")
        self.tours = Remote(link, "tours")  # P21
        self._exposition = Exposition(hello["pid"])  # the process metrics are the gate's

    async def metrics(self) -> str:
        """Prometheus text of the gate's counts and gauges, made here (the library's work is off its loop)."""
        counts, gauges = await self._link.call("svc", "metrics")
        return self._exposition.render(counts, gauges)

    @staticmethod
    def now() -> float:
        return time.time()

    @property
    def stopping(self) -> bool:
        return self._link.stopping.is_set()

    def has_door(self, door: str) -> bool:
        return door in self._doors

    @asynccontextmanager
    async def appends(self) -> AsyncIterator[asyncio.Event]:
        """An event set at each commit of a journal entry by the gate (another process's is not heard)."""
        grew = asyncio.Event()
        self._link.appended.add(grew)
        try:
            yield grew
        finally:
            self._link.appended.discard(grew)


async def serve(control_fd: int, listen_fd: int) -> int:
    import uvicorn

    from edge.api.app import create_app
    from edge.api.server import ACCEPT_BATCH, Guard, GuardedProtocol, sweep_forever

    reader, writer = await asyncio.open_unix_connection(sock=socket.socket(fileno=control_fd))
    kind, hello = await wire.receive(reader)
    if kind != "hello":
        raise wire.WireError(f"{kind} before hello")
    logsetup.configure(*hello["log"])
    link = GateLink(reader, writer)
    listening = asyncio.create_task(link.listen(), name="gate-link")
    a = hello["api"]
    try:
        config = uvicorn.Config(
            create_app(RemoteServices(link, hello), secure_cookie=bool(a["tls_cert_file"])),
            # uvicorn's lines go to the wire logger (edge/runtime/logsetup.py): no handlers of its own
            log_config=None, log_level=None, access_log=False, lifespan="off", http=GuardedProtocol, timeout_keep_alive=5,
            backlog=ACCEPT_BATCH, timeout_graceful_shutdown=2,  # live feeds do not hold up a stop
            ssl_certfile=a["tls_cert_file"], ssl_keyfile=a["tls_key_file"])
        config.load()  # the TLS files are read here: one that does not load is the gate's named fault
    except Exception as e:
        wire.send(writer, ("fault", f"{e.__class__.__name__}: {e}"[:200]))
        await writer.drain()
        return 1
    config.guard = Guard(a["max_connections"], a["header_timeout_s"], a["body_timeout_s"])
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # the gate decides when this process ends
    sweeper = asyncio.create_task(sweep_forever(config.guard), name="api-sweep")

    async def stop_when_told() -> None:
        await link.stopping.wait()
        server.should_exit = True

    stopper = asyncio.create_task(stop_when_told(), name="api-stop")
    wire.send(writer, ("up",))
    try:
        await server.serve(sockets=[socket.socket(fileno=listen_fd)])
    finally:
        for task in (sweeper, stopper, listening):
            task.cancel()
        writer.close()
    return 0


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with contextlib.suppress(OSError, AttributeError):  # Linux: gone with the gate even if its socket lingers
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    with contextlib.suppress(OSError):  # the doors before the console: when both want the CPU, the gate's
        os.nice(API_NICE)               # loop gets it first (needs no privilege; the API cannot undo it)
    control_fd, listen_fd = int(argv[0]), int(argv[1])
    return asyncio.run(serve(control_fd, listen_fd))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

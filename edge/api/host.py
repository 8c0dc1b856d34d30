"""The local API as one of the gate's parts: the socket bound here, the API served by a process of its own
(edge/api/child.py), and what that process asks of the gate answered here, on the gate's loop.

A request's HTTP, validation and JSON cost a millisecond or more of CPU: in the API process they are not
spent in front of a badge, and a thread would not do, since it shares the interpreter lock. The gate owns the
listening socket, so a port that is taken or a certificate that is missing is a `device.fault` named `api`
that is retried while the doors go on, and an API process that dies is started again on the same socket
(connections wait in its backlog meanwhile).
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Callable

from edge.api import wire
from edge.api.facade import GateServices
from edge.config import ApiSection, resolve
from edge.hardware.devices import DeviceBoard
from edge.runtime import logsetup

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 30.0
EXIT_WAIT_S = 5.0  # the API process's live feeds get 2 s to end; after this it is killed
PROJECT = Path(__file__).resolve().parents[2]  # what the API process imports `edge` from: this same tree


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


class ApiService:
    def __init__(self, services: GateServices, cfg: ApiSection, base: Path, board: DeviceBoard,
                 after_door: Callable[[Callable[[], None]], None] = lambda fn: fn()):
        self.services, self.cfg, self.base, self.board = services, cfg, base, board
        self.after_door = after_door  # the API's calls wait while a scan drives its door (edge/runtime/doorfirst)
        self.attempted = asyncio.Event()  # the first start was tried: up, or a named fault
        self.port: int | None = None
        self._targets = {"svc": services, "desk": services.desk, "permits": services.permits,
                         "tokens": services.tokens, "tours": services.tours}
        self._writer: asyncio.StreamWriter | None = None
        self._calls: set[asyncio.Task] = set()
        self._news = False
        board.register("api", "api")

    def stop(self) -> None:
        """The API process is told to end; `run` returns once it has."""
        if self._writer is not None and not self._writer.is_closing():
            wire.send(self._writer, ("stop",))

    def log_changed(self) -> None:
        """The gate's [log] was reloaded: the API process logs the same way."""
        if self._writer is not None and not self._writer.is_closing():
            wire.send(self._writer, ("log", logsetup.settings()))

    async def run(self, stop: asyncio.Event) -> None:
        backoff, sock = 1.0, None
        try:
            while not stop.is_set():
                try:
                    a = self.cfg
                    for key in ("tls_cert_file", "tls_key_file"):  # named in the fault, not just "no such file"
                        name = getattr(a, key)
                        if name and not os.access(resolve(self.base, name), os.R_OK):
                            raise OSError(f"cannot read {key} {resolve(self.base, name)}")
                    if sock is None:
                        sock = bind(a.bind, a.port)
                        self.port = sock.getsockname()[1]
                    fault = await self._serve(sock, stop)
                    if stop.is_set():
                        return
                    if fault is None:  # it served, then ended: start again at once
                        backoff = 1.0
                    raise OSError(fault or "the API process ended")
                except (OSError, wire.WireError) as e:
                    self.board.down("api", f"{e.__class__.__name__}: {e}"[:200])
                    self.attempted.set()
                try:
                    await asyncio.wait_for(stop.wait(), backoff)
                except asyncio.TimeoutError:
                    pass
                backoff = min(backoff * 2, MAX_BACKOFF_S)
        finally:
            if sock is not None:
                sock.close()

    async def _serve(self, sock: socket.socket, stop: asyncio.Event) -> str | None:
        """One API process, from its start to its end; its fault if it could not serve."""
        ours, theirs = socket.socketpair()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT),
                                                                          os.environ.get("PYTHONPATH")]))}
        try:
            proc = subprocess.Popen([sys.executable, "-m", "edge.api.child", str(theirs.fileno()), str(sock.fileno())],
                                    pass_fds=(theirs.fileno(), sock.fileno()), env=env)
        finally:
            theirs.close()
        fault: str | None = "the API process ended before it served"
        unlisten = self.services.on_append(self._appended)
        try:
            reader, self._writer = await asyncio.open_unix_connection(sock=ours)
            a = self.cfg
            wire.send(self._writer, ("hello", {
                "site": self.services.site, "source": self.services.source, "epoch": self.services.epoch,
                "log": logsetup.settings(), "pid": os.getpid(),
                "api": {"tls_cert_file": str(resolve(self.base, a.tls_cert_file)) if a.tls_cert_file else None,
                        "tls_key_file": str(resolve(self.base, a.tls_key_file)) if a.tls_key_file else None,
                        "max_connections": a.max_connections, "header_timeout_s": a.header_timeout_s,
                        "body_timeout_s": a.body_timeout_s}}))
            if stop.is_set():
                self.stop()
            while True:
                try:
                    message = await wire.receive(reader, plain=True)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return fault
                kind = message[0]
                if kind == "call":
                    self.after_door(functools.partial(self._call, *message[1:]))
                elif kind == "up":
                    fault = None
                    scheme = "https" if a.tls_cert_file else "http"
                    log.info("local API on %s://%s:%d (process %d)", scheme, a.bind, self.port, proc.pid)
                    print(f"gatekeeper api on {scheme}://{a.bind}:{self.port}", flush=True)
                    self.board.up("api")
                    self.attempted.set()
                elif kind == "fault":
                    fault = str(message[1])[:200]
                else:
                    raise wire.WireError(f"an unknown message {kind!r}")
        finally:
            unlisten()
            if self._writer is not None:
                self._writer.close()
            self._writer = None
            ours.close()
            await self._ended(proc)

    def _call(self, cid, target, method, args, kwargs) -> None:
        """A call of the API's, run now on this loop; an async one (a door opened) as a task that answers
        when it ends, while the next calls go on."""
        writer = self._writer
        try:
            if not isinstance(target, str) or method not in wire.CALLS.get(target, ()):
                raise wire.WireError(f"{target}.{method} is not a call the API may make")
            obj = self._targets[target]
            if obj is None:
                raise wire.WireError(f"{target} is not set up on this gate")
            result = getattr(obj, method)(*args, **kwargs)
        except Exception as e:
            self._answer(writer, cid, False, e)
            return
        if not inspect.isawaitable(result):
            self._answer(writer, cid, True, result)
            return

        async def finish() -> None:
            try:
                value = await result
            except Exception as e:
                self._answer(writer, cid, False, e)
            else:
                self._answer(writer, cid, True, value)

        task = asyncio.create_task(finish(), name=f"api-{method}")
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)

    @staticmethod
    def _answer(writer: asyncio.StreamWriter | None, cid, ok: bool, value) -> None:
        if writer is None or writer.is_closing():
            return  # the API process is gone: nobody waits for this answer
        if not ok:
            value = wire.portable(value)
        try:
            wire.send(writer, ("reply", cid, ok, value))
        except Exception as e:  # an answer that cannot cross is an error the route can report
            wire.send(writer, ("reply", cid, False, RuntimeError(f"the gate's answer could not be sent: {e}")))

    def _appended(self) -> None:
        """The journal grew: said once per turn of the loop, however many entries that turn committed."""
        if not self._news and self._writer is not None:
            self._news = True
            asyncio.get_running_loop().call_soon(self._say_appended)

    def _say_appended(self) -> None:
        self._news = False
        if self._writer is not None and not self._writer.is_closing():
            wire.send(self._writer, ("appended",))

    @staticmethod
    async def _ended(proc: subprocess.Popen) -> None:
        """The process waited for (it ends once its socket closes); killed if it does not."""
        try:
            await asyncio.to_thread(proc.wait, EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            log.warning("the API process %d did not end: killed", proc.pid)
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(proc.wait, 1.0)

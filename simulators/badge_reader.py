"""A serial badge or QR reader (SPEC §5 line protocol): one credential a line, CRLF terminated.

    python -m simulators.badge_reader --listen 127.0.0.1:17001 04A1B2C3D4 "GK1:..."
    python -m simulators.badge_reader --pty --script scans.txt

`--listen` serves the serial line on a TCP port (the gate opens `socket://HOST:PORT`); `--pty` makes a
pseudo-terminal and prints its path (the gate opens it as a device). Lines come from the command line,
then `--script` (one a line; `#` comments; `sleep S` pauses), then stdin. Lines wait until the gate
is connected (on a pty, the gate discards what was written before it opened the line, as on a real
serial port: use `--wait` or stdin). On stdin, `!garbage N` sends N random bytes without a terminator and `!drop` hangs up.
"""
from __future__ import annotations

import argparse
import os
import queue
import random
import socket
import sys
import threading
import time
import tty

TERMINATOR = b"\r\n"
# pyserial empties its input buffer while it opens a port: bytes that arrive in that instant are lost,
# on a real line as here. A new connection gets this long before the first line is sent.
SETTLE_S = 0.3


class Line:
    """Where bytes go: the connected gate over TCP, or the pty master."""

    def __init__(self) -> None:
        self.connected = threading.Event()
        self.connected_at = 0.0
        self._sock: socket.socket | None = None
        self._fd: int | None = None

    def write(self, data: bytes) -> bool:
        sock = self._sock
        try:
            if self._fd is not None:
                os.write(self._fd, data)
            elif sock is not None:
                sock.sendall(data)
            else:
                return False
            return True
        except OSError:
            self.drop(sock)  # only the connection that failed: the gate may already be back on a new one
            return False

    def drop(self, sock: socket.socket | None = None) -> None:
        sock = sock or self._sock
        if sock is None:
            return
        try:
            sock.close()
        except OSError:
            pass
        if self._sock is sock:
            self._sock = None
            self.connected.clear()

    def serve_tcp(self, host: str, port: int, reuse_port: bool = False) -> tuple[str, int]:
        srv = socket.create_server((host, port), reuse_port=reuse_port)
        addr = srv.getsockname()[:2]

        def accept() -> None:
            while True:
                conn, peer = srv.accept()
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.drop()  # one gate at a time, like a real serial line
                self._sock = conn
                self.connected_at = time.monotonic()
                self.connected.set()
                # text and newline in one write: the main thread may be printing a line of its own now
                print(f"badge_reader connected from {peer[0]}:{peer[1]}\n", end="", flush=True)
                threading.Thread(target=self._watch, args=(conn,), daemon=True).start()

        threading.Thread(target=accept, daemon=True).start()
        return addr

    def _watch(self, conn: socket.socket) -> None:
        """Notice the gate hanging up (it never sends us anything)."""
        try:
            while conn.recv(256):
                pass
        except OSError:
            pass
        if self._sock is conn:
            self.drop(conn)
            print("badge_reader disconnected\n", end="", flush=True)

    def open_pty(self) -> str:
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no newline translation: bytes pass as on a real line
        self._fd = master
        self._slave = slave  # kept open so the master never sees EIO while the gate is away
        self.connected.set()
        return os.ttyname(slave)


def send(line: Line, text: str) -> None:
    line.connected.wait()
    time.sleep(max(0.0, line.connected_at + SETTLE_S - time.monotonic()))
    if text.startswith("!garbage"):
        n = int(text.split()[1]) if len(text.split()) > 1 else 64
        line.write(bytes(random.getrandbits(8) for _ in range(n)))
        print(f"badge_reader sent {n} garbage bytes", flush=True)
        return
    if text == "!drop":
        line.drop()
        print("badge_reader dropped the connection", flush=True)
        return
    if line.write(text.encode("utf-8", errors="replace") + TERMINATOR):
        shown = text if len(text) <= 40 else text[:37] + "..."
        print(f"badge_reader sent {shown}", flush=True)
    else:
        print("badge_reader not sent: the gate is not connected", flush=True)


def script_lines(path: str):
    with open(path, encoding="utf-8") as f:
        for raw in f:
            text = raw.strip()
            if not text or text.startswith("#"):
                continue
            if text.startswith("sleep "):
                time.sleep(float(text.split()[1]))
                continue
            yield text


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m simulators.badge_reader", description=__doc__.split("\n\n")[0])
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--listen", metavar="HOST:PORT", help="serve the line on TCP (port 0: any free port)")
    where.add_argument("--pty", action="store_true", help="make a pseudo-terminal and print its path")
    p.add_argument("--reuse-port", action="store_true",
                   help="listen with SO_REUSEPORT: a port held by another socket of ours (a test restarting the "
                        "reader on its port) can be listened on")
    p.add_argument("--script", help="a file of lines to send")
    p.add_argument("--garbage", type=int, default=0, metavar="N", help="send N random bytes first")
    p.add_argument("--interval", type=float, default=0.0, help="seconds between lines")
    p.add_argument("--wait", type=float, default=0.0, help="seconds before the first line")
    p.add_argument("lines", nargs="*", help="badge UIDs or pass texts to send")
    args = p.parse_args(argv)

    line = Line()
    if args.pty:
        print(f"badge_reader pty {line.open_pty()}", flush=True)
    else:
        host, _, port = args.listen.rpartition(":")
        try:
            h, pt = line.serve_tcp(host or "127.0.0.1", int(port), args.reuse_port)
        except (OSError, ValueError) as e:
            raise SystemExit(f"badge_reader: cannot listen on {args.listen}: {e}") from None
        print(f"badge_reader listening on {h}:{pt}", flush=True)

    todo: queue.Queue[str | None] = queue.Queue()
    if args.garbage:
        todo.put(f"!garbage {args.garbage}")
    for text in args.lines:
        todo.put(text)

    def feed() -> None:
        if args.script:
            for text in script_lines(args.script):
                todo.put(text)
        if sys.stdin is not None:
            for raw in sys.stdin:
                if raw.strip():
                    todo.put(raw.strip())

    threading.Thread(target=feed, daemon=True).start()
    line.connected.wait()
    time.sleep(args.wait)
    try:
        while True:
            text = todo.get()
            send(line, text)
            if args.interval:
                time.sleep(args.interval)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

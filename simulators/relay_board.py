"""A serial relay board (SPEC §5 `A0 <channel> <state> <checksum>`), for tests and the demo.

    python -m simulators.relay_board --listen 127.0.0.1:0      # the gate opens socket://HOST:PORT
    python -m simulators.relay_board --pty                     # the gate opens the printed device

Prints `relay_board listening on ...` (or `relay_board pty PATH`), then one line per frame:
`relay_board channel N on|off` or `relay_board bad frame HEX`. Like the real board it never answers.
"""
from __future__ import annotations

import argparse
import os
import socket
import threading
import time
import tty

START = 0xA0


class Board:
    def __init__(self) -> None:
        self.buf = b""

    def feed(self, data: bytes) -> None:
        self.buf += data
        while len(self.buf) >= 4:
            i = self.buf.find(bytes((START,)))
            if i != 0:
                junk = self.buf if i < 0 else self.buf[:i]
                print(f"relay_board bad frame {junk.hex()}", flush=True)
                self.buf = b"" if i < 0 else self.buf[i:]
                continue
            f, self.buf = self.buf[:4], self.buf[4:]
            if f[2] in (0, 1) and (f[0] + f[1] + f[2]) & 0xFF == f[3]:
                print(f"relay_board channel {f[1]} {'on' if f[2] else 'off'} at={time.monotonic_ns()}", flush=True)
            else:
                print(f"relay_board bad frame {f.hex()}", flush=True)


def serve_tcp(host: str, port: int, board: Board) -> None:
    srv = socket.create_server((host, port))
    print(f"relay_board listening on {srv.getsockname()[0]}:{srv.getsockname()[1]}", flush=True)
    while True:
        conn, _ = srv.accept()
        print("relay_board connected", flush=True)
        with conn:
            while data := conn.recv(256):
                board.feed(data)
        print("relay_board disconnected", flush=True)


def serve_pty(board: Board) -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    print(f"relay_board pty {os.ttyname(slave)}", flush=True)
    while True:
        try:
            data = os.read(master, 256)
        except OSError:
            time.sleep(0.05)  # nobody has the line open yet
            continue
        board.feed(data)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m simulators.relay_board", description=__doc__.split("\n\n")[0])
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--listen", metavar="HOST:PORT")
    where.add_argument("--pty", action="store_true")
    args = p.parse_args(argv)
    board = Board()
    try:
        if args.pty:
            serve_pty(board)
        else:
            host, _, port = args.listen.rpartition(":")
            t = threading.Thread(target=serve_tcp, args=(host or "127.0.0.1", int(port), board), daemon=True)
            t.start()
            t.join()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

"""Two pseudo-terminals joined back to back: a serial cable for tests (Modbus RTU, readers).

    python -m simulators.ptybridge [--baudrate 9600]

Prints `ptybridge A B`, the two device paths. What one end writes, the other reads. A single
`os.openpty()` pair cannot serve, because the master end has no path a program could open. With
`--baudrate`, bytes are paced as a real line at that speed would carry them (10 bits per byte, 8N1),
so latency measured across the bridge includes the wire time.
"""
from __future__ import annotations

import argparse
import os
import select
import signal
import sys
import time
import tty


def bridge(a: int, b: int, byte_s: float) -> None:
    while True:
        ready, _, _ = select.select([a, b], [], [])
        for src in ready:
            dst = b if src == a else a
            try:
                data = os.read(src, 4096)
            except OSError:
                data = b""  # the other side closed its end; the pty stays for the next opener
            if not data:
                time.sleep(0.01)
                continue
            if byte_s:
                time.sleep(len(data) * byte_s)
            os.write(dst, data)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m simulators.ptybridge", description=__doc__.split("\n\n")[0])
    p.add_argument("--baudrate", type=int, default=0, help="pace the bytes as a line of this speed (0: no pacing)")
    args = p.parse_args(argv)
    ends = []
    for _ in range(2):
        master, slave = os.openpty()
        tty.setraw(master)
        tty.setraw(slave)
        ends.append((master, slave, os.ttyname(slave)))
    print(f"ptybridge {ends[0][2]} {ends[1][2]}", flush=True)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    try:
        bridge(ends[0][0], ends[1][0], 10 / args.baudrate if args.baudrate else 0.0)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

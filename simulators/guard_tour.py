"""A guard walking a tour (P21): one serial badge line per checkpoint reader (SPEC §5 line protocol, as
simulators/badge_reader.py), and the guard's badge tapped at them in turn.

    python -m simulators.guard_tour --checkpoint cp-1=127.0.0.1:0 --checkpoint cp-2=127.0.0.1:0 \\
        --checkpoint cp-3=127.0.0.1:0 --badge 0A0B0C0D

Each line is listened on (port 0: any free port) and printed: `guard_tour listening cp-1 on HOST:PORT`; the
gate opens `socket://HOST:PORT` for that checkpoint reader (`guard_tour all checkpoints connected` once it has
opened every one). Then, from `--walk` and stdin, one command a line:

    walk [cp-1,cp-2,cp-3] [gap=S] [skip=cp-2] [badge=HEX]   the route in order (default: every checkpoint as
                                                           given), S seconds between taps; skip leaves one out
    tap cp-2 [HEX]                                         one tap
    sleep S

On time: `walk gap=60`; late: a gap that makes the round longer than its limit (`walk gap=900` for 45 min
over four checkpoints); skipping one: `walk skip=cp-2`; out of order: `walk cp-1,cp-3,cp-2`.
"""
from __future__ import annotations

import argparse
import sys
import threading
import time

from simulators.badge_reader import Line, send


def _options(words: list[str]) -> tuple[list[str], dict[str, str]]:
    plain = [w for w in words if "=" not in w]
    opts = dict(w.split("=", 1) for w in words if "=" in w)
    return plain, opts


def run(command: str, lines: dict[str, Line], order: list[str], badge: str) -> None:
    words = command.split()
    if not words:
        return
    verb, rest = words[0], words[1:]
    if verb == "sleep":
        time.sleep(float(rest[0]))
    elif verb == "tap":
        if not rest or rest[0] not in lines:
            print(f"guard_tour: no checkpoint {rest[:1]}: one of {', '.join(lines)}", flush=True)
            return
        send(lines[rest[0]], rest[1] if len(rest) > 1 else badge)
        print(f"guard_tour tapped {rest[0]}", flush=True)
    elif verb == "walk":
        plain, opts = _options(rest)
        route = plain[0].split(",") if plain else order
        unknown = [c for c in route if c not in lines]
        if unknown:
            print(f"guard_tour: no checkpoint {', '.join(unknown)}", flush=True)
            return
        gap = float(opts.get("gap", 1))
        skip = set(opts.get("skip", "").split(",")) - {""}
        who = opts.get("badge", badge)
        walked = [c for c in route if c not in skip]
        for i, cp in enumerate(walked):
            if i:
                time.sleep(gap)
            send(lines[cp], who)
            print(f"guard_tour tapped {cp}", flush=True)
        print(f"guard_tour walked {','.join(walked)}", flush=True)
    else:
        print(f"guard_tour: unknown command {verb!r} (walk, tap, sleep)", flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m simulators.guard_tour", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", action="append", required=True, metavar="NAME=HOST:PORT",
                   help="a checkpoint reader's line, in route order (repeat)")
    p.add_argument("--badge", required=True, help="the guard's badge UID (hex)")
    p.add_argument("--walk", action="append", default=[], metavar="COMMAND", help="a command to run first")
    args = p.parse_args(argv)
    lines: dict[str, Line] = {}
    for spec in args.checkpoint:
        name, _, where = spec.partition("=")
        host, _, port = where.rpartition(":")
        line = Line()
        try:
            h, pt = line.serve_tcp(host or "127.0.0.1", int(port))
        except (OSError, ValueError) as e:
            raise SystemExit(f"guard_tour: cannot listen on {where!r} for {name}: {e}") from None
        lines[name] = line
        print(f"guard_tour listening {name} on {h}:{pt}\n", end="", flush=True)  # one write (see badge_reader)
    order = list(lines)

    def all_connected() -> None:  # one line to wait on: the lines' own notes may interleave
        for line in lines.values():
            line.connected.wait()
        print("guard_tour all checkpoints connected", flush=True)

    threading.Thread(target=all_connected, daemon=True).start()

    def commands():
        yield from args.walk
        if sys.stdin is not None:
            for raw in sys.stdin:
                yield raw.strip()

    try:
        for command in commands():  # one after another: a walk is one guard's, in sequence
            run(command, lines, order, args.badge)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

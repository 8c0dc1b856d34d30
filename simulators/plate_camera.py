"""A licence-plate camera on a serial line (SPEC §5, P26): one `PLATE:<text>` line per car it reads, CRLF
terminated, in the camera's text encoding (many Chinese cameras send GBK).

    python -m simulators.plate_camera --listen 127.0.0.1:17011 --encoding gbk 京A12345
    python -m simulators.plate_camera --pty "粤B 8888"

`--listen` serves the line on a TCP port (the gate opens `socket://HOST:PORT`); `--pty` makes a pseudo-terminal
and prints its path. Plates come from the command line, then stdin, one a line, each sent as `PLATE:<plate>`
once the gate is connected; a stdin line starting `!raw ` is sent as it is (a malformed line). Prints
`plate_camera listening on HOST:PORT` (or `plate_camera pty PATH`), then `plate_camera sent PLATE` per line.
"""
from __future__ import annotations

import argparse
import codecs
import queue
import sys
import threading
import time

from simulators.badge_reader import SETTLE_S, TERMINATOR, Line


def frame(text: str, encoding: str) -> bytes:
    """The bytes a camera sends for one read: `PLATE:<plate>` or, for `!raw X`, X as it is."""
    body = text[len("!raw "):] if text.startswith("!raw ") else "PLATE:" + text
    return body.encode(encoding) + TERMINATOR


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m simulators.plate_camera", description=__doc__.split("\n\n")[0])
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--listen", metavar="HOST:PORT", help="serve the line on TCP (port 0: any free port)")
    where.add_argument("--pty", action="store_true", help="make a pseudo-terminal and print its path")
    p.add_argument("--encoding", default="utf-8", help="the camera's text encoding (utf-8, gbk, gb18030...)")
    p.add_argument("plates", nargs="*", help="plates to send, as the camera read them")
    args = p.parse_args(argv)
    try:
        codecs.lookup(args.encoding)
    except LookupError:
        raise SystemExit(f"plate_camera: unknown encoding {args.encoding!r}") from None

    line = Line()
    if args.pty:
        print(f"plate_camera pty {line.open_pty()}", flush=True)
    else:
        host, _, port = args.listen.rpartition(":")
        try:
            h, pt = line.serve_tcp(host or "127.0.0.1", int(port))
        except (OSError, ValueError) as e:
            raise SystemExit(f"plate_camera: cannot listen on {args.listen}: {e}") from None
        print(f"plate_camera listening on {h}:{pt}", flush=True)

    todo: queue.Queue[str] = queue.Queue()
    for text in args.plates:
        todo.put(text)

    def feed() -> None:
        if sys.stdin is not None:
            for raw in sys.stdin:
                if raw.strip():
                    todo.put(raw.strip())

    threading.Thread(target=feed, daemon=True).start()
    try:
        while True:
            text = todo.get()
            line.connected.wait()
            time.sleep(max(0.0, line.connected_at + SETTLE_S - time.monotonic()))
            try:
                data = frame(text, args.encoding)
            except UnicodeEncodeError:
                print(f"plate_camera: {text!r} cannot be written in {args.encoding}", flush=True)
                continue
            if line.write(data):
                print(f"plate_camera sent {text}", flush=True)
            else:
                print("plate_camera not sent: the gate is not connected", flush=True)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

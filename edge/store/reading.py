"""An import file's lines, read and checked: in this process, or for a large file in a helper process, so
that checking the next lines (pydantic, one core) goes on while this one writes (SQLite, the other core).

Items come in batches, in file order: (line number, kind, value), kind "record" (value: the row and whether
its category and tier are known, P1), "revoke", "blocklist", "key", or "bad" (value: what is wrong).
"""
from __future__ import annotations

import json
import os
import pickle
import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import BinaryIO, Iterator

from pydantic import ValidationError

from edge.core.model import known_kind
from edge.errors import GatekeeperError
from edge.store.allowlist import MAX_LINE, explain, parse_item
from edge.store.records import AllowRecord

BATCH = 1024  # lines per batch: what a progress bar is told at once, and what crosses between processes
HELPER_BYTES = 16 << 20  # a file this large is checked in a helper process (starting one costs ~0.5 s)


class ReadError(GatekeeperError):
    """The helper process that checks the lines stopped."""


def read_items(path: Path, progress) -> Iterator[tuple[list, int]]:
    """(batch of items, bytes they took) for the whole file; OSError if it cannot be read."""
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        progress.phase(f"staging {path.name}", st.st_size or None)
        if not stat.S_ISREG(st.st_mode) or st.st_size < HELPER_BYTES:
            yield from _batches(f)
            return
    yield from _from_helper(path)


def _from_helper(path: Path) -> Iterator[tuple[list, int]]:
    """The batches as `python -m edge.store.reading FILE` checks them, pickled down a pipe (a pipe's buffer
    ahead at most: bounded memory on both sides)."""
    root = str(Path(__file__).resolve().parent.parent.parent)  # this very code, wherever it is installed
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    helper = subprocess.Popen([sys.executable, "-m", "edge.store.reading", str(path)], stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, env=env)
    try:
        while True:
            try:
                got = pickle.load(helper.stdout)
            except EOFError:
                raise ReadError(f"the process reading {path} stopped (exit code {helper.wait()})") from None
            if got is None:
                break
            if isinstance(got, str):
                raise ReadError(got)
            yield got
        helper.wait()
    finally:
        if helper.poll() is None:
            helper.kill()
            helper.wait()
        helper.stdout.close()


def _helper(path: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the import's to handle: it stops us
    out = sys.stdout.buffer
    try:
        with open(path, "rb") as f:
            for batch in _batches(f):
                pickle.dump(batch, out, pickle.HIGHEST_PROTOCOL)
    except OSError as e:
        pickle.dump(f"{path}: cannot read: {e.strerror}", out)
        return
    except BrokenPipeError:
        return  # the import stopped reading: it failed or was stopped
    pickle.dump(None, out)
    out.flush()


def _batches(f: BinaryIO) -> Iterator[tuple[list, int]]:
    batch, nbytes = [], 0
    for n, line, size in _lines(f):
        nbytes += size
        try:
            kind, value = _parse(line)
        except _BadLine as e:
            batch.append((n, "bad", str(e)))
        else:
            if kind is not None:
                batch.append((n, kind, value))
        if n % BATCH == 0:
            yield batch, nbytes
            batch, nbytes = [], 0
    if batch or nbytes:
        yield batch, nbytes


class _BadLine(Exception):
    pass


def _lines(f: BinaryIO) -> Iterator[tuple[int, bytes | None, int]]:
    """(line number, line or None when longer than MAX_LINE, bytes read); never holds more than a line."""
    n = 0
    while True:
        line = f.readline(MAX_LINE + 1)
        if not line:
            return
        n += 1
        nbytes = len(line)
        if len(line) > MAX_LINE:
            while not line.endswith(b"\n"):  # the rest of the long line, a piece at a time
                line = f.readline(MAX_LINE)
                if not line:
                    break
                nbytes += len(line)
            yield n, None, nbytes
            continue
        yield n, line, nbytes


_decode = json.JSONDecoder().decode


def _parse(line: bytes | None):
    if line is None:
        raise _BadLine(f"line longer than {MAX_LINE} bytes")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise _BadLine("not UTF-8 text") from None
    try:
        # Most lines are records: validated straight from the text, twice as fast as through a dict.
        r = AllowRecord.model_validate_json(text)
        return "record", (r.row(), known_kind(r.category, r.tier))
    except ValidationError:
        pass  # a revocation, a blocklist entry, a key, a blank line, or a bad line: told apart below
    if not text.strip():
        return None, None
    try:
        obj = _decode(text)
    except json.JSONDecodeError as e:
        raise _BadLine(f"not JSON: {e.msg} at column {e.colno}") from None
    try:
        kind, value = parse_item(obj)
    except (ValidationError, ValueError, TypeError) as e:
        raise _BadLine(explain(e)) from None
    if kind == "record":
        return kind, (value.row(), known_kind(value.category, value.tier))
    return kind, value


if __name__ == "__main__":
    _helper(sys.argv[1])

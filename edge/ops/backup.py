"""`gatekeeper backup`: a consistent copy of the gate's database while the daemon runs, verified.

SQLite's online backup copies the database as of one read transaction: in WAL mode that never blocks the
daemon's writes, and the copy is what a reader saw at one instant, never a torn file as `cp` may give.
"""
from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path

from edge.errors import GatekeeperError
from edge.ops.common import database


def add_command(sub) -> None:
    b = sub.add_parser("backup", help="a verified copy of the database, taken while the gate runs")
    b.add_argument("--config", required=True, help="site TOML file")
    b.add_argument("--out", required=True, help="the copy (made readable by its owner only)")
    b.add_argument("--force", action="store_true", help="replace --out if it exists")
    b.set_defaults(func=cmd_backup)


def cmd_backup(args) -> int:
    _, src_path = database(args.config)
    out = Path(args.out)
    if out.resolve() == src_path.resolve():
        raise GatekeeperError(f"{out} is the gate's own database")
    if out.exists() and not args.force:
        raise GatekeeperError(f"{out} exists; --force replaces it")
    # written beside its final name and renamed once verified: a failed backup never leaves a file that
    # looks like a good one, nor replaces a good one
    tmp = out.with_name(f".{out.name}.partial")
    try:
        _remove(tmp)
        # made owner-only before a byte is written: the copy holds token and ID hashes and the journal (P19)
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as e:
        raise GatekeeperError(f"cannot write {tmp}: {e.strerror}") from None
    try:
        pages = copy(src_path, tmp)
        ok, what = verify(tmp)
        if not ok:
            raise GatekeeperError(f"the copy does not verify: {what}")
        os.replace(tmp, out)
    except (sqlite3.Error, OSError) as e:  # a full disk, a database that cannot be read: said, not a traceback
        _remove(tmp)
        raise GatekeeperError(f"backup to {out} failed: {e}") from None
    except BaseException:
        _remove(tmp)
        raise
    print(f"backup {out}: {pages} pages, {what}", file=sys.stderr)
    return 0


def copy(src_path: Path, dest_path: Path) -> int:
    """Copy in one step: one read transaction, so the copy is one instant of the database. (A backup in
    several steps restarts whenever the daemon commits between them, and a busy gate commits often.)"""
    src = sqlite3.connect(f"file:{src_path}?mode=ro", uri=True, timeout=10)
    dest = sqlite3.connect(dest_path)
    try:
        src.execute("PRAGMA busy_timeout=10000")
        src.backup(dest)
        pages = dest.execute("PRAGMA page_count").fetchone()[0]
        # a single self-contained file: no write-ahead log beside the copy to be lost when it is moved
        dest.execute("PRAGMA journal_mode=DELETE")
        return pages
    finally:
        dest.close()
        src.close()


def verify(path: Path) -> tuple[bool, str]:
    """SQLite's integrity check, then the journal's seq and hash chain on the copy (as `events --verify`)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        problems = [r[0] for r in conn.execute("PRAGMA integrity_check")]
        if problems != ["ok"]:
            return False, "integrity check: " + "; ".join(problems[:5])
    finally:
        conn.close()
    return chain_ok(path)


def chain_ok(path: Path) -> tuple[bool, str]:
    from edge.store import Store
    from edge.store.journal import Journal
    store = Store(path, durable=False)
    try:
        return Journal(store).verify()
    finally:
        store.close()
        # the store opened it in WAL mode; put the copy back to one file
        conn = sqlite3.connect(path)
        try:
            conn.execute("PRAGMA journal_mode=DELETE")
        finally:
            conn.close()


def _remove(p: Path) -> None:
    for f in (p, p.with_name(p.name + "-wal"), p.with_name(p.name + "-shm"), p.with_name(p.name + "-journal")):
        try:
            f.unlink()
        except FileNotFoundError:
            pass

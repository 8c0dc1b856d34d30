"""`gatekeeper allowlist import`, streamed: any number of records in bounded memory, all or nothing.

The file is read a line at a time and checked; its records go to a private file to be sorted
(edge/store/sorting.py), the rest into `import_*` tables, while the gate (another process on the same
database) goes on deciding against the cache as it was. Once every line is valid, the records are staged
in key order and the cache's other records copied beside them, each a chunk per committed transaction;
then one short transaction swaps the copy in (a rename, as a snapshot's) and adds the revocations,
blocklist entries and keys. A bad line anywhere, a crash or Ctrl-C leaves the cache as it was; the staging
goes, then or at the next import.
"""
from __future__ import annotations

import fcntl
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from edge.errors import GatekeeperError
from edge.store.allowlist import ImportError_, bump_generation, generation, write_lists
from edge.store.db import Store
from edge.store.journal import Journal
from edge.store.reading import read_items
from edge.store.sorting import Sorted, copy_sorted
from edge.store.staging import CREDENTIAL_COLUMNS, create_credentials, drop_in_steps, exists, yielding

CHUNK = 2000  # rows per staging transaction: about 10 ms of the write lock, the longest a decision waits
MAX_PROBLEMS = 100  # bad lines named; the rest are counted
ATTEMPTS = 3  # builds of the copy when the cache keeps changing under it (a sync batch, a snapshot)
STAGED = "import_credentials"
REPLACED = "import_old_credentials"
SMALL = ("import_revocations", "import_blocklist", "import_keys")
SMALL_DDL = [
    "CREATE TABLE import_revocations(ref TEXT PRIMARY KEY) WITHOUT ROWID",
    "CREATE TABLE import_blocklist(kind TEXT NOT NULL, value TEXT NOT NULL, reason TEXT, action TEXT NOT NULL DEFAULT 'deny',"
    " PRIMARY KEY(kind, value))"
    " WITHOUT ROWID",
    "CREATE TABLE import_keys(kid TEXT PRIMARY KEY, public_key TEXT NOT NULL, scope TEXT) WITHOUT ROWID",
]


class Progress(Protocol):
    def phase(self, name: str, total: int | None) -> None: ...  # a new stage of the work, `total` units
    def advance(self, n: int) -> None: ...


class _Silent:
    def phase(self, name: str, total: int | None) -> None:
        pass

    def advance(self, n: int) -> None:
        pass


class ImportBusy(GatekeeperError):
    """Another import of this database is running."""


class CacheMoved(GatekeeperError):
    """The cache changed while its copy was built (a sync batch or snapshot); a copy would miss it."""


@dataclass
class Imported:
    records: int = 0
    revokes: int = 0
    blocklists: int = 0
    keys: int = 0
    unknown: list[str] = field(default_factory=list)  # P1: the first credentials of an unknown category or tier
    unknown_count: int = 0

    def counts(self) -> dict[str, int]:
        return {"records": self.records, "revokes": self.revokes, "blocklists": self.blocklists, "keys": self.keys}


def import_file(store: Store, path: str | os.PathLike, progress: Progress | None = None,
                clock=time.time) -> Imported:
    """Apply the JSON Lines file at `path` to the cache, or nothing (ImportError_ names the bad lines)."""
    progress = progress or _Silent()
    path = Path(path)
    with _only_import(store):
        clean(store)
        for attempt in range(ATTEMPTS):
            try:
                return _attempt(store, path, progress, clock)
            except CacheMoved:
                clean(store)
                # a pipe cannot be read twice: its writer must try again
                if attempt + 1 == ATTEMPTS or not stat.S_ISREG(os.stat(path).st_mode):
                    raise CacheMoved("the allow-list changed while the import was built (a sync batch or "
                                     "snapshot); nothing was imported: run it again") from None
            except BaseException:
                clean(store)
                raise
    raise AssertionError("unreachable")


def sort_file(store: Store) -> Path:
    return Path(f"{store.path}-import.sort")


def clean(store: Store) -> None:
    """Drop what an import left: its staging after a failure or a crash, the replaced cache after a swap."""
    for suffix in ("", "-journal"):
        try:
            os.unlink(f"{sort_file(store)}{suffix}")
        except FileNotFoundError:
            pass
    drop_in_steps(store, STAGED)
    drop_in_steps(store, REPLACED)
    with store.tx() as c:
        for t in SMALL:
            c.execute(f"DROP TABLE IF EXISTS {t}")


class _only_import:
    """One import at a time per database (they share the staging tables); released if the process dies."""

    def __init__(self, store: Store):
        self.path = Path(f"{store.path}-import.lock")

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise ImportBusy(f"another import into {store_name(self.path)} is running; try again when it "
                             "ended") from None

    def __exit__(self, *exc):
        os.close(self.fd)


def store_name(lock: Path) -> str:
    return lock.name.removesuffix("-import.lock")


class _Chunk:
    """Items read and not yet written: at most CHUNK of them."""

    def __init__(self) -> None:
        self.rows: list[tuple] = []
        self.revoke: list[str] = []
        self.block: list[tuple] = []
        self.keys: list = []

    def __len__(self) -> int:
        return len(self.rows) + len(self.revoke) + len(self.block) + len(self.keys)

    def write(self, c, now: float, into: str) -> None:
        write_lists(c, now, upserts=self.rows, revoke=self.revoke, block_add=self.block, keys_add=self.keys, into=into)
        self.__init__()


def _attempt(store: Store, path: Path, progress: Progress, clock) -> Imported:
    c = store.conn
    # Staging needs no durability of its own (a power cut fails the import, and the next one drops it); the
    # swap is written with the store's own setting.
    c.execute("PRAGMA synchronous=NORMAL")
    try:
        done, rest, staged = _stage_file(store, path, progress)
        if staged is not None:
            progress.phase("sorting the records", None)
            staged.sort()
            progress.phase("staging in key order", staged.rows or None)
            copy_sorted(store, staged, STAGED, CHUNK, progress.advance)
            staged.remove()
            copied_at = _copy_cache(store, progress)
    finally:
        c.execute(f"PRAGMA synchronous={store._sync}")
    now = clock()
    if staged is None:  # the whole file is one chunk: one short transaction, no copy of the cache
        with store.tx() as c:
            rest.write(c, now, "")
            _journal(store, done, now)
        return done
    progress.phase("swapping in", None)
    _swap(store, done, now, copied_at)
    progress.phase("dropping the replaced cache", None)
    c.execute("PRAGMA synchronous=NORMAL")  # a crash meanwhile leaves it to the next import to drop
    try:
        drop_in_steps(store, REPLACED)
    finally:
        c.execute(f"PRAGMA synchronous={store._sync}")
    return done


def _stage_file(store: Store, path: Path, progress: Progress) -> tuple[Imported, _Chunk, Sorted | None]:
    """Every line validated; staged a chunk at a time until the first bad line, then only checked, so that
    every problem is named at once: the records to be sorted, the rest in their staging tables, each chunk
    committed. What was read, the last chunk (not written), and the records to sort if any chunk was staged."""
    done, problems, bad = Imported(), [], 0
    chunk, staged = _Chunk(), None

    def flush() -> None:
        nonlocal staged
        if staged is None:
            with store.tx() as c:
                create_credentials(c, STAGED)
                for ddl in SMALL_DDL:
                    c.execute(ddl)
            staged = Sorted(sort_file(store))
        staged.add(chunk.rows)  # a file of its own: the gate's database is not locked for it
        chunk.rows = []
        if len(chunk):
            with store.tx() as c:
                chunk.write(c, 0.0, "import_")
        else:
            chunk.__init__()

    with _closing(lambda: staged):
        for batch, nbytes in read_items(path, progress):
            progress.advance(nbytes)
            for n, kind, value in batch:
                if kind == "bad":
                    bad += 1
                    if len(problems) < MAX_PROBLEMS:
                        problems.append(f"{path}:{n}: {value}")
                    continue
                if kind == "record":
                    row, known = value
                    chunk.rows.append(row)
                    done.records += 1
                    if not known:
                        done.unknown_count += 1
                        if len(done.unknown) < 20:
                            done.unknown.append(row[0])
                elif kind == "revoke":
                    chunk.revoke.append(value)
                    done.revokes += 1
                elif kind == "blocklist":
                    chunk.block.append(value)
                    done.blocklists += 1
                else:
                    chunk.keys.append(value)
                    done.keys += 1
                if bad:  # nothing more is staged: it would all be dropped
                    chunk = _Chunk()
                elif len(chunk) >= CHUNK:
                    flush()
    if bad:
        if bad > len(problems):
            problems.append(f"{path}: {bad - len(problems)} more bad lines")
        raise ImportError_(problems)
    if staged is not None:
        flush()
    return done, chunk, staged


class _closing:
    """The sort's file closed when reading the import file fails (it is removed with the staging)."""

    def __init__(self, get):
        self.get = get

    def __enter__(self):
        return self

    def __exit__(self, kind, *exc):
        if kind is not None and self.get() is not None:
            self.get().close()


def _copy_cache(store: Store, progress: Progress) -> int:
    """The cache's records the file does not replace, copied beside the staged ones in key order, a chunk per
    transaction; the cache's generation they were copied at. CacheMoved if the cache changes meanwhile."""
    c = store.conn
    gen = generation(c)
    progress.phase("merging with the cache", c.execute("SELECT count(*) FROM credentials").fetchone()[0] or None)
    after = ""
    while True:
        with yielding(store):
            if generation(c) != gen:
                raise CacheMoved()
            last = c.execute("SELECT max(credential) FROM (SELECT credential FROM credentials WHERE credential > ?"
                             " ORDER BY credential LIMIT ?)", (after, CHUNK)).fetchone()[0]
            if last is None:
                break
            c.execute(f"INSERT OR IGNORE INTO {STAGED}({CREDENTIAL_COLUMNS}) SELECT {CREDENTIAL_COLUMNS}"
                      " FROM credentials WHERE credential > ? AND credential <= ?", (after, last))
        progress.advance(CHUNK)
        after = last
    return gen


def _swap(store: Store, done: Imported, now: float, copied_at: int) -> None:
    with store.tx() as c:
        if generation(c) != copied_at:  # a batch applied since: the copy misses it
            raise CacheMoved()
        if exists(c, REPLACED):
            c.execute(f"DROP TABLE {REPLACED}")  # only after a crash between a swap and its cleanup
        c.execute(f"ALTER TABLE credentials RENAME TO {REPLACED}")
        c.execute(f"ALTER TABLE {STAGED} RENAME TO credentials")
        c.execute("INSERT OR IGNORE INTO revocations(ref, at) SELECT ref, ? FROM import_revocations", (now,))
        c.execute("INSERT OR REPLACE INTO blocklist(kind, value, reason, action) SELECT kind, value, reason, action"
                  " FROM import_blocklist")
        c.execute("INSERT OR REPLACE INTO keys(kid, public_key, scope) SELECT kid, public_key, scope FROM import_keys")
        for t in SMALL:
            c.execute(f"DROP TABLE {t}")
        bump_generation(c)
        _journal(store, done, now)


def _journal(store: Store, done: Imported, now: float) -> None:
    journal = Journal(store)
    journal.append("allowlist.applied", {"source": "import", **done.counts()}, now)
    if done.unknown_count:
        journal.append("alarm.raised", {"alarm": "unknown_category", "priority": "normal", "source": "import",
                                        "count": done.unknown_count, "credentials": done.unknown}, now)

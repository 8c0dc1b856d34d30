"""Tables built beside the allow-list cache and swapped in at once: a snapshot's (the sync worker) and an
import's. Built in small committed steps so the gate's journal never waits long for the write lock."""
from __future__ import annotations

import time
from contextlib import contextmanager

# The allow-list record as stored, in `AllowRecord.row()` order: the one list the cache's writers, the import's
# sort file and the staging tables are made from. New columns go last, where the migration that adds them to a
# live cache puts them (ALTER TABLE appends).
CREDENTIAL_FIELDS = (
    ("credential", "TEXT PRIMARY KEY"), ("holder", "TEXT NOT NULL"), ("category", "TEXT NOT NULL"), ("tier", "TEXT"),
    ("roles", "TEXT NOT NULL DEFAULT ''"), ("areas", "TEXT NOT NULL"), ("valid_from", "REAL"), ("valid_until", "REAL"),
    ("schedule", "TEXT"), ("party", "INTEGER NOT NULL DEFAULT 1"), ("host", "TEXT"),
    ("escort", "INTEGER NOT NULL DEFAULT 0"), ("id_hash", "TEXT"), ("name", "TEXT"),
    ("private", "INTEGER NOT NULL DEFAULT 0"), ("extended_access", "INTEGER NOT NULL DEFAULT 0"),  # P29, P30
    ("temporary", "INTEGER NOT NULL DEFAULT 0"),  # P27
    ("pin_required", "INTEGER NOT NULL DEFAULT 0"), ("pin_hash", "TEXT"), ("duress_hash", "TEXT"),  # P34
)
CREDENTIAL_COLUMNS = ", ".join(column for column, _ in CREDENTIAL_FIELDS)
CREDENTIAL_VALUES = ",".join("?" * len(CREDENTIAL_FIELDS))  # a row's placeholders
CREDENTIALS_DDL = ("CREATE TABLE {table}(" + ", ".join(f"{column} {kind}" for column, kind in CREDENTIAL_FIELDS)
                   + ") WITHOUT ROWID")
DROP_STEP = 5000  # rows deleted per transaction when a replaced or abandoned table goes


def create_credentials(c, name: str) -> None:
    """A credentials table `name` with its holder index, in the caller's transaction. Walk-in registration
    finds the host by holder (P13): the index is built as rows arrive, so the swap stays a rename. Index
    names are per database; the live, old and staged tables each keep theirs."""
    c.execute(CREDENTIALS_DDL.format(table=name))
    used = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    index = next(f"credentials_holder_{x}" for x in "abcdefgh" if f"credentials_holder_{x}" not in used)
    c.execute(f"CREATE INDEX {index} ON {name}(holder)")


def exists(c, table: str) -> bool:
    return c.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (table,)).fetchone() is not None


def drop_in_steps(store, table: str, step: int = DROP_STEP) -> None:
    """Empty the credentials table `table` a few thousand rows per transaction, then drop it: one DROP of
    millions of rows would hold the write lock for seconds while the gate waits to journal its decisions."""
    c = store.conn
    if not exists(c, table):
        return
    while True:
        with yielding(store):
            n = c.execute(f"DELETE FROM {table} WHERE credential IN (SELECT credential FROM {table} LIMIT {step})"
                          ).rowcount
        if n == 0:
            break
    with store.tx():
        c.execute(f"DROP TABLE IF EXISTS {table}")


@contextmanager
def yielding(store):
    """One transaction of a long series, then a pause as long as it held the write lock. SQLite's waiting
    writer (the gate journaling a decision) sleeps and retries; a series of transactions back to back would
    take the lock again each time before it retries, and starve it for seconds."""
    t0 = time.monotonic()
    with store.tx() as c:
        yield c
    time.sleep(time.monotonic() - t0)

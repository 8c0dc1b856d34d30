"""An import's records put in credential order, in a private file beside the gate's database.

A file in any order, written straight into the staging table, lands on a random page of it at each row:
every committed chunk then rewrites thousands of pages, and 5 million records take many minutes. Written
here instead (appended, no lock anyone else waits for, no journal) and sorted by SQLite's external sort
(bounded memory, spilling to this folder), they are then copied into the staging table in key order, a
chunk per transaction, each touching a few pages.
"""
from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from edge.store.staging import CREDENTIAL_COLUMNS, CREDENTIAL_VALUES, yielding

CACHE_KIB = 16 * 1024  # the page cache and each in-memory run of the sort: what this costs in RSS


class Sorted:
    """Rows (`Record.row()`) added in file order; read back by credential, a later line after an earlier."""

    def __init__(self, path: Path):
        self.path = path
        self.remove()
        self.conn = sqlite3.connect(path, isolation_level=None)
        for pragma in ("journal_mode=OFF", "synchronous=OFF", f"cache_size=-{CACHE_KIB}", "temp_store=FILE"):
            self.conn.execute(f"PRAGMA {pragma}")
        try:  # the sort's runs go beside the database, not to /tmp (a RAM disk on many controllers)
            self.conn.execute(f"PRAGMA temp_store_directory='{str(path.parent).replace(chr(39), chr(39) * 2)}'")
        except sqlite3.Error:
            pass  # an SQLite built without it sorts in its default folder
        self.conn.execute(f"CREATE TABLE raw(seq INTEGER NOT NULL, {CREDENTIAL_COLUMNS})")
        self.rows = 0
        self._seq = 0

    def add(self, rows: list[tuple]) -> None:
        first = self._seq
        self._seq += len(rows)
        self.conn.execute("BEGIN")
        self.conn.executemany(f"INSERT INTO raw(seq, {CREDENTIAL_COLUMNS}) VALUES(?,{CREDENTIAL_VALUES})",
                              ((first + i, *r) for i, r in enumerate(rows)))
        self.conn.execute("COMMIT")
        self.rows += len(rows)

    def sort(self) -> None:
        try:
            self.conn.execute("CREATE INDEX raw_order ON raw(credential, seq)")
        finally:
            self.close()

    def close(self) -> None:
        try:  # the folder is a setting of the whole process (SQLite's): back to its default
            self.conn.execute("PRAGMA temp_store_directory=''")
        except sqlite3.Error:
            pass
        self.conn.close()

    def remove(self) -> None:
        if hasattr(self, "conn"):
            self.close()
        for suffix in ("", "-journal"):
            try:
                os.unlink(f"{self.path}{suffix}")
            except FileNotFoundError:
                pass


def copy_sorted(store, sorted_: Sorted, into: str, chunk: int, advance) -> None:
    """The sorted rows into the staging table `into`, `chunk` rows per transaction of the gate's database, in
    key order; of several lines for one credential the last wins."""
    c = store.conn
    c.execute("ATTACH DATABASE ? AS sorted", (str(sorted_.path),))
    try:
        after = ""
        while True:
            bound = c.execute("SELECT credential FROM sorted.raw WHERE credential > ? ORDER BY credential"
                              " LIMIT 1 OFFSET ?", (after, chunk - 1)).fetchone()
            with yielding(store):
                # every line of the bound's credential in this chunk, in file order: the last one stays
                c.execute(f"INSERT OR REPLACE INTO {into}({CREDENTIAL_COLUMNS}) SELECT {CREDENTIAL_COLUMNS}"
                          " FROM sorted.raw WHERE credential > ?" + (" AND credential <= ?" if bound else "")
                          + " ORDER BY credential, seq", (after, bound[0]) if bound else (after,))
            advance(chunk)
            if bound is None:
                return
            after = bound[0]
    finally:
        c.execute("DETACH DATABASE sorted")

"""P29: which holders are private guests. A holder is private when any allow-list record of theirs says so; a pass
names its holder, so a private VIP's pass is private too. One probe of the holder index per holder asked about."""
from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable


def private_holders(conn: sqlite3.Connection, holders: Iterable[str | None]) -> set[str]:
    """The private ones among `holders` (any number: they go to SQLite as one JSON array)."""
    wanted = list(dict.fromkeys(h for h in holders if isinstance(h, str) and h))
    if not wanted:
        return set()
    return {r[0] for r in conn.execute(
        "SELECT DISTINCT holder FROM credentials WHERE holder IN (SELECT value FROM json_each(?)) AND private=1",
        (json.dumps(wanted),))}


def private_on_site(conn: sqlite3.Connection) -> list[str]:
    """The private guests on site now (presence), for a guard's muster alias to be resolved against."""
    return [r[0] for r in conn.execute(
        "SELECT DISTINCT p.holder FROM presence p JOIN credentials c ON c.holder = p.holder WHERE c.private=1")]

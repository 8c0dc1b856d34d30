"""Read-only questions the API asks of tables written elsewhere (the walk-in desk, the gate's presence)."""
from __future__ import annotations

import sqlite3


def recent_visit_ids(conn: sqlite3.Connection, limit: int) -> list[str]:
    """The visits registered at this gate, newest first (P13, P19)."""
    return [r[0] for r in conn.execute("SELECT id FROM visits ORDER BY created DESC LIMIT ?", (limit,))]


def people_on_site(conn: sqlite3.Connection) -> int:
    """P16: the muster count, every person of every party on site."""
    return conn.execute("SELECT coalesce(sum(party), 0) FROM presence").fetchone()[0]

"""Who a holder is: the name and company the guard's screens show where events and the muster carry only ids.

The gate's own records speak first: a walk-in registered here (P13) and a permit made here (P14) name the
person as the guard wrote it down at the desk, and are newer than anything synced; then the allow-list's
display name (SPEC §2 `name`), which has no company.
"""
from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable

MAX_HOLDERS = 200  # one API request's worth: a console names the people of a screenful of events at once

# Every list goes to SQLite as one JSON array, whatever its length (the muster can hold thousands): one query
# per source, each probing the holder index once per holder.
_WANTED = "holder IN (SELECT value FROM json_each(?))"
_SOURCES = (
    # a holder's newest visit or permit first (a later one may have corrected the company); a returned permit
    # still names its contractor
    f"SELECT holder, name, company, 'visitor' FROM visits WHERE {_WANTED} ORDER BY created DESC",
    f"SELECT holder, name, company, 'contractor' FROM permits WHERE {_WANTED} ORDER BY created DESC",
    # of a holder's several badges, one that carries a name
    f"SELECT holder, name, NULL, category FROM credentials WHERE {_WANTED} ORDER BY name IS NULL, credential",
)


def people(conn: sqlite3.Connection, holders: Iterable[str]) -> dict[str, dict]:
    """{holder: {"holder", "name", "company", "category"}} for each holder any source knows; unknown ones are
    left out. Any number of holders (bound them where they come from outside)."""
    found: dict[str, dict] = {}
    rest = list(dict.fromkeys(h for h in holders if h))
    for query in _SOURCES:
        if not rest:
            break
        for holder, name, company, category in conn.execute(query, (json.dumps(rest),)):
            if holder not in found:
                found[holder] = {"holder": holder, "name": name, "company": company, "category": category}
        rest = [h for h in rest if h not in found]
    return found

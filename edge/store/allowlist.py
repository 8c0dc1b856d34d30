"""The allow-list cache: badge lookups on the hot path, and whole-file imports."""
from __future__ import annotations

import json
from typing import Iterable

from pydantic import ValidationError

from edge.errors import GatekeeperError
from edge.core.model import Credential
from edge.store.records import AllowRecord, BlockEntry, RevokeRef, TrustedKey, problem
from edge.store.db import Store
from edge.store.staging import CREDENTIAL_COLUMNS, CREDENTIAL_VALUES

MAX_LINE = 64 * 1024

_LOOKUP = ("SELECT holder, category, tier, roles, areas, valid_from, valid_until, schedule, party, host, escort, id_hash,"
           " private, extended_access, temporary, pin_required FROM credentials WHERE credential=?")


def upsert_sql(table: str = "credentials") -> str:
    """Insert or replace a record row (`Record.row()`) into `table`: the cache, or a snapshot's staging."""
    return f"INSERT OR REPLACE INTO {table}({CREDENTIAL_COLUMNS}) VALUES({CREDENTIAL_VALUES})"


def key_row(k) -> tuple:
    return k.kid, k.public_key, None if k.scope is None else ",".join(k.scope)


def write_lists(c, now: float, *, upserts=(), deletes=(), revoke=(), block_add=(), block_remove=(), keys_add=(),
                keys_remove=(), into: str = "") -> None:
    """The one writer of the allow-list's tables, for an import, a batch and a snapshot (`into`: the prefix
    of their staging copies, "stage_" or "import_"). In the caller's transaction. `revoke`: refs;
    `block_add`: (kind, value, reason, action)."""
    p = into
    c.executemany(upsert_sql(p + "credentials"), upserts)
    c.executemany(f"DELETE FROM {p}credentials WHERE credential=?", [(d,) for d in deletes])
    if not p and upserts:  # P27: a batch sending a card's record again issues it again (a snapshot restates)
        c.executemany("DELETE FROM consumed WHERE visit=?", [(r[0],) for r in upserts if r[0].startswith("badge:")])
    if p:  # the swap stamps them
        c.executemany(f"INSERT OR IGNORE INTO {p}revocations(ref) VALUES(?)", [(r,) for r in revoke])
    else:
        c.executemany("INSERT OR IGNORE INTO revocations(ref, at) VALUES(?, ?)", [(r, now) for r in revoke])
    c.executemany(f"INSERT OR REPLACE INTO {p}blocklist(kind, value, reason, action) VALUES(?,?,?,?)", block_add)
    c.executemany(f"DELETE FROM {p}blocklist WHERE kind=? AND value=?", block_remove)
    c.executemany(f"INSERT OR REPLACE INTO {p}keys(kid, public_key, scope) VALUES(?,?,?)", [key_row(k) for k in keys_add])
    c.executemany(f"DELETE FROM {p}keys WHERE kid=?", [(k,) for k in keys_remove])
    if not p and (upserts or deletes):
        bump_generation(c)


def bump_generation(c) -> None:
    """The cache's credentials changed: an import building a copy beside them sees it, and builds again
    rather than swap in a copy that misses the change."""
    c.execute("INSERT INTO meta(key, value) VALUES('credentials_gen', '1')"
              " ON CONFLICT(key) DO UPDATE SET value=CAST(value AS INTEGER) + 1")


def generation(c) -> int:
    row = c.execute("SELECT value FROM meta WHERE key='credentials_gen'").fetchone()
    return int(row[0]) if row else 0


class ImportError_(GatekeeperError):
    """An import file with problems; nothing of it was applied."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def lookup_badge(store: Store, ref: str) -> Credential | None:
    """P2: a badge exists only if the allow-list knows it, or a permit made at this gate (P14) names it.
    The permit comes first: it is the newer word on a contractor's card (renewed here, not yet synced)."""
    permit = store.permits.get(ref)
    if permit is not None:
        return permit
    r = store.conn.execute(_LOOKUP, (ref,)).fetchone()
    if r is None:
        return None
    return Credential(
        kind="plate" if ref.startswith("plate:") else "badge", ref=ref, holder=r[0], category=r[1], tier=r[2],
        roles=frozenset(r[3].split(",")) if r[3] else frozenset(), areas=tuple(r[4].split(",")) if r[4] else (),
        valid_from=r[5], valid_until=r[6], schedule=r[7], party=r[8], host=r[9], escort=bool(r[10]), id_hash=r[11],
        private=bool(r[12]), extended_access=bool(r[13]), temporary=bool(r[14]),
        pin_required=bool(r[15]),
    )


def parse_lines(lines: Iterable[str], source: str = "input") -> list[tuple[str, object]]:
    """Validate every line first; raise ImportError_ naming each bad line, so nothing is half-applied."""
    items: list[tuple[str, object]] = []
    problems: list[str] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if len(line) > MAX_LINE:
            problems.append(f"{source}:{n}: line longer than {MAX_LINE} bytes")
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append(f"{source}:{n}: not JSON: {e.msg} at column {e.colno}")
            continue
        try:
            items.append(parse_item(obj))
        except (ValidationError, ValueError, TypeError) as e:
            problems.append(f"{source}:{n}: {explain(e)}")
    if problems:
        raise ImportError_(problems)
    return items


def parse_item(obj) -> tuple[str, object]:
    if not isinstance(obj, dict):
        raise ValueError("each line must be a JSON object")
    if set(obj) == {"revoke"}:
        ref = RevokeRef.model_validate(obj["revoke"])
        return "revoke", ref.ref()
    if set(obj) == {"blocklist"}:
        entry = BlockEntry.model_validate(obj["blocklist"])
        return "blocklist", entry.row()
    if set(obj) == {"key"}:
        key = TrustedKey.model_validate(obj["key"])
        from edge.passes.keys import load_public_pem  # validated here so a bad PEM fails the whole import
        load_public_pem(key.public_key.encode())
        return "key", key
    return "record", AllowRecord.model_validate(obj)


def explain(e: Exception) -> str:
    if isinstance(e, ValidationError):
        parts = []
        for err in e.errors():
            loc = ".".join(str(x) for x in err["loc"]) or "(record)"
            msg = "unknown field" if err["type"] == "extra_forbidden" else problem(err)
            parts.append(f"{loc}: {msg}")
        return "; ".join(parts)
    return str(e)


def apply_items(store: Store, items: list[tuple[str, object]], now: float) -> dict[str, int]:
    """Apply validated items in the caller's transaction; returns counts by kind."""
    by_kind: dict[str, list] = {"record": [], "revoke": [], "blocklist": [], "key": []}
    for kind, v in items:
        by_kind[kind].append(v)
    write_lists(store.conn, now, upserts=[r.row() for r in by_kind["record"]], revoke=by_kind["revoke"],
                block_add=by_kind["blocklist"], keys_add=by_kind["key"])
    counts = {k: len(v) for k, v in by_kind.items()}
    return counts

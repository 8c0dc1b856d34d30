"""Contractor permits made at the gate (P14), as the credentials the decision reads."""
from __future__ import annotations

import sqlite3

from edge.core.model import Credential

_ACTIVE = ("SELECT credential, holder, areas, valid_from, valid_until FROM permits"
           " WHERE returned IS NULL ORDER BY created")


def active_permits(conn: sqlite3.Connection) -> dict[str, Credential]:
    """Every card with a permit not yet returned; an expired one stays (it is refused as `expired`)."""
    return {
        ref: Credential(kind="badge", ref=ref, holder=holder, category="contractor", areas=tuple(areas.split(",")),
                        valid_from=vf, valid_until=vu)
        for ref, holder, areas, vf, vu in conn.execute(_ACTIVE)
    }

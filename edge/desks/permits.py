"""Contractor permits (P14): a supervisor makes, renews and takes back a contractor's card at the gate.

A permit is the gate's own record, not the allow-list's, so a snapshot from the central system never
removes it; each change is a `permit.changed` event carrying the allow-list record, which is how the
central system learns of it.
"""
from __future__ import annotations

import re
import secrets

from edge.config import GateConfig
from edge.store.records import BADGE_REF
from edge.store import dict_rows
from edge.store.journal import rfc3339
from edge.errors import Refused

BADGE = re.compile(BADGE_REF)


class PermitDesk:
    def __init__(self, cfg: GateConfig, gate):
        self.cfg = cfg
        self.gate = gate
        self.store = gate.store
        self.tree = set(cfg.areas.tree)

    def create(self, *, credential: str, holder: str, name: str, company: str, areas: list[str],
               valid_from: float | None, valid_until: float, deposit: float | None, by: str, now: float,
               role: str | None = "supervisor") -> dict:
        """P14: `by` is the supervisor (`role`: what their token says), journaled as the event's actor."""
        if not BADGE.match(credential):
            raise Refused(422, "credential", "a contractor's card: badge:<8-20 upper-case hex digits>",
                          reason="bad_card")
        for a in areas:
            if a not in self.tree:
                raise Refused(422, "areas", f"{a!r} is not an area of this site", reason="unknown_area")
        start = now if valid_from is None else valid_from
        if valid_until <= max(start, now):
            raise Refused(422, "valid_until", "must be in the future and after valid_from", reason="not_in_future")
        if credential in self.store.permits:
            raise Refused(409, "credential", "this card already has a permit: renew it or take it back first",
                          reason="card_has_permit")
        pid = "pm-" + secrets.token_hex(5)
        dep = self.cfg.permits.deposit if deposit is None else deposit
        with self.store.tx() as c:
            c.execute("INSERT INTO permits(id, credential, holder, name, company, areas, valid_from, valid_until,"
                      " deposit, currency, created, created_by) VALUES(?,?,?,?,?,?,?,?,?,?,?,?)",
                      (pid, credential, holder, name, company, ",".join(areas), start, valid_until, dep,
                       self.cfg.permits.currency, now, by))
            self.store.unrevoke_locally(credential)  # a card handed out again
            self._changed(pid, "created", by, role, now)
        return self.get(pid)

    def renew(self, pid: str, valid_until: float, reason: str, by: str, now: float,
              role: str | None = "supervisor") -> dict:
        """P14: renewal extends validity; an expired permit is void until this."""
        self._active(pid)
        current = self.store.conn.execute("SELECT valid_until FROM permits WHERE id=?", (pid,)).fetchone()[0]
        if valid_until <= max(current, now):
            raise Refused(422, "valid_until", "a renewal must end later than the permit does now, and in the future",
                          reason="renewal_not_later")
        with self.store.tx() as c:
            c.execute("UPDATE permits SET valid_until=? WHERE id=?", (valid_until, pid))
            self._changed(pid, "renewed", by, role, now, reason=reason)
        return self.get(pid)

    def take_back(self, pid: str, refunded: float | None, by: str, now: float,
                  role: str | None = "supervisor") -> dict:
        """P14: the card comes back, the deposit is refunded (all of it unless said otherwise)."""
        p = self._active(pid)
        amount = p["deposit"] if refunded is None else refunded
        if amount > p["deposit"]:
            raise Refused(422, "refunded", f"more than the deposit of {p['deposit']} {p['currency']}",
                          reason="refund_over_deposit")
        with self.store.tx() as c:
            c.execute("UPDATE permits SET returned=?, refunded=?, returned_by=? WHERE id=?", (now, amount, by, pid))
            # the card opens nothing more, even if the allow-list still lists it
            self.store.revoke_locally(p["credential"], now, by)
            self._changed(pid, "returned", by, role, now)
        return self.get(pid)

    def _active(self, pid: str) -> dict:
        p = self.get(pid)
        if p is None:
            raise Refused(404, None, f"no permit {pid!r}", reason="no_such_permit")
        if p["returned"] is not None:
            raise Refused(409, None, "the card was returned: make a new permit", reason="permit_returned")
        return p

    def _changed(self, pid: str, action: str, by: str, role: str | None, now: float, **extra) -> None:
        self.store.permits_changed()  # the decision reads the active permits from memory
        p = self.get(pid)
        record = {"credential": p["credential"], "holder": p["holder"], "category": "contractor", "tier": None,
                  "roles": [], "areas": p["areas"], "valid_from": p["valid_from"], "valid_until": p["valid_until"],
                  "schedule": None, "party": 1, "host": None, "escort": False, "id_hash": None, "name": p["name"]}
        self.gate.journal.append("permit.changed", {
            "permit": pid, "action": action, "credential_ref": p["credential"], "holder": p["holder"],
            "deposit": p["deposit"], "currency": p["currency"], "refunded": p["refunded"], "actor": by,
            "actor_role": role, "record": record, **extra}, now)

    def get(self, pid: str) -> dict | None:
        rows = dict_rows(self.store.conn.execute("SELECT * FROM permits WHERE id=?", (pid,)))
        return _view(rows[0]) if rows else None

    def listing(self, include_returned: bool = False) -> list[dict]:
        cur = self.store.conn.execute("SELECT * FROM permits" + ("" if include_returned else " WHERE returned IS NULL")
                                      + " ORDER BY created DESC LIMIT 500")
        return [_view(r) for r in dict_rows(cur)]


def _view(r: dict) -> dict:
    t = lambda v: rfc3339(v) if v is not None else None  # noqa: E731
    return {"permit": r["id"], "credential": r["credential"], "holder": r["holder"], "name": r["name"],
            "company": r["company"], "areas": r["areas"].split(","), "valid_from": t(r["valid_from"]),
            "valid_until": t(r["valid_until"]), "deposit": r["deposit"],
            "currency": r["currency"], "created": t(r["created"]), "created_by": r["created_by"],
            "returned": t(r["returned"]), "refunded": r["refunded"], "returned_by": r["returned_by"]}

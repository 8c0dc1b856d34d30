"""Walk-in visitors registered at the gate (P13) and supervisors' area amendments (P4).

The gate signs their passes with its own key, which may sign `visitor` passes only (SPEC §3); every
gate of the site trusts it through the retained `acs/{site}/{gate}/key` message. The ID document
number never leaves this module: it becomes `id_hash` (the site's HMAC, SPEC §2) and its last 4.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from datetime import datetime, time, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.core.areas import is_within
from edge.config import ConfigError, GateConfig, resolve
from edge.errors import Refused
from edge.passes.codec import issue_pass
from edge.passes.keys import load_private_pem, new_private_key, public_pem
from edge.core.policy import hours_today
from edge.store import dict_rows
from edge.store.journal import rfc3339

log = logging.getLogger(__name__)

_ID_CLEAN = re.compile(r"[\s-]")


def id_hash(secret: bytes, number: str) -> str:
    """SPEC §2: HMAC-SHA256 of the ID number, upper-cased, spaces and dashes removed, lowercase hex."""
    return hmac.new(secret, _ID_CLEAN.sub("", number).upper().encode(), hashlib.sha256).hexdigest()


def load_or_make_key(path: Path) -> Ed25519PrivateKey:
    """The gate's signing key; made on first start, 0600 from the moment it exists, never overwritten."""
    try:
        return load_private_pem(path.read_bytes())
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = new_private_key(path)
    log.info("made the gate's walk-in signing key %s", path)
    return key


class Desk:
    """Registers walk-ins and amends their areas. Runs on the daemon's loop; writes through the gate."""

    def __init__(self, cfg: GateConfig, base: Path, gate):
        assert cfg.walkin is not None
        w = cfg.walkin
        self.cfg = cfg
        self.gate = gate
        self.store = gate.store
        self.kid = w.kid or f"{cfg.site.gate}-w"[:16]
        key_path = resolve(base, w.signing_key_file) if w.signing_key_file else \
            resolve(base, cfg.storage.path).parent / "walkin.key"
        try:
            self.key = load_or_make_key(key_path)
            self.secret = resolve(base, w.id_secret_file).read_bytes().strip()
        except (OSError, ValueError) as e:  # a damaged key file or a secret gone since the check: say which
            raise ConfigError([f"walkin: {key_path} or {w.id_secret_file}: {e}"]) from None
        self.public_pem = public_pem(self.key.public_key()).decode()
        self.max_party = w.max_party
        self.tree = set(cfg.areas.tree)

    @property
    def public_key(self):
        return self.key.public_key()

    # -- P13 ------------------------------------------------------------------------------------------
    def register(self, *, name: str, company: str, id_number: str, purpose: str, host: str,
                 host_confirmation: str, areas: list[str] | None, party: int, guard: str, now: float,
                 repeat: bool = False, role: str | None = "guard") -> dict:
        idh = id_hash(self.secret, id_number)
        self.store.refresh()  # a blocklist imported by another process since the last scan counts too
        if idh[:16] in self.store.blocked_idh:  # P6: refused, and the guards are told at once
            self.gate.record("alarm.raised", {"alarm": "blocklisted", "priority": "high", "id_hash": idh,
                                              "at": "walk-in registration", "actor": guard,
                                              "actor_role": role}, now)
            raise Refused(403, "visitor.id_number", "this ID document is blocklisted: do not admit, call the supervisor",
                          reason="blocklisted")
        if idh[:16] in self.store.watched_idh:  # P37: registered as usual, and the guards are told at once
            self.gate.record("alarm.raised", {"alarm": "watchlist", "priority": "high", "id_hash": idh,
                                              "reason": self.store.watched_idh[idh[:16]], "at": "walk-in registration",
                                              "actor": guard, "actor_role": role}, now)
        earlier = self._registered_today(idh, now)
        if earlier is not None and not repeat:
            # one visitor, two passes: usually a guard who did not see the first registration
            first, at = earlier
            tz = self.gate.settings.tz
            raise Refused(409, "visitor.id_number", f"this ID document was registered here today already: visit "
                          f"{first} at {datetime.fromtimestamp(at, tz):%H:%M} ({self.cfg.site.timezone}); send "
                          "repeat: true to register it again", reason="already_registered_today")
        if party > self.max_party:
            raise Refused(422, "party", f"at most {self.max_party} people on one walk-in pass",
                          reason="party_too_large")
        until = self._visiting_hours_end(now)
        allowed = self._host_areas(host, now)
        if areas:
            for a in areas:
                if a not in self.tree:
                    raise Refused(422, "areas", f"{a!r} is not an area of this site", reason="unknown_area")
                if not any(is_within(a, b) for b in allowed):
                    raise Refused(422, "areas", f"{a!r} is beyond what the host may receive visitors in "
                                  f"({', '.join(allowed)}): only a supervisor widens a visit",
                                  reason="area_beyond_host")
            allowed = list(dict.fromkeys(areas))
        cti = secrets.token_bytes(8)
        visit = cti.hex()
        holder = "v-" + secrets.token_hex(4)
        text = self._sign(holder, allowed, now, until, party, host, idh, cti, None)
        with self.store.tx() as c:
            c.execute("INSERT INTO visits(id, holder, pass, pass_ref, name, company, purpose, host, host_confirmation,"
                      " id_hash, id_last4, areas, party, valid_from, valid_until, guard, created)"
                      " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                      (visit, holder, text, "pass:" + visit, name, company, purpose, host, host_confirmation, idh,
                       _ID_CLEAN.sub("", id_number)[-4:].upper(), ",".join(allowed), party, now, until, guard, now))
            self.gate.journal.append("visit.checked_in", {
                "visit": visit, "holder": holder, "name": name, "company": company, "purpose": purpose,
                "host": host, "host_confirmation": host_confirmation, "actor": guard, "actor_role": role,
                "areas": allowed, "party": party, "valid_from": rfc3339(now), "valid_until": rfc3339(until),
                "id_hash": idh, "credential_ref": "pass:" + visit, "kid": self.kid,
                **({"repeat": True} if repeat else {})}, now)
        return self.visit(visit)

    def _registered_today(self, idh: str, now: float) -> tuple[str, float] | None:
        """The latest visit of this ID document registered here on the site's local day of `now`."""
        tz = self.gate.settings.tz
        day = datetime.fromtimestamp(now, tz).date()
        start = datetime.combine(day, time(0), tz).timestamp()
        end = datetime.combine(day + timedelta(days=1), time(0), tz).timestamp()
        row = self.store.conn.execute("SELECT id, created FROM visits WHERE id_hash=? AND created >= ? AND created < ?"
                                      " ORDER BY created DESC LIMIT 1", (idh, start, end)).fetchone()
        return (row[0], row[1]) if row else None

    def _host_areas(self, host: str, now: float) -> list[str]:
        """The host is allow-listed staff, valid now. A frontline (workshop) host receives visitors in the
        guard room only; any other host in their own areas, plus the lobby."""
        rows = self.store.conn.execute(
            "SELECT roles, areas, valid_from, valid_until FROM credentials WHERE holder=? AND category='staff'",
            (host,)).fetchall()
        rows = [r for r in rows if (r[2] is None or r[2] <= now) and (r[3] is None or now < r[3])]
        if not rows or host in self.store.blocked_holders:
            raise Refused(422, "host", f"{host!r} is not a staff member on this gate's allow-list",
                          reason="host_not_staff")
        roles = {x for r in rows for x in (r[0] or "").split(",") if x}
        p = self.cfg.policy
        if "frontline" in roles:
            if p.guard_room is None:
                raise Refused(409, "host", "the host works in production: set policy.guard_room to receive visitors",
                              reason="host_needs_guard_room")
            return [p.guard_room]
        areas = list(dict.fromkeys(a for r in rows for a in (r[1] or "").split(",") if a))
        if p.lobby and not any(is_within(p.lobby, a) for a in areas):
            areas.append(p.lobby)
        if not areas:
            raise Refused(409, "host", "the host has no areas and no lobby is configured (policy.lobby)",
                          reason="host_has_no_areas")
        return areas

    def _visiting_hours_end(self, now: float) -> float:
        """P13: no registration outside visiting hours; a pass ends with today's."""
        s = self.gate.settings
        _, start, end = s.schedules["visiting_hours"]
        today = hours_today("visiting_hours", now, s)  # P24: a holiday's hours, or closed
        if today is not None:
            start, end = today
        local = datetime.fromtimestamp(now, s.tz)
        if today is None or not start <= local.hour * 60 + local.minute < end:
            raise Refused(409, None, f"outside visiting hours ({start // 60:02d}:{start % 60:02d}-"
                          f"{end // 60:02d}:{end % 60:02d}, {self.cfg.site.timezone}"
                          f"{'' if today else ', closed today'}): no walk-in registration",
                          reason="outside_visiting_hours")
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        return (midnight + timedelta(minutes=end)).timestamp()

    def _sign(self, holder, areas, now, until, party, host, idh, cti, visit) -> str:
        return issue_pass(self.key, self.kid, holder=holder, category="visitor", areas=areas, valid_from=int(now),
                          valid_until=int(until), party=party, host=host, idh=idh[:16], visit=visit,
                          issuer=f"{self.cfg.site.id}/{self.cfg.site.gate}", issued_at=int(now), cti=cti)

    # -- P4 --------------------------------------------------------------------------------------------
    def amend(self, visit: str, areas: list[str], reason: str, by: str, now: float,
              role: str | None = "supervisor") -> dict:
        """A supervisor changes a visit's areas: a new pass for the same visit; the old one is revoked."""
        row = self._row(visit)
        if row is None:
            raise Refused(404, None, f"no visit {visit!r} registered at this gate", reason="no_such_visit")
        self.store.refresh()
        if row["exited"] is not None or visit in self.store.consumed:
            raise Refused(409, None, "the visit has ended", reason="visit_ended")
        for a in areas:
            if a not in self.tree:
                raise Refused(422, "areas", f"{a!r} is not an area of this site", reason="unknown_area")
        areas = list(dict.fromkeys(areas))
        cti = secrets.token_bytes(8)
        text = self._sign(row["holder"], areas, now, row["valid_until"], row["party"], row["host"], row["id_hash"],
                          cti, visit)
        old_ref, new_ref = row["pass_ref"], "pass:" + cti.hex()
        with self.store.tx() as c:
            c.execute("UPDATE visits SET pass=?, pass_ref=?, areas=? WHERE id=?", (text, new_ref, ",".join(areas), visit))
            self.store.revoke_locally(old_ref, now, by)
            self.gate.journal.append("visit.amended", {
                "visit": visit, "holder": row["holder"], "areas": areas, "previous_areas": row["areas"],
                "credential_ref": new_ref, "revoked": old_ref, "actor": by, "actor_role": role,
                "reason": reason}, now)
        return self.visit(visit)

    # -- reading ---------------------------------------------------------------------------------------
    def _row(self, visit: str) -> dict | None:
        rows = dict_rows(self.store.conn.execute("SELECT * FROM visits WHERE id=?", (visit,)))
        if not rows:
            return None
        row = rows[0]
        row["areas"] = row["areas"].split(",")
        return row

    def visit(self, visit: str) -> dict | None:
        """P19: the visit record (entry and exit times, host, guard) and its current pass."""
        r = self._row(visit)
        if r is None:
            return None
        t = lambda v: rfc3339(v) if v is not None else None  # noqa: E731
        return {
            "visit": r["id"], "holder": r["holder"], "name": r["name"], "company": r["company"],
            "purpose": r["purpose"], "host": r["host"], "host_confirmation": r["host_confirmation"],
            "id_last4": r["id_last4"], "areas": r["areas"], "party": r["party"], "guard": r["guard"],
            "valid_from": t(r["valid_from"]), "valid_until": t(r["valid_until"]), "registered": t(r["created"]),
            "entered": t(r["entered"]), "exited": t(r["exited"]), "pass": r["pass"],
            "credential_ref": r["pass_ref"], "signed_off": r["id"] in self.store.signoffs,
            "checked_out": r["id"] in self.store.consumed,
        }

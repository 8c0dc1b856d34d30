"""What a decision leaves: the outcome of one scan, the consequences it holds in memory, a lane's pending
grant, and the journal data that says what happened."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Iterable
from zoneinfo import ZoneInfo

from edge.core.areas import parent_of
from edge.core.calendar import day_map, schedule_days
from edge.config import GateConfig
from edge.config.sections import SITE_CALENDAR
from edge.core.model import Credential, Decision, Direction, DoorView, Rejected, Settings
from edge.store.journal import Entry


@dataclass(slots=True)
class Pending:
    """A grant at a turnstile lane, waiting for its passages."""
    cred: Credential
    door: DoorView
    admits: int
    deadline: float
    walked: int = 0


@dataclass(frozen=True, slots=True)
class Effects:
    """What a decision changed in memory that its journal entries must say too."""
    released: bool = False  # a held exit of the same visit ended by this grant (P9)
    escorted: tuple["Outcome", ...] = ()  # people admitted with this grant: escorted by it (P10), its pair (P33)


@dataclass(frozen=True, slots=True)
class Outcome:
    reader: str
    door: DoorView
    cred: Credential | Rejected
    decision: Decision
    decision_us: int
    entries: tuple[Entry, ...] = ()

    @property
    def opens(self) -> bool:
        """Only a grant drives a lock (P9: a held exit does not)."""
        return self.decision.granted


def settings_from(cfg: GateConfig, synced: Iterable[tuple[str, str, str | None]] = ()) -> Settings:
    """The config's policy in the form the decision reads; `synced`: the allow-list sync's calendar days
    (date, kind, as), under the config's own for the `site` calendar (P24)."""
    return Settings(
        skew_s=cfg.policy.clock_skew_s, tz=ZoneInfo(cfg.site.timezone), schedules=cfg.schedule_windows(),
        exit_signoff_required=cfg.policy.exit_signoff_required, escort_window_s=cfg.policy.escort_window_s,
        escort_max=cfg.policy.escort_max, exit_signoff=frozenset(cfg.policy.exit_signoff),
        two_person_window_s=cfg.policy.two_person_window_s,
        calendar_days=calendar_days(cfg, synced), holiday_hours=cfg.holiday_hours(),
    )


def calendar_days(cfg: GateConfig, synced: Iterable[tuple[str, str, str | None]] = ()) -> dict[str, dict[int, int]]:
    """P24: each schedule's day map, made once (at start, a reload, a synced calendar change), not per scan."""
    synced = list(synced)
    maps = {name: day_map(synced if name == SITE_CALENDAR else (), (d.entry() for d in c.days))
            for name, c in cfg.calendars.items()}
    maps.setdefault(SITE_CALENDAR, day_map(synced))
    return schedule_days(maps, cfg.schedule_calendars())


def pass_credential(c) -> Credential:
    """A verified pass's claims as a credential (SPEC §3 names → allow-list names)."""
    return Credential(
        kind="pass", ref="pass:" + c.cti_hex, holder=c.sub, category=c.cat, areas=c.areas,
        valid_from=float(c.nbf), valid_until=float(c.exp), tier=c.tier, schedule=c.sch, party=c.party,
        host=c.host, escort=c.esc, id_hash=c.idh, visit=c.vis,
    )


def access_data(out: Outcome) -> dict:
    cred, door, d = out.cred, out.door, out.decision
    base = {
        "door": door.name, "direction": door.direction.value, "reader": out.reader, "area": door.area,
        "reason": d.reason, "flags": list(d.flags), "decision_us": out.decision_us,
    }
    if isinstance(cred, Credential):
        base.update(credential_kind=cred.kind, credential_ref=cred.ref, holder=cred.holder,
                    category=cred.category, tier=cred.tier, party=cred.party)
        # where presence goes, so peers can follow it (P7); a timed door records none (P31)
        if d.granted and not door.passages and door.tracks_presence:
            base["to_area"] = destination(door)
        if d.escort_by:
            base["escort_by"] = d.escort_by
        if d.partner:  # P33: the other of the pair admitted with one opening
            base["partner_ref"] = d.partner
    else:
        base.update(credential_kind=cred.kind, credential_ref=cred.ref, holder=None, category=None, tier=None, party=None)
    return base

def destination(door: DoorView) -> str | None:
    """The area a grant at this door leads to; None is off site."""
    if door.direction is Direction.IN:
        return door.area
    return None if door.perimeter else parent_of(door.area)


def cred_json(cred: Credential) -> str:
    d = asdict(cred)
    d["roles"] = sorted(cred.roles)
    return json.dumps(d, separators=(",", ":"))


def cred_from_json(text: str) -> Credential:
    d = json.loads(text)
    return Credential(**{**d, "areas": tuple(d["areas"]), "roles": frozenset(d["roles"])})

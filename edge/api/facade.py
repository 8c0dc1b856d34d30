"""What the local API sees of the gate (SPEC §4): its state, doors, modes, held exits and desks, as typed calls.

The daemon builds one from its parts. The API serves in a process of its own (edge/api/host.py): its routes
reach these calls by name, over a socket, and each runs here on the gate's loop, so the API never races the
gate for its database connection or its state, and nothing of it runs SQL of its own.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from edge.api.tokens import Tokens
from edge.hardware.devices import Health
from edge.core import cards
from edge.core.cards import CARD_HELD
from edge.core.metrics import Counts, Gauge
from edge.core.model import Mode
from edge.store.journal import Entry, rfc3339
from edge.api.private import ALIAS_PREFIX, Aliases, entry_holders, hidden, redact_data, redact_entries
from edge.store.people import MAX_HOLDERS, people
from edge.store.private import private_holders, private_on_site
from edge.store.reads import people_on_site, recent_visit_ids

if TYPE_CHECKING:
    from edge.config import GateConfig
    from edge.hardware.devices import DeviceBoard
    from edge.core.gate import Gate
    from edge.link.central import CentralLink
    from edge.desks.permits import PermitDesk
    from edge.desks.walkin import Desk
    from edge.desks.tours import Tours

OpenDoor = Callable[..., Awaitable[bool]]  # the daemon's open_door(door, direction, cause=...)

# P34: events a guard never sees (GET /events gives them to a supervisor; the live stream, to nobody)
SUPERVISOR_ONLY = frozenset({"alarm.duress"})
DURESS_READERS = frozenset({"supervisor", "central"})


@dataclass(frozen=True, slots=True)
class SiteInfo:
    site: str
    gate: str
    doors: list[str]
    walkin: bool  # walk-in registration is set up ([walkin] in the config)


@dataclass(frozen=True, slots=True)
class ClockState:
    valid: bool  # P3: plausible, and within a day of the central system's time when that is known
    sync: str  # synced | unsynced | unknown (timedatectl, else the kernel's adjtimex status)
    source: str | None
    offset_s: float | None  # NTP's remaining correction
    est_error_s: float | None  # the kernel's estimated error
    central_offset_s: float | None  # ahead (+) or behind (-) the central system's time, from its heartbeat


@dataclass(frozen=True, slots=True)
class Readiness:
    status: str  # ok | degraded
    mode: str
    database: str
    devices_down: list[str]
    clock: ClockState


@dataclass(frozen=True, slots=True)
class Status:
    mode: str
    mode_scope: str
    devices: dict[str, str]
    allowlist_version: int
    outbox_depth: int | None  # None without a central link
    fail_modes: dict[str, str]
    fire_input: bool
    held_exits: int
    last_seq: int
    # a snapshot being staged (SPEC §2): version, chunks_received, chunks, records, started; None when none is
    allowlist_snapshot: dict | None = None
    timezone: str = "UTC"  # the site's IANA zone (site.timezone): the console shows times in it


@dataclass(frozen=True, slots=True)
class Occupancy:
    mode: str
    count: int  # everybody on site, parties counted whole
    people: list[dict]  # each with `safe`: null, or {"by", "at"} once a guard marked them safe (P16)
    unaccounted: int  # on site and not marked safe, parties counted whole
    areas: list[dict] = field(default_factory=list)  # P35: each limited area's count, reserved places and limit


@dataclass(frozen=True, slots=True)
class HeldExit:
    visit: str
    holder: str | None
    host: str | None
    party: int
    door: str
    reader: str
    credential_ref: str
    since: str
    name: str | None = None  # who the holder is (GateServices.people); None when no record names them
    company: str | None = None
    private: bool = False  # P29: a private guest, shown to a guard without who it is
    reason: str = "host_signoff_missing"  # why it is held: P9 sign-off, or P27 `card_return_required`
    collector: bool = False  # P27: the door's collector takes the card; no guard needs to


@dataclass(frozen=True, slots=True)
class Released:
    visit: str
    door: str
    opened: bool


@dataclass(frozen=True, slots=True)
class CardReturned:
    credential_ref: str
    door: str
    opened: bool


@dataclass(frozen=True, slots=True)
class ModeChange:
    mode: str
    changed: bool


class GateServices:
    """The gate as the API may use it: reads, the P9/P15/P16/P20 actions, and the front desks."""

    def __init__(self, *, cfg: GateConfig, gate: Gate, board: DeviceBoard, link: CentralLink | None,
                 desk: Desk | None, permits: PermitDesk, open_door: OpenDoor, stop: asyncio.Event,
                 tours: Tours | None = None):
        self._gate, self._store, self._board, self._link = gate, gate.store, board, link
        self._open_door, self._stop = open_door, stop
        self.desk = desk  # P13, P4: None when walk-ins are not set up here
        self.permits = permits  # P14
        self.tours = tours  # P21
        self.tokens = Tokens(gate.store)
        self.site = SiteInfo(cfg.site.id, cfg.site.gate, [d.name for d in cfg.doors], desk is not None)
        self.source = cfg.event_source()  # the events' CloudEvents source, as over MQTT
        self._fail_modes = {d.name: d.fail_mode for d in cfg.doors}
        self._timezone = cfg.site.timezone
        self._aliases = Aliases()  # P29: how a guard's muster names a private guest

    # -- reading ------------------------------------------------------------------------------------
    def now(self) -> float:
        return self._gate.clock()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def health(self) -> Readiness:
        """Degraded while a device is down, the database holds writes back (SPEC §6) or the clock is
        implausible (P3)."""
        held = len(self._gate.holdback.held)
        down = sorted(n for n, h in self._board.health.items() if h is Health.DOWN)
        clock = self.clock()
        return Readiness("degraded" if held or down or not clock.valid else "ok", self._gate.mode.value,
                         f"holding {held} writes" if held else "writable", down, clock)

    def clock(self) -> ClockState:
        """P3: the clock as the gate sees it, with the machine's time sync as last read."""
        g = self._gate
        now = g.clock()
        sync = g.clock_sync
        off = g.central_clock.offset(now)
        return ClockState(g.clock_valid(now), sync.state if sync else "unknown", sync.source if sync else None,
                          sync.offset_s if sync else None, sync.est_error_s if sync else None,
                          None if off is None else round(off, 3))

    def status(self) -> Status:
        g = self._gate
        return Status(g.mode.value, g.modes.state.scope, {n: h.value for n, h in self._board.health.items()},
                      int(self._store.meta("allowlist_version", "0")),
                      self._link.outbox.depth if self._link else None, self._fail_modes,
                      bool(g.modes.fire_input), len(g.held_exits), g.journal.last_seq(),
                      self._link.sync.snapshot if self._link and self._link.sync else None, self._timezone)

    def occupancy(self, role: str | None = None) -> Occupancy:
        """P16: the muster list, each person with their name and company when a record has them (the
        retained muster over MQTT goes without: the central system knows names), and whether a guard saw them
        safe at the assembly point. A guard sees a private guest (P29) as one, with their area, by an alias."""
        present = self._gate.muster()
        known = people(self._store.conn, [p["holder"] for p in present])
        private = private_holders(self._store.conn, [p["holder"] for p in present])
        safe = self._gate.accounted()
        for p in present:
            who = known.get(p["holder"], {})
            p["name"], p["company"] = who.get("name"), who.get("company")
            p["safe"] = safe.get(p["holder"])
            p["private"] = p["holder"] in private
            if p["private"] and hidden(role):
                p["holder"], p["name"], p["company"] = self._aliases.of(p["holder"]), None, None
        return Occupancy(self._gate.mode.value, sum(p["party"] for p in present), present,
                         sum(p["party"] for p in present if p["safe"] is None), self._gate.occupancy.areas())

    def correct_occupancy(self, area: str, count: int, person: str, role: str, reason: str) -> dict:
        """P35: a supervisor sets a limited area's count, journaled (edge.errors.Refused: 404 for an area
        without a limit)."""
        return self._gate.correct_occupancy(area, count, person, role, reason)

    def alarms(self, role: str | None = None) -> list[dict]:
        """P17, P18: the alarms nobody has acknowledged yet, newest first (at most 100); a private guest's
        without who it was, for a guard (P29)."""
        listed = self._gate.alarms.open()
        if hidden(role):
            private = private_holders(self._store.conn, [a["data"].get("holder") for a in listed])
            for a in listed:
                if a["data"].get("holder") in private:
                    a["data"] = redact_data(a["data"])
        return listed

    def acknowledge_alarm(self, seq: int, person: str, role: str, note: str | None) -> dict:
        """P19: a guard acknowledged an alarm, journaled with who (edge.errors.Refused when it is none or
        was acknowledged already)."""
        return self._gate.alarms.acknowledge(seq, person, role, note, self._gate.clock())

    def mark_safe(self, holder: str, person: str, role: str, reason: str | None) -> dict:
        """P16: a guard saw a person on site at the assembly point (edge.errors.Refused outside a muster or
        for someone not on site). A guard names a private guest by the muster's alias (P29)."""
        if holder.startswith(ALIAS_PREFIX):
            real = self._aliases.resolve(holder, private_on_site(self._store.conn))
            if real is not None:
                marked = self._gate.mark_safe(real, person, role, reason)
                return {**marked, "holder": holder} if hidden(role) else marked
        return self._gate.mark_safe(holder, person, role, reason)

    def held_exits(self, role: str | None = None) -> list[HeldExit]:
        """P9: visitors waiting at an exit for their host's sign-off, by name when a record has it; a private
        guest as one, for a guard (P29)."""
        at, held = self._gate.held_at, self._gate.held_exits
        holders = [cred.holder for _, cred, _ in held.values()]
        known = people(self._store.conn, holders)
        private = private_holders(self._store.conn, holders)
        out = []
        for v, (reader, cred, door) in held.items():
            why = {"reason": CARD_HELD, "collector": door.collector} if v in self._gate.card_held else {}  # P27
            if cred.holder in private and hidden(role):
                out.append(HeldExit(v, None, None, cred.party, door.name, reader, "", rfc3339(at.get(v, 0)),
                                    private=True, **why))
            else:
                out.append(HeldExit(v, cred.holder, cred.host, cred.party, door.name, reader, cred.ref,
                                    rfc3339(at.get(v, 0)), *_name_company(known.get(cred.holder)),
                                    private=cred.holder in private, **why))
        return out

    def people(self, holders: list[str], role: str | None = None) -> dict[str, dict]:
        """Who each holder is: {holder: {"holder", "name", "company", "category"}}, from the walk-ins
        registered here, then the permits made here, then the allow-list; unknown holders are left out. For
        the console's live feed, whose events carry holder ids only. At most MAX_HOLDERS a call: the API
        process is not trusted to bound what it asks of the gate's loop."""
        if not isinstance(holders, list) or not 1 <= len(holders) <= MAX_HOLDERS \
                or not all(isinstance(h, str) and 1 <= len(h) <= 64 for h in holders):
            raise ValueError(f"1 to {MAX_HOLDERS} holder ids of 1 to 64 characters")
        found = people(self._store.conn, holders)
        for h in private_holders(self._store.conn, holders):  # P29
            who = found.setdefault(h, {"holder": h, "name": None, "company": None, "category": None})
            who["private"] = True
            if hidden(role):
                who["name"] = who["company"] = None
        return found

    def overstays(self, role: str | None = None) -> list[dict]:
        """P36: visitors and contractors this gate let in who are still on site past the end of their pass or
        permit; a private guest without who it was, for a guard (P29)."""
        listed = self._gate.overstays.listed()
        if hidden(role):
            private = private_holders(self._store.conn, [o["holder"] for o in listed])
            listed = [redact_data(o) if o["holder"] in private else o for o in listed]
        return listed

    def recent_visit_ids(self, limit: int) -> list[str]:
        """The walk-ins registered here, newest first."""
        return recent_visit_ids(self._store.conn, limit)

    def metrics(self) -> tuple[Counts, list[Gauge]]:
        """The gate's counters and the gauges read now (the API process makes the text: edge/core/metrics.py)."""
        return self._gate.metrics.snapshot(), self._gauges()

    def _gauges(self) -> list[Gauge]:
        g, health = self._gate, self._board.health
        return [
            ("gatekeeper_device_up", "gauge",
             "1 when the device answers, 0 when it is down (unsupervised devices are left out).",
             [({"device": n}, 1.0 if h is Health.UP else 0.0) for n, h in sorted(health.items())
              if h is not Health.UNSUPERVISED]),
            ("gatekeeper_outbox_depth", "gauge", "Journal events not yet acknowledged by the broker.",
             [({}, float(self._link.outbox.depth))] if self._link else []),
            ("gatekeeper_mode", "gauge", "The gate's mode: 1 for the current one.",
             [({"mode": m.value}, 1.0 if g.mode is m else 0.0) for m in Mode]),
            ("gatekeeper_journal_seq", "gauge", "The last committed event's seq.",
             [({}, float(g.journal.last_seq()))]),
            ("gatekeeper_held_exits", "gauge", "Exits held for a host's sign-off (P9) or a visitor card (P27).",
             [({}, float(len(g.held_exits)))]),
            ("gatekeeper_held_vehicles", "gauge", "Vehicles held at a barrier for the guard (P26).",
             [({}, float(len(g.held_vehicles)))]),
            ("gatekeeper_on_site", "gauge", "People on site (the muster count).",
             [({}, float(people_on_site(self._store.conn)))]),
            *_occupancy_gauges(g.occupancy.areas()),  # P35
            *_clock_gauges(self.clock()),
        ]

    # -- the journal --------------------------------------------------------------------------------
    def events(self, after_seq: int, limit: int, role: str | None = None, duress: bool = False) -> list[Entry]:
        """A page of the journal; for a guard, the events about a private guest without who it was (P29).
        P34: `alarm.duress` only with `duress` (a page asked for, never the live feed) for a supervisor."""
        page = list(self._gate.journal.entries(after_seq, limit))
        if not (duress and role in DURESS_READERS):
            page = [e for e in page if e.type not in SUPERVISOR_ONLY]
        if not hidden(role):
            return page
        return redact_entries(page, private_holders(self._store.conn, entry_holders(page)))

    def last_seq(self) -> int:
        return self._gate.journal.last_seq()

    @property
    def epoch(self) -> str:
        return self._store.epoch

    def on_append(self, fn: Callable[[], None]) -> Callable[[], None]:
        """fn() at each commit of a journal entry by this process (another's is not heard); the call that
        stops it."""
        self._store.journal_listeners.append(fn)
        return lambda: self._store.journal_listeners.remove(fn)

    # -- actions ------------------------------------------------------------------------------------
    def has_door(self, door: str) -> bool:
        return door in self._fail_modes

    async def override(self, door: str, person: str, role: str, reason: str) -> bool:
        """P20: journaled with the person and the reason, then the door opened once; whether it opened."""
        self._gate.record("override.opened", {"door": door, "actor": person, "actor_role": role,
                                                "reason": reason})
        self._gate.interlock_override(door, person, role)  # P32: opens all the same, and says so
        return await self._open_door(door, cause="override")

    def request_mode(self, mode: str, person: str, role: str, reason: str, scope: str) -> ModeChange:
        """P15, P16, P28 by the mode rules (raises edge.core.modes.ModeRefused when not this person's or not now)."""
        target = Mode(mode)
        entry = self._gate.modes.request(target, person, role, reason, scope)
        if self._link and scope == "site" and target is not Mode.FIRE:
            # SPEC §2: the site hears it with the version this gate just gave the change
            self._link.publish_site_mode(target.value, person, reason, self._gate.modes.state.version)
        return ModeChange(self._gate.mode.value, entry is not None)

    def sign_off(self, visit: str, by: str, role: str | None = None) -> bool:
        """P9: the host signed the visit off; False if it already was. Opens nothing."""
        return self._gate.sign_off(visit, None, by, role=role) is not None

    # -- P26: vehicles held at a barrier ---------------------------------------------------------------
    def held_vehicles(self, role: str | None = None) -> list[dict]:
        """The cars waiting for the guard, oldest first."""
        return [{"plate": h.plate, "door": h.door.name, "direction": h.door.direction.value, "reader": h.reader,
                 "reason": h.reason, "since": rfc3339(h.at)}
                for h in sorted(self._gate.held_vehicles.values(), key=lambda h: h.at)]

    async def admit_vehicle(self, plate: str, person: str, reason: str, role: str | None = None) -> dict | None:
        """P26: the held car's barrier opens once; None if that plate is not held."""
        door = self._gate.admit_vehicle("plate:" + plate, person, role, reason)
        if door is None:
            return None
        return {"plate": plate, "door": door.name,
                "opened": await self._open_door(door.name, door.direction.value, cause="vehicle")}

    def register_vehicle(self, visit: str, plate: str, person: str, role: str | None = None) -> dict:
        """P26: the visit's pass covers the plate until it ends (edge.errors.Refused when there is no such visit
        or it has ended). Opens nothing."""
        return self._gate.register_vehicle(visit, "plate:" + plate, person, role)

    async def release(self, visit: str, person: str, reason: str, role: str | None = None) -> Released | None:
        """P9: the held exit of `visit` opens once; None if none is held."""
        door = self._gate.release(visit, person, role, reason)
        if door is None:
            return None
        self._gate.interlock_override(door.name, person, role)  # P32: a guard's act, as an override
        return Released(visit, door.name, await self._open_door(door.name, door.direction.value, cause="release"))

    async def card_returned(self, credential: str, person: str, reason: str, role: str | None = None) -> CardReturned | None:
        """P27: the guard took the visitor card whose exit is held: consumed, and that door opens once; None if
        no exit holds that card."""
        door = cards.returned(self._gate, credential, person, role, reason)
        if door is None:
            return None
        self._gate.interlock_override(door.name, person, role)  # P32: a guard's act, as an override
        return CardReturned(credential, door.name,
                            await self._open_door(door.name, door.direction.value, cause="card_returned"))


def _name_company(who: dict | None) -> tuple[str | None, str | None]:
    return (None, None) if who is None else (who["name"], who["company"])


def _occupancy_gauges(areas: list[dict]) -> list[Gauge]:
    """P35: each limited area's count (reserved places included: they are taken) and its limit."""
    return [
        ("gatekeeper_area_occupancy", "gauge", "People in an area with a max_occupancy, its areas below included,"
         " with the places of grants on their way in (P35).",
         [({"area": a["area"]}, float(a["count"] + a["reserved"])) for a in areas]),
        ("gatekeeper_area_max_occupancy", "gauge", "An area's max_occupancy (P35).",
         [({"area": a["area"]}, float(a["max_occupancy"])) for a in areas]),
    ]


def _clock_gauges(c: ClockState) -> list[Gauge]:
    """P3: the clock's state; a value not known (no sync source, no heartbeat within a day) is left out."""
    def one(v):
        return [] if v is None else [({}, float(v))]
    return [
        ("gatekeeper_clock_valid", "gauge", "1 when the clock is plausible (P3), 0 when time-bounded credentials "
         "are refused for it.", one(c.valid)),
        ("gatekeeper_clock_synchronized", "gauge", "1 when the clock is synchronized (NTP), 0 when not.",
         one(None if c.sync == "unknown" else c.sync == "synced")),
        ("gatekeeper_clock_offset_seconds", "gauge", "The correction NTP is still applying, seconds.",
         one(c.offset_s)),
        ("gatekeeper_clock_estimated_error_seconds", "gauge", "The kernel's estimated clock error, seconds.",
         one(c.est_error_s)),
        ("gatekeeper_clock_central_offset_seconds", "gauge",
         "The clock ahead (+) or behind (-) the central system's last heartbeat, seconds.", one(c.central_offset_s)),
    ]

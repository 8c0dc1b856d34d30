"""The gate: credential in, decision out, journaled for good. Synchronous and I/O-free apart from SQLite.

The daemon feeds it lines from readers and drives the locks it asks for; the benchmark and the tests
drive it directly.
"""
from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import replace
from typing import Callable

from edge.config import GateConfig
from edge.store.holdback import Holdback
from edge.core.cards import CARD_HELD
from edge.core.metrics import Metrics
from edge.core.overstay import Overstays
from edge.core.occupancy import Occupancy
from edge.core.alarms import Alarms
from edge.core.modes import MUSTERING, Modes
from edge.core.outcome import (
    Effects, Outcome, Pending, access_data, cred_from_json, cred_json, destination, pass_credential, settings_from,
)
from edge.core.model import (
    Credential, Decision, Direction, DoorView, EscortScan, Facts, Mode, Partner, Rejected,
)
from edge.core.timed_apb import ANTIPASSBACK_S, LastEntries
from edge.core.two_person import FIRST as TWO_PERSON_FIRST, as_partner
from edge.errors import Refused
from edge.passes import KeyRing, PassRejected, verify_pass
from edge.core.pinpad import FAILURE_WINDOW_S, LOCK_S, PinPad, WaitingCard
from edge.core.policy import decide, needs_pin
from edge.core.vehicles import PREFIX as PLATE_PREFIX, HeldVehicle, is_plate, plate_decision
from edge.store import Store
from edge.store.allowlist import lookup_badge
from edge.store.journal import Entry, Journal, rfc3339
from edge.core.window import clock_plausible
from edge.core.clock import CentralClock, JumpWatch, steady

log = logging.getLogger(__name__)

PIN_FORGET_S = FAILURE_WINDOW_S + LOCK_S  # P34: a wrong PIN older than this can lock nothing any more
MAX_ESCORT_SCANS = 32  # recent staff scans remembered per door for P10


class Gate:
    def __init__(self, cfg: GateConfig, store: Store, keyring: KeyRing, clock=time.time, steady_clock=steady):
        self.cfg = cfg
        self.store = store
        self.journal = Journal(store)
        self.keyring = keyring
        self.clock = clock
        self.settings = settings_from(cfg, store.calendar)
        store.calendar_changed = False
        doors = {d.name: d for d in cfg.doors}
        self.readers: dict[str, DoorView] = {}
        for r in cfg.readers:
            if r.checkpoint:  # P21: a patrol tap is never a decision (edge/desks/tours.py)
                continue
            d = doors[r.door]
            self.readers[r.name] = DoorView(
                name=d.name, area=d.area, direction=Direction(r.direction), perimeter=d.perimeter,
                antipassback=d.antipassback, escort_required=cfg.escort_required(d.area), passages=d.passages,
                collector=d.collector,
                barrier=d.kind == "barrier",
                antipassback_s=d.antipassback_s or ANTIPASSBACK_S, two_person=cfg.two_person(d.area),  # P31, P33
                pin_required=d.pin_required, keypad=r.keypad,  # P34
            )
        # P31: the last entries through the timed anti-passback doors, kept across a restart
        self.last_entries = LastEntries({d.name: d.antipassback_s or ANTIPASSBACK_S for d in cfg.doors
                                         if d.antipassback == "timed"})
        self.last_entries.load(store.conn, clock())
        self.escorts: dict[str, list[EscortScan]] = {}
        self.waiting: dict[str, list[tuple[str, Credential, float]]] = {}  # P10, P33: escorted-first, pair-first scans
        self.held_exits: dict[str, tuple[str, Credential, DoorView]] = {}  # P9: visit -> its held exit
        self.held_at: dict[str, float] = {}
        self.card_held: set[str] = set()  # P27: the held exits that wait for the card, not a sign-off
        self._load_held_exits()
        self.held_vehicles: dict[str, HeldVehicle] = {}  # P26: plate ref -> the car waiting for the guard
        self._load_held_vehicles()
        self.pending: dict[tuple[str, Direction], list[Pending]] = {}  # turnstile grants awaiting passages
        self.passage_timeout = {d.name: d.passage_timeout_s for d in cfg.doors}
        self.max_sync_age = cfg.policy.max_sync_age_s
        # P23: when the central system was last heard (a well-formed message from it); in memory, and
        # written with the next commit as a hint for restarts
        self.heard_at = float(store.meta("central_heard_at") or store.meta("created_at"))
        self.door_ready: Callable[[str], bool] = lambda door: True  # the daemon says whether a door's output answers
        # P32: the other doors of a door's interlock group that are open or unlocked, and the mark that a door's
        # unlock is decided (the daemon wires both to the hardware layer: edge/hardware/interlock.py)
        self.interlock: Callable[[str], tuple[str, ...]] = lambda door: ()
        self.interlock_claim: Callable[[str], None] = lambda door: None
        self.reload_keys: Callable[[], None] = lambda: None  # the daemon rebuilds the keyring (config + synced keys)
        self.clock_alarm = False
        self.central_clock = CentralClock(steady_clock)  # P3: the central system's time, from its heartbeat
        self.jumps = JumpWatch(clock, steady_clock, cfg.policy.clock_skew_s)  # P3: jumps of the wall clock
        self.clock_sync = None  # the daemon's latest look at the machine's time sync (runtime.timesync)
        self.metrics = Metrics()
        self.holdback = Holdback(store.path, lambda etype, data: self.journal.append(etype, data, self.clock()),
                                 checkpoint=store.checkpoint, drained=store.held_written)
        self.modes = Modes(store, self.journal, self.holdback, clock)  # P15, P16: the mode and its rules
        self.modes.listeners.append(self._muster_over)
        self.alarms = Alarms(store, self.journal)  # P17, P18: what guards acknowledge
        self.overstays = Overstays(store, self.journal, lambda: self.settings)  # P36
        self.occupancy = Occupancy(cfg.areas.max_occupancy, store)  # P35
        # P34: the cards waiting for their PIN, the wrong PINs (kept across restarts), the site's pepper (the daemon
        # reads it from its file), and where an `alarm.duress` goes the moment it is journaled (the outbox)
        self.pinpad = PinPad(self._load_pin_failures())
        self.pin_pepper: bytes | None = None
        self.urgent: Callable[[Entry], None] = lambda entry: None
        self._pin_fact: str | None = None
        self.pin_before: dict[tuple[str, str], str] = {}  # (door, credential) -> the PIN a waiting first gave (P33)
        try:
            self.overstays.recover()
        except sqlite3.Error as e:  # a full disk at start: the doors come first, the catch-up is lost
            log.error("overstay watch: the entries before the stop were not read again: %s", e)

    # -- the hot path -------------------------------------------------------------------------
    def credential(self, kind: str, value: str, now: float | None = None) -> Credential | Rejected:
        """P2: turn what a reader read into a verified credential, or the reason it is not one."""
        if kind == "plate":  # P26: allow-listed, or registered to a visit whose pass still covers it
            return (lookup_badge(self.store, value) or self.registered_plate(value, now)
                    or Rejected("unknown_credential", value, "plate"))
        if kind == "badge":
            return lookup_badge(self.store, value) or Rejected("unknown_credential", value, "badge")
        if kind == "pass":
            try:
                return pass_credential(verify_pass(value, self.keyring))
            except PassRejected as e:
                return Rejected(e.reason, None, "pass")
        return Rejected("malformed")

    def facts(self, cred: Credential | Rejected, door: DoorView, now: float,
              partner: Credential | None = None) -> Facts:
        """What the decision needs; `partner`: the one presenting now, whom a waiting first of a pair would be
        admitted with (P33)."""
        if isinstance(cred, Rejected):
            return Facts(mode=self.mode)
        s = self.store
        idh = cred.id_hash[:16] if cred.id_hash else None
        vk = cred.visit_key
        entry = door.direction is Direction.IN
        return Facts(
            mode=self.mode,
            blocklisted=cred.holder in s.blocked_holders or (idh is not None and idh in s.blocked_idh),
            watchlisted=cred.holder in s.watched_holders or (idh is not None and idh in s.watched_idh),
            revoked=cred.ref in s.revoked,
            consumed=vk in s.consumed,
            signed_off=vk in s.signoffs,
            presence=s.presence.get(cred.ref),
            stale_allowlist=self._stale(now),
            clock_far_off=cred.time_bounded and self.central_clock.far_off(now),
            # only an escorted entry looks at recent staff scans; everyone else skips the work
            escorts=tuple(self._escorts_at(door.name, now)) if (door.escort_required or cred.escort) else (),
            # P35: only an entry into a limited area looks at the counts
            area_full=(entry and bool(self.occupancy.limited(door.area))
                       and self.occupancy.full(door.area, cred.party, s.presence.get(cred.ref))),
            last_entry=self.last_entries.last(door.name, cred.ref) if entry and door.antipassback == "timed" else None,
            partners=self._partners(cred, door, now, partner) if entry and door.two_person else (),
            interlocked=bool(self.interlock(door.name)),  # P32
            # P34: a waiting first decided again with its partner, its PIN given before
            pin=self.pin_before.get((door.name, cred.ref)) if partner is not None else None,
        )

    def _partners(self, cred: Credential, door: DoorView, now: float,
                  partner: Credential | None) -> tuple[Partner, ...]:
        """P33: who waits at this door for a second person and would be admitted together with `cred` now,
        every other rule checked (a pair whose first was revoked meanwhile is no pair); for a waiting first
        decided again, the `partner` presenting now."""
        if partner is not None:
            return (as_partner(partner, now),)
        found = []
        for _reader, first, at in self.waiting.get(door.name, ()):
            if first.holder == cred.holder or now - at > self.settings.two_person_window_s:
                continue
            if decide(first, door, now, self.facts(first, door, now, partner=cred), self.settings).granted:
                found.append(Partner(first.ref, first.holder, first.category == "staff", first.areas, at))
        return tuple(found)

    def evaluate(self, reader: str, kind: str, value: str, now: float | None = None, *,
                 cred: Credential | None = None, pin: str | None = None) -> Outcome:
        """Decide without journaling (the benchmark's 'without the journal'). P34: `cred` is a card that waited
        for its PIN, `pin` what the PIN check said of it."""
        t0 = time.perf_counter_ns()
        door = self.readers[reader]
        now = self.clock() if now is None else now
        # Whatever process committed last (an import of revocations, the sync worker), this scan decides
        # on it: PRAGMA data_version moves with every other connection's commit.
        self.store.refresh()
        if self.store.keys_changed:  # trusted keys imported by another process: passes are checked against them
            self.store.keys_changed = False
            self.reload_keys()
        if self.store.calendar_changed:  # P24: the synced calendar changed: the day maps are made again, once
            self.store.calendar_changed = False
            self.settings = settings_from(self.cfg, self.store.calendar)
        if cred is not None:
            pass  # P34: the card read before its PIN
        elif kind == "plate" and not door.barrier:  # P26: plates are read at vehicle barriers only
            cred = Rejected("malformed", value, "plate")
        else:
            cred = self.credential(kind, value, now)
        facts = self.facts(cred, door, now)
        self._pin_fact = None
        if isinstance(cred, Credential) and door.direction is Direction.IN and needs_pin(cred, door):
            self._pin_fact = pin if pin is not None else self._pin_at_card(cred, now)
            facts = replace(facts, pin=self._pin_fact)
        decision = decide(cred, door, now, facts, self.settings)
        if door.barrier and is_plate(cred):  # P26: held for the guard rather than refused
            decision = plate_decision(cred, door, decision)
        return Outcome(reader, door, cred, decision, (time.perf_counter_ns() - t0) // 1000)

    def present(self, reader: str, kind: str, value: str, now: float | None = None) -> Outcome | None:
        """Decide and commit the decision and its consequences in one durable transaction. If the
        database cannot take it, the decision still stands and its writes are held (SPEC §6).
        P34: None when nothing is decided yet (a card waiting for its PIN) or at all (a PIN no card waits for)."""
        t0 = time.perf_counter()
        now = self.clock() if now is None else now
        if kind == "pin":
            return self._pin_given(reader, value, now, t0)
        before = self.pinpad.waiting.pop(reader, None)
        if before is not None:  # P34: a second card before the PIN ends the first entry
            self._pin_not_given(before, now)
        out = self.evaluate(reader, kind, value, now)
        if out.decision.reason == "pin_required" and self._pin_fact is None:
            assert isinstance(out.cred, Credential)
            self.pinpad.wait(reader, out.cred, now)  # decided by its PIN, or the lack of one
            return None
        return self._settle(out, now, t0)

    # -- P34: card and PIN -------------------------------------------------------------------------------
    def _pin_at_card(self, cred: Credential, now: float) -> str | None:
        """P34, at the card: "missing" when no PIN can follow (a pass, a plate, a holder without a PIN),
        "locked" after too many wrong ones, else None: the card waits for its PIN."""
        if cred.kind != "badge" or self.pin_hashes(cred.ref)[0] is None:
            return "missing"
        return "locked" if self.pinpad.locked(cred.ref, now) else None

    def pin_hashes(self, ref: str) -> tuple[str | None, str | None]:
        row = self.store.conn.execute("SELECT pin_hash, duress_hash FROM credentials WHERE credential=?",
                                      (ref,)).fetchone()
        return (row[0], row[1]) if row else (None, None)

    def _pin_given(self, reader: str, digits: str, now: float, t0: float) -> Outcome | None:
        """P34: a PIN at `reader` decides the card waiting there. The digits go no further than the check."""
        w = self.pinpad.take(reader, now)
        if w is None or reader not in self.readers:
            log.info("reader %s: a PIN with no card waiting for it: ignored", reader)
            return None
        if self.pinpad.locked(w.cred.ref, now):  # locked at another keypad meanwhile
            pin = "locked"
        elif self.pin_pepper is None:
            log.error("reader %s: a PIN cannot be checked without the site's PIN pepper (pin.pepper_file)", reader)
            pin = "missing"
        else:
            from edge.core.pin import check
            pin = check(digits, self.pin_pepper, *self.pin_hashes(w.cred.ref))
        return self._settle(self.evaluate(reader, w.cred.kind, w.cred.ref, now, cred=w.cred, pin=pin), now, t0)

    def _pin_not_given(self, w: WaitingCard, now: float) -> Outcome:
        """P34: the card's entry ends without its PIN: decided (and journaled) now, as `pin_required` when
        nothing else refuses it meanwhile."""
        out = self.evaluate(w.reader, w.cred.kind, w.cred.ref, now, cred=w.cred, pin="missing")
        return self._settle(out, now, time.perf_counter())

    def expire_pins(self, now: float | None = None) -> list[Outcome]:
        """P34: the cards whose PIN did not come within 10 s (the daemon looks twice a second)."""
        now = self.clock() if now is None else now
        return [self._pin_not_given(w, now) for w in self.pinpad.expired(now)]

    def pin_waiting(self, reader: str) -> bool:
        """P34: a card waits for its PIN at `reader` (the daemon then shows "enter PIN" there)."""
        return reader in self.pinpad.waiting

    def _load_pin_failures(self) -> dict[str, list[float]]:
        failures: dict[str, list[float]] = {}
        for ref, at in self.store.conn.execute("SELECT credential, at FROM pin_failures ORDER BY credential, at"):
            failures.setdefault(ref, []).append(at)
        return failures

    def _settle(self, out: Outcome, now: float, t0: float) -> Outcome:
        """A decision in force and journaled (present's second half)."""
        if out.opens:  # P32: unlocked from the decision on, before anything can run between it and the pulse
            self.interlock_claim(out.door.name)
        if out.decision.granted and not self.door_ready(out.door.name):
            # P18/P19: the journal says what happened at the door, not only what was decided
            out = replace(out, decision=replace(out.decision, flags=out.decision.flags + ("output_down",)))
        fx = self.take_effect(out, now)  # in force at once, whether the database takes the writes or not
        entries = self.holdback.run(self.commit, out, now, fx)
        if entries is None:  # held (SPEC §6): what the decision changed is in force all the same
            if out.decision.consumes:
                self.store.hold("consumed", out.cred.visit_key)
            entries = ()
        d = out.decision
        self.metrics.decided("granted" if d.granted else "held" if d.held else "denied", d.reason,
                             time.perf_counter() - t0)
        for e in entries:
            if e.type == "alarm.duress":  # P34: out ahead of any backlog
                self.urgent(e)
        return Outcome(out.reader, out.door, out.cred, out.decision, out.decision_us, entries)

    # -- consequences: what takes effect at once, and what is journaled -------------------------------
    def take_effect(self, out: Outcome, now: float) -> Effects:
        """The decision's consequences in memory, at once: a held exit a guard can release (P9), a lane's
        pending grant (P11), escort windows and the people waiting for one (P10). Never deferred, so they
        hold while the database refuses writes too (SPEC §6)."""
        d, cred, door = out.decision, out.cred, out.door
        if is_plate(cred) and door.barrier:  # P26: a held car waits for the guard; a car let through waits no more
            if d.held:
                self.held_vehicles[cred.ref] = HeldVehicle(cred.ref, out.reader, door, d.reason, now)
            elif d.granted:
                self.held_vehicles.pop(cred.ref, None)
        if not isinstance(cred, Credential):
            return Effects()
        if d.reason == "pin_incorrect":  # P34: counted at once, towards a lockout at this gate's keypads
            self.pinpad.failed(cred.ref, now)
        released, escorted = False, ()
        if d.held and is_plate(cred):
            pass  # P26: above
        elif d.held:
            self.held_exits[cred.visit_key] = (out.reader, cred, door)
            self.held_at[cred.visit_key] = now
            if d.reason == CARD_HELD:
                self.card_held.add(cred.visit_key)
            else:
                self.card_held.discard(cred.visit_key)
        elif d.granted:
            self._reserve(cred, door)  # P35: before the escorted after it are decided
            if door.passages:  # P11: one grant, up to `party` passages, each counted by the lane
                self.pending.setdefault((door.name, door.direction), []).append(
                    Pending(cred, door, cred.party or 1, now + self.passage_timeout[door.name]))
            if cred.visit_key in self.held_exits and door.direction is Direction.OUT:
                del self.held_exits[cred.visit_key]  # signed off meanwhile: out without a guard
                self.held_at.pop(cred.visit_key, None)
                self.card_held.discard(cred.visit_key)
                released = True
            self._note_escort(cred, door, d, now)
            if door.direction is Direction.IN and door.name in self.waiting:  # in now: waits here no more (P10, P33)
                self.waiting[door.name] = [w for w in self.waiting[door.name] if w[1].ref != cred.ref]
            if door.direction is Direction.IN and (cred.category == "staff" or d.partner):
                escorted = self._escorted_after(door, now, cred, d)
            if door.antipassback == "timed" and door.direction is Direction.IN:  # P31: the pair's both entered
                for c in (cred, *(o.cred for o in escorted)):
                    self.last_entries.entered(door.name, c.ref, now)
            if door.direction is Direction.IN and not door.passages:  # P36: the last entry is here (memory only)
                self.overstays.entered(cred, door.name, door.area, now)
                for o in escorted:
                    self.overstays.entered(o.cred, door.name, door.area, now)
        elif d.reason in ("escort_required", "second_person_required"):
            # P10: escorted first; granted on its own if the staff scan follows within the window.
            # P33: the first of a pair; granted with the second's opening if a second comes within the window.
            window = max(self.settings.escort_window_s, self.settings.two_person_window_s)
            self.waiting[door.name] = [w for w in self.waiting.get(door.name, ())  # once each, the latest scan
                                       if w[1].ref != cred.ref and now - w[2] <= window] + [(out.reader, cred, now)]
            # P34: the first of a pair gave its PIN before it was refused for want of a second: decided again with
            # the second, it is not asked again (an escorted-first visitor was refused before any PIN: it is)
            live = {(door.name, w[1].ref) for w in self.waiting[door.name]}
            self.pin_before = {k: v for k, v in self.pin_before.items() if k[0] != door.name or k in live}
            if d.reason == "second_person_required" and self._pin_fact in ("ok", "duress"):
                self.pin_before[(door.name, cred.ref)] = "ok"  # its duress alarm went with the refusal
        return Effects(released, escorted)

    def commit(self, out: Outcome, now: float, fx: Effects) -> tuple[Entry, ...]:
        """The decision's journal entries and the state written with them, in one durable transaction
        (held back and replayed in order while the database refuses writes)."""
        d, cred, door = out.decision, out.cred, out.door
        data = access_data(out)
        entries: list[Entry] = []
        with self.store.tx():
            if d.watchlist:  # P37: whatever was decided, the guards are told at once
                assert isinstance(cred, Credential)
                entries.append(self.journal.append("alarm.raised", {
                    "alarm": "watchlist", "priority": "high", "door": door.name, "holder": cred.holder,
                    "credential_ref": cred.ref, "reason": self.store.watch_reason(cred.holder, cred.id_hash),
                    "granted": d.granted, "decision": d.reason}, now))
            if d.reason == "clock_invalid" and not self.clock_alarm:
                # P3: once per episode, so the central system sees the fault, not a flood
                self.clock_alarm = True
                log.error("the clock reads %s, implausible: time-bounded credentials are refused", now)
                entries.append(self.journal.append("alarm.raised", self._clock_alarm_data(now, door.name), now))
            elif self.clock_alarm and d.reason != "clock_invalid" and self.clock_valid(now):
                self.clock_alarm = False
            if d.held and is_plate(cred):  # P26: the car waits for the guard; nothing is refused
                entries.append(self.journal.append("vehicle.held", {**data, "plate": cred.ref[len(PLATE_PREFIX):]},
                                                   now))
                self.store.conn.execute("INSERT OR REPLACE INTO held_vehicles(plate, reader, reason, at)"
                                        " VALUES(?,?,?,?)", (cred.ref, out.reader, d.reason, now))
            elif d.held:
                if d.reason == CARD_HELD:  # P27: whether the lane's collector takes the card, or a guard must
                    data["collector"] = door.collector
                entries.append(self.journal.append("exit.held", data, now))
                assert isinstance(cred, Credential)
                self.store.conn.execute("INSERT OR REPLACE INTO held_exits(visit, reader, credential, at, reason)"
                                        " VALUES(?,?,?,?,?)", (cred.visit_key, out.reader, cred_json(cred), now,
                                                               d.reason))
            elif not d.granted:
                entries.append(self.journal.append("access.denied", data, now))
                if d.duress:  # P34: refused after the duress PIN (the mantrap, a second person, the room left)
                    entries.append(self._duress(out, now))
                if d.reason == "pin_incorrect":  # P34: a restart does not forget a wrong PIN
                    assert isinstance(cred, Credential)
                    self.store.conn.execute("DELETE FROM pin_failures WHERE credential=? AND at < ?",
                                            (cred.ref, now - PIN_FORGET_S))
                    self.store.conn.execute("INSERT OR IGNORE INTO pin_failures(credential, at) VALUES(?,?)",
                                            (cred.ref, now))
                if d.reason == "blocklisted":  # P6: guards must act on this one at once
                    entries.append(self.journal.append("alarm.raised", {
                        "alarm": "blocklisted", "priority": "high", "door": door.name,
                        "holder": data.get("holder"), "credential_ref": data.get("credential_ref")}, now))
            else:
                entries.append(self.journal.append("access.granted", data, now))
                assert isinstance(cred, Credential)
                if d.duress:  # P34: the grant says nothing of it; the central system and supervisors are told
                    entries.append(self._duress(out, now))
                if is_plate(cred) and door.barrier:
                    self.store.conn.execute("DELETE FROM held_vehicles WHERE plate=?", (cred.ref,))
                if not door.passages:  # at a lane, presence follows the passages
                    self._move(cred, door, now)
                if cred.kind == "pass" and door.perimeter and door.direction is Direction.IN:  # P19: entry time
                    self.store.conn.execute("UPDATE visits SET entered=? WHERE id=? AND entered IS NULL",
                                            (now, cred.visit_key))
                if d.arrival:  # P12: the host is told at once; special tier first
                    entries.append(self.journal.append("visitor.arrived", {
                        "door": door.name, "holder": cred.holder, "tier": cred.tier, "host": cred.host,
                        "party": cred.party, "priority": "high" if cred.tier == "special" else "normal",
                        "credential_ref": cred.ref,
                    }, now))
                if d.consumes:  # P8: the whole party's pass, at every gate
                    self.store.consume(cred.visit_key, now)
                    self.store.conn.execute("UPDATE visits SET exited=? WHERE id=?", (now, cred.visit_key))
                    entries.append(self.journal.append("visit.checked_out", {
                        "visit": cred.visit_key, "credential_ref": cred.ref, "holder": cred.holder,
                        "door": door.name, "party": cred.party,
                    }, now))
                if fx.released:
                    self.store.conn.execute("DELETE FROM held_exits WHERE visit=?", (cred.visit_key,))
                for o in fx.escorted:  # P10, P33: admitted with this grant, through the door it opened
                    entries.append(self.journal.append("access.granted", access_data(o), now))
                    self._move(o.cred, door, now)
                if door.antipassback == "timed" and door.direction is Direction.IN:  # P31
                    for c in (cred, *(o.cred for o in fx.escorted)):
                        self.last_entries.write(self.store.conn, door.name, c.ref, now)
        return tuple(entries)

    def _duress(self, out: Outcome, now: float) -> Entry:
        """P34: `alarm.duress`, in the decision's transaction (the outbox then sends it ahead of any backlog)."""
        assert isinstance(out.cred, Credential)
        return self.journal.append("alarm.duress", {
            "priority": "high", "door": out.door.name, "reader": out.reader, "holder": out.cred.holder,
            "credential_ref": out.cred.ref}, now)

    def _escorted_after(self, door: DoorView, now: float, by: Credential, d: Decision) -> tuple[Outcome, ...]:
        """P10: the people refused for want of an escort a moment ago go through with this staff grant.
        P33: at a two-person door, only the first of this grant's pair, with this grant as its second.
        The door just opened admits them; no second pulse is needed."""
        admitted: list[Outcome] = []
        still = []
        window = self.settings.two_person_window_s if door.two_person else self.settings.escort_window_s
        for reader, cred, at in self.waiting.get(door.name, []):
            if now - at > window:
                continue
            if door.two_person and cred.ref != d.partner:
                still.append((reader, cred, at))
                continue
            dec = decide(cred, door, now, self.facts(cred, door, now, partner=by), self.settings)
            if not (dec.granted and (dec.escort_by or dec.partner)):
                still.append((reader, cred, at))
                continue
            dec = replace(dec, flags=dec.flags + (TWO_PERSON_FIRST if dec.partner else "escorted_after",))
            admitted.append(Outcome(reader, door, cred, dec, 0))
            self._reserve(cred, door)  # P35: the next one waiting is decided with this one's place taken
            self._note_escort(cred, door, dec, now)
        self.waiting[door.name] = still
        return tuple(admitted)

    def _reserve(self, cred: Credential, door: DoorView) -> None:
        """P35: an entry's places are taken at once, until its presence moves (or a lane's grant is undone)."""
        if door.direction is Direction.IN and self.occupancy.limited(door.area):
            self.occupancy.reserve(cred.ref, door.area, cred.party, self.store.presence.get(cred.ref))

    def _move(self, cred: Credential, door: DoorView, now: float) -> None:
        """P7: presence follows grants (passage sensors take over in the hardware layer); not at a timed
        anti-passback door, which sees nobody leave (P31)."""
        if not door.tracks_presence:
            return
        self.store.move_presence(cred.ref, cred.holder, cred.category, destination(door), cred.party, now)


    def muster(self) -> list[dict]:
        """P16: who is on site now, where and since when: the API's occupancy and the retained muster."""
        rows = self.store.conn.execute("SELECT holder, category, area, since, party FROM presence ORDER BY area, since")
        return [{"holder": h, "category": c, "area": a, "since": rfc3339(s), "party": p} for h, c, a, s, p in rows]

    def correct_occupancy(self, area: str, count: int, person: str, role: str | None, reason: str,
                          now: float | None = None) -> dict:
        """P35: a supervisor says how many people a limited area holds now; journaled as `occupancy.corrected`,
        which the site's other gates apply too (the count is site-wide)."""
        occ = self.occupancy
        if area not in occ.limits:
            known = area in self.cfg.areas.tree
            raise Refused(404, None, f"area {area!r} has no max_occupancy" if known else f"no area {area!r}",
                          reason="no_occupancy_limit" if known else "no_such_area")
        now = self.clock() if now is None else now
        with self.store.tx():
            previous = occ.correct(area, count, now, person, reason)
            entry = self.journal.append("occupancy.corrected", {
                "area": area, "count": count, "previous": previous, "max_occupancy": occ.limits[area],
                "actor": person, "actor_role": role, "reason": reason}, now)
        log.warning("occupancy of %s corrected from %d to %d by %s: %s", area, previous, count, person, reason)
        return {"area": area, "count": count, "previous": previous, "max_occupancy": occ.limits[area],
                "reserved": occ.reserved_n[area], "event_seq": entry.seq}

    def accounted(self) -> dict[str, dict]:
        """P16: the people a guard marked safe at the assembly point, by holder: `{"by", "at"}`. None
        outside a muster, whatever a mark not yet cleared says."""
        if not self.modes.mustering:
            return {}
        rows = self.store.conn.execute("SELECT holder, by, at FROM muster_safe ORDER BY at")
        return {h: {"by": by, "at": rfc3339(at)} for h, by, at in rows}

    def mark_safe(self, holder: str, person: str, role: str, reason: str | None,
                  now: float | None = None) -> dict:
        """P16: a guard saw `holder` at the assembly point. Marking again changes nothing and journals nothing."""
        if not self.modes.mustering:
            raise Refused(409, None, f"the gate is in {self.mode.value} mode: nobody is mustering",
                          reason="not_mustering")
        c = self.store.conn
        rows = c.execute("SELECT credential, area FROM presence WHERE holder=? ORDER BY since", (holder,)).fetchall()
        if not rows:
            raise Refused(404, None, f"{holder!r} is not on site", reason="not_on_site")
        marks = {cr: (by, at, seq) for cr, by, at, seq in
                 c.execute("SELECT credential, by, at, seq FROM muster_safe WHERE holder=?", (holder,))}
        area = rows[0][1]
        if all(cr in marks for cr, _ in rows):
            by, at, seq = marks[rows[0][0]]
            return {"holder": holder, "area": area, "safe": {"by": by, "at": rfc3339(at)}, "event_seq": seq,
                    "new": False}
        now = self.clock() if now is None else now
        with self.store.tx() as tx:
            entry = self.journal.append("muster.marked_safe", {"holder": holder, "area": area, "actor": person,
                                                               "actor_role": role, "reason": reason}, now)
            tx.executemany("INSERT OR REPLACE INTO muster_safe(credential, holder, by, at, seq) VALUES(?,?,?,?,?)",
                           [(cr, holder, person, now, entry.seq) for cr, _ in rows if cr not in marks])
        return {"holder": holder, "area": area, "safe": {"by": person, "at": rfc3339(now)}, "event_seq": entry.seq,
                "new": True}

    def _muster_over(self, previous: Mode, mode: Mode) -> None:
        """Marks belong to one muster: gone when it ends, and none left over when the next begins (a fire
        during a drill is a new muster: nobody marked safe in the exercise counts as safe from the fire)."""
        if previous in MUSTERING or mode in MUSTERING:
            self.holdback.run(self._clear_marks)

    def _clear_marks(self) -> None:
        with self.store.tx() as c:
            c.execute("DELETE FROM muster_safe")

    def _escorts_at(self, door: str, now: float) -> list[EscortScan]:
        scans = self.escorts.get(door)
        if not scans:
            return []
        live = [e for e in scans if now - e.at <= self.settings.escort_window_s]
        self.escorts[door] = live
        return live

    def _note_escort(self, cred: Credential, door: DoorView, d: Decision, now: float) -> None:
        """P10: a staff entry opens an escort window at this door; an escorted entry uses one place."""
        if door.direction is not Direction.IN:
            return
        scans = self.escorts.setdefault(door.name, [])
        if cred.category == "staff":
            scans.append(EscortScan(cred.ref, cred.areas, now))
            if len(scans) > MAX_ESCORT_SCANS:  # a busy door at shift change: the oldest scans go first
                del scans[: len(scans) - MAX_ESCORT_SCANS]
        elif d.escort_by:
            for i, e in enumerate(scans):
                if e.ref == d.escort_by:
                    scans[i] = EscortScan(e.ref, e.areas, e.at, e.used + 1)
                    break

    def _stale(self, now: float) -> bool:
        """P23: central silent for longer than max_sync_age."""
        if self.max_sync_age is None:
            return False
        return now - self.heard_at > self.max_sync_age

    # -- P32: a guard opens a door of a mantrap ---------------------------------------------------------
    def interlock_override(self, door: str, person: str, role: str | None, now: float | None = None) -> Entry | None:
        """A guard's one-off opening (P20) goes through the interlock; when it would have refused, the guards and
        the central system hear of it: `alarm.raised` `interlock_bypassed`. The door counts as unlocked from now."""
        open_doors = self.interlock(door)
        self.interlock_claim(door)
        if not open_doors or self.mode is Mode.FIRE:  # fire mode lifts the interlock: nothing was bypassed
            return None
        log.warning("door %s opened by %s while %s of its interlock group is open or unlocked", door, person,
                    ", ".join(open_doors))
        return self.record("alarm.raised", {"alarm": "interlock_bypassed", "priority": "high", "door": door,
                                            "actor": person, "actor_role": role, "open_doors": list(open_doors)},
                           now)

    # -- P3: the clock itself ----------------------------------------------------------------------
    def clock_valid(self, now: float | None = None) -> bool:
        """P3: not before this release, and not more than a day off the central system's time."""
        now = self.clock() if now is None else now
        return clock_plausible(now) and not self.central_clock.far_off(now)

    def _clock_alarm_data(self, now: float, door: str | None = None) -> dict:
        off = self.central_clock.offset(now)
        data = {"alarm": "clock_invalid", "priority": "high", "clock": rfc3339(now)}
        if door is not None:
            data["door"] = door
        if off is not None:
            data["central_offset_s"] = round(off, 3)
        return data

    def central_heartbeat(self, central_time: float, now: float | None = None) -> None:
        """SPEC §2 heartbeat: the central system's clock. A clock more than a day off it is a fault at once
        (P3), not only at the next time-bounded scan; once per episode, as for a scan."""
        self.central_clock.heartbeat(central_time)
        now = self.clock() if now is None else now
        if self.clock_valid(now):
            if self.clock_alarm:
                log.warning("the clock agrees with the central system's again")
            self.clock_alarm = False
        elif not self.clock_alarm:
            self.clock_alarm = True
            log.error("the clock reads %s, more than a day off the central system's %s: time-bounded "
                      "credentials are refused", rfc3339(now), rfc3339(central_time))
            self.record("alarm.raised", self._clock_alarm_data(now), now)

    def watch_clock(self) -> Entry | None:
        """P3: a jump of the wall clock beyond the skew since the last look, backwards or forwards, is
        journaled as `alarm.raised` `clock_jump` (the daemon looks every few seconds)."""
        seen = self.jumps.check()
        if seen is None:
            return None
        jump, expected, now = seen
        log.error("the wall clock jumped %+.1f s (expected %s, reads %s)", jump, rfc3339(expected), rfc3339(now))
        return self.record("alarm.raised", {"alarm": "clock_jump", "priority": "high", "jump_s": round(jump, 3),
                                            "expected": rfc3339(expected), "clock": rfc3339(now)}, now)

    def heard(self, at: float | None = None) -> None:
        """P23: a well-formed message from the central system arrived (never a malformed one)."""
        self.heard_at = max(self.heard_at, self.clock() if at is None else at)
        self.store.defer_meta("central_heard_at", repr(self.heard_at))

    # -- P9: held exits survive a restart --------------------------------------------------------------
    def _load_held_exits(self) -> None:
        for visit, reader, text, at, reason in self.store.conn.execute(
                "SELECT visit, reader, credential, at, reason FROM held_exits"):
            door = self.readers.get(reader)
            if door is None:
                continue  # the reader left the config: nobody waits there any more
            cred = cred_from_json(text)
            self.held_exits[visit] = (reader, cred, door)
            self.held_at[visit] = at
            if reason == CARD_HELD:
                self.card_held.add(visit)

    # -- P26: vehicles -----------------------------------------------------------------------------------
    def _load_held_vehicles(self) -> None:
        for ref, reader, reason, at in self.store.conn.execute("SELECT plate, reader, reason, at FROM held_vehicles"):
            door = self.readers.get(reader)
            if door is not None:  # a reader gone from the config: nobody waits there any more
                self.held_vehicles[ref] = HeldVehicle(ref, reader, door, reason, at)

    def registered_plate(self, ref: str, now: float | None = None) -> Credential | None:
        """P26: the credential of the visit a guard registered this plate to, while its pass covers it: signed,
        not revoked, not consumed, not ended. The plate is then decided as the pass would be, as a plate."""
        row = self.store.conn.execute("SELECT v.visit, s.pass FROM vehicles v JOIN visits s ON s.id = v.visit"
                                      " WHERE v.plate=?", (ref,)).fetchone()
        if row is None:
            return None
        visit, text = row
        cred = self.credential("pass", text)
        now = self.clock() if now is None else now
        if (not isinstance(cred, Credential) or cred.ref in self.store.revoked or visit in self.store.consumed
                or cred.valid_until is None or now >= cred.valid_until):
            return None
        return replace(cred, kind="plate", ref=ref, visit=visit)

    def register_vehicle(self, visit: str, ref: str, person: str, role: str | None,
                         now: float | None = None) -> dict:
        """P26: the visit's pass covers the plate until the pass ends. Like a sign-off, it lets the next read
        through and opens nothing by itself. Registering it again to the same visit changes nothing."""
        now = self.clock() if now is None else now
        row = self.store.conn.execute("SELECT holder, pass FROM visits WHERE id=?", (visit,)).fetchone()
        if row is None:
            raise Refused(404, None, f"no visit {visit!r} registered at this gate", reason="no_such_visit")
        holder, text = row
        cred = self.credential("pass", text)
        if (not isinstance(cred, Credential) or cred.ref in self.store.revoked or visit in self.store.consumed
                or cred.valid_until is None or now >= cred.valid_until):
            raise Refused(409, None, f"visit {visit!r} has ended: its pass covers no vehicle", reason="visit_ended")
        until = rfc3339(cred.valid_until)
        taken = self.store.conn.execute("SELECT visit FROM vehicles WHERE plate=?", (ref,)).fetchone()
        if taken is not None and taken[0] == visit:
            return {"visit": visit, "plate": ref[len(PLATE_PREFIX):], "until": until, "new": False}

        def write():
            with self.store.tx() as c:
                c.execute("INSERT OR REPLACE INTO vehicles(plate, visit, at, actor) VALUES(?,?,?,?)",
                          (ref, visit, now, person))
                return self.journal.append("visit.amended", {
                    "visit": visit, "holder": holder, "plate": ref[len(PLATE_PREFIX):], "credential_ref": ref,
                    "until": until, "actor": person, "actor_role": role}, now)
        self.holdback.run(write)
        return {"visit": visit, "plate": ref[len(PLATE_PREFIX):], "until": until, "new": True}

    def admit_vehicle(self, ref: str, person: str, role: str | None, reason: str,
                      now: float | None = None) -> DoorView | None:
        """P26: the guard lets the held car through: that barrier, once. None if the plate is not held."""
        held = self.held_vehicles.pop(ref, None)
        if held is None:
            return None
        now = self.clock() if now is None else now

        def write():
            with self.store.tx() as c:
                c.execute("DELETE FROM held_vehicles WHERE plate=?", (ref,))
                self.journal.append("override.opened", {
                    "door": held.door.name, "direction": held.door.direction.value, "plate": held.plate,
                    "credential_ref": ref, "held_reason": held.reason, "actor": person, "actor_role": role,
                    "reason": reason}, now)
        self.holdback.run(write)
        return held.door

    # -- P9: sign-off and release ----------------------------------------------------------------------
    def sign_off(self, visit: str, host: str | None, by: str, now: float | None = None,
                 then: Callable[[], None] | None = None, role: str | None = None) -> Entry | None:
        """The host signed the visit off: the visitor's next exit scan goes through. Opens nothing.
        `by` and `role` say who passed it on (a supervisor, the central system). `then` runs once it is
        written (at once, or when a refusing database takes writes again)."""
        now = self.clock() if now is None else now

        def write():
            with self.store.tx():
                if not self.store.sign_off(visit, host, now):
                    return None
                return self.journal.append("visit.signed_off", {"visit": visit, "host": host, "actor": by,
                                                                "actor_role": role}, now)
        entry = self.holdback.run(write, then=then)
        if entry is None and self.holdback.held:
            self.store.hold("signoffs", visit)  # held, and in force: the visitor's next exit goes through
        return entry

    def release(self, visit: str, person: str, role: str, reason: str, now: float | None = None) -> DoorView | None:
        """A guard confirmed with the host and lets the held visitor out: that door, once (P9). The exit
        counts as the final one: the pass is consumed (P8). None if no exit of that visit is held for a
        sign-off (one held for a visitor card ends when the card is returned: P27, edge/core/cards.py)."""
        if visit in self.card_held:
            return None
        held = self.held_exits.pop(visit, None)
        self.held_at.pop(visit, None)
        if held is None:
            return None
        reader, cred, door = held
        now = self.clock() if now is None else now

        def write():
            with self.store.tx() as c:
                c.execute("DELETE FROM held_exits WHERE visit=?", (visit,))
                self.journal.append("exit.released", {
                    "visit": visit, "door": door.name, "credential_ref": cred.ref, "holder": cred.holder,
                    "actor": person, "actor_role": role, "reason": reason}, now)
                self._move(cred, door, now)
                if door.perimeter:
                    self.store.consume(visit, now)
                    c.execute("UPDATE visits SET exited=? WHERE id=?", (now, visit))
                    self.journal.append("visit.checked_out", {
                        "visit": visit, "credential_ref": cred.ref, "holder": cred.holder, "door": door.name,
                        "party": cred.party, "actor": person, "actor_role": role}, now)
        self.holdback.run(write)
        if self.holdback.held and door.perimeter:
            self.store.hold("consumed", visit)
        return door

    # -- turnstile lanes (P7, P11) ---------------------------------------------------------------------
    def passage(self, door_name: str, direction: Direction, now: float | None = None) -> tuple[list[Entry], bool]:
        """One person through the lane: it counts for the oldest grant waiting there. Returns the
        entries and whether that grant admits more (the lane is released again for them). The count
        holds at once; its entry and the presence it moves are held back like any write (SPEC §6)."""
        now = self.clock() if now is None else now
        queue = self.pending.get((door_name, direction), [])
        if not queue:  # nobody was granted: jumped or pushed through
            e = self.record("door.forced", {"door": door_name, "direction": direction.value, "passage": True}, now)
            return [e] if e else [], False
        p = queue[0]
        p.walked += 1
        more = p.walked < p.admits
        if not more:
            queue.pop(0)
        cred, walked, to = p.cred, p.walked, destination(p.door)
        tracked = p.door.tracks_presence  # P31: a timed lane records no presence, here or at the peers
        if walked == 1 and direction is Direction.IN:  # P36: this gate now holds the last entry (memory only)
            self.overstays.entered(cred, door_name, p.door.area, now)

        def write():
            with self.store.tx():
                data = {"door": door_name, "direction": direction.value, "credential_ref": cred.ref,
                        "holder": cred.holder, "category": cred.category, "area": p.door.area, "to_area": to,
                        "count": walked, "party": cred.party}
                if not tracked:
                    del data["to_area"]
                entry = self.journal.append("access.passage", data, now)
                if walked == 1 and tracked:
                    self.store.move_presence(cred.ref, cred.holder, cred.category, to, cred.party, now)
                return entry
        entry = self.holdback.run(write)
        return [entry] if entry else [], more

    def expire_passages(self, now: float | None = None) -> list[Entry]:
        """Grants nobody walked through are undone (P7: presence never moved for them)."""
        now = self.clock() if now is None else now
        entries = []
        for (door_name, direction), queue in self.pending.items():
            while queue and queue[0].deadline <= now:
                p = queue.pop(0)
                if p.walked == 0:
                    self.occupancy.release(p.cred.ref)  # P35: the places it held are free again
                    timed = p.door.antipassback == "timed" and direction is Direction.IN
                    if timed:  # P31: nobody walked through: no entry
                        self.last_entries.undone(door_name, p.cred.ref)
                    e = self.holdback.run(self._undone, p, now, timed)
                    if e:
                        entries.append(e)
        return entries

    def _undone(self, p: Pending, now: float, timed: bool) -> Entry:
        with self.store.tx() as c:
            if timed:
                LastEntries.erase(c, p.door.name, p.cred.ref)
            return self.journal.append("access.undone", {
                "door": p.door.name, "direction": p.door.direction.value, "credential_ref": p.cred.ref,
                "holder": p.cred.holder, "area": p.door.area}, now)

    # -- P36, P30: after the decision ----------------------------------------------------------------
    def watch_overstays(self, now: float | None = None, due: bool = True) -> list[Entry]:
        """P36: the daemon's tick. The entries noted since the last one go into the watch; with `due`,
        `visit.overstay` once for each watched holder still on site past the end."""
        if self.holdback.held:  # the database refuses writes: the next tick after it takes them again
            return []
        now = self.clock() if now is None else now
        if self.overstays.pending:
            self.holdback.run(self.overstays.flush)
        return (self.holdback.run(self.overstays.due, now) or []) if due else []

    def extended(self, cred: Credential | Rejected) -> bool:
        """P30: whether a grant opens the door for the extended time. A badge says so in its own record; a pass's
        holder in any allow-list record of theirs (one probe of the holder index, after the decision)."""
        if not isinstance(cred, Credential):
            return False
        if cred.extended_access:
            return True
        return cred.kind == "pass" and self.store.conn.execute(
            "SELECT 1 FROM credentials WHERE holder=? AND extended_access=1 LIMIT 1", (cred.holder,)).fetchone() is not None

    # -- modes (P15, P16; SPEC §2 site mode) -------------------------------------------------------------
    @property
    def mode(self) -> Mode:
        return self.modes.mode

    def record(self, etype: str, data: dict, now: float | None = None) -> Entry | None:
        """Journal an action or alarm that is not a decision (device faults, door events)."""
        return self.holdback.run(self.journal.append, etype, data, self.clock() if now is None else now)

"""A stateful model of the gate: any sequence of scans, imports and batches committed by another
connection, revocations, blocklist entries, site modes, fire, drills, the fire line's faults, door contacts,
MQTT messages good and malformed, restarts on the same file, database outages and a full disk. After every step the gate must
agree with a model that knows only the rules (POLICY, SPEC §2 site-mode ordering, SPEC §6):

- no entry at a keypad reader is granted to a holder who must give a PIN (P34) without a correct or duress PIN
  given after the card, nor while 5 wrong PINs within 10 minutes lock the credential;
- no entry is granted to a revoked, blocklisted, consumed, expired or unknown-category credential as of
  the last commit by anyone, nor to a visitor while the allow-list is stale, nor in lockdown to anyone
  but a supervisor; a consumed pass leaves no more;
- outside fire mode every lock is locked once its pulse has ended, and no lane wheels freely; in a drill
  (P28) no door is freed at all;
- while the fire line is in fault (P28) the fire input is not believed: the fire state is the last known;
- no grant at this gate takes an area with a `max_occupancy` beyond it (P35), and the gate's count of it is
  what its presence table says;
- at the two-person vault (P33, in the escort-required production area, P10) no grant without a second, different
  holder refused there within the window, the pair including a staff member; at that timed anti-passback door
  (P31) no credential enters again within its time, across restarts, and no presence is recorded;
- P32: main and office form a mantrap: outside fire mode no grant opens one of them while the other is unlocked
  or read open, even for two grants decided in one instant (never two doors of a group unlocked at once);
- no committed or held event is lost: once the database takes writes, every decision is in the journal,
  `seq` is gapless and the chain verifies.

The hardware is a recording stand-in below the I/O module (the door logic above it is the gate's own);
the real module, broker and serial lines are exercised end to end in test_trust.py and test_outside.py.
"""
from __future__ import annotations

import asyncio
import shutil
import json
import time

import pytest
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from edge.config import load_config
from edge.hardware.devices import DeviceBoard
from edge.hardware.fireline import FireLine
from edge.core.gate import Gate
from edge.passes.keyring import build_keyring
from edge.link.central import CentralLink
from edge.link.client import Incoming
from edge.link.restore import ModeRestore
from edge.core.model import Mode
from edge.core.modes import ModeRefused
from edge.hardware.outputs import Outputs
from edge.store.records import AllowRecord
from edge.store import Store
from edge.store.allowlist import apply_items
from edge.store.journal import Journal, rfc3339
from sitekit import NO_PORT, make_site
from test_e2e_turnstile import LANE
from test_pin import FAST_N, PEPPER

PULSE_S = 0.02
MAX_SYNC_AGE_S = 600
DAY = 86400

BADGES = {  # credential -> (holder, category, roles)
    "badge:0A000001": ("h-1", "staff", []),
    "badge:0A000002": ("h-2", "staff", ["supervisor"]),
    "badge:0A000003": ("h-3", "contractor", []),
    "badge:0A000004": ("h-4", "salesman", []),  # P1: stored, refused everywhere
    "badge:0A000005": ("h-1", "staff", []),  # h-1's second card: no pair with the first (P33)
    "badge:0A000006": ("h-5", "staff", []),  # P34: gives a PIN at every keypad reader (office-in has one)
}
PINNED = "badge:0A000006"
PINS = {"good": "2468", "duress": "1357", "wrong": "0000"}
UNKNOWN = "badge:0BADBADB"
READERS = ("main-in", "main-out", "office-in", "vault-in")
VAULT_AREA, VAULT_COIL = "site/production/vault", 5
VAULT = f"""
[[doors]]
name = "vault"
area = "{VAULT_AREA}"
io = "io1"
lock_coil = {VAULT_COIL}
pulse_s = {{pulse}}
antipassback = "timed"

[[readers]]
name = "vault-in"
url = "socket://127.0.0.1:{NO_PORT}"
door = "vault"
direction = "in"
"""
TWO_PERSON_WINDOW_S, ANTIPASSBACK_S = 30, 300  # the defaults
FIRE, KEY, TROUBLE = 100, 101, 102  # the site inputs (sitekit's config, and the fire line's trouble input)
LOBBY_LIMIT = 2  # P35: the lobby's max_occupancy, below the people who may come in
LANE_COILS = (10, 11, 12)  # a turnstile lane's pass and free-wheel outputs (test_e2e_turnstile.LANE)


class FakeModule:
    """What the I/O module's driver would do, recorded: coils, inputs, and whether it answers."""

    def __init__(self):
        self.coils: dict[int, bool] = {}
        self.inputs: dict[int, bool] = {}
        self.connected = True
        self.supervised = True

    async def connect(self):
        self.connected = True

    async def close(self):
        pass

    async def write_coil(self, address, value, *, undo_on_timeout=False):
        self.coils[address] = value

    async def read_coils(self, address, *, count=1):
        return [self.coils.get(address + i, False) for i in range(count)]

    async def read_discrete_inputs(self, address, *, count=1):
        return [self.inputs.get(address + i, False) for i in range(count)]


class StubClient:
    def ack(self, msg):
        pass

    def publish(self, *a, **kw):
        return 0


class GateMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        import tempfile
        from pathlib import Path
        self.tmp = Path(tempfile.mkdtemp(prefix="gk-model-"))
        self.site = make_site(self.tmp / "site", broker_port=1)  # [mqtt]: the link handles messages; it never connects
        text = self.site.config.read_text()
        text = text.replace("[policy]", f"[policy]\nmax_sync_age_s = {MAX_SYNC_AGE_S}")
        text = text.replace("lockdown_input = 101", f"lockdown_input = {KEY}\nfire_trouble_input = {TROUBLE}")
        text = text.replace('"site/production/workshop-1"]', f'"site/production/workshop-1", "{VAULT_AREA}"]', 1)
        text = text.replace('escort_required = ["site/production"]',
                            f'escort_required = ["site/production"]\ntwo_person = ["{VAULT_AREA}"]\n'
                            f'max_occupancy = {{"site/lobby" = {LOBBY_LIMIT}}}')
        (self.site.dir / "pin.pepper").write_bytes(PEPPER)
        text = text.replace('name = "office-in"\n', 'name = "office-in"\nkeypad = true\n', 1)
        self.site.config.write_text(text + LANE.format(port=NO_PORT) + VAULT.format(pulse=PULSE_S)
                                    + '\n[pin]\npepper_file = "pin.pepper"\n')
        self.site.edit_door("main", pulse_s=PULSE_S)
        self.site.edit_door("office", pulse_s=PULSE_S, fail_mode="fail_safe")
        for door in ("main", "office"):  # P32: one mantrap
            self.site.edit_door(door, interlock="lobby-trap")
        self.cfg, self.base = load_config(self.site.config)
        self.loop = asyncio.new_event_loop()
        self.now = time.time()
        self.t0 = self.now
        self.passes = {
            "v1": self.site.issue(holder="h-9", category="visitor", areas=["site"], valid_from=self.t0 - 60,
                                  valid_until=self.t0 + 2 * 3600, host="h-1", visit="v1"),
            "v2": self.site.issue(holder="h-10", category="visitor", areas=["site"], valid_from=self.t0 - 60,
                                  valid_until=self.t0 + 3 * 3600, host="h-1", visit="v2"),
            "s1": self.site.issue(holder="h-11", category="salesman", areas=["site"], valid_from=self.t0 - 60,
                                  valid_until=self.t0 + 3600),
        }
        self.pass_info = {"v1": ("h-9", "visitor", self.t0 + 2 * 3600), "v2": ("h-10", "visitor", self.t0 + 3 * 3600),
                          "s1": ("h-11", "salesman", self.t0 + 3600)}
        self.other = None
        self._open()
        # what the model knows, from the rules alone
        self.revoked: set[str] = set()
        self.blocked: set[str] = set()
        self.consumed: set[str] = set()
        self.mode = Mode.NORMAL
        self.mode_by = None
        self.version, self.actor, self.seen = 0, "", 0
        self.fire_input = False
        self.key_switch = False  # as first read when the gate started
        self.trouble = False  # the fire line in fault (P28)
        self.heard_at = float(self.store.meta("created_at"))
        self.decisions = 0  # decisions made; every one must reach the journal
        self.vault_first: dict[str, tuple[float, str, str]] = {}  # P33: refused there, waiting: ref -> (at, holder, category)
        self.vault_entries: dict[str, float] = {}  # P31: ref -> its last entry through the vault door
        self.outage = False
        self.full = False
        from edge.core.pin import make
        hashes = {"pin_required": True, "pin_hash": make(PINS["good"], PEPPER, n=FAST_N),
                  "duress_hash": make(PINS["duress"], PEPPER, n=FAST_N)}
        records = [AllowRecord(credential=c, holder=h, category=cat, areas=["site"], roles=roles,
                               **(hashes if c == PINNED else {}))
                   for c, (h, cat, roles) in BADGES.items()]
        self.wrong_pins: list[float] = []  # P34: when wrong PINs were given for PINNED
        self._commit_elsewhere([("record", r) for r in records])

    # -- the gate, opened (again) on its file ---------------------------------------------------------
    def _open(self):
        self.store = Store(self.site.db)
        # the steady clock follows the model's time too: time passing is no jump, and the central heartbeat's
        # time is carried forward as the model's clock moves (P3)
        self.gate = Gate(self.cfg, self.store, build_keyring(self.cfg, self.base, self.store), clock=lambda: self.now,
                         steady_clock=lambda: self.now)
        self.gate.pin_pepper = PEPPER
        self.board = DeviceBoard(self.gate.record)
        fire_line = FireLine(self.board)  # as the daemon wires the site inputs (P28)
        self.outputs = Outputs(self.cfg, self.board,
                               lambda v: self.gate.modes.inputs(fire_line.read(v.get("fire"), v.get("fire_trouble")),
                                                                v.get("lockdown")),
                               self.gate.record, lambda: self.gate.modes.fire, self._passage)
        self.module = self.module if hasattr(self, "module") else FakeModule()
        self.io = self.outputs.modules["io1"]
        self.io.io = self.module
        self.gate.door_ready = self.outputs.ready
        self.gate.interlock, self.gate.interlock_claim = self.outputs.interlock.blocking, self.outputs.interlock.claim
        self.link = CentralLink(self.cfg, self.base, self.gate, self.board, lambda: None)
        self.link.client = StubClient()
        self.link.restore = ModeRestore(self.gate.modes, self.store, lambda body: None)  # as CentralLink.start does
        self._run(self.io._lock_all())
        self._run(self.io._poll())

    async def _passage(self, door, direction):
        pass  # nobody walks through the lane: its reader is never scanned here

    def _run(self, coro):
        return self.loop.run_until_complete(coro)

    def _commit_elsewhere(self, items):
        """Another process (an import, the sync worker) commits on its own connection."""
        if self.other is None:
            self.other = Store(self.site.db)
        with self.other.tx():
            apply_items(self.other, items, self.now)
            Journal(self.other).append("allowlist.applied", {"source": "import"}, self.now)

    def teardown(self):
        self.store.close()
        if self.other:
            self.other.close()
        self.loop.close()
        # each example's site holds an 8 MB disk reserve: hundreds of examples left behind fill the disk
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- rules -----------------------------------------------------------------------------------------
    @rule(reader=st.sampled_from(READERS), which=st.sampled_from(sorted(BADGES) + [UNKNOWN]))
    def scan_badge(self, reader, which):
        self._scan(reader, "badge", which, *(BADGES.get(which, (None, None, []))[:2]), None, which)

    @rule(reader=st.sampled_from(READERS), which=st.sampled_from(["v1", "v2", "s1"]))
    def scan_pass(self, reader, which):
        holder, cat, until = self.pass_info[which]
        self._scan(reader, "pass", self.passes[which], holder, cat, until, which)

    @rule(which=st.sampled_from(sorted(PINS)))
    def enter_pin(self, which):
        """P34: a PIN at the keypad reader: it decides the card waiting there, if one does."""
        self._scan("office-in", "pin", PINS[which], "h-5", "staff", None, PINNED, pin=which)

    @rule(which=st.sampled_from(sorted(BADGES)), first=st.sampled_from(["main-in", "office-in", "main-out"]))
    def two_doors_at_once(self, which, first):
        """P32: scans at both doors of the mantrap decided before either lock is driven (one instant)."""
        second = "main-in" if first == "office-in" else "office-in"
        holder, category = BADGES[which][:2]
        outs = [self._scan(r, "badge", which, holder, category, None, which, drive=False) for r in (first, second)]
        opened = [o for o in outs if o is not None and o.opens]  # None: a card waiting for its PIN (P34)
        for out in opened:
            self._run(self.outputs.pulse(out.door.name, out.door.direction.value))
        if self.gate.mode is not Mode.FIRE:
            assert len(opened) < 2, "two doors of the mantrap granted in one instant"

    def _scan(self, reader, kind, value, holder, category, until, key, pin=None, drive=True):
        if self.gate.mode is not Mode.FIRE:  # P32: what the gate knows of the mantrap's other door before the scan
            other = "office" if reader.startswith("main") else "main"
            other_busy = self.module.coils.get({"main": 0, "office": 1}[other]) or self.io.states[other].open
        out = self.gate.present(reader, kind, value)
        if out is None:  # P34: a card waiting for its PIN, or a PIN no card waits for
            assert kind == "pin" or (reader == "office-in" and key == PINNED), f"{key} at {reader} left undecided"
            return
        self.decisions += 1
        if reader == "office-in" and key == PINNED and out.decision.granted:  # P34
            assert pin in ("good", "duress"), f"granted at a keypad reader without its PIN ({pin})"
            last = self.wrong_pins[-5:]
            assert not (len(last) == 5 and last[-1] - last[0] <= 600 and self.now - last[-1] < 600), \
                "granted while locked out"
        if kind == "pin" and out.decision.reason == "pin_incorrect":
            assert pin == "wrong"
            self.wrong_pins.append(self.now)
        d = out.decision
        entry = reader.endswith("-in")
        assert d.reason != "fire_mode" or self.mode is Mode.FIRE, f"{d.reason} outside fire mode ({self.mode})"
        ref = out.cred.ref if hasattr(out.cred, "ref") else None
        if d.granted:
            assert category in ("staff", "vip", "visitor", "contractor"), f"granted {key} of category {category}"
            assert holder is not None, "an unknown credential was granted"
            assert key not in self.consumed, f"consumed {key} granted at {reader}"
            if entry:
                assert ref not in self.revoked, f"revoked {key} granted"
                assert holder not in self.blocked, f"blocklisted {holder} granted"
                if until is not None:
                    assert self.now < until + 60, f"expired {key} granted"
                if category in ("visitor", "contractor"):
                    assert self.now - self.heard_at <= MAX_SYNC_AGE_S, f"stale allow-list, {key} granted"
                if self.mode is Mode.LOCKDOWN:
                    assert BADGES.get(key, (0, 0, []))[2] == ["supervisor"], f"{key} granted in lockdown"
            if self.gate.mode is not Mode.FIRE:
                assert not other_busy, f"{out.door.name} granted while the mantrap's other door was unlocked or open"
            if reader == "vault-in":
                self._vault_pair(ref, holder, category, d.partner)
            if out.opens and drive:
                self._run(self.outputs.pulse(out.door.name, out.door.direction.value))
        elif reader == "vault-in" and d.reason in ("second_person_required", "escort_required"):
            self.vault_first[ref] = (self.now, holder, category)
        if d.consumes:
            self.consumed.add(key)
        return out

    def _vault_pair(self, ref, holder, category, partner):
        """P33: granted only with a different holder refused there within the window, one of the two staff (P10);
        P31: neither of the pair entered through the vault door within its time; no presence recorded there."""
        assert partner in self.vault_first, f"{ref} granted at the vault without a waiting partner"
        at, partner_holder, partner_category = self.vault_first.pop(partner)
        assert self.now - at <= TWO_PERSON_WINDOW_S, f"{ref} paired with {partner} after the window"
        assert partner_holder != holder, f"{holder} paired with their own other credential"
        assert "staff" in (category, partner_category), f"a pair without staff at the vault: {ref}, {partner}"
        for r in (ref, partner):
            last = self.vault_entries.get(r)
            assert last is None or abs(self.now - last) >= ANTIPASSBACK_S, f"{r} entered the vault again early"
            self.vault_entries[r] = self.now
            assert self.store.presence.get(r) != VAULT_AREA, f"presence recorded at the timed vault door for {r}"

    @rule(people=st.lists(st.sampled_from(sorted(BADGES) + ["v1", "v2"]), min_size=2, max_size=4))
    def people_at_the_vault(self, people):
        """P33, P31: scans at the vault in a row, so that sequences reach pairs (one holder's two cards, a pair's
        member coming back with someone else) often."""
        for which in people:
            if which in BADGES:
                self.scan_badge("vault-in", which)
            else:
                self.scan_pass("vault-in", which)

    @rule(which=st.sampled_from(["v1", "v2"]))
    def a_whole_visit(self, which):
        """In, signed off by the host, out: the common path in one step, so that sequences reach the pass's
        consumption often (while the database refuses writes, too)."""
        self.scan_pass("main-in", which)
        self.signoff(which, True)
        self.scan_pass("main-out", which)

    @rule(which=st.sampled_from(sorted(BADGES)))
    def revoke_badge_elsewhere(self, which):
        self._commit_elsewhere([("revoke", which)])
        self.revoked.add(which)

    @rule(holder=st.sampled_from(["h-1", "h-2", "h-3", "h-9", "h-10"]))
    def blocklist_elsewhere(self, holder):
        self._commit_elsewhere([("blocklist", ("holder", holder, "test", "deny"))])
        self.blocked.add(holder)

    @rule(which=st.sampled_from(["v1", "v2"]))
    def revoke_pass_elsewhere(self, which):
        from edge.passes import verify_pass
        cti = verify_pass(self.passes[which], self.gate.keyring).cti_hex
        self._commit_elsewhere([("revoke", f"pass:{cti}")])
        self.revoked.add(f"pass:{cti}")

    @rule(seconds=st.sampled_from([1, 30, 400, 900, 4000]))
    def time_passes(self, seconds):
        self.now += seconds
        self._run(asyncio.sleep(PULSE_S * 2))  # pulses end (their relock timers run on the loop)

    @rule(body=st.sampled_from([b"garbage", b"{}", b'{"time": 5}', b'{"time": "now"}', None]))
    def heartbeat(self, body):
        if body is None:
            body = json.dumps({"time": rfc3339(self.now)}).encode()  # the central clock agrees with ours (P3)
            self.heard_at = self.now
        self.link._handle(Incoming("acs/test/central/heartbeat", body, False, 0, 0))

    @rule(visit=st.sampled_from(["v1", "v2"]), good=st.booleans())
    def signoff(self, visit, good):
        body = json.dumps({"visit": visit, "host": "h-1", "time": "2026-11-30T10:00:00Z"} if good else {"visit": 5})
        if good:
            self.heard_at = self.now
        self.link._handle(Incoming("acs/test/visits/signoff", body.encode(), False, 0, 1))

    @rule(mode=st.sampled_from(["lockdown", "drill", "normal"]), version=st.integers(0, 12),
          actor=st.sampled_from(["central", "gate-2", "x"]), complete=st.booleans())
    def site_mode_message(self, mode, version, actor, complete):
        body = {"mode": mode, "actor": actor, "reason": "r", "time": "2026-11-30T10:00:00Z", "version": version}
        if not complete:
            del body["version"]
        self.link._handle(Incoming("acs/test/mode", json.dumps(body).encode(), False, 0, 1))
        if not complete:
            return
        self.seen = max(self.seen, version)
        target = Mode(mode)
        if self.mode is Mode.FIRE or (target is not Mode.LOCKDOWN and self.key_switch and self.mode is Mode.LOCKDOWN):
            return
        if (version, actor) <= (self.version, self.actor):
            return
        if target is not self.mode:
            self.mode_by = actor  # the same mode, newer, only takes the version: who made it stays
        self.mode, self.version, self.actor = target, version, actor

    @rule()
    def guard_lockdown(self):
        if self.mode is Mode.FIRE:
            return  # the API refuses a guard here (403): only a supervisor leaves fire mode
        self.gate.modes.set(Mode.LOCKDOWN, "g-1", "drill")
        if self.mode is not Mode.LOCKDOWN:
            self._local(Mode.LOCKDOWN, "g-1")

    @rule()
    def supervisor_normal(self):
        if self.mode is Mode.FIRE and self.fire_input:
            return  # the API refuses it (409)
        self.gate.modes.set(Mode.NORMAL, "s-1", "all clear")
        if self.mode is not Mode.NORMAL:
            self._local(Mode.NORMAL, "s-1")

    @rule(scope=st.sampled_from(["gate", "site"]))
    def supervisor_drill(self, scope):
        """P28: a supervisor's drill, through the rules the API uses; never during a fire."""
        if self.mode is Mode.FIRE:
            with pytest.raises(ModeRefused):
                self.gate.modes.request(Mode.DRILL, "s-1", "supervisor", "drill", scope)
            return
        self.gate.modes.request(Mode.DRILL, "s-1", "supervisor", "drill", scope)
        if scope == "site":  # a site change always takes a new version, the same mode or not
            self.version = max(self.seen, self.version) + 1
            self.seen = self.version
            if self.mode is not Mode.DRILL:
                self.mode_by = "s-1"
            self.mode, self.actor = Mode.DRILL, "s-1"
        elif self.mode is not Mode.DRILL:
            self._local(Mode.DRILL, "s-1")

    def _local(self, mode, by):
        self.version = max(self.seen, self.version) + 1
        self.seen = max(self.seen, self.version)
        self.mode, self.actor, self.mode_by = mode, by, by

    @rule(fire=st.booleans(), key=st.booleans(), trouble=st.sampled_from([False, False, True]))
    def site_inputs(self, fire, key, trouble):
        self.module.inputs[FIRE], self.module.inputs[KEY], self.module.inputs[TROUBLE] = fire, key, trouble
        self._run(self.io._poll())
        self._inputs_read(fire, key, trouble)

    def _inputs_read(self, fire, key, trouble):
        """P16: the fire input starts fire mode (a drill included); P15: the key switch, on its turns, starts a
        lockdown (over a drill too) and, returning, ends the one it made (a first reading after a start counts
        as a turn). P28: while the fire line is in fault the fire input is not read: the last reading holds."""
        turned = key != self.key_switch
        self.key_switch, self.trouble = key, trouble
        if not trouble:
            self.fire_input = fire
        if self.fire_input and not trouble and self.mode is not Mode.FIRE:
            self._local(Mode.FIRE, "fire_input")
        if turned and key and self.mode in (Mode.NORMAL, Mode.DRILL):
            self._local(Mode.LOCKDOWN, "lockdown_input")
        elif turned and not key and self.mode is Mode.LOCKDOWN and self.mode_by in (None, "lockdown_input"):
            self._local(Mode.NORMAL, "lockdown_input")

    @rule(door=st.sampled_from([0, 2]), is_open=st.booleans())
    def door_contact(self, door, is_open):
        self.module.inputs[door] = is_open
        self._run(self.io._poll())

    @precondition(lambda self: not self.outage and not self.full)
    @rule()
    def restart(self):
        assert self.gate.holdback.close(self.store.tx) == 0
        self.store.close()
        self._open()  # its first poll reads the site inputs again
        self.vault_first.clear()  # who waits for a second person is remembered in memory only (P33)
        self.key_switch = None
        self.fire_input = False  # the last reading lives in memory: a gate started on a faulty line knows none
        self._inputs_read(self.module.inputs.get(FIRE, False), self.module.inputs.get(KEY, False),
                          self.module.inputs.get(TROUBLE, False))

    @precondition(lambda self: not self.outage and not self.full)
    @rule(kind=st.sampled_from(["readonly", "full"]))
    def database_refuses(self, kind):
        if kind == "readonly":
            self.outage = True
        else:
            self.full = True
        self._refuse()

    def _refuse(self):
        if self.outage:
            self.store.conn.execute("PRAGMA query_only = ON")
        if self.full:
            pages = self.store.conn.execute("PRAGMA page_count").fetchone()[0]
            self.store.conn.execute(f"PRAGMA max_page_count = {pages}")

    @precondition(lambda self: self.outage or self.full)
    @rule()
    def database_back(self):
        self.store.conn.execute("PRAGMA query_only = OFF")
        self.store.conn.execute("PRAGMA max_page_count = 1073741823")
        self.outage = self.full = False
        assert self.gate.holdback.flush(self.store.tx)

    # -- invariants ------------------------------------------------------------------------------------
    @invariant()
    def mode_follows_the_rules(self):
        assert self.gate.mode is self.mode, (self.gate.mode, self.mode, self.gate.modes.state, (self.version, self.actor))

    @invariant()
    def locks_locked_outside_fire_once_pulses_end(self):
        self._run(self.io._poll())  # a freed door relocks on the poll after fire ends (at once if shut)
        if self.gate.mode is Mode.FIRE:
            return
        if any(self.module.coils.values()):
            self._run(asyncio.sleep(PULSE_S * 2))  # pulses end: their relock timers run on the loop  # a freed door relocks on the poll after fire ends (at once if shut)
        drill = self.gate.mode is Mode.DRILL
        for door, coil, contact in (("main", 0, 0), ("office", 1, 2), ("vault", VAULT_COIL, 3)):
            if self.module.coils.get(coil) and self.module.inputs.get(contact):
                continue  # a door freed for a fire (ended since) and still standing open locks as it shuts
            assert not self.module.coils.get(coil), f"{door} unlocked outside fire mode after its pulse"
        for coil in LANE_COILS:
            assert not self.module.coils.get(coil), f"lane output {coil} on outside fire mode"
        if drill:  # P28: a drill frees nothing
            assert not any(s.freed for s in self.io.states.values()), "a door or lane freed in a drill"

    @invariant()
    def no_grant_here_fills_a_limited_area_beyond_its_limit(self):
        """P35: only this gate's grants fill the lobby here (no peers, no corrections), so it never holds more."""
        assert self.gate.occupancy.taken("site/lobby") <= LOBBY_LIMIT, self.gate.occupancy.areas()
        if self.outage or self.full or self.gate.holdback.held:
            return  # the presence table catches up when the held writes are replayed
        n = self.store.conn.execute("SELECT coalesce(sum(party), 0) FROM presence WHERE area = 'site/lobby'"
                                    " OR area LIKE 'site/lobby/%'").fetchone()[0]
        assert n <= LOBBY_LIMIT, f"{n} people in the lobby"
        assert self.gate.occupancy.count("site/lobby") == n, (self.gate.occupancy.areas(), n)

    @invariant()
    def nothing_lost_and_the_chain_holds(self):
        if self.outage or self.full or self.gate.holdback.held:
            return
        rows = list(Journal(self.store).entries())
        decided = sum(1 for e in rows if e.type in ("access.granted", "access.denied", "exit.held"))
        escorted = sum(1 for e in rows if e.type == "access.granted" and "escorted_after" in e.data)
        lost = sum(json.loads(e.data).get("lost_events", 0) for e in rows if e.type == "alarm.raised")
        assert decided - escorted + lost >= self.decisions
        ok, why = Journal(self.store).verify()
        assert ok, why


@pytest.mark.timeout(900)
def test_model_of_the_gate_holds_after_any_sequence():
    run = GateMachine.TestCase
    run.settings = settings(max_examples=120, stateful_step_count=50, deadline=None, derandomize=True,
                            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    run("runTest").runTest()

"""The gate in one process: real config, real SQLite, real signed passes; what each decision leaves behind."""
from __future__ import annotations

import json
import time

import pytest

from edge.config import load_config
from edge.core.gate import Gate
from edge.passes.keyring import build_keyring
from edge.core.model import Direction, Mode
from edge.store import Store
from edge.store.journal import Journal
from edge.core.window import RELEASE_EPOCH
from sitekit import DAY, KID, in_process_gate, make_site

STAFF = "badge:04A1B2C3"
SUPERVISOR = "badge:04112233"


@pytest.fixture
def site(tmp_path):
    s = make_site(tmp_path / "site")
    r = s.import_lines([
        {"credential": STAFF, "holder": "h-1", "category": "staff", "areas": ["site"]},
        {"credential": SUPERVISOR, "holder": "h-2", "category": "staff", "areas": ["site"], "roles": ["supervisor"]},
    ])
    assert r.returncode == 0, r.stderr
    return s


@pytest.fixture
def gate(site):
    with in_process_gate(site) as g:
        yield g


def visitor_pass(site, now, **kw):
    args = dict(holder="h-9", category="visitor", areas=["site/lobby"], valid_from=now - 60, valid_until=now + 3600,
                host="h-1")
    args.update(kw)
    return site.issue(**args)


def types(entries):
    return [e.type for e in entries]


def test_p2_a_verified_pass_is_granted_and_journaled_with_its_reason(site, gate):
    now = time.time()
    out = gate.present("main-in", "pass", visitor_pass(site, now))
    assert out.opens and out.decision.reason == "ok"
    assert types(out.entries) == ["access.granted"]
    assert out.entries[0].seq == Journal(gate.store).last_seq()


def test_p2_a_pass_from_an_unknown_key_is_bad_signature(site, gate, tmp_path):
    from edge.passes import issue_pass
    from edge.passes.keys import generate_keypair
    stranger = generate_keypair(KID, tmp_path / "other")  # same kid, another key
    now = time.time()
    text = issue_pass(stranger, KID, holder="h-9", category="visitor", areas=["site/lobby"], valid_from=now - 60,
                      valid_until=now + 3600)
    out = gate.present("main-in", "pass", text)
    assert not out.opens and out.decision.reason == "bad_signature"


def test_p7_presence_follows_grants_in_and_out(site, gate):
    now = time.time()
    text = visitor_pass(site, now)
    gate.present("main-in", "pass", text, now)
    assert gate.evaluate("main-in", "pass", text, now + 1).decision.reason == "antipassback"
    assert gate.store.presence  # the visitor is on site


def test_p8_p9_signed_off_visitor_exit_consumes_the_pass(site, gate):
    now = time.time()
    text = visitor_pass(site, now, visit="v-42")
    gate.present("main-in", "pass", text, now)
    held = gate.present("main-out", "pass", text, now + 10)
    assert (held.decision.held, types(held.entries)) == (True, ["exit.held"])
    with gate.store.tx():
        gate.store.conn.execute("INSERT INTO signoffs(visit, host, at) VALUES('v-42', 'h-1', ?)", (now,))
    gate.store.refresh(force=True)
    out = gate.present("main-out", "pass", text, now + 20)
    assert out.opens and types(out.entries) == ["access.granted", "visit.checked_out"]
    assert json.loads(out.entries[1].data)["visit"] == "v-42"
    again = gate.present("main-in", "pass", text, now + 30)
    assert again.decision.reason == "pass_consumed"


def test_p12_special_vip_arrival_tells_the_host_with_priority(site, gate):
    now = time.time()
    text = site.issue(holder="h-vip", category="vip", tier="special", areas=["site"], valid_from=now - 60,
                      valid_until=now + 3600, host="h-1", party=3)
    out = gate.present("main-in", "pass", text, now)
    assert types(out.entries) == ["access.granted", "visitor.arrived"]
    arrived = json.loads(out.entries[1].data)
    assert (arrived["host"], arrived["tier"], arrived["priority"], arrived["party"]) == ("h-1", "special", "high", 3)
    # SPEC §2: a priority is one type, "high" or "normal", never a flag
    text = site.issue(holder="h-vip2", category="vip", tier="first", areas=["site"], valid_from=now - 60,
                      valid_until=now + 3600, host="h-1")
    out = gate.present("main-in", "pass", text, now)
    assert json.loads(out.entries[1].data)["priority"] == "normal"


def test_p3_implausible_clock_refuses_passes_raises_one_alarm_and_staff_still_work(site, gate):
    bad = RELEASE_EPOCH - 30 * DAY
    now = time.time()
    text = visitor_pass(site, now)
    first = gate.present("main-in", "pass", text, bad)
    second = gate.present("main-in", "pass", text, bad + 1)
    assert first.decision.reason == second.decision.reason == "clock_invalid"
    assert types(first.entries) == ["alarm.raised", "access.denied"]
    assert types(second.entries) == ["access.denied"]  # one alarm per episode, not one per scan
    assert gate.present("main-in", "badge", STAFF, bad).opens


def test_p15_lockdown_survives_a_restart(site, gate):
    gate.modes.set(Mode.LOCKDOWN, "h-guard", "drill")
    cfg, base = load_config(site.config)
    store = Store(site.db)
    try:
        g2 = Gate(cfg, store, build_keyring(cfg, base, store))
        assert g2.mode is Mode.LOCKDOWN
        assert g2.evaluate("main-in", "badge", STAFF).decision.reason == "lockdown"
        assert g2.evaluate("main-in", "badge", SUPERVISOR).decision.granted
    finally:
        store.close()


def test_p6_revocation_imported_by_another_process_applies_at_once(site, gate):
    now = time.time()
    text = visitor_pass(site, now, cti=bytes.fromhex("00112233445566778899"))
    assert gate.evaluate("main-in", "pass", text).decision.granted
    assert site.import_lines([{"revoke": {"pass": "00112233445566778899"}}]).returncode == 0
    assert gate.evaluate("main-in", "pass", text).decision.reason == "revoked"


def test_p23_stale_allowlist_refuses_visitors_not_staff(site):
    text = site.config.read_text().replace('guard_room = "site/guard-room"',
                                           'guard_room = "site/guard-room"\nmax_sync_age_s = 3600')
    site.config.write_text(text)
    cfg, base = load_config(site.config)
    store = Store(site.db)
    try:
        g = Gate(cfg, store, build_keyring(cfg, base, store))
        later = time.time() + 2 * 3600
        assert g.evaluate("main-in", "pass", visitor_pass(site, later), later).decision.reason == "stale_allowlist"
        assert g.evaluate("main-in", "badge", STAFF, later).decision.granted
    finally:
        store.close()


def test_p2_malformed_scan_is_refused_and_journaled(gate):
    out = gate.present("main-in", "malformed", "neither a badge UID nor a pass")
    assert (out.decision.reason, types(out.entries)) == ("malformed", ["access.denied"])


def test_import_is_all_or_nothing(site, gate):
    r = site.import_lines([
        {"credential": "badge:0A0A0A0A", "holder": "h-5", "category": "staff", "areas": ["site"]},
        {"credential": "badge:0B0B0B0B", "holder": "h-6", "category": "staff", "areas": ["Site!"]},
    ])
    assert r.returncode == 1 and "nothing imported" in r.stderr and ":2:" in r.stderr
    assert gate.evaluate("main-in", "badge", "badge:0A0A0A0A").decision.reason == "unknown_credential"


def test_p1_record_of_an_unknown_category_is_stored_refused_everywhere_and_alarmed(site, gate):
    """P1: the rest of the import applies; the salesman's badge is refused in and out, as `malformed`."""
    last = gate.journal.last_seq()
    r = site.import_lines([
        {"credential": "badge:0A0A0A0A", "holder": "h-5", "category": "staff", "areas": ["site"]},
        {"credential": "badge:0B0B0B0B", "holder": "h-6", "category": "salesman", "areas": ["site"]},
    ])
    assert r.returncode == 0 and "unknown category" in r.stderr
    alarms = [json.loads(e.data) for e in gate.journal.entries(last) if e.type == "alarm.raised"]
    assert [(a["alarm"], a["credentials"]) for a in alarms] == [("unknown_category", ["badge:0B0B0B0B"])]
    assert gate.present("main-in", "badge", "badge:0A0A0A0A").opens
    for reader in ("main-in", "main-out", "office-in"):
        out = gate.present(reader, "badge", "badge:0B0B0B0B")
        assert (out.opens, out.decision.reason) == (False, "malformed"), reader


@pytest.fixture
def workshop(site):
    """The test site plus a workshop door into an escort-required production area: its gate."""
    text = site.config.read_text() + '''
[[doors]]
name = "workshop"
area = "site/production/workshop-1"
io = "io1"
lock_coil = 3

[[readers]]
name = "workshop-in"
url = "socket://127.0.0.1:1"
door = "workshop"
direction = "in"
'''
    site.config.write_text(text)
    cfg, base = load_config(site.config)
    store = Store(site.db)
    yield Gate(cfg, store, build_keyring(cfg, base, store))
    store.close()


def test_p10_escorted_after_staff_scan_is_granted(site, workshop):
    g = workshop
    now = time.time()
    text = visitor_pass(site, now, category="contractor", areas=["site/production"])
    assert g.present("workshop-in", "badge", STAFF, now).opens
    out = g.present("workshop-in", "pass", text, now + 5)
    assert out.opens and json.loads(out.entries[0].data)["escort_by"] == STAFF


def test_p10_escorted_first_is_refused_then_granted_when_the_staff_scan_follows(site, workshop):
    g = workshop
    now = time.time()
    text = visitor_pass(site, now, category="contractor", areas=["site/production"])
    first = g.present("workshop-in", "pass", text, now)
    assert (first.opens, first.decision.reason) == (False, "escort_required")
    staff = g.present("workshop-in", "badge", STAFF, now + 10)
    assert [e.type for e in staff.entries] == ["access.granted", "access.granted"]
    auto = json.loads(staff.entries[1].data)
    assert (auto["holder"], auto["escort_by"], auto["flags"]) == ("h-9", STAFF, ["escorted_after"])
    assert g.store.presence[auto["credential_ref"]] == "site/production/workshop-1"


def test_p10_escorted_first_expires_after_the_window(site, workshop):
    g = workshop
    now = time.time()
    text = visitor_pass(site, now, category="contractor", areas=["site/production"])
    g.present("workshop-in", "pass", text, now)
    staff = g.present("workshop-in", "badge", STAFF, now + 31)  # default window 30 s
    assert [e.type for e in staff.entries] == ["access.granted"]


def test_spec6_decisions_go_on_while_the_database_takes_no_writes_and_nothing_is_lost(site, gate):
    now = time.time()
    last = Journal(gate.store).last_seq()
    gate.store.conn.execute("PRAGMA query_only = ON")  # any write now fails, as on a read-only or full disk
    outs = [gate.present("main-in", "badge", STAFF, now + i) for i in range(3)]
    assert all(o.opens for o in outs) and all(o.entries == () for o in outs)  # doors still open
    assert gate.modes.set(Mode.LOCKDOWN, "h-guard", "drill") is None  # held, but in force at once
    assert gate.evaluate("main-in", "badge", STAFF).decision.reason == "lockdown"
    assert not gate.holdback.flush()  # still not writable: everything stays held
    gate.store.conn.execute("PRAGMA query_only = OFF")
    assert gate.holdback.flush()
    rows = list(Journal(gate.store).entries(last))
    assert [e.type for e in rows] == ["access.granted"] * 3 + ["mode.changed", "alarm.raised"]
    assert [e.seq for e in rows] == list(range(last + 1, last + 6))  # in order, no gap
    assert json.loads(rows[-1].data)["lost_events"] == 0
    assert Journal(gate.store).verify()[0]


def test_spec6_an_overflowing_hold_is_counted_as_lost_events(site, gate):
    gate.holdback.max_held = 2
    gate.store.conn.execute("PRAGMA query_only = ON")
    for i in range(5):
        assert gate.present("main-in", "badge", STAFF).opens
    gate.store.conn.execute("PRAGMA query_only = OFF")
    assert gate.holdback.flush()
    last = list(Journal(gate.store).entries(0))[-1]
    assert last.type == "alarm.raised" and json.loads(last.data)["lost_events"] == 3


def test_p6_import_while_running_is_enforced(site, gate):
    """A revocation and a blocklist entry imported by another process, then the gate's own commits (a
    door event, a malformed line, the outbox watermark): the next scan decides on the import."""
    visitor = visitor_pass(site, time.time(), holder="h-77")
    assert gate.present("main-in", "badge", STAFF).opens  # the mirrors are loaded before the import
    assert site.import_lines([{"revoke": {"credential": STAFF}}, {"blocklist": {"holder": "h-77"}}]).returncode == 0
    gate.record("door.opened", {"door": "office"})
    gate.present("office-in", "malformed", "garbage")
    gate.store.defer_meta("outbox_acked", "3")
    gate.store.flush_deferred()
    assert gate.present("main-in", "badge", STAFF).decision.reason == "revoked"
    assert gate.present("main-in", "pass", visitor).decision.reason == "blocklisted"


def test_p15_site_mode_is_ordered_by_version_not_by_clock(gate):
    """SPEC §2: a replayed site message (not above the version in force) never ends a newer lockdown."""
    assert gate.modes.from_site(Mode.LOCKDOWN, "central", "drill", version=3) is not None
    assert gate.modes.set(Mode.NORMAL, "h-sup", "all clear") is not None  # local: takes version 4
    assert gate.modes.state.version == 4
    assert gate.modes.set(Mode.LOCKDOWN, "h-guard", "intruder") is not None  # a guard's local lockdown, v5
    assert gate.modes.from_site(Mode.NORMAL, "x", "replayed", version=3) is None  # the old message again
    assert gate.modes.from_site(Mode.NORMAL, "central", "stale", version=4) is None
    assert gate.mode is Mode.LOCKDOWN
    # ties at one version go to the larger actor
    assert gate.modes.from_site(Mode.NORMAL, "a-central", "tie", version=5) is None
    assert gate.modes.from_site(Mode.NORMAL, "z-central", "newer", version=5) is not None
    assert gate.mode is Mode.NORMAL and gate.modes.state.next_version() == 6


def test_p15_the_key_switch_keeps_its_lockdown_and_fire_is_never_ended_from_the_network(gate):
    gate.modes.inputs(fire=False, key_switch=True)
    assert gate.mode is Mode.LOCKDOWN
    assert gate.modes.from_site(Mode.NORMAL, "central", "all clear", version=99) is None
    assert gate.mode is Mode.LOCKDOWN
    gate.modes.inputs(fire=False, key_switch=False)  # the key switch returning ends its own lockdown
    assert gate.mode is Mode.NORMAL
    gate.modes.inputs(fire=True, key_switch=False)
    assert gate.mode is Mode.FIRE
    assert gate.modes.from_site(Mode.NORMAL, "central", "all clear", version=200) is None
    assert gate.modes.from_site(Mode.LOCKDOWN, "central", "lockdown", version=201) is None
    assert gate.mode is Mode.FIRE


def test_p15_mode_and_its_version_survive_a_restart(site, gate):
    gate.modes.from_site(Mode.LOCKDOWN, "central", "drill", version=7)
    cfg, base = load_config(site.config)
    store = Store(site.db)
    try:
        g2 = Gate(cfg, store, build_keyring(cfg, base, store))
        assert (g2.mode, g2.modes.state.version, g2.modes.state.actor) == (Mode.LOCKDOWN, 7, "central")
        assert g2.modes.from_site(Mode.NORMAL, "central", "replayed", version=7) is None
    finally:
        store.close()


def test_p15_a_newer_message_for_the_mode_in_force_outranks_a_replay_after_a_crash(site, gate):
    """SPEC §2: a site message for the mode already in force changes no mode but takes its version; that
    version is committed at once, so after a crash (no clean stop) the message it outranked, replayed,
    still changes nothing."""
    assert gate.modes.from_site(Mode.NORMAL, "central", "routine", version=0) is None  # normal already
    assert gate.modes.from_site(Mode.LOCKDOWN, "a-gate", "outranked", version=0) is None
    cfg, base = load_config(site.config)
    store = Store(site.db)  # the first store is never closed: what it deferred is lost, as in a crash
    try:
        g2 = Gate(cfg, store, build_keyring(cfg, base, store))
        assert (g2.modes.state.version, g2.modes.state.actor) == (0, "central")
        assert g2.modes.from_site(Mode.LOCKDOWN, "a-gate", "replayed", version=0) is None
        assert g2.mode is Mode.NORMAL
    finally:
        store.close()


def test_p16_a_site_message_ignored_in_fire_mode_still_counts_for_the_next_version_after_a_crash(site, gate):
    """SPEC §2: a site message that fire mode ignores is still seen; the version is committed at once, so
    after a crash the supervisor's change that ends the fire outranks it, and its replay changes nothing."""
    gate.modes.inputs(fire=True, key_switch=None)
    assert gate.mode is Mode.FIRE
    assert gate.modes.from_site(Mode.LOCKDOWN, "central", "ignored in fire", version=5) is None
    cfg, base = load_config(site.config)
    store = Store(site.db)  # the first store is never closed, as in a crash
    try:
        g2 = Gate(cfg, store, build_keyring(cfg, base, store))
        g2.modes.inputs(fire=False, key_switch=None)
        g2.modes.request(Mode.NORMAL, "s-1", "supervisor", "all clear", "gate")
        assert g2.modes.state.version == 6 and g2.mode is Mode.NORMAL
        assert g2.modes.from_site(Mode.LOCKDOWN, "central", "replayed", version=5) is None
        assert g2.mode is Mode.NORMAL
    finally:
        store.close()


def test_p9_a_held_exit_survives_a_restart_and_is_released(site, gate):
    now = time.time()
    text = visitor_pass(site, now, holder="h-30")
    assert gate.present("main-in", "pass", text, now).opens
    held = gate.present("main-out", "pass", text, now + 60)
    assert held.decision.held
    visit = next(iter(gate.held_exits))
    cfg, base = load_config(site.config)
    store = Store(site.db)
    try:
        g2 = Gate(cfg, store, build_keyring(cfg, base, store))
        assert list(g2.held_exits) == [visit]
        door = g2.release(visit, "g-1", "guard", "host confirmed by phone", now + 120)
        assert door is not None and door.name == "main"
        assert g2.evaluate("main-in", "pass", text, now + 130).decision.reason == "pass_consumed"
    finally:
        store.close()
    assert store.path.exists()
    g3_store = Store(site.db)
    try:
        g3 = Gate(cfg, g3_store, build_keyring(cfg, base, g3_store))
        assert g3.held_exits == {}  # released is released, after another restart too
    finally:
        g3_store.close()


def test_p23_only_a_heard_central_refreshes_the_allow_list_age(site):
    text = site.config.read_text().replace("[policy]", "[policy]\nmax_sync_age_s = 30")
    site.config.write_text(text)
    cfg, base = load_config(site.config)
    store = Store(site.db)
    try:
        g = Gate(cfg, store, build_keyring(cfg, base, store))
        now = time.time()
        pass_text = visitor_pass(site, now)
        assert g.evaluate("main-in", "pass", pass_text, now + 31).decision.reason == "stale_allowlist"
        g.heard(now + 31)
        assert g.evaluate("main-in", "pass", pass_text, now + 32).decision.granted
    finally:
        store.close()


def test_p8_a_pass_consumed_while_the_database_refuses_writes_stays_consumed(site, gate):
    """SPEC §6: the consumption is held with the journal, and in force at once: the pass cannot go round
    again before the database takes writes, nor after."""
    now = time.time()
    text = visitor_pass(site, now, holder="h-40", visit="v-40")
    assert gate.present("main-in", "pass", text, now).opens
    gate.sign_off("v-40", "h-1", "central", now + 1)
    gate.store.conn.execute("PRAGMA query_only = ON")
    out = gate.present("main-out", "pass", text, now + 2)
    assert out.opens and out.decision.consumes and out.entries == ()
    assert gate.present("main-in", "pass", text, now + 3).decision.reason == "pass_consumed"
    assert gate.present("main-out", "pass", text, now + 4).decision.reason == "pass_consumed"
    gate.store.conn.execute("PRAGMA query_only = OFF")
    assert gate.holdback.flush(gate.store.tx)
    assert gate.present("main-in", "pass", text, now + 5).decision.reason == "pass_consumed"


def test_p9_a_signoff_held_while_the_database_refuses_writes_lets_the_visitor_out(site, gate):
    now = time.time()
    text = visitor_pass(site, now, holder="h-41", visit="v-41")
    assert gate.present("main-in", "pass", text, now).opens
    gate.store.conn.execute("PRAGMA query_only = ON")
    gate.sign_off("v-41", "h-1", "central", now + 1)
    out = gate.present("main-out", "pass", text, now + 2)
    assert out.opens and out.decision.reason == "ok"
    gate.store.conn.execute("PRAGMA query_only = OFF")
    assert gate.holdback.flush(gate.store.tx)


def test_p9_an_exit_held_while_the_database_refuses_writes_can_be_released(site, gate):
    """SPEC §6: the held exit is in force at once (a guard can release it), its write held back."""
    now = time.time()
    text = visitor_pass(site, now, holder="h-42", visit="v-42")
    assert gate.present("main-in", "pass", text, now).opens
    gate.store.conn.execute("PRAGMA query_only = ON")
    out = gate.present("main-out", "pass", text, now + 1)
    assert out.decision.held and out.entries == ()
    door = gate.release("v-42", "g-1", "guard", "host called", now + 2)
    assert door is not None and door.name == "main"
    assert gate.present("main-in", "pass", text, now + 3).decision.reason == "pass_consumed"
    gate.store.conn.execute("PRAGMA query_only = OFF")
    assert gate.holdback.flush(gate.store.tx)
    kinds = [t for _, t, _ in _journal(gate) if t in ("exit.held", "exit.released", "visit.checked_out")]
    assert kinds == ["exit.held", "exit.released", "visit.checked_out"]
    assert gate.store.conn.execute("SELECT count(*) FROM held_exits").fetchone()[0] == 0


def test_p11_a_lane_grant_while_the_database_refuses_writes_admits_its_passages(site, tmp_path):
    """SPEC §6: the lane's pending grant is in force at once, so the person walking through is a passage
    of that grant, not a forced lane; the entries follow when the database takes writes."""
    from test_e2e_turnstile import LANE
    site.config.write_text(site.config.read_text() + LANE.format(port=1))
    cfg, base = load_config(site.config)
    store = Store(site.db)
    try:
        g = Gate(cfg, store, build_keyring(cfg, base, store))
        now = time.time()
        store.conn.execute("PRAGMA query_only = ON")
        out = g.present("lane-in", "badge", STAFF, now)
        assert out.opens and out.entries == ()
        _, more = g.passage("lane1", Direction.IN, now + 1)
        assert not more
        store.conn.execute("PRAGMA query_only = OFF")
        assert g.holdback.flush(store.tx)
        kinds = [t for _, t, _ in _journal(g) if t.startswith(("access.", "door."))]
        assert kinds == ["access.granted", "access.passage"]
        assert store.presence[STAFF] == "site/lobby"
    finally:
        store.close()


def _journal(gate):
    return [(e.seq, e.type, json.loads(e.data)) for e in gate.journal.entries()]


def test_keys_imported_while_running_are_trusted_at_the_next_scan(site, gate, tmp_path):
    """A key imported by another process (SPEC §1 `{"key": ...}`): the next pass it signed verifies."""
    from edge.passes import issue_pass
    from edge.passes.keys import generate_keypair, public_pem
    reloaded = []
    gate.reload_keys = lambda: reloaded.append(build_keyring(*load_config(site.config), gate.store)) or \
        setattr(gate, "keyring", reloaded[-1])
    key = generate_keypair("central-2", tmp_path / "k2")
    now = time.time()
    text = issue_pass(key, "central-2", holder="h-50", category="visitor", areas=["site/lobby"],
                      valid_from=now - 60, valid_until=now + 3600, host="h-1")
    assert gate.present("main-in", "pass", text, now).decision.reason == "bad_signature"
    assert site.import_lines([{"key": {"kid": "central-2", "public_key": public_pem(key.public_key()).decode(),
                                       "scope": ["visitor"]}}]).returncode == 0
    assert gate.present("main-in", "pass", text, now).decision.reason == "ok"
    assert len(reloaded) == 1

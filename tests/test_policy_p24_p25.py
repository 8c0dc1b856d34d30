"""P24 calendars and P25 exit sign-off by category and tier: the decision, the config, the sync's items, and
end to end over MQTT (a calendar batch from the central simulator; a badge VIP signed off by credential ref)."""
from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from edge.config import ConfigError, GateConfig, load_config
from edge.core.model import Credential, Direction, DoorView, Facts, Mode
from edge.core.outcome import settings_from
from edge.core.policy import decide, hours_today
from edge.link.messages import BadMessage, ChangeBatch, Signoff, SnapshotChunk, parse
from edge.link.sync import calendar_rows

ROOT = Path(__file__).resolve().parent.parent
CN = ROOT / "config" / "calendars" / "cn-2026-2027.toml"
TZ = ZoneInfo("Asia/Shanghai")
HOUR = 3600.0


def at(y, m, d, hh=10, mm=0) -> float:
    """A site local time (Asia/Shanghai) as epoch seconds."""
    return datetime(y, m, d, hh, mm, tzinfo=TZ).timestamp()


BASE = {"site": {"id": "s", "gate": "g", "timezone": "Asia/Shanghai"}, "areas": {"tree": ["site", "site/lobby"]}}


def config(**sections) -> GateConfig:
    return GateConfig.model_validate({**BASE, **sections})


def settings(synced=(), **sections):
    return settings_from(config(**sections), synced)


CAL = {"site": {"days": [
    {"date": "2026-10-01", "kind": "holiday", "name": "National Day"},
    {"date": "2026-10-10", "kind": "workday", "as": "wed"},  # a Saturday worked
]}}
SCHEDULES = {
    "weekdays": {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "17:00", "calendar": "site"},
    "weekdays_plain": {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "17:00"},
    "holiday_morning": {"start": "08:00", "end": "21:30", "calendar": "site",
                        "holiday": {"start": "09:00", "end": "12:00"}},
    "all_day": {"start": "00:00", "end": "24:00", "calendar": "site"},
}
S = settings(calendars=CAL, schedules=SCHEDULES)

LOBBY_IN = DoorView("main", "site/lobby", Direction.IN, perimeter=True)
LOBBY_OUT = DoorView("main", "site/lobby", Direction.OUT, perimeter=True)
OFFICE_OUT = DoorView("office", "site/lobby", Direction.OUT)


def cred(category, tier=None, schedule=None, kind="badge"):
    ref = "badge:0A0B0C0D" if kind == "badge" else "pass:00112233445566778899"
    return Credential(kind, ref, f"h-{category}", category, ("site",), tier=tier, schedule=schedule,
                      visit=None if kind == "badge" else "v-1")


def run(c, now, s=S, door=LOBBY_IN, **facts):
    return decide(c, door, now, Facts(**facts), s)


# (case, credential, site local time, granted, reason)
P24 = [
    ("a visitor on a holiday: visiting hours closed", cred("visitor"), at(2026, 10, 1), False, "outside_schedule"),
    ("a contractor on a holiday", cred("contractor"), at(2026, 10, 1), False, "outside_schedule"),
    ("a VIP on a holiday (visiting hours by default)", cred("vip", "first"), at(2026, 10, 1), False, "outside_schedule"),
    ("staff are unaffected", cred("staff"), at(2026, 10, 1), True, "ok"),
    ("staff on a schedule without a calendar are unaffected", cred("staff", schedule="weekdays_plain"),
     at(2026, 10, 1), True, "ok"),
    ("a visitor the day after: not listed, its own weekday", cred("visitor"), at(2026, 10, 2), True, "ok"),
    ("`always` knows no calendar", cred("visitor", schedule="always"), at(2026, 10, 1), True, "ok"),
    ("holiday hours apply on a holiday", cred("visitor", schedule="holiday_morning"), at(2026, 10, 1, 10), True, "ok"),
    ("outside the holiday hours", cred("visitor", schedule="holiday_morning"), at(2026, 10, 1, 13), False,
     "outside_schedule"),
    ("a schedule's normal hours do not apply on a holiday", cred("visitor", schedule="holiday_morning"),
     at(2026, 10, 1, 8, 30), False, "outside_schedule"),
    ("a swapped working Saturday counts as a weekday", cred("staff", schedule="weekdays"), at(2026, 10, 10), True, "ok"),
    ("an ordinary Saturday stays closed", cred("staff", schedule="weekdays"), at(2026, 10, 17), False,
     "outside_schedule"),
    ("a swapped day keeps the schedule's hours", cred("staff", schedule="weekdays"), at(2026, 10, 10, 18), False,
     "outside_schedule"),
    ("a weekday holiday closes a weekday schedule", cred("staff", schedule="weekdays"), at(2026, 10, 1), False,
     "outside_schedule"),
    ("the same schedule without a calendar ignores it", cred("staff", schedule="weekdays_plain"), at(2026, 10, 1),
     True, "ok"),
    ("site local date: 00:30 on the holiday is still Sep 30 in UTC", cred("visitor", schedule="all_day"),
     at(2026, 10, 1, 0, 30), False, "outside_schedule"),
    ("site local date: 23:30 the evening before is an ordinary day", cred("visitor", schedule="all_day"),
     at(2026, 9, 30, 23, 30), True, "ok"),
]


@pytest.mark.parametrize("case,c,now,granted,reason", P24, ids=[r[0] for r in P24])
def test_p24_calendar_table(case, c, now, granted, reason):
    d = run(c, now)
    assert (d.granted, d.reason) == (granted, reason), case


def test_p24_the_sync_fills_the_site_calendar_and_the_config_wins_a_date():
    synced = [("2026-11-25", "holiday", None), ("2026-11-26", "holiday", None), ("2026-10-01", "workday", "thu")]
    s = settings(synced, calendars={"site": {"days": [{"date": "2026-11-25", "kind": "workday", "as": "wed"},
                                                      {"date": "2026-10-01", "kind": "holiday"}]}})
    assert run(cred("visitor"), at(2026, 11, 25)).granted  # (no calendar at all: an ordinary Wednesday)
    assert run(cred("visitor"), at(2026, 11, 25), s).granted  # the config's workday beats the synced holiday
    assert run(cred("visitor"), at(2026, 11, 26), s).reason == "outside_schedule"  # synced only
    assert run(cred("visitor"), at(2026, 10, 1), s).reason == "outside_schedule"  # the config's holiday wins
    # with no [calendars] table at all, the synced days still reach visiting hours
    assert run(cred("visitor"), at(2026, 11, 26), settings(synced)).reason == "outside_schedule"


def test_p24_the_shipped_cn_calendar_2026_as_announced():
    cfg = config(calendars={"site": {"file": str(CN)}})
    from edge.config.calendars import with_calendar_files
    s = settings_from(with_calendar_files(cfg, ROOT), ())
    weekdays = settings_from(with_calendar_files(config(calendars={"site": {"file": str(CN)}}, schedules={
        "weekdays": {"days": ["mon", "tue", "wed", "thu", "fri"], "calendar": "site"}}), ROOT), ())
    v = cred("visitor")
    for day in [(2026, 1, 1), (2026, 1, 3), (2026, 2, 15), (2026, 2, 23), (2026, 4, 4), (2026, 4, 6), (2026, 5, 1),
                (2026, 5, 5), (2026, 6, 19), (2026, 6, 21), (2026, 9, 25), (2026, 9, 27), (2026, 10, 1), (2026, 10, 7),
                (2027, 1, 1), (2027, 2, 5), (2027, 2, 8), (2027, 10, 3)]:
        assert run(v, at(*day), s).reason == "outside_schedule", day
    for day in [(2026, 1, 4), (2026, 2, 14), (2026, 2, 28), (2026, 5, 9), (2026, 9, 20), (2026, 10, 10)]:
        assert datetime(*day).weekday() >= 5
        assert run(cred("staff", schedule="weekdays"), at(*day), weekdays).granted, day
    for day in [(2026, 1, 5), (2026, 2, 24), (2026, 10, 8)]:  # the first working day after
        assert run(v, at(*day), s).granted, day


def test_p24_walkin_hours_today_follow_the_calendar():
    assert hours_today("visiting_hours", at(2026, 10, 1), S) is None  # closed: no walk-in registration
    assert hours_today("holiday_morning", at(2026, 10, 1), S) == (9 * 60, 12 * 60)
    assert hours_today("visiting_hours", at(2026, 10, 2), S) == (8 * 60, 21 * 60 + 30)


# ---- P24: the config ------------------------------------------------------------------------------
BAD_CONFIG = [
    ("a workday without `as`", {"calendars": {"site": {"days": [{"date": "2026-10-10", "kind": "workday"}]}}}, "as"),
    ("a holiday with `as`", {"calendars": {"site": {"days": [{"date": "2026-10-01", "kind": "holiday", "as": "mon"}]}}},
     "as"),
    ("a date that is none", {"calendars": {"site": {"days": [{"date": "2026-02-30", "kind": "holiday"}]}}},
     "not a date"),
    ("a date twice", {"calendars": {"site": {"days": [{"date": "2026-10-01", "kind": "holiday"},
                                                      {"date": "2026-10-01", "kind": "holiday"}]}}}, "twice"),
    ("an unknown kind", {"calendars": {"site": {"days": [{"date": "2026-10-01", "kind": "party"}]}}}, "holiday"),
    ("a schedule naming no calendar", {"schedules": {"x": {"calendar": "cn"}}}, "not a [calendars] table"),
    ("holiday hours backwards", {"schedules": {"x": {"holiday": {"start": "12:00", "end": "09:00"}}}}, "after"),
]


@pytest.mark.parametrize("case,sections,words", BAD_CONFIG, ids=[r[0] for r in BAD_CONFIG])
def test_p24_bad_calendar_config_is_named(case, sections, words):
    with pytest.raises(ValueError, match=None) as e:
        config(**sections)
    assert words in str(e.value), str(e.value)


def _site(tmp_path: Path, calendar_text: str, inline: str = "") -> Path:
    (tmp_path / "cal.toml").write_text(calendar_text)
    p = tmp_path / "site.toml"
    p.write_text('[site]\nid = "s"\ngate = "g"\ntimezone = "Asia/Shanghai"\n[areas]\ntree = ["site"]\n'
                 f'[calendars.site]\nfile = "cal.toml"\n{inline}')
    return p


def test_p24_a_calendar_file_is_read_relative_to_the_config_and_its_own_days_win(tmp_path):
    p = _site(tmp_path, '[[days]]\ndate = "2026-11-25"\nkind = "holiday"\n[[days]]\ndate = "2026-11-26"\nkind = "holiday"\n',
              'days = [{ date = "2026-11-26", kind = "workday", as = "thu" }]\n')
    cfg, _ = load_config(p)
    s = settings_from(cfg)
    assert run(cred("visitor"), at(2026, 11, 25), s).reason == "outside_schedule"
    assert run(cred("visitor"), at(2026, 11, 26), s).granted


@pytest.mark.parametrize("text,words", [
    ('[[days]]\ndate = "2026-10-10"\nkind = "workday"\n', "as"),
    ('[[days]]\ndate = "2026-10-01"\nkind = "holiday"\n[[days]]\ndate = "2026-10-01"\nkind = "holiday"\n', "twice"),
    ('days = 3\n', "days"),
    ('title = "x"\n', "unknown key"),
    ('[[days\n', "not valid TOML"),
])
def test_p24_a_bad_calendar_file_is_named_at_start_and_by_check(tmp_path, text, words):
    from edge.config import check
    from edge.config.filecheck import current_user
    p = _site(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert "calendars.site.file" in str(e.value) and words in str(e.value), str(e.value)
    problems = check(p, current_user())  # `run --check`: at the key that names the file
    assert any("calendars.site.file" in x and "cal.toml" in x and words in x for x in problems), problems


def test_p24_a_missing_calendar_file_is_named(tmp_path):
    p = _site(tmp_path, "")
    (tmp_path / "cal.toml").unlink()
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(p)


def test_p24_the_demo_config_names_the_shipped_calendar():
    cfg, _ = load_config(ROOT / "config" / "demo.toml")
    assert len(cfg.calendars["site"].days) >= 50
    s = settings_from(cfg)
    assert run(cred("visitor", schedule="working_days"), at(2026, 10, 1), s).reason == "outside_schedule"
    assert run(cred("visitor"), at(2026, 10, 1), s).granted  # the demo's visiting hours are open on holidays


def test_p24_the_example_config_reads():
    cfg, _ = load_config(ROOT / "config" / "site.example.toml")
    assert cfg.policy.exit_signoff == ["visitor"]


# ---- P24: the sync's items ------------------------------------------------------------------------
def test_p24_calendar_items_in_batches_and_snapshots():
    b = parse(ChangeBatch, json.dumps({"from_version": 0, "to_version": 1, "calendar_set": [
        {"date": "2027-02-07", "kind": "workday", "as": "mon"}, {"date": "2027-01-01", "kind": "holiday"}],
        "calendar_remove": ["2026-10-01"]}).encode())
    assert calendar_rows(b.calendar_set) == [("2027-02-07", "workday", "mon"), ("2027-01-01", "holiday", None)]
    c = parse(SnapshotChunk, b'{"version":3,"chunk":0,"chunks":1,"calendar":[{"date":"2027-01-01","kind":"holiday"}]}')
    assert calendar_rows(c.calendar) == [("2027-01-01", "holiday", None)]


@pytest.mark.parametrize("items", [
    [{"date": "2027-02-07", "kind": "workday"}],  # no `as`
    [{"date": "2027-01-01", "kind": "holiday", "as": "fri"}],
    [{"date": "2027-01-01", "kind": "holiday"}, {"date": "2027-01-01", "kind": "holiday"}],
    [{"date": "2027-13-01", "kind": "holiday"}],
    [{"date": "2027-01-01", "kind": "party"}],
    [{"date": "2027-01-01", "kind": "holiday", "name": "x"}],  # SPEC §2: date, kind, as; nothing else
])
def test_p24_bad_calendar_items_are_refused_whole(items):
    with pytest.raises(BadMessage):
        b = parse(ChangeBatch, json.dumps({"from_version": 0, "to_version": 1, "calendar_set": items}).encode())
        calendar_rows(b.calendar_set)


def test_p24_a_synced_calendar_change_reaches_a_running_gate(tmp_path):
    """Another process (the sync worker) writes the calendar table: the gate's next scan decides on it, its day
    maps made once when the change is seen, not at every scan."""
    from edge.core.gate import Gate
    from edge.passes import KeyRing
    from edge.store import Store
    from edge.link.sync import write_calendar
    cfg = GateConfig.model_validate({**BASE, "areas": {"tree": ["site", "site/lobby"]},
                                     "storage": {"path": str(tmp_path / "g.db")},
                                     "io_modules": [{"name": "io1"}],
                                     "doors": [{"name": "main", "area": "site/lobby", "perimeter": True, "io": "io1",
                                                "lock_coil": 0}],
                                     "readers": [{"name": "main-in", "url": "socket://127.0.0.1:1", "door": "main",
                                                  "direction": "in"}]})
    store = Store(tmp_path / "g.db")
    gate = Gate(cfg, store, KeyRing())
    store.conn.execute("INSERT INTO credentials(credential, holder, category, areas) "
                       "VALUES('badge:0A0B0C0D', 'h-c', 'contractor', 'site')")
    assert gate.evaluate("main-in", "badge", "badge:0A0B0C0D", at(2026, 11, 25)).decision.granted
    first = gate.settings
    assert gate.evaluate("main-in", "badge", "badge:0A0B0C0D", at(2026, 11, 25)).decision.granted
    assert gate.settings is first  # nothing changed: no new maps
    other = Store(tmp_path / "g.db")
    with other.tx() as c:
        write_calendar(c, [("2026-11-25", "holiday", None)], ())
    other.close()
    d = gate.evaluate("main-in", "badge", "badge:0A0B0C0D", at(2026, 11, 25)).decision
    assert (d.granted, d.reason) == (False, "outside_schedule")
    assert gate.evaluate("main-in", "badge", "badge:0A0B0C0D", at(2026, 11, 26)).decision.granted
    store.close()


# ---- P25 --------------------------------------------------------------------------------------------
def p25(*kinds, required=True):
    return settings(policy={"exit_signoff": list(kinds), "exit_signoff_required": required})


DEFAULT = settings()
SECOND = p25("visitor", "vip:second")
ALL_VIPS = p25("visitor", "vip")
NOW = at(2026, 11, 25)

# (case, settings, credential, door, facts, granted, held, reason)
P25 = [
    ("default: a visitor is held", DEFAULT, cred("visitor", kind="pass"), LOBBY_OUT, {}, False, True,
     "host_signoff_missing"),
    ("default: a VIP leaves freely", DEFAULT, cred("vip", "second"), LOBBY_OUT, {}, True, False, "ok"),
    ("default: a contractor leaves freely", DEFAULT, cred("contractor"), LOBBY_OUT, {}, True, False, "ok"),
    ("vip:second: a second-tier VIP badge is held", SECOND, cred("vip", "second"), LOBBY_OUT, {}, False, True,
     "host_signoff_missing"),
    ("vip:second: signed off, out", SECOND, cred("vip", "second"), LOBBY_OUT, {"signed_off": True}, True, False, "ok"),
    ("vip:second: a special-tier VIP leaves freely", SECOND, cred("vip", "special"), LOBBY_OUT, {}, True, False, "ok"),
    ("vip:second: a VIP without a tier leaves freely", SECOND, cred("vip"), LOBBY_OUT, {}, True, False, "ok"),
    ("vip:second: visitors still held", SECOND, cred("visitor", kind="pass"), LOBBY_OUT, {}, False, True,
     "host_signoff_missing"),
    ("vip: every tier is held", ALL_VIPS, cred("vip", "special"), LOBBY_OUT, {}, False, True, "host_signoff_missing"),
    ("vip: a VIP pass is held too", ALL_VIPS, cred("vip", "first", kind="pass"), LOBBY_OUT, {}, False, True,
     "host_signoff_missing"),
    ("contractor added", p25("visitor", "contractor"), cred("contractor"), LOBBY_OUT, {}, False, True,
     "host_signoff_missing"),
    ("visitor left out: a visitor leaves freely", p25("vip"), cred("visitor", kind="pass"), LOBBY_OUT, {}, True,
     False, "ok"),
    ("P9 off overrides the list", p25("visitor", "vip", required=False), cred("vip", "first"), LOBBY_OUT, {}, True,
     False, "ok"),
    ("only the perimeter", ALL_VIPS, cred("vip", "first"), OFFICE_OUT, {}, True, False, "ok"),
    ("fire mode overrides", ALL_VIPS, cred("vip", "first"), LOBBY_OUT, {"mode": Mode.FIRE}, True, False, "fire_mode"),
    ("entry is never held", ALL_VIPS, cred("vip", "first"), LOBBY_IN, {}, True, False, "ok"),
]


@pytest.mark.parametrize("case,s,c,door,facts,granted,held,reason", P25, ids=[r[0] for r in P25])
def test_p25_exit_signoff_table(case, s, c, door, facts, granted, held, reason):
    d = run(c, NOW, s, door, **facts)
    assert (d.granted, d.held, d.reason) == (granted, held, reason), case


@pytest.mark.parametrize("kinds", [["vip:gold"], ["guest"], ["VIP"], ["staff:second"]])
def test_p25_unknown_kinds_in_the_config_are_refused(kinds):
    with pytest.raises(ValueError, match="exit_signoff"):
        config(policy={"exit_signoff": kinds})


def test_p25_a_signoff_names_a_visit_or_a_badge_ref():
    assert parse(Signoff, b'{"visit":"badge:04A1B2C3","host":"h-1","time":"2026-11-25T02:00:00Z"}').visit == \
        "badge:04A1B2C3"
    assert parse(Signoff, b'{"visit":"v-1","host":"h-1"}').visit == "v-1"
    for bad in (b'{"visit":"badge:04a1b2c3"}', b'{"visit":"badge:04A1"}', b'{"visit":"badge:"}'):
        with pytest.raises(BadMessage, match="badge"):
            parse(Signoff, bad)


def test_p25_a_badge_holders_signoff_is_used_up_leaving_the_site(tmp_path):
    from edge.store import Store
    store = Store(tmp_path / "s.db")
    store.sign_off("badge:0A0B0C0D", "h-1", 1.0)
    store.sign_off("v-1", "h-1", 1.0)
    store.move_presence("badge:0A0B0C0D", "h-v", "vip", "site/lobby", 1, 2.0)
    assert "badge:0A0B0C0D" in store.signoffs  # inside the site, it stands
    store.move_presence("badge:0A0B0C0D", "h-v", "vip", None, 1, 3.0)
    store.move_presence("pass:00", "h-x", "visitor", None, 1, 3.0)
    assert store.signoffs == {"v-1"}  # a visit's sign-off goes with its consumed pass instead (P8)
    conn = sqlite3.connect(tmp_path / "s.db")
    assert [r[0] for r in conn.execute("SELECT visit FROM signoffs")] == ["v-1"]
    conn.close()
    store.close()


# ---- end to end over MQTT ----------------------------------------------------------------------------
@pytest.mark.e2e
def test_p24_a_calendar_batch_from_the_central_simulator_closes_and_reopens_visiting_hours(tmp_path, procs, broker):
    from test_link import start_central, start_gate
    central = start_central(procs, broker)
    g = start_gate(tmp_path, procs, broker, items=[])
    text = g.site.visitor_pass("h-9", visit="v-cal")
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date().isoformat()  # the test site's local date
    central.send("calendar " + json.dumps({"date": today, "kind": "holiday"}))
    central.wait_for("central batch 0->1")
    g.journal.next("allowlist.applied", to_version=1)
    _, etype, data = g.scan("main-in", text)
    assert (etype, data["reason"]) == ("access.denied", "outside_schedule")
    central.send(f"uncalendar {today}")
    central.wait_for("central batch 1->2")
    g.journal.next("allowlist.applied", to_version=2)
    _, etype, data = g.scan("main-in", text)
    assert (etype, data["reason"]) == ("access.granted", "ok")
    # a snapshot carries the calendar too (and replaces the synced one): today a holiday again, via a resync
    central.send("calendar " + json.dumps({"date": today, "kind": "holiday"}))
    central.wait_for("central batch 2->3")
    g.journal.next("allowlist.applied", to_version=3)
    central.send("snapshot gate-1")
    central.wait_for("central snapshot gate-1")
    g.journal.next("allowlist.applied", source="snapshot")
    conn = sqlite3.connect(f"file:{g.site.db}?mode=ro", uri=True)
    assert conn.execute("SELECT date, kind, as_day FROM calendar").fetchall() == [(today, "holiday", None)]
    conn.close()
    _, etype, data = g.scan("main-in", text)
    assert (etype, data["reason"]) == ("access.denied", "outside_schedule")


@pytest.mark.e2e
def test_p25_a_second_tier_vip_badge_is_held_at_the_exit_then_signed_off_by_credential_ref(tmp_path, procs, broker):
    from mqttkit import record
    from sitekit import wait_until
    from test_link import local_version, start_central, start_gate
    badge = "0A0B0C0D"
    data = tmp_path / "central.jsonl"  # the central system holds the VIP's badge, a second-tier one
    data.write_text(json.dumps(record(f"badge:{badge}", "h-vip", "vip", tier="second")) + "\n")
    central = start_central(procs, broker, "--data", str(data), "--version", "1")
    g = start_gate(tmp_path, procs, broker, daemon=False, items=[])
    text = g.site.config.read_text().replace("[policy]\n", '[policy]\nexit_signoff = ["visitor", "vip:second"]\n', 1)
    g.site.config.write_text(text)
    g.start_daemon()
    central.send("snapshot gate-1")
    wait_until(lambda: local_version(g) == 1, what="the central's snapshot")
    _, etype, data = g.scan("main-in", badge)
    assert (etype, data["reason"]) == ("access.granted", "ok")
    _, etype, data = g.scan("main-out", badge)
    assert (etype, data["reason"], data["credential_ref"]) == ("exit.held", "host_signoff_missing", f"badge:{badge}"), data
    central.send(f"signoff badge:{badge} h-1")
    central.wait_for(f"central signoff badge:{badge}")
    g.journal.next("visit.signed_off", visit=f"badge:{badge}")
    _, etype, data = g.scan("main-out", badge)
    assert (etype, data["reason"]) == ("access.granted", "ok")
    # the sign-off covered that stay: back in and out again, the exit is held anew
    g.scan("main-in", badge)
    _, etype, _ = g.scan("main-out", badge)
    assert etype == "exit.held"
    # SPEC §2: the sign-off by ref and the gate's events about it are in contract (docs/asyncapi.yaml)
    central.send("report")
    contract = json.loads(central.wait_for("central report").split(" ", 2)[2])["contract"]
    assert "error" not in contract and contract["violations"] == 0, contract


def test_p24_calendars_reload_with_sighup_without_a_restart():
    from edge.config.reload import merge
    running = config(calendars=CAL)
    new = config(calendars={"site": {"days": [{"date": "2026-11-25", "kind": "holiday"}]}},
                 schedules={"visiting_hours": {"holiday": {"start": "09:00", "end": "12:00"}}})
    cfg, live, restart = merge(running, new)
    assert restart == [] and any(k.startswith("calendars") for k in live) and any(k.startswith("schedules") for k in live)
    s = settings_from(cfg)
    assert run(cred("visitor"), at(2026, 11, 25, 10), s).granted  # holiday hours
    assert run(cred("visitor"), at(2026, 11, 25, 13), s).reason == "outside_schedule"
    assert run(cred("visitor"), at(2026, 10, 1), s).granted  # the old holiday is gone

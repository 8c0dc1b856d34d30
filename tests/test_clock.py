"""P3, the clock itself: jumps of the wall clock, a clock far off the central system's, and the machine's sync
state. The gate runs in this process on clocks the test moves; the machine's own clock is never touched."""
from __future__ import annotations

import json
import time

import pytest

from edge.core.clock import DAY_S, CentralClock, JumpWatch
from edge.runtime import timesync
from sitekit import in_process_gate, make_site, wait_until
from unitsandbox import confined

STAFF = "badge:04A1B2C3"


class Clocks:
    """A wall clock and a steady clock the test moves: together (time passing) or the wall alone (a jump)."""

    def __init__(self, wall: float):
        self.wall_t, self.steady_t = wall, 1000.0

    def wall(self) -> float:
        return self.wall_t

    def steady(self) -> float:
        return self.steady_t

    def elapse(self, s: float) -> None:
        self.wall_t += s
        self.steady_t += s


@pytest.fixture
def site(tmp_path):
    s = make_site(tmp_path / "site")
    r = s.import_lines([{"credential": STAFF, "holder": "h-1", "category": "staff", "areas": ["site"]}])
    assert r.returncode == 0, r.stderr
    return s


@pytest.fixture
def clocks():
    return Clocks(time.time())


@pytest.fixture
def gate(site, clocks):
    with in_process_gate(site, clock=clocks.wall, steady_clock=clocks.steady) as g:
        yield g


def alarms(gate, kind):
    rows = gate.store.conn.execute("SELECT data FROM journal WHERE type='alarm.raised'").fetchall()
    return [d for d in (json.loads(r[0]) for r in rows) if d["alarm"] == kind]


def visitor_pass(site, now):
    return site.issue(holder="h-9", category="visitor", areas=["site/lobby"], valid_from=now - 60,
                      valid_until=now + 3600, host="h-1")


@pytest.mark.parametrize("jump", [-3600.0, -61.0, 61.0, 2 * DAY_S])
def test_p3_a_jump_of_the_wall_clock_beyond_the_skew_is_journaled_once(gate, clocks, jump):
    clocks.elapse(5)
    assert gate.watch_clock() is None  # time passing is no jump
    clocks.wall_t += jump
    clocks.elapse(2)
    entry = gate.watch_clock()
    assert entry is not None and entry.type == "alarm.raised"
    data = json.loads(entry.data)
    assert data["alarm"] == "clock_jump" and data["jump_s"] == pytest.approx(jump, abs=0.01)
    clocks.elapse(2)
    assert gate.watch_clock() is None  # reported once: the next look starts from the new time
    assert len(alarms(gate, "clock_jump")) == 1


def test_p3_a_step_within_the_skew_is_no_jump(gate, clocks):
    clocks.wall_t -= 59  # NTP stepping a little: within the 60 s skew of the config
    clocks.elapse(1)
    assert gate.watch_clock() is None
    assert alarms(gate, "clock_jump") == []


def test_p3_jumps_are_seen_against_the_steady_clock_not_between_looks():
    c = Clocks(2_000_000_000.0)
    w = JumpWatch(c.wall, c.steady, 60)
    c.elapse(7200)  # the daemon's loop stalled for two hours: no jump, the steady clock moved as much
    assert w.check() is None


def test_p3_a_clock_a_day_off_the_central_heartbeat_refuses_bounded_credentials_and_raises_a_fault(site, gate, clocks):
    text = visitor_pass(site, clocks.wall())
    assert gate.present("main-in", "pass", text).opens  # no heartbeat yet: the clock is taken as it is
    gate.present("main-out", "pass", text)
    gate.central_heartbeat(clocks.wall() - DAY_S - 3600)  # the central system says it is 25 hours earlier
    assert not gate.clock_valid()
    faults = alarms(gate, "clock_invalid")
    assert len(faults) == 1 and faults[0]["central_offset_s"] == pytest.approx(DAY_S + 3600, abs=1)
    out = gate.present("main-in", "pass", text)
    assert out.decision.reason == "clock_invalid"
    assert [e.type for e in out.entries] == ["access.denied"]  # the fault was raised once, at the heartbeat
    assert gate.present("main-in", "badge", STAFF).opens  # an open staff badge keeps working (P3)


def test_p3_the_central_time_is_carried_forward_on_the_steady_clock(site, gate, clocks):
    gate.central_heartbeat(clocks.wall())
    clocks.elapse(DAY_S / 2)  # half a day later, still the same clocks: no offset
    assert gate.central_clock.offset(clocks.wall()) == pytest.approx(0)
    clocks.wall_t += DAY_S + 60  # the wall clock alone moves a day and a minute on
    assert not gate.clock_valid()
    assert gate.evaluate("main-in", "pass", visitor_pass(site, clocks.wall())).decision.reason == "clock_invalid"


def test_p3_a_heartbeat_older_than_a_day_no_longer_counts(gate, clocks):
    gate.central_heartbeat(clocks.wall() - 3 * DAY_S)
    assert not gate.clock_valid()
    clocks.elapse(DAY_S + 1)
    assert gate.central_clock.now() is None and gate.clock_valid()


def test_p3_a_clock_that_agrees_again_clears_the_fault(gate, clocks):
    gate.central_heartbeat(clocks.wall() + 2 * DAY_S)
    assert gate.clock_alarm
    gate.central_heartbeat(clocks.wall())
    assert not gate.clock_alarm and gate.clock_valid()
    gate.central_heartbeat(clocks.wall() + 2 * DAY_S)
    assert len(alarms(gate, "clock_invalid")) == 2  # a new episode, a new fault


def test_central_clock_knows_nothing_before_a_heartbeat():
    c = CentralClock(lambda: 0.0)
    assert c.now() is None and c.offset(1e9) is None and not c.far_off(0)


def test_sync_state_from_the_kernel_reads_its_status_bits():
    synced = timesync.from_kernel(0, 0x0001, 1500, 2000)  # TIME_OK, PLL on, 1.5 ms left to correct
    assert (synced.state, synced.offset_s, synced.est_error_s) == ("synced", pytest.approx(0.0015), pytest.approx(0.002))
    assert timesync.from_kernel(5, timesync.STA_UNSYNC, 0, 16_000_000).state == "unsynced"
    nano = timesync.from_kernel(0, timesync.STA_NANO, 2_000_000, 0)
    assert nano.offset_s == pytest.approx(0.002)


def test_sync_state_from_timedatectl():
    kernel = timesync.from_kernel(0, 0, 250, 1000)
    got = timesync.from_timedatectl("Timezone=UTC\nNTP=yes\nNTPSynchronized=yes\n", kernel)
    assert (got.state, got.source, got.offset_s) == ("synced", "timedatectl", pytest.approx(0.00025))
    assert timesync.from_timedatectl("NTPSynchronized=no\n", None).state == "unsynced"
    assert timesync.from_timedatectl("Failed to connect to bus\n", kernel) is None


def test_sync_state_of_this_machine_is_read_without_changing_it():
    before = timesync.kernel_status()
    got = timesync.read()
    assert got.state in ("synced", "unsynced", "unknown")
    if before is not None:  # Linux: the kernel answered, so there is a source and an error estimate
        assert got.source in ("timedatectl", "adjtimex") and got.est_error_s is not None


# -- the running daemon and a real broker: the central system's heartbeat ----------------------------------
@pytest.mark.e2e
def test_p3_a_daemon_two_days_off_the_central_heartbeat_raises_the_fault_and_shows_it(tmp_path, procs, broker):
    import httpx
    from mqttkit import Peer, rfc3339_now
    from sitekit import JournalWatch, gatekeeper
    site = make_site(tmp_path / "site", broker_port=broker.port, api=True)
    central = Peer(broker.port, "acs/test/gate-1/status")
    try:
        site.daemon = procs.start("daemon", *confined("-m", "edge.cli", "run", "--config", str(site.config)))
        site.daemon.wait_for("gatekeeper ready")
        central.wait(lambda m: any(json.loads(p).get("state") in ("online", "degraded") for _, p, _ in m),
                     what="the gate online")
        site.wait_api()
        journal = JournalWatch(site.db)
        # the central system's clock two days behind ours: ours is the implausible one (P3)
        central.publish("acs/test/central/heartbeat", {"time": rfc3339_now(-2 * DAY_S)}, qos=0)
        _, _, fault = journal.next("alarm.raised", alarm="clock_invalid")
        assert fault["central_offset_s"] == pytest.approx(2 * DAY_S, abs=120)
        health = httpx.get(site.api_url + "/health", timeout=10).json()
        assert health["status"] == "degraded" and health["clock"]["valid"] is False
        assert "gatekeeper_clock_valid 0" in httpx.get(site.api_url + "/metrics", timeout=10).text
        s = json.loads(gatekeeper("status", "--config", str(site.config), "--json").stdout)
        assert s["clock"]["valid"] is False and s["clock"]["central_offset_s"] == pytest.approx(2 * DAY_S, abs=120)
        # the central system's clock agrees again: the fault ends
        central.publish("acs/test/central/heartbeat", {"time": rfc3339_now()}, qos=0)
        wait_until(lambda: httpx.get(site.api_url + "/health", timeout=10).json()["clock"]["valid"],
                   what="the clock valid again")
    finally:
        central.close()

"""Turnstile lanes end to end (P7, P11, P16): one grant admits the party's passages, presence follows the
counted passages, a grant nobody walks through is undone, fire mode frees the lane."""
from __future__ import annotations

import sqlite3
import time

import pytest

from sitekit import NO_PORT, make_site, wait_until
from test_e2e_gate import STAFF, staffed_gate

pytestmark = pytest.mark.e2e

LANE = """
[[doors]]
name = "lane1"
kind = "turnstile"
area = "site/lobby"
perimeter = true
io = "io1"
pass_in_coil = 10
pass_out_coil = 11
passage_in_input = 20
passage_out_input = 21
free_coil = 12
pulse_s = 1
passage_timeout_s = 2

[[readers]]
name = "lane-in"
url = "socket://127.0.0.1:{port}"
door = "lane1"
direction = "in"
"""


@pytest.fixture
def gate(tmp_path, procs):
    site = make_site(tmp_path / "site")
    site.config.write_text(site.config.read_text() + LANE.format(port=NO_PORT))
    site.reader_ports["lane-in"] = NO_PORT  # start_hardware starts its reader too, and sets its port
    g = staffed_gate(site, procs)
    g.daemon.wait_for("io module io1 ready", already=True)
    yield g
    g.io.close()


def presence(g, holder):
    conn = sqlite3.connect(f"file:{g.site.db}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT area, party FROM presence WHERE holder=?", (holder,)).fetchone()
        return row
    finally:
        conn.close()


def test_p11_one_grant_admits_the_party_and_presence_follows_the_passages(gate):
    now = time.time()
    text = gate.site.issue(holder="h-vip", category="vip", tier="first", areas=["site"], valid_from=now - 60,
                           valid_until=now + 3600, host="h-1", party=3)
    before = gate.unlocks(10)
    _, etype, _ = gate.scan("lane-in", text)
    assert etype == "access.granted"
    wait_until(lambda: gate.unlocks(10) == before + 1, what="the lane released for the first person")
    assert presence(gate, "h-vip") is None  # nobody has walked through yet
    for n in (1, 2, 3):
        gate.door_io.send("pass lane1 in")
        _, _, p = gate.journal.next("access.passage")
        assert (p["count"], p["credential_ref"].startswith("pass:"), p["to_area"]) == (n, True, "site/lobby")
    assert presence(gate, "h-vip") == ("site/lobby", 3)  # occupancy counts the whole party
    gate.door_io.send("pass lane1 in")  # a fourth person pushes through behind them
    _, _, forced = gate.journal.next("door.forced")
    assert (forced["door"], forced["passage"]) == ("lane1", True)


def test_p7_a_grant_nobody_walks_through_is_undone_and_moves_nobody(gate):
    text = gate.site.visitor_pass("h-v")
    _, etype, _ = gate.scan("lane-in", text)
    assert etype == "access.granted"
    _, _, undone = gate.journal.next("access.undone")
    assert undone["holder"] == "h-v"
    assert presence(gate, "h-v") is None
    _, etype, data = gate.scan("lane-in", text)  # not inside, so no anti-passback refusal
    assert (etype, data["reason"]) == ("access.granted", "ok")


def test_p16_fire_frees_the_lane(gate):
    gate.door_io.send("input 100 on")
    gate.journal.next("mode.changed", mode="fire")
    wait_until(lambda: gate.io.read_coils(12, count=1, device_id=1).bits[0], what="the free-wheel output on")
    _, etype, data = gate.scan("main-out", STAFF)
    assert (etype, data["reason"]) == ("access.granted", "fire_mode")

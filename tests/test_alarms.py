"""Alarms acknowledged and people marked safe at the muster, in one process: the tables behind them, whoever
writes the journal, and what retention and a change of mode leave."""
from __future__ import annotations

import json
import time

import pytest

from edge.core import alarms
from edge.core.model import Mode
from edge.errors import Refused
from edge.store import Store
from edge.store.journal import Journal
from test_gate import STAFF, SUPERVISOR, gate, site  # noqa: F401  (the fixtures: a site of two staff, its gate)

OTHER = SUPERVISOR  # a second staff member on site; the role plays no part here


def test_p17_p19_an_alarm_is_listed_until_a_guard_acknowledges_it_once(gate):
    forced = gate.record("door.forced", {"door": "main"})
    raised = gate.record("alarm.raised", {"alarm": "clock_jump", "priority": "high"})
    fault = gate.record("device.fault", {"device": "io1"})
    gate.record("door.opened", {"door": "main"})  # not an alarm
    listed = gate.alarms.open()
    assert [(a["seq"], a["type"], a["priority"]) for a in listed] == [
        (fault.seq, "device.fault", "normal"), (raised.seq, "alarm.raised", "high"),
        (forced.seq, "door.forced", "high")]
    assert listed[2]["time"] == forced.time and listed[2]["data"] == {"door": "main"}
    ack = gate.alarms.acknowledge(forced.seq, "g-1", "guard", "nobody there, door closed", time.time())
    event = json.loads(gate.journal.store.conn.execute("SELECT data FROM journal WHERE seq=?",
                                                      (ack["event_seq"],)).fetchone()[0])
    assert event == {"alarm_seq": forced.seq, "alarm_type": "door.forced", "door": "main", "actor": "g-1",
                     "actor_role": "guard", "note": "nobody there, door closed"}
    assert ack["seq"] == forced.seq and ack["acknowledged_by"] == "g-1"
    assert forced.seq not in [a["seq"] for a in gate.alarms.open()]
    with pytest.raises(Refused) as e:
        gate.alarms.acknowledge(forced.seq, "g-2", "guard", None, time.time())
    assert (e.value.status, e.value.reason) == (409, "already_acknowledged") and "g-1" in e.value.message
    with pytest.raises(Refused) as e:
        gate.alarms.acknowledge(forced.seq + 3, "g-2", "guard", None, time.time())  # door.opened
    assert (e.value.status, e.value.reason) == (404, "no_such_alarm")


def test_p19_an_alarm_journaled_by_another_process_is_listed_and_survives_a_restart(site, gate):
    other = Store(site.db)  # a tool's own connection, as an import has
    try:
        seq = Journal(other).append("alarm.raised", {"alarm": "unknown_category", "credentials": ["badge:0B"]}).seq
    finally:
        other.close()
    assert [a["seq"] for a in gate.alarms.open()] == [seq]
    gate.store.close()
    again = Store(site.db)
    try:
        assert [a["data"]["alarm"] for a in alarms.Alarms(again, Journal(again)).open()] == ["unknown_category"]
    finally:
        again.close()
        gate.store = Store(site.db)  # the fixture closes it


def test_p19_retention_drops_acknowledged_alarms_with_their_events_and_keeps_open_ones(gate):
    acked = gate.record("door.forced", {"door": "main"})
    kept = gate.record("door.held_open", {"door": "main"})
    gate.alarms.acknowledge(acked.seq, "g-1", "guard", None, time.time())
    gate.record("door.closed", {"door": "main"})
    with gate.store.tx() as c:
        assert alarms.prune(c) == 0  # its event is still in the journal
    assert gate.journal.prune(time.time() + 1) >= 3  # all but the newest row
    with gate.store.tx() as c:
        assert alarms.prune(c) == 1
    assert [a["seq"] for a in gate.alarms.open()] == [kept.seq]  # still for a guard to see


def test_p16_a_mark_counts_only_in_a_muster_goes_with_a_badge_out_and_with_the_muster(gate):
    gate.present("main-in", "badge", STAFF)
    gate.present("main-in", "badge", OTHER)
    with pytest.raises(Refused) as e:
        gate.mark_safe("h-1", "g-1", "guard", None)
    assert (e.value.status, e.value.reason) == (409, "not_mustering")
    gate.modes.set(Mode.FIRE, "s-1", "evacuation")
    with pytest.raises(Refused) as e:
        gate.mark_safe("h-9", "g-1", "guard", None)
    assert (e.value.status, e.value.reason) == (404, "not_on_site")
    first = gate.mark_safe("h-1", "g-1", "guard", "at point B")
    assert first["new"] and first["area"] == "site/lobby" and first["safe"]["by"] == "g-1"
    again = gate.mark_safe("h-1", "g-2", "guard", None)
    assert not again["new"] and again["event_seq"] == first["event_seq"] and again["safe"]["by"] == "g-1"
    assert [e.type for e in gate.journal.entries(first["event_seq"] - 1)] == ["muster.marked_safe"]
    assert set(gate.accounted()) == {"h-1"}
    gate.present("main-out", "badge", STAFF)  # out through the freed door: no longer at the muster
    assert gate.accounted() == {}
    gate.present("main-in", "badge", STAFF)
    gate.mark_safe("h-2", "g-1", "guard", None)
    gate.modes.set(Mode.NORMAL, "s-1", "all clear")
    assert gate.store.conn.execute("SELECT count(*) FROM muster_safe").fetchone()[0] == 0
    gate.modes.set(Mode.FIRE, "s-1", "again")
    assert gate.accounted() == {}

"""SPEC §2 replay and §7 restoring after a broker lost its store, against a real mosquitto and real daemons."""
from __future__ import annotations

import json
import signal
import time

import pytest

from mqttkit import Peer, site_mode
from sitekit import WAIT_S, JournalWatch, wait_until
from test_e2e_gate import STAFF
from test_link import central_has_everything, start_central, start_gate

pytestmark = pytest.mark.e2e

REPLAY = "acs/test/gate-1/replay"
EVENTS = "acs/test/gate-1/events/"


def since(peer: Peer, n: int) -> list[tuple[str, dict]]:
    """(topic, event) of the gate's events the peer received after its first n messages."""
    with peer.cond:
        return [(t, json.loads(p)) for t, p, _ in peer.messages[n:] if t.startswith(EVENTS)]


def replayed(peer: Peer, n: int, upto: int) -> list[dict]:
    """The events at or below seq `upto` received after message n: sent again (nothing live is that old)."""
    return [e for _, e in since(peer, n) if e["seq"] <= upto]


def scans(g, count: int) -> int:
    for i in range(count):
        g.scan("main-in", f"{i:08X}")
    return JournalWatch(g.site.db).last_seq()


def test_spec2_replay_sends_a_range_again_with_its_ids_seqs_and_epoch(tmp_path, procs, broker):
    central = Peer(broker.port, "acs/test/+/events/#")
    g = start_gate(tmp_path, procs, broker)
    try:
        scans(g, 5)
        central_has_everything(central, g)
        first = {e["seq"]: (t, e) for t, e in since(central, 0)}
        last = max(first)
        n = len(central.messages)
        central.publish(REPLAY, {"after_seq": 2, "until_seq": 4})
        central.wait(lambda m: {3, 4} <= {e["seq"] for e in replayed(central, n, last)}, what="seqs 3 and 4 again")
        again = [(t, e) for t, e in since(central, n) if e["seq"] <= last]
        assert [e["seq"] for _, e in again] == [3, 4]
        for t, e in again:  # the same message: id, seq, epoch, time, data, and its topic
            assert (t, e) == first[e["seq"]]
        n = len(central.messages)
        central.publish(REPLAY, {"after_seq": last - 1})  # until_seq defaults to the newest
        central.wait(lambda m: replayed(central, n, last), what="the newest event again")
        assert [e["seq"] for e in replayed(central, n, last)] == [last]
    finally:
        central.close()


def test_spec2_replay_is_rate_bounded_and_live_events_go_ahead_of_it(tmp_path, procs, broker):
    rate = 40
    central = Peer(broker.port, "acs/test/+/events/#")
    g = start_gate(tmp_path, procs, broker, mqtt_extra=f"replay_per_s = {rate}")
    try:
        for i in range(150):
            g.readers["main-in"].send(f"{i:08X}")
        wait_until(lambda: JournalWatch(g.site.db).last_seq() >= 150, what="150 events journaled")
        central_has_everything(central, g)
        last = max(e["seq"] for _, e in since(central, 0))
        n = len(central.messages)
        central.publish(REPLAY, {"after_seq": 0})
        central.wait(lambda m: replayed(central, n, last), what="the replay under way")
        started = time.monotonic()
        g.readers["main-in"].send(STAFF)  # a live scan while the replay runs
        central.wait(lambda m: any(e["seq"] > last for _, e in since(central, n)), what="the live event")
        live_at = len(central.messages)
        central.wait(lambda m: {e["seq"] for e in replayed(central, n, last)} >= set(range(1, last + 1)),
                     timeout=WAIT_S + last / rate, what=f"seqs 1..{last} again")
        took = time.monotonic() - started
        done_at = max(i for i, (t, p, _) in enumerate(central.messages)
                      if t.startswith(EVENTS) and json.loads(p)["seq"] == last and i >= n)
        assert live_at - 1 < done_at, "the live event waited for the end of the replay"
        # the token bucket lets 50 ms' worth go at once; the rest at `rate` a second
        assert took >= 0.8 * (last - rate / 20 - 1) / rate, f"{last} events replayed in {took:.2f} s"
        # a replay never moves the outbox's watermark backwards or beyond what the broker acknowledged
        acked = int(g.site.query("SELECT value FROM meta WHERE key='outbox_acked'")[0])
        assert acked <= JournalWatch(g.site.db).last_seq()
    finally:
        central.close()


BAD_REQUESTS = [b"not json", b"[]", b"{}", b'{"after_seq":-1}', b'{"after_seq":"0"}', b'{"after_seq":0.0}',
                b'{"after_seq":true}', b'{"after_seq":5,"until_seq":2}', b'{"after_seq":0,"until_seq":"3"}',
                b'{"after_seq":0,"more":1}', b'{"after_seq":1e30}']


@pytest.mark.parametrize("payload", BAD_REQUESTS)
def test_spec2_a_replay_request_out_of_schema_is_refused(payload):
    from edge.link.messages import BadMessage, ReplayRequest, parse
    with pytest.raises(BadMessage):
        parse(ReplayRequest, payload)


def test_spec2_a_malformed_replay_changes_nothing_and_raises_bad_message(tmp_path, procs, broker):
    central = Peer(broker.port, "acs/test/+/events/#")
    g = start_gate(tmp_path, procs, broker)
    try:
        last = scans(g, 3)
        central_has_everything(central, g)
        watch = JournalWatch(g.site.db)
        watch.after = last
        n = len(central.messages)
        for payload in BAD_REQUESTS:
            central.publish(REPLAY, payload)
        _, _, alarm = watch.next("alarm.raised")
        assert (alarm["alarm"], alarm["topic"]) == ("bad_message", REPLAY) and alarm["error"]
        # good requests after the bad ones: only they are answered
        central.publish(REPLAY, {"after_seq": 0, "until_seq": 1})
        central.publish(REPLAY, {"after_seq": last - 1, "until_seq": last})
        central.wait(lambda m: {1, last} <= {e["seq"] for e in replayed(central, n, last)}, what="seqs 1 and last")
        assert sorted(e["seq"] for e in replayed(central, n, last)) == [1, last]
    finally:
        central.close()


def test_spec2_replay_of_a_pruned_range_answers_replay_unavailable_naming_the_first_seq(tmp_path, procs, broker):
    from edge.store import Store
    from edge.store.journal import Journal
    central = Peer(broker.port, "acs/test/+/events/#")
    g = start_gate(tmp_path, procs, broker)
    try:
        last = scans(g, 6)
        central_has_everything(central, g)
        store = Store(g.site.db)  # P19 retention, as the daemon runs it: the oldest rows go
        try:
            assert Journal(store).prune(time.time() + 60, keep_from_seq=4) == 3
        finally:
            store.close()
        watch = JournalWatch(g.site.db)
        watch.after = last
        n = len(central.messages)
        central.publish(REPLAY, {"after_seq": 1, "until_seq": 5})
        _, _, alarm = watch.next("alarm.raised")
        assert (alarm["alarm"], alarm["after_seq"], alarm["first_seq"]) == ("replay_unavailable", 1, 4)
        central.wait(lambda m: {4, 5} <= {e["seq"] for e in replayed(central, n, last)}, what="what is left")
        assert sorted(e["seq"] for e in replayed(central, n, last)) == [4, 5]
        published = central.wait(lambda m: [e for _, e in since(central, n) if e["type"] == "alarm.raised"],
                                 what="the alarm published")
        assert published[0]["data"]["first_seq"] == 4
    finally:
        central.close()


def test_spec7_after_the_broker_lost_its_store_the_gate_puts_the_site_mode_back(tmp_path, procs):
    from simulators.mosquitto import Broker
    broker = Broker(tmp_path / "broker", persistence=False).start()  # a restart loses everything
    try:
        g = start_gate(tmp_path, procs, broker)
        central = Peer(broker.port, "acs/none")
        sent = site_mode("lockdown", 3, reason="intruder at the fence")
        central.publish("acs/test/mode", sent, retain=True)
        central.close()
        g.journal.next("mode.changed", mode="lockdown")
        broker.stop(signal.SIGKILL)
        broker.start()
        watcher = Peer(broker.port, "acs/test/mode")  # before or after the gate is back: either way it comes
        try:
            got = watcher.wait(lambda m: [json.loads(p) for _, p, _ in m if p], what="the site mode put back")
        finally:
            watcher.close()
        changed_at = g.site.query("SELECT time FROM journal WHERE type='mode.changed' ORDER BY seq DESC")[0]
        # its version, actor and reason as the central system sent them; the time the change took effect here
        assert got[-1] == {**sent, "time": changed_at}
        late = Peer(broker.port, "acs/test/mode")
        try:
            late.wait(lambda m: [p for _, p, r in m if r and json.loads(p) == got[-1]], what="the mode retained")
        finally:
            late.close()
    finally:
        broker.stop()


def test_spec7_a_mode_the_broker_has_as_new_or_newer_is_not_written_over(tmp_path):
    """The decision alone (a pure rule over the gate's mode state): the broker's retained mode, heard after
    a connection without a session, cancels putting ours back when it is not older."""
    from edge.core.model import Mode
    from edge.core.modes import ModeState
    from edge.link.restore import ModeRestore
    from edge.store import Store

    class Modes:  # only the state is read
        state = ModeState(mode=Mode.LOCKDOWN, by="central", scope="site", version=3, actor="central", seen=3)

    store = Store(tmp_path / "g.db")
    sent: list[dict] = []
    try:
        r = ModeRestore(Modes(), store, sent.append, wait_s=0)
        for version, actor in ((3, "central"), (5, "a"), (3, "gate-9")):
            r.no_session()
            r.heard(version, actor)
            r.check()
        assert sent == []
        r.no_session()
        r.heard(2, "zz")  # older: ours goes back at once
        assert r.wait() == 0
        r.check()
        r.no_session()  # nothing heard within the wait: ours goes back
        r.check()
        assert [(b["mode"], b["version"], b["actor"]) for b in sent] == [("lockdown", 3, "central")] * 2
        Modes.state = ModeState(mode=Mode.FIRE, by="fire_input", scope="gate", version=4, actor="fire_input")
        r.no_session()
        r.check()
        assert len(sent) == 2  # a gate's own mode is not the site's
    finally:
        store.close()


def _report(central) -> dict:
    central.send("report")
    return json.loads(central.wait_for("central report").split(" ", 2)[2])["gates"]["gate-1"]


def test_spec2_the_central_simulator_asks_for_what_a_status_says_it_missed(tmp_path, procs, broker):
    g = start_gate(tmp_path, procs, broker)
    last = scans(g, 4)  # nobody listens: these events are gone for a central system that comes later
    central = start_central(procs, broker, "--replay-after", "1")
    central.wait_for("central replay gate-1 after 0")  # from the retained status's last_seq
    central.send(f"wait-complete gate-1 {last}")
    central.wait_for(f"central complete gate-1 {last}")
    r = _report(central)
    assert (r["gaps_open"], r["conflicts"]) == (0, 0) and r["gaps_filled"] >= last and r["replays"] >= 1


def test_spec2_events_the_broker_lost_with_its_store_are_replayed_to_the_central_system(tmp_path, procs):
    from simulators.mosquitto import Broker
    broker = Broker(tmp_path / "broker", persistence=False).start()
    try:
        central = start_central(procs, broker, "--replay-after", "1")
        g = start_gate(tmp_path, procs, broker)
        k = scans(g, 3)
        central.send(f"wait-complete gate-1 {k}")
        central.wait_for(f"central complete gate-1 {k}")
        central.send("disconnect")  # away, its session kept at the broker, which queues the next events for it
        central.wait_for("central disconnected by command")
        for i in range(5):
            g.scan("main-in", f"{0xA0 + i:08X}")
        m = JournalWatch(g.site.db).last_seq()
        # the broker acknowledged them all (the outbox's watermark passed them): the gate will not send them again
        wait_until(lambda: int((g.site.query("SELECT value FROM meta WHERE key='outbox_acked'") or ("0",))[0]) >= m,
                   what="the broker acknowledging every event")
        broker.stop(signal.SIGKILL)  # ...and the broker loses them, with the central's session
        broker.start()
        central.send("connect")  # a new session: the broker has none for it any more
        central.wait_for("central reconnected")
        central.wait_for(f"central replay gate-1 after {k}")
        central.send(f"wait-complete gate-1 {m}")
        central.wait_for(f"central complete gate-1 {m}")
        r = _report(central)
        # at least k+1..m; the gate's own device events about the broker may have come while the central
        # system was not subscribed yet, and are filled the same way
        assert (r["gaps_open"], r["conflicts"]) == (0, 0) and r["gaps_filled"] >= m - k
    finally:
        broker.stop()


# -- the replay's own rules, on a real journal with a publish that only counts (pure logic) --------------
def _journal(tmp_path, n: int):
    from edge.store import Store
    from edge.store.journal import Journal
    store = Store(tmp_path / "j.db")
    for i in range(n):
        Journal(store).append("access.denied", {"i": i})
    return store


def _replay(store, published: list, newest: int, rate: float = 1e6, window: int = 1000):
    from edge.link.replay import Replay
    alarms: list = []

    def publish(topic, payload):
        published.append((topic, json.loads(payload)["seq"]))
        return 10_000 + len(published)  # mids of their own, as paho's rolling counter gives

    r = Replay(store, publish, lambda t: f"acs/test/gate-1/events/{t}", "acs/test/gate-1", lambda: newest,
               lambda etype, data: alarms.append((etype, data)), rate, window)
    return r, alarms


def test_spec2_replay_takes_only_what_the_live_window_leaves_and_its_acks_never_move_the_watermark(tmp_path):
    from edge.link.outbox import Outbox
    store = _journal(tmp_path, 20)
    mids = iter(range(1, 100))
    live: list = []
    outbox = Outbox(store, lambda t, p: (live.append(p), next(mids))[1], lambda t: t, "acs/test/gate-1", 10)
    try:
        assert outbox.pump() == 10  # the live backlog fills the window
        sent: list = []
        r, _ = _replay(store, sent, newest=outbox.handed)
        r.request(0, 5)
        assert r.pump(len(outbox.inflight), 10) == 0 and r.pending  # nothing left for the replay
        outbox.on_acks([1, 2, 3])
        assert r.pump(len(outbox.inflight), 10) == 3  # three slots free: three replayed
        assert [s for _, s in sent] == [1, 2, 3]
        outbox.on_acks(r.on_acks([10_001, 10_002, 10_003]))  # the link hands every ack through both
        assert outbox.acked == 3 and not r.inflight  # the replay's acks moved nothing
        assert r.on_acks([4, 5]) == [4, 5]  # the outbox's are left to it
    finally:
        store.close()


def test_spec2_replay_requests_merge_into_a_bounded_set_of_ranges(tmp_path):
    from edge.link.replay import MAX_RANGES
    store = _journal(tmp_path, 600)
    sent: list = []
    try:
        r, _ = _replay(store, sent, newest=600)
        r.request(10, 20)
        r.request(15, 30)  # overlapping: one range
        r.request(30, 40)  # adjacent: still one
        assert r.ranges == [[10, 40]]
        for k in range(MAX_RANGES + 10):  # many small ones: joined, memory stays bounded
            r.request(100 + 10 * k, 101 + 10 * k)
        assert len(r.ranges) <= MAX_RANGES
        r.pump(0, 1000)
        seqs = [s for _, s in sent]
        assert seqs == sorted(set(seqs)) and set(range(11, 41)) <= set(seqs)
        assert {101 + 10 * k for k in range(MAX_RANGES + 10)} <= set(seqs)
    finally:
        store.close()


def test_spec2_replay_until_defaults_to_the_newest_sent_and_pruned_ranges_raise_one_alarm(tmp_path):
    from edge.store.journal import Journal
    store = _journal(tmp_path, 10)
    sent: list = []
    try:
        Journal(store).prune(time.time() + 60, keep_from_seq=4)
        r, alarms = _replay(store, sent, newest=8)
        r.request(0, None)
        r.request(0, None)  # the same again: no second alarm
        r.pump(0, 1000)
        assert [s for _, s in sent] == [4, 5, 6, 7, 8]
        assert alarms == [("alarm.raised", {"alarm": "replay_unavailable", "after_seq": 0, "first_seq": 4})]
    finally:
        store.close()


def test_spec2_the_central_simulator_asks_for_a_gap_between_events_once_at_a_time_and_again_after_a_timeout(
        procs, broker):
    """A test peer plays the gate: the simulator's side of replay, request by request."""
    gate = Peer(broker.port, "acs/test/gate-7/replay")
    central = start_central(procs, broker, "--replay-after", "0.5", "--replay-timeout", "3")
    try:
        def event(seq: int, etype: str = "door.closed", **data) -> None:
            gate.publish(f"acs/test/gate-7/events/{etype}", {
                "specversion": "1.0", "id": f"e-{seq}", "source": "acs/test/gate-7", "type": etype,
                "time": "2026-01-01T00:00:00.000Z", "datacontenttype": "application/json", "epoch": "ep-1",
                "seq": seq, "data": data})

        def asked(count: int) -> list[dict]:
            return gate.wait(lambda m: len(m) >= count and [json.loads(p) for _, p, _ in m], what=f"{count} requests")

        for seq in (1, 2, 5, 6, 9):
            event(seq)
        first = asked(1)[0]
        t1 = time.monotonic()
        assert first == {"after_seq": 2, "until_seq": 8}  # both gaps in one request: one at a time per gate
        second = asked(2)[1]  # nothing came: asked again after the timeout, not before
        assert second == first and time.monotonic() - t1 >= 2.0
        for seq in (3, 4):
            event(seq)
        event(10, "alarm.raised", alarm="replay_unavailable", after_seq=2, first_seq=8)  # 7 is gone for good
        event(8)
        central.send("wait-complete gate-7 10")
        central.wait_for("central complete gate-7 10")
        r = json.loads((central.send("report"), central.wait_for("central report"))[1].split(" ", 2)[2])
        g = r["gates"]["gate-7"]
        assert (g["gaps_open"], g["gaps_filled"], g["lost"]) == (0, 3, 1)
    finally:
        gate.close()

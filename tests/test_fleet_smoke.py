"""The fleet benchmark keeps working at a thousand gates and two real ones: site brokers bridged to a central
one, every event stored once at central through a steady load, a central outage, a site broker killed -9,
gate crashes and a consumer killed -9; a resync storm served whole; every peer delivery made."""
from __future__ import annotations

import subprocess
import sys

import pytest
from sitekit import ROOT


@pytest.mark.timeout(600)  # about a minute on an idle machine; the suite's default is two
def test_spec7_fleet_quick_loses_no_event_and_keeps_retained_state():
    r = subprocess.run([sys.executable, "bench/fleet.py", "--quick"], cwd=ROOT, capture_output=True, text=True,
                       timeout=580)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = {line.split("|")[0].strip(): [c.strip() for c in line.split("|")] for line in r.stdout.splitlines()
            if line.startswith("S")}
    assert set(rows) == {"S1 steady", "S2 central down", "S3 site broker kill -9", "S4 resync storm",
                         "S5 retained after churn", "S6 peer fan-out", "S7 consumer kill -9"}, r.stdout
    for name, cells in rows.items():
        if name == "S4 resync storm":  # no events: snapshots only
            assert "200 of 200 snapshots" in cells[-1], cells
            continue
        assert int(cells[2]) > 0, (name, cells)
        assert cells[3] == cells[2] and cells[4] == "0", (name, cells)  # stored every event, none missing
    assert " restarted; 0 of 1000 status/key wrong" in r.stdout
    assert "2 gatekeeper run" in rows["S1 steady"][-1]  # real gates' events are in S1's events and stored


def _lines(proc):
    return lambda: proc.stdout.readline().strip()


@pytest.mark.timeout(300)
def test_spec2_replay_consumer_asks_a_gate_for_a_gap_and_its_missing_tail(tmp_path):
    """Events acknowledged and then lost (in the middle, and at the end where only the status's last_seq shows
    them) reach the central store by `replay`, each stored once."""
    import json

    from simulators.mosquitto import Broker
    broker = Broker(tmp_path / "broker").start()
    procs = []
    try:
        consumer = subprocess.Popen([sys.executable, "-m", "simulators.consumer", "--broker", broker.url,
                                     "--out", str(tmp_path / "c"), "--replay-after", "0.5"], cwd=ROOT,
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        procs.append(consumer)
        assert consumer.stdout.readline().strip() == "consumer ready"
        links = subprocess.Popen([sys.executable, "-m", "simulators.gate_links", "--site", f"s1={broker.url}",
                                  "--gates", "2"], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        procs.append(links)
        assert json.loads(links.stdout.readline()) == {"ready": 2, "gates": 2}

        def gates(cmd):
            links.stdin.write(json.dumps(cmd) + "\n")
            links.stdin.flush()
            return json.loads(links.stdout.readline())
        gates({"cmd": "emit", "gates": ["s1/g0001"], "n": 3})
        gates({"cmd": "lose", "gates": ["s1/g0001"], "n": 4})      # seq 4..7 lost: a gap once 8 arrives
        gates({"cmd": "emit", "gates": ["s1/g0001"], "n": 6})
        gates({"cmd": "emit", "gates": ["s1/g0002"], "n": 2})
        gates({"cmd": "lose", "gates": ["s1/g0002"], "n": 3})      # seq 3..5 lost at the tail
        gates({"cmd": "emit", "gates": ["s1/g0002"], "n": 3})
        gates({"cmd": "bounce", "gates": ["s1/g0002"]})             # its next status says last_seq 5
        expect = tmp_path / "expect.json"
        import time
        deadline = time.monotonic() + 60
        while True:
            gates({"cmd": "dump", "path": str(expect)})
            consumer.stdin.write(f"report {expect}\n")
            consumer.stdin.flush()
            rep = json.loads(consumer.stdout.readline()[len("consumer report "):])
            if rep["missing"] == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)  # polling the consumer's store: it has no push channel
        assert rep["missing"] == 0, rep
        assert rep["stored"] == 14 and rep["replay_requests"] >= 2, rep
        assert gates({"cmd": "stats"})["replayed"] >= 7
    finally:
        for p in procs:
            p.kill()
            p.wait()
        broker.stop()

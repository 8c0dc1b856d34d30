"""Faults end to end: a crash mid-burst, readers and I/O modules that vanish, a restart with a lock open."""
from __future__ import annotations

import pytest

from sitekit import WAIT_S, JournalWatch, gatekeeper, make_site, wait_until
from unitsandbox import confined
from test_e2e_gate import STAFF, Gate

pytestmark = pytest.mark.e2e

DECISIONS = ("access.granted", "access.denied", "exit.held")


@pytest.fixture
def gate(tmp_path, procs):
    site = make_site(tmp_path / "site")
    r = site.import_lines([{"credential": f"badge:{STAFF}", "holder": "h-1", "category": "staff", "areas": ["site"]}])
    assert r.returncode == 0, r.stderr
    g = Gate(site, procs)
    g.start_hardware()
    yield g
    g.io.close()


def test_p19_kill_9_mid_burst_loses_no_journaled_decision_and_leaves_no_gap(gate):
    gate.start_daemon()
    for i in range(300):
        gate.readers["main-in"].send(f"{i:08X}")  # unknown badges: each one a journaled refusal
    wait_until(lambda: sum(t in DECISIONS for _, t, _ in gate.journal.rows()) >= 40, what="a burst under way")
    gate.daemon.kill()  # SIGKILL: no clean shutdown, whatever was in flight
    before = gate.journal.rows()
    assert before, "nothing was journaled before the kill"

    gate.start_daemon()
    _, etype, _ = gate.scan("main-in", STAFF, holder="h-1")
    assert etype == "access.granted"
    after = gate.journal.rows()
    assert after[:len(before)] == before  # every entry committed before the crash is still there, unchanged
    assert [s for s, _, _ in after] == list(range(1, len(after) + 1))  # seq rises by one, no gap
    r = gatekeeper("events", "--config", str(gate.site.config), "--verify")
    assert r.returncode == 0, r.stdout + r.stderr  # the hash chain holds across the crash


def test_p18_start_drives_every_lock_to_locked_without_a_pulse(gate):
    gate.io.write_coil(0, True, device_id=1)  # left unlocked, e.g. by a crash during a pulse
    gate.io.write_coil(1, True, device_id=1)
    unlocks = gate.unlocks(0), gate.unlocks(1)
    gate.start_daemon()
    wait_until(lambda: gate.locked(0) and gate.locked(1), what="every lock driven to locked")
    assert (gate.unlocks(0), gate.unlocks(1)) == unlocks  # locked, never pulsed


def test_p18_a_reader_that_vanishes_is_reported_once_and_the_others_keep_deciding(gate):
    gate.start_daemon()
    watch = JournalWatch(gate.site.db)
    gate.readers["office-in"].kill()
    _, _, fault = watch.next("device.fault", device="office-in")
    assert fault["kind"] == "reader"
    _, etype, _ = gate.scan("main-in", STAFF)  # another reader, same daemon: still deciding
    assert etype == "access.granted"
    r = gate.start_reader("office-in")  # back on its port, which was held for it while it was gone
    r.wait_for("badge_reader connected")  # the daemon came back by itself (capped backoff)
    watch.next("device.recovered", device="office-in")
    _, etype, data = gate.scan("office-in", STAFF)
    assert (etype, data["door"]) == ("access.granted", "office")
    faults = [d for _, t, d in watch.rows() if t == "device.fault" and d["device"] == "office-in"]
    assert len(faults) == 1  # retries while it was gone are not new faults


def test_p18_an_io_module_that_vanishes_is_retried_and_relocks_on_return(gate):
    gate.start_daemon()
    watch = JournalWatch(gate.site.db)
    gate.door_io.send("down")
    gate.door_io.wait_for("door_io down")
    gate.io.close()
    _, _, fault = watch.next("device.fault", device="io1")
    assert fault["kind"] == "io_module"
    _, etype, _ = gate.scan("main-in", STAFF)  # decisions go on, journaled, even with no lock to drive
    assert etype == "access.granted"
    gate.door_io.send("up")
    gate.door_io.wait_for("door_io listening")
    watch.next("device.recovered", device="io1")
    assert gate.io.connect()
    gate.settle()
    before = gate.unlocks(0)
    _, etype, _ = gate.scan("main-out", STAFF)
    assert etype == "access.granted"
    wait_until(lambda: gate.unlocks(0) == before + 1, what="the door opens again")


def test_systemd_hears_ready_only_once_serving_and_the_watchdog_is_fed(gate, procs, tmp_path):
    import socket
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(WAIT_S)
    try:
        daemon = procs.start("daemon", *confined("-m", "edge.cli", "run", "--config", str(gate.site.config)),
                             env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"})
        messages = []
        while not any("WATCHDOG=1" in m for m in messages):
            messages.append(sock.recv(4096).decode())
        assert "READY=1" in messages[0]
        assert gate.site.db.exists()  # ready means the database is open and serving
        daemon.stop()
        assert any("STOPPING=1" in sock.recv(4096).decode() for _ in range(10))
    finally:
        sock.close()


def test_p18_an_io_module_that_stops_answering_is_one_fault_and_one_recovery(gate):
    gate.start_daemon()
    watch = JournalWatch(gate.site.db)
    gate.door_io.send("mute")  # connected, but no replies: every request times out
    _, _, fault = watch.next("device.fault", device="io1")
    assert "doors" in fault and fault["doors"]["main"] == "fail_secure"  # what the hardware does now (P18)
    _, etype, _ = gate.scan("main-in", STAFF)  # still deciding and journaling
    assert etype == "access.granted"
    gate.door_io.send("unmute")
    watch.next("device.recovered", device="io1")
    faults = [d for _, t, d in watch.rows() if t == "device.fault" and d["device"] == "io1"]
    assert len(faults) == 1


def test_a_flapping_door_contact_is_reported_and_decisions_go_on(gate):
    gate.start_daemon()
    gate.daemon.wait_for("io module io1 ready", already=True)
    watch = JournalWatch(gate.site.db)
    gate.door_io.send("flap 2 150")  # the office door's contact, loose
    watch.next("door.forced", door="office")
    watch.next("door.closed", door="office")
    _, etype, _ = gate.scan("main-in", STAFF)
    assert etype == "access.granted"
    gate.door_io.send("flap 2 off")

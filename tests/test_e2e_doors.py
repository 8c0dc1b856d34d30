"""Door supervision end to end (P16–P18): the door I/O simulator's contacts, buttons and fire input."""
from __future__ import annotations

import time

import pytest

from sitekit import make_site, wait_until
from test_e2e_gate import STAFF, staffed_gate

pytestmark = pytest.mark.e2e


@pytest.fixture
def gate(tmp_path, procs):
    site = make_site(tmp_path / "site")
    # main: a long pulse (to see the relock on close), a request-to-exit button, a short held-open limit;
    # office: fail-safe, freed by fire mode
    site.edit_door("main", rex_input=1, pulse_s=8, held_open_s=1)
    site.edit_door("office", fail_mode="fail_safe")
    g = staffed_gate(site, procs)
    g.daemon.wait_for("io module io1 ready", already=True)  # doors' first state read: what happens next is news
    yield g
    g.io.close()


def test_p17_a_door_opened_without_a_grant_is_forced(gate):
    gate.door_io.send("input 0 on")
    _, _, data = gate.journal.next("door.forced")
    assert data["door"] == "main"
    gate.door_io.send("input 0 off")
    gate.journal.next("door.closed", door="main")


def test_p17_a_granted_door_opens_and_relocks_as_soon_as_it_closes(gate):
    scanned = time.monotonic()  # the pulse starts after this, so it cannot end before scanned + 8 s
    _, etype, _ = gate.scan("main-in", STAFF)
    assert etype == "access.granted"
    wait_until(lambda: not gate.locked(0), what="unlocked by the grant")
    gate.door_io.send("walk main")  # someone pushes it open, walks through, it swings shut
    gate.journal.next("door.opened", door="main")
    gate.journal.next("door.closed", door="main")
    # locked again while the 8 s pulse would still run: the close relocked it, not the pulse's end
    wait_until(lambda: gate.locked(0), timeout=scanned + 7.5 - time.monotonic(),
               what="relocked at the close, before the 8 s pulse ends")
    assert not [d for _, t, d in gate.journal.rows() if t == "door.forced"]


def test_p17_a_door_held_open_past_its_limit_is_reported_once(gate):
    gate.scan("main-in", STAFF)
    gate.door_io.send("input 0 on")
    gate.journal.next("door.opened", door="main")
    gate.journal.next("door.held_open", door="main")
    gate.door_io.send("input 0 off")
    gate.journal.next("door.closed", door="main")
    assert len([1 for _, t, _ in gate.journal.rows() if t == "door.held_open"]) == 1


def test_p17_request_to_exit_opens_without_a_forced_alarm(gate):
    before = gate.unlocks(0)
    gate.door_io.send("input 1 on")
    wait_until(lambda: gate.unlocks(0) == before + 1, what="the button unlocks the door")
    gate.door_io.send("input 0 on")
    gate.journal.next("door.opened", door="main")
    gate.door_io.send("input 1 off")
    gate.door_io.send("input 0 off")
    gate.journal.next("door.closed", door="main")


def test_p16_fire_input_starts_fire_mode_frees_fail_safe_doors_and_lets_everyone_out(gate):
    now_unlocks = gate.unlocks(0)
    gate.door_io.send("input 100 on")
    _, _, mode = gate.journal.next("mode.changed")
    assert (mode["mode"], mode["actor"], mode["actor_role"]) == ("fire", "fire_input", None)
    wait_until(lambda: not gate.locked(1), what="the fail-safe office door freed")
    assert gate.locked(0) and gate.unlocks(0) == now_unlocks  # the fail-secure door is not
    gate.door_io.send("input 100 off")  # the panel resets, fire mode stays until a supervisor ends it
    _, etype, data = gate.scan("main-out", "DEADBEEF01")  # even an unknown credential... is refused:
    assert (etype, data["reason"]) == ("access.denied", "unknown_credential")  # P2 still holds at exits
    _, etype, data = gate.scan("main-out", STAFF)
    assert (etype, data["reason"]) == ("access.granted", "fire_mode")
    assert not gate.locked(1)  # still free

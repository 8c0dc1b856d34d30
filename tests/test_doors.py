"""Door supervision rules (P16–P18), pure: inputs and time in, events and lock actions out."""
from __future__ import annotations

from edge.config import DoorSection
from edge.hardware.doors import FREE, RELOCK, UNLOCK_REX, DoorState, supervise

DOOR = DoorSection(name="main", area="site/lobby", io="io1", lock_coil=0, contact_input=0, rex_input=1,
                   pulse_s=3, held_open_s=30)


def door(**kw) -> DoorState:
    d = DoorState(DOOR.model_copy(update=kw))
    supervise(d, False, False, 0.0, False)  # first read: closed
    return d


def test_p17_opening_without_grant_is_forced():
    d = door()
    s = supervise(d, True, False, 10.0, False)
    assert [e for e, _ in s.events] == ["door.forced"]


def test_p17_opening_after_a_grant_is_not_forced_and_closing_relocks():
    d = door()
    d.authorize(10.0)
    s = supervise(d, True, False, 11.0, False)
    assert [e for e, _ in s.events] == ["door.opened"]
    s = supervise(d, False, False, 13.0, False)
    assert [e for e, _ in s.events] == ["door.closed"] and s.actions == [RELOCK]


def test_p17_the_grant_window_ends():
    d = door()
    d.authorize(10.0)
    s = supervise(d, True, False, 14.0, False)  # 4 s after a 3 s pulse
    assert [e for e, _ in s.events] == ["door.forced"]


def test_p17_request_to_exit_unlocks_and_the_opening_is_not_forced():
    d = door()
    s = supervise(d, False, True, 10.0, False)
    assert s.actions == [UNLOCK_REX]
    s = supervise(d, True, True, 10.5, False)
    assert [e for e, _ in s.events] == ["door.opened"]


def test_p17_held_open_is_raised_once_per_opening():
    d = door()
    d.authorize(0.0)
    supervise(d, True, False, 1.0, False)
    assert supervise(d, True, False, 20.0, False).events == []
    s = supervise(d, True, False, 31.5, False)
    assert [e for e, _ in s.events] == ["door.held_open"]
    assert supervise(d, True, False, 40.0, False).events == []


def test_p16_fire_frees_fail_safe_doors_only_and_they_stay_free():
    safe, secure = door(fail_mode="fail_safe"), door(fail_mode="fail_secure")
    assert supervise(safe, False, False, 5.0, True).actions == [FREE]
    assert supervise(secure, False, False, 5.0, True).actions == []
    s = supervise(safe, True, False, 6.0, True)
    assert [e for e, _ in s.events] == ["door.opened"]
    assert supervise(safe, False, False, 7.0, True).actions == []  # no relock while freed


def test_first_read_raises_nothing_even_if_open():
    d = DoorState(DOOR)
    assert supervise(d, True, False, 0.0, False).events == []


def test_p16_fire_cleared_relocks_a_closed_freed_door_at_once():
    d = door(fail_mode="fail_safe")
    assert supervise(d, False, False, 5.0, True).actions == [FREE]
    assert supervise(d, False, False, 9.0, False).actions == [RELOCK]
    assert not d.freed
    assert supervise(d, True, False, 10.0, False).events == [("door.forced", {"door": "main"})]


def test_p16_fire_cleared_relocks_an_open_freed_door_when_it_closes():
    d = door(fail_mode="fail_safe")
    supervise(d, False, False, 5.0, True)
    supervise(d, True, False, 6.0, True)  # people leave through it
    s = supervise(d, True, False, 100.0, False)  # fire cleared while it stands open
    assert s.actions == [] and s.events == []
    s = supervise(d, False, False, 101.0, False)
    assert [e for e, _ in s.events] == ["door.closed"] and s.actions == [RELOCK]


def test_p16_fire_cleared_relocks_a_door_without_a_contact_at_once():
    d = DoorState(DOOR.model_copy(update={"fail_mode": "fail_safe", "contact_input": None}))
    assert supervise(d, None, None, 1.0, True).actions == [FREE]
    assert supervise(d, None, None, 2.0, False).actions == [RELOCK]

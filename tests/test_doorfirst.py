"""The door first: what would wake other processes (the outbox's publish, the API's live feed and calls)
waits while a scan drives its door, and never longer than a bound; nothing is dropped, the order is kept."""
from __future__ import annotations

import asyncio
import threading

from edge.runtime.doorfirst import DoorFirst
from edge.store import Store
from edge.store.journal import Journal

WAIT_S = 30.0  # a limit on waits that end on an event, never a sleep


def test_idle_gate_runs_the_work_at_once():
    doors, ran = DoorFirst(), []
    doors.later(lambda: ran.append("now"))
    assert ran == ["now"]


def test_work_asked_for_during_a_scan_runs_when_the_door_is_driven_in_order_and_a_kick_once():
    async def scan() -> list[str]:
        doors, ran = DoorFirst(), []

        def kick():
            ran.append("kick")
        with doors.scan():
            doors.later(kick)
            doors.later(lambda: ran.append("api call 1"))
            doors.later(kick)  # the outbox told twice in one scan: once is enough
            doors.later(lambda: ran.append("api call 2"))
            assert ran == []  # not while the door is being driven
        assert ran == ["kick", "api call 1", "api call 2"]
        doors.later(kick)  # after the scan: at once again
        return ran
    assert asyncio.run(scan())[-1] == "kick"


def test_a_scan_whose_door_hangs_holds_nobody_past_the_bound():
    async def scan() -> bool:
        doors, ran = DoorFirst(hold_max_s=0.05), asyncio.Event()
        with doors.scan():
            doors.later(ran.set)
            # the module does not answer: the scan is still open, the work ran all the same
            await asyncio.wait_for(ran.wait(), WAIT_S)
            later = []
            doors.later(lambda: later.append(1))  # the rest of this scan no longer holds anything
            return later == [1]
    assert asyncio.run(scan())


def test_a_failing_listener_does_not_keep_the_others_from_hearing(caplog):
    async def scan() -> list[str]:
        doors, ran = DoorFirst(), []
        with doors.scan():
            doors.later(lambda: 1 / 0)
            doors.later(lambda: ran.append("heard"))
        return ran
    assert asyncio.run(scan()) == ["heard"]
    assert "ZeroDivisionError" in caplog.text


def test_another_threads_commit_is_announced_at_once_as_before():
    async def scan() -> list[str]:
        doors, ran = DoorFirst(), []
        with doors.scan():
            t = threading.Thread(target=doors.later, args=(lambda: ran.append("other thread"),))
            t.start()
            t.join(WAIT_S)
            return ran
    assert asyncio.run(scan()) == ["other thread"]


def test_p19_journal_listeners_hear_of_a_scans_entries_once_its_door_is_driven(tmp_path):
    store = Store(tmp_path / "gk.db")
    try:
        doors, heard = DoorFirst(), []
        store.announce_via = doors.later
        store.journal_listeners.append(lambda: heard.append(Journal(store).last_seq()))

        async def scan() -> None:
            with doors.scan():
                with store.tx():
                    Journal(store).append("access.granted", {"door": "main"})
                assert heard == []  # committed, durable, and nobody woken yet
                with store.tx():
                    Journal(store).append("alarm.raised", {"alarm": "output_failed"})
            assert heard == [2]  # told once, after the door, of both entries
        asyncio.run(scan())
        with store.tx():
            Journal(store).append("access.denied", {})
        assert heard == [2, 3]  # no scan under way: at once
    finally:
        store.close()


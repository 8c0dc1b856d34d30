"""P27 returned visitor cards: the decision, table-driven, and the gate in one process (real config, real SQLite):
a temporary badge is held at the perimeter exit until its card is taken back, by the lane's collector or a guard."""
from __future__ import annotations

import json
import time
from dataclasses import replace

import pytest

from edge.config import ConfigError, load_config
from edge.core import cards
from edge.core.gate import Gate
from edge.core.model import Direction, DoorView, Facts, Mode
from edge.core.policy import decide
from edge.passes.keyring import build_keyring
from edge.store import Store
from edge.store.allowlist import write_lists
from edge.store.records import AllowRecord
from sitekit import make_site
from test_policy import LOBBY_IN, LOBBY_OUT, NOW, OFFICE_IN, SETTINGS, STAFF, VISITOR

CARD = replace(STAFF, ref="badge:0CA4D000", holder="h-card", category="visitor", areas=("site/lobby", "site/office"),
               temporary=True, schedule="always")
STAFF_CARD = replace(STAFF, temporary=True)  # any category may carry a visitor card; the record says so
OFFICE_OUT = DoorView("office", "site/office", Direction.OUT)
LANE_OUT = replace(LOBBY_OUT, passages=True, collector=True)

# -- the decision ----------------------------------------------------------------------------------------------
# (case, credential, door, facts, granted, reason, held)
P27 = [
    ("a visitor card at the perimeter exit is held for the card", CARD, LOBBY_OUT, {"signed_off": True},
     False, "card_return_required", True),
    ("at a collector lane too: it opens once the card is captured", CARD, LANE_OUT, {"signed_off": True},
     False, "card_return_required", True),
    ("a staff member's temporary card as well", STAFF_CARD, LOBBY_OUT, {}, False, "card_return_required", True),
    ("the host's sign-off comes first (P9)", CARD, LOBBY_OUT, {}, False, "host_signoff_missing", True),
    ("an inner exit keeps the card", CARD, OFFICE_OUT, {"presence": "site/office"}, True, "ok", False),
    ("a consumed card is refused at the exit (P8)", CARD, LOBBY_OUT, {"consumed": True, "signed_off": True},
     False, "pass_consumed", False),
    ("a consumed card is refused at the entrance (P8)", CARD, LOBBY_IN, {"consumed": True}, False, "pass_consumed", False),
    ("and at an inner door", CARD, OFFICE_IN, {"consumed": True}, False, "pass_consumed", False),
    ("a card issued again enters", CARD, LOBBY_IN, {}, True, "ok", False),
    ("fire mode lets the holder out with the card (P16)", CARD, LOBBY_OUT, {"mode": Mode.FIRE}, True, "fire_mode", False),
    ("a staff badge is unchanged at the exit", STAFF, LOBBY_OUT, {"presence": "site/lobby"}, True, "ok", False),
    ("a staff badge is multi-use: a consumed mark means nothing", STAFF, LOBBY_IN, {"consumed": True}, True, "ok", False),
    ("a pass is unchanged (P8, P9)", VISITOR, LOBBY_OUT, {"signed_off": True, "presence": "site/lobby"}, True, "ok", False),
]


@pytest.mark.parametrize("case, cred, door, facts, granted, reason, held", P27, ids=[c[0] for c in P27])
def test_p27_decision(case, cred, door, facts, granted, reason, held):
    d = decide(cred, door, NOW, Facts(**facts), SETTINGS)
    # only a pass's grant consumes by itself (P8); a card is consumed when it is taken back (edge/core/cards.py)
    assert (d.granted, d.reason, d.held, d.consumes) == (granted, reason, held, cred.kind == "pass" and granted)


def test_p27_the_record_field_defaults_to_false_and_is_stored():
    from edge.store.staging import CREDENTIAL_FIELDS
    at = [c for c, _ in CREDENTIAL_FIELDS].index("temporary")
    r = AllowRecord.model_validate({"credential": "badge:0CA4D000", "holder": "h", "category": "visitor", "areas": ["site"]})
    assert r.temporary is False and r.row()[at] == 0
    assert AllowRecord.model_validate({**r.model_dump(), "temporary": True}).row()[at] == 1


@pytest.mark.parametrize("fields, problem", [
    ({"collector": True}, "collector_input"),
    ({"collector_input": 7}, "collector = true"),
])
def test_p27_a_collector_needs_its_input_at_a_perimeter_door(tmp_path, fields, problem):
    s = make_site(tmp_path / "s")
    s.edit_door("main", **fields)
    with pytest.raises(ConfigError, match=problem):
        load_config(s.config)


def test_p27_a_collector_input_shared_with_another_input_is_named_by_the_check(tmp_path):
    s = make_site(tmp_path / "s")
    s.edit_door("main", collector=True, collector_input=2)  # the office door's contact
    with pytest.raises(ConfigError, match="input 2 of 'io1' is also"):
        load_config(s.config)


# -- the gate ----------------------------------------------------------------------------------------------------
CARD_REF = "badge:0CA4D000"
RECORD = {"credential": CARD_REF, "holder": "h-card", "category": "visitor", "areas": ["site/lobby", "site/office"],
          "temporary": True, "schedule": "always"}


def _site(d, **door):
    s = make_site(d)
    if door:
        s.edit_door("main", **door)
    r = s.import_lines([RECORD, {"credential": "badge:04A1B2C3", "holder": "h-1", "category": "staff",
                                 "areas": ["site"]}])
    assert r.returncode == 0, r.stderr
    return s


@pytest.fixture
def gate(tmp_path):
    s = _site(tmp_path / "site")
    cfg, base = load_config(s.config)
    store = Store(s.db)
    g = Gate(cfg, store, build_keyring(cfg, base, store))
    g.sign_off(CARD_REF, "h-9", "central")  # P9 is not what these tests are about
    yield g
    store.close()


@pytest.fixture
def lane(tmp_path):
    s = _site(tmp_path / "lane", kind="turnstile", pass_in_coil=5, pass_out_coil=6, passage_in_input=5,
              passage_out_input=6, collector=True, collector_input=9)
    cfg, base = load_config(s.config)
    store = Store(s.db)
    g = Gate(cfg, store, build_keyring(cfg, base, store))
    g.sign_off(CARD_REF, "h-9", "central")
    yield g
    store.close()


def types(entries) -> list[str]:
    return [e.type for e in entries]


def data(entry) -> dict:
    return json.loads(entry.data)


def journal(g, after: int) -> list[tuple[str, dict]]:
    return [(t, json.loads(d)) for t, d in g.store.conn.execute(
        "SELECT type, data FROM journal WHERE seq>? ORDER BY seq", (after,))]


def test_p27_held_at_an_exit_without_collector_for_a_guard(gate):
    now = time.time()
    assert gate.present("main-in", "badge", CARD_REF, now).opens
    out = gate.present("main-out", "badge", CARD_REF, now + 1)
    assert not out.opens and out.decision.reason == "card_return_required"
    assert types(out.entries) == ["exit.held"] and data(out.entries[0])["collector"] is False
    assert CARD_REF in gate.held_exits and CARD_REF in gate.card_held
    assert gate.release(CARD_REF, "g-1", "guard", "host confirmed") is None  # a P9 release does not take a card
    again = gate.present("main-out", "badge", CARD_REF, now + 2)  # scanning again changes nothing
    assert not again.opens and again.decision.reason == "card_return_required"


def test_p27_the_guard_marks_the_card_returned_consumed_and_opens_once(gate):
    now = time.time()
    gate.present("main-in", "badge", CARD_REF, now)
    gate.present("main-out", "badge", CARD_REF, now + 1)
    seq = gate.journal.last_seq()
    door = cards.returned(gate, CARD_REF, "g-1", "guard", "card in the drawer", now + 2)
    assert door is not None and door.name == "main"
    written = journal(gate, seq)
    assert [t for t, _ in written] == ["card.returned", "visit.checked_out"]
    ret = written[0][1]
    assert (ret["credential_ref"], ret["door"], ret["taken_by"], ret["actor"], ret["actor_role"], ret["reason"]) == \
        (CARD_REF, "main", "guard", "g-1", "guard", "card in the drawer")
    assert written[1][1]["visit"] == CARD_REF  # what the other gates consume it by
    assert CARD_REF in gate.store.consumed and CARD_REF not in gate.store.presence
    assert gate.store.conn.execute("SELECT count(*) FROM held_exits").fetchone()[0] == 0
    assert cards.returned(gate, CARD_REF, "g-1", "guard", "twice", now + 3) is None  # once
    assert gate.present("main-in", "badge", CARD_REF, now + 4).decision.reason == "pass_consumed"
    assert gate.present("main-out", "badge", CARD_REF, now + 5).decision.reason == "pass_consumed"


def test_p27_an_upserted_record_issues_the_card_again(gate):
    now = time.time()
    gate.present("main-in", "badge", CARD_REF, now)
    gate.present("main-out", "badge", CARD_REF, now + 1)
    cards.returned(gate, CARD_REF, "g-1", "guard", "taken", now + 2)
    with gate.store.tx() as c:  # the writer of a batch's upserts (edge/link/sync.py)
        write_lists(c, now + 3, upserts=[AllowRecord.model_validate(RECORD).row()])
    gate.store.refresh(force=True)
    assert CARD_REF not in gate.store.consumed
    assert gate.present("main-in", "badge", CARD_REF, now + 4).opens


def test_p27_a_staff_badge_is_not_held_nor_consumed(gate):
    now = time.time()
    gate.present("main-in", "badge", "badge:04A1B2C3", now)
    out = gate.present("main-out", "badge", "badge:04A1B2C3", now + 1)
    assert out.opens and types(out.entries) == ["access.granted"]
    assert "badge:04A1B2C3" not in gate.store.consumed
    assert gate.present("main-in", "badge", "badge:04A1B2C3", now + 2).opens


def test_p27_a_card_held_exit_survives_a_restart_as_one(gate):
    now = time.time()
    gate.present("main-in", "badge", CARD_REF, now)
    gate.present("main-out", "badge", CARD_REF, now + 1)
    again = Gate(gate.cfg, gate.store, gate.keyring)
    assert CARD_REF in again.card_held and again.held_exits[CARD_REF][2].name == "main"
    assert cards.returned(again, CARD_REF, "g-1", "guard", "taken", now + 2).name == "main"


def test_p27_a_collector_lane_opens_only_after_the_capture(lane):
    now = time.time()
    assert lane.present("main-in", "badge", CARD_REF, now).opens
    lane.passage("main", Direction.IN, now + 0.5)
    out = lane.present("main-out", "badge", CARD_REF, now + 1)
    assert not out.opens and out.decision.reason == "card_return_required"
    assert types(out.entries) == ["exit.held"] and data(out.entries[0])["collector"] is True
    assert not lane.pending.get(("main", Direction.OUT))  # nothing to walk through yet
    seq = lane.journal.last_seq()
    taken = cards.captured(lane, "main", now + 2)
    assert taken is not None and taken[0] == CARD_REF and taken[1].name == "main"
    written = journal(lane, seq)
    assert [t for t, _ in written] == ["card.returned", "visit.checked_out"] and written[0][1]["taken_by"] == "collector"
    assert "actor" not in written[0][1]
    assert CARD_REF in lane.store.consumed
    # the one passage the lane is opened for counts, and takes the holder off site (P7, P11)
    entries, more = lane.passage("main", Direction.OUT, now + 3)
    assert types(entries) == ["access.passage"] and not more
    assert CARD_REF not in lane.store.presence
    assert cards.captured(lane, "main", now + 4) is None  # a card with nobody waiting opens nothing


def test_p27_a_capture_at_another_door_releases_nothing(lane):
    now = time.time()
    lane.present("main-in", "badge", CARD_REF, now)
    lane.present("main-out", "badge", CARD_REF, now + 1)
    assert cards.captured(lane, "office", now + 2) is None
    assert CARD_REF in lane.card_held

"""P26 vehicles: plate lines, their encodings, and the gate's decisions at a barrier (held, admitted once,
registered to a visit), on a real config and database."""
from __future__ import annotations

import json
import time

import pytest

from drivers.line_protocol import LineBuffer, classify
from edge.config import ConfigError, load_config
from edge.core.model import Direction
from sitekit import in_process_gate, make_site

PLATE = "plate:沪B77777"  # allow-listed
VISIT = "00112233445566778899aabb"

BARRIER = """
[[doors]]
name = "yard"
area = "site/parking"
perimeter = true
io = "io1"
kind = "barrier"
lock_coil = 5
loop_input = 6
pulse_s = 0.3

[[readers]]
name = "yard-in"
url = "socket://127.0.0.1:9"
door = "yard"
direction = "in"
encoding = "gbk"

[[readers]]
name = "yard-out"
url = "socket://127.0.0.1:9"
door = "yard"
direction = "out"
"""


def with_barrier(text: str) -> str:
    """The test site with a car park behind a barrier on its boundary."""
    return text.replace('tree = ["site", ', 'tree = ["site", "site/parking", ', 1) + BARRIER


@pytest.mark.parametrize("line, expected", [
    ("PLATE:京A12345", ("plate", "plate:京A12345")),
    ("PLATE:京a 12345", ("plate", "plate:京A12345")),  # upper case, no spaces
    ("plate: ab 12 cd \r", ("plate", "plate:AB12CD")),
    ("PLATE:\tA\u3000B1", ("plate", "plate:AB1")),  # any whitespace, the ideographic space too
    ("PLATE:", ("malformed", "a plate line without a readable plate")),
    ("PLATE:   ", ("malformed", "a plate line without a readable plate")),
    ("PLATE:AB\u202e12", ("malformed", "a plate line without a readable plate")),  # a bidirectional override
    ("PLATE:AB\ufffd12", ("malformed", "a plate line without a readable plate")),  # bytes the encoding lost
    ("PLATE:" + "A" * 17, ("malformed", "a plate line without a readable plate")),
    ("PLATE:" + "A" * 16, ("plate", "plate:" + "A" * 16)),
    ("04A1B2C3", ("badge", "badge:04A1B2C3")),  # badges are what they were
])
def test_p26_plate_lines_are_normalized(line, expected):
    assert classify(line) == expected


def test_p26_a_qr_code_is_never_a_plate():
    """A camera reading QR codes: a printed `PLATE:` code must not pass for a car a plate camera saw."""
    from drivers.line_protocol import qr_presentation
    assert qr_presentation("cam", "PLATE:沪B77777", 1).kind == "malformed"
    assert qr_presentation("cam", "04A1B2C3", 1).value == "badge:04A1B2C3"


@pytest.mark.parametrize("encoding, sent, expected", [
    ("gbk", "PLATE:京A12345\r\n".encode("gbk"), ("plate", "plate:京A12345")),
    ("utf-8", "PLATE:京A12345\r\n".encode("utf-8"), ("plate", "plate:京A12345")),
    ("gb18030", "PLATE:粤B 8888\n".encode("gb18030"), ("plate", "plate:粤B8888")),
    # GBK bytes on a line read as UTF-8: undecodable, so malformed, never another plate
    ("utf-8", "PLATE:京A12345\n".encode("gbk"), ("malformed", "a plate line without a readable plate")),
])
def test_p26_a_reader_decodes_its_lines_in_its_encoding(encoding, sent, expected):
    buf = LineBuffer(encoding=encoding)
    lines = buf.feed(sent[:5]) + buf.feed(sent[5:])  # split mid-line, as a serial read may be
    assert [classify(x) for x in lines] == [expected]


@pytest.mark.parametrize("edit, problem", [
    (('encoding = "gbk"', 'encoding = "klingon"'), "unknown text encoding"),
    (('kind = "barrier"\nlock_coil = 5', 'kind = "barrier"'), "a barrier needs lock_coil"),
    (('lock_coil = 1\n', 'lock_coil = 1\nloop_input = 9\n'), "loop_input is a barrier's vehicle loop"),
    (('loop_input = 6', 'loop_input = 2'), "input 2 of 'io1' is also"),  # the office's contact
])
def test_p26_config_checks_barriers_and_encodings(tmp_path, edit, problem):
    site = make_site(tmp_path / "site")
    text = with_barrier(site.config.read_text())
    assert edit[0] in text
    site.config.write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(ConfigError) as e:
        load_config(site.config)
    assert problem in str(e.value)


@pytest.fixture
def site(tmp_path):
    s = make_site(tmp_path / "site")
    s.config.write_text(with_barrier(s.config.read_text()))
    r = s.import_lines([
        {"credential": PLATE, "holder": "h-1", "category": "staff", "areas": ["site"]},
        {"credential": "plate:OFFICE1", "holder": "h-3", "category": "staff", "areas": ["site/office"]},
        {"credential": "badge:04A1B2C3", "holder": "h-1", "category": "staff", "areas": ["site"]},
    ])
    assert r.returncode == 0, r.stderr
    return s


@pytest.fixture
def gate(site):
    with in_process_gate(site) as g:
        yield g


def add_visit(site, gate, now, until=3600.0, visit=VISIT):
    """A walk-in visit as the desk writes it (P13), its pass signed by a trusted key. A registered plate is
    decided as the pass would be: the pass names the car park (P4)."""
    text = site.issue(holder="h-9", category="visitor", areas=["site/lobby", "site/parking"], valid_from=now - 60,
                      valid_until=now + until, host="h-1", visit=visit)
    with gate.store.tx() as c:
        c.execute("INSERT INTO visits(id, holder, pass, pass_ref, name, company, purpose, host, host_confirmation,"
                  " id_hash, id_last4, areas, party, valid_from, valid_until, guard, created)"
                  " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                  (visit, "h-9", text, "pass:x", "Li", "ACME", "delivery", "h-1", "phone", "0" * 64, "1234",
                   "site/lobby", 1, now - 60, now + until, "g-1", now))
    return text


def kinds(entries):
    return [e.type for e in entries]


@pytest.mark.parametrize("reader, value, granted, held, reason, events", [
    ("yard-in", PLATE, True, False, "ok", ["access.granted"]),  # allow-listed: decided like a badge
    ("yard-out", PLATE, True, False, "ok", ["access.granted"]),
    ("yard-in", "plate:OFFICE1", False, False, "area_not_permitted", ["access.denied"]),  # refused as a badge is
    ("yard-in", "plate:UNKNOWN1", False, True, "unknown_credential", ["vehicle.held"]),  # held, not refused
    ("yard-out", "plate:UNKNOWN1", False, True, "unknown_credential", ["vehicle.held"]),  # never trapped
    ("yard-in", "badge:04A1B2C3", True, False, "ok", ["access.granted"]),  # a card reader at a barrier still works
    ("main-in", PLATE, False, False, "malformed", ["access.denied"]),  # plates are read at barriers only
])
def test_p26_plates_at_a_barrier(gate, reader, value, granted, held, reason, events):
    kind = value.split(":")[0]
    out = gate.present(reader, kind, value)
    d = out.decision
    assert (d.granted, d.held, d.reason) == (granted, held, reason)
    assert kinds(out.entries) == events
    data = json.loads(out.entries[0].data)
    if kind == "plate" and reader != "main-in":
        assert data["credential_kind"] == "plate" and data["credential_ref"] == value
    if held:
        assert data["plate"] == value.removeprefix("plate:") and data["door"] == "yard"
        assert value in gate.held_vehicles
    else:
        assert value not in gate.held_vehicles


def test_p26_the_guard_admits_a_held_vehicle_once(site, gate):
    now = time.time()
    gate.present("yard-in", "plate", "plate:京A12345", now)
    door = gate.admit_vehicle("plate:京A12345", "g-1", "guard", "delivery expected", now + 5)
    assert door is not None and door.name == "yard" and door.direction is Direction.IN
    assert gate.admit_vehicle("plate:京A12345", "g-1", "guard", "again") is None  # once
    rows = gate.store.conn.execute("SELECT data FROM journal WHERE type='override.opened'").fetchall()
    assert len(rows) == 1
    data = json.loads(rows[0][0])
    assert (data["plate"], data["door"], data["actor"], data["reason"]) == ("京A12345", "yard", "g-1", "delivery expected")
    assert gate.store.conn.execute("SELECT count(*) FROM held_vehicles").fetchone()[0] == 0


def test_p26_a_held_vehicle_is_still_held_after_a_restart(site):
    with in_process_gate(site) as g:
        g.present("yard-out", "plate", "plate:STUCK1")
    with in_process_gate(site) as g:
        assert list(g.held_vehicles) == ["plate:STUCK1"]
        assert g.admit_vehicle("plate:STUCK1", "g-1", "guard", "leaving") is not None


def test_p26_a_registration_lets_the_next_read_through_until_the_pass_ends(site, gate):
    now = time.time()
    add_visit(site, gate, now, until=600)
    held = gate.present("yard-in", "plate", "plate:粤B8888", now)
    assert held.decision.held
    before = gate.journal.last_seq()
    r = gate.register_vehicle(VISIT, "plate:粤B8888", "g-1", "guard", now + 1)
    assert r["new"] and r["plate"] == "粤B8888"
    # like a sign-off it opens nothing: one entry, the registration, and no grant
    rows = gate.store.conn.execute("SELECT type, data FROM journal WHERE seq > ?", (before,)).fetchall()
    assert [t for t, _ in rows] == ["visit.amended"] and "粤B8888" in rows[0][1]
    assert gate.register_vehicle(VISIT, "plate:粤B8888", "g-1", "guard", now + 2)["new"] is False
    out = gate.present("yard-in", "plate", "plate:粤B8888", now + 3)
    assert out.decision.granted and kinds(out.entries) == ["access.granted"]
    assert json.loads(out.entries[0].data)["holder"] == "h-9" and json.loads(out.entries[0].data)["credential_kind"] == "plate"
    assert "plate:粤B8888" not in gate.held_vehicles  # the car went through: nobody waits
    # the pass ended: the plate is unknown again, held at the way in
    late = gate.evaluate("yard-in", "plate", "plate:粤B8888", now + 601)
    assert late.decision.held and late.decision.reason == "unknown_credential"


def test_p26_a_registered_car_leaving_ends_the_visit_and_is_never_trapped(site, gate):
    now = time.time()
    add_visit(site, gate, now)
    gate.register_vehicle(VISIT, "plate:粤B8888", "g-1", "guard", now)
    gate.present("yard-in", "plate", "plate:粤B8888", now + 1)
    # not signed off: held for the guard (P9), not refused
    out = gate.present("yard-out", "plate", "plate:粤B8888", now + 2)
    assert out.decision.held and out.decision.reason == "host_signoff_missing"
    assert kinds(out.entries) == ["vehicle.held"]
    gate.sign_off(VISIT, "h-1", "p-sup", now + 3)
    out = gate.present("yard-out", "plate", "plate:粤B8888", now + 4)
    assert out.decision.granted and kinds(out.entries) == ["access.granted", "visit.checked_out"]
    assert VISIT in gate.store.consumed
    # consumed: no longer covered; in or out, held for the guard
    for reader in ("yard-in", "yard-out"):
        o = gate.evaluate(reader, "plate", "plate:粤B8888", now + 5)
        assert o.decision.held and o.decision.reason == "unknown_credential"


@pytest.mark.parametrize("case, status, code", [
    ("unknown", 404, "no_such_visit"),
    ("ended", 409, "visit_ended"),
    ("consumed", 409, "visit_ended"),
])
def test_p26_a_vehicle_is_registered_only_to_a_live_visit(site, gate, case, status, code):
    from edge.errors import Refused
    now = time.time()
    if case != "unknown":
        add_visit(site, gate, now, until=10)
    if case == "consumed":
        gate.store.consume(VISIT, now)
    with pytest.raises(Refused) as e:
        gate.register_vehicle(VISIT, "plate:AB123", "g-1", "guard", now + (20 if case == "ended" else 1))
    assert (e.value.status, e.value.reason) == (status, code)
    assert gate.store.conn.execute("SELECT count(*) FROM vehicles").fetchone()[0] == 0


def test_p26_allow_list_records_and_revocations_take_plates(site):
    r = site.import_lines([{"credential": "plate:京a12345", "holder": "h-1", "category": "staff", "areas": ["site"]}])
    assert r.returncode != 0  # not normalized: it could never match a read
    r = site.import_lines([{"credential": "plate:京A12345", "holder": "h-1", "category": "staff", "areas": ["site"]}])
    assert r.returncode == 0, r.stderr
    with in_process_gate(site) as g:
        assert g.present("yard-in", "plate", "plate:京A12345").decision.granted


def test_p26_the_vehicle_events_conform_to_the_contract(site, gate):
    """Every entry P26 journals (a held plate in and out, the guard's admission, a registration, a registered
    car in and out ending its visit), as its envelope goes out, checked against docs/asyncapi.yaml."""
    from simulators.contract import Contract
    now = time.time()
    add_visit(site, gate, now)
    gate.present("yard-in", "plate", "plate:京A12345", now)
    gate.admit_vehicle("plate:京A12345", "g-1", "guard", "delivery expected", now + 1)
    gate.present("yard-out", "plate", "plate:LOST1", now + 2)
    gate.register_vehicle(VISIT, "plate:粤B8888", "g-1", "guard", now + 3)
    gate.present("yard-in", "plate", "plate:粤B8888", now + 4)
    gate.sign_off(VISIT, "h-1", "p-sup", now + 5)
    gate.present("yard-out", "plate", "plate:粤B8888", now + 6)
    gate.present("yard-in", "plate", PLATE, now + 7)
    contract, source, epoch = Contract(), "acs/test/gate-1", gate.store.epoch
    broken, seen = {}, set()
    for entry in gate.journal.entries():
        seen.add(entry.type)
        for problem in contract.check(f"{source}/events/{entry.type}", entry.envelope_json(source, epoch).encode()):
            broken[f"{entry.type}: {problem}"] = None
    assert {"vehicle.held", "override.opened", "visit.amended", "access.granted", "visit.checked_out"} <= seen, seen
    assert not broken, "journal entries out of the MQTT contract:\n" + "\n".join(broken)

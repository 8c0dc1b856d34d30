"""SPEC §2: docs/asyncapi.yaml is a valid AsyncAPI 3.0 document, covers every topic of SPEC §2 and every event
type and alarm kind the code can journal, and its checker (simulators/contract.py) refuses what breaks it.

The published messages themselves are checked in every test that has an MQTT peer (tests/conftest.py)."""
from __future__ import annotations

import copy
import json
import re
import time
from datetime import datetime
from pathlib import Path

import jsonschema
import pytest
import yaml

from simulators.contract import Contract, ContractError

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "asyncapi.yaml"
# schemas/3.0.0.json of the npm package @asyncapi/specs 6.11.1 (tests/data/asyncapi-3.0.0.schema.NOTICE.md)
ASYNCAPI_SCHEMA = Path(__file__).parent / "data" / "asyncapi-3.0.0.schema.json"
T = "2026-11-30T12:00:00.000Z"


@pytest.fixture(scope="module")
def contract() -> Contract:
    return Contract()


def _asyncapi_problems(doc: dict) -> list[str]:
    schema = json.loads(ASYNCAPI_SCHEMA.read_text(encoding="utf-8"))
    v = jsonschema.Draft7Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in v.iter_errors(doc)]


def _refs(node, out: list[str]) -> list[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            out.append(node["$ref"])
        for v in node.values():
            _refs(v, out)
    elif isinstance(node, list):
        for v in node:
            _refs(v, out)
    return out


def test_spec2_the_document_is_a_valid_asyncapi_3_document():
    doc = yaml.safe_load(DOC.read_text(encoding="utf-8"))
    assert doc["asyncapi"] == "3.0.0"
    assert _asyncapi_problems(doc) == []
    # the official schema does not follow references: every one must lead somewhere in the document
    c = Contract()
    for ref in _refs(doc, []):
        c._resolve(c._pointer(ref))
    # and the check bites: a wrong action, QoS and schema type are each refused
    broken = copy.deepcopy(doc)
    broken["operations"]["sendEvent"]["action"] = "publish"
    broken["operations"]["sendStatus"]["bindings"]["mqtt"]["qos"] = 3
    broken["components"]["schemas"]["Time"]["type"] = "text"
    where = " ".join(_asyncapi_problems(broken))
    assert "operations/sendEvent" in where and "operations/sendStatus" in where and "schemas/Time" in where


def _spec2_topics() -> dict[str, tuple[int, bool]]:
    """The topics of docs/SPEC.md §2's table with their QoS and retain, and the replay topic."""
    text = (ROOT / "docs" / "SPEC.md").read_text(encoding="utf-8")
    section = text.split("## 2.", 1)[1].split("\n## 3.", 1)[0]
    rows = re.findall(r"^\| `(acs/[^`]+)` \| [^|]+ \| (\d) / (retained|no)", section, re.M)
    topics = {t: (int(q), r == "retained") for t, q, r in rows}
    if re.search(r"`acs/\{site\}/\{gate\}/replay` \(central → edge, QoS 1\)", section):
        topics["acs/{site}/{gate}/replay"] = (1, False)
    return topics


def test_spec2_every_topic_of_the_spec_is_a_channel_with_its_qos_and_retain(contract):
    topics = _spec2_topics()
    assert len(topics) >= 11, topics  # the table itself was found
    doc = contract.doc
    by_address = {ch["address"]: name for name, ch in doc["channels"].items()}
    for topic, (qos, retain) in topics.items():
        assert topic in by_address, f"{topic} of SPEC §2 has no channel in docs/asyncapi.yaml"
        ops = [op for op in doc["operations"].values() if op["channel"]["$ref"] == f"#/channels/{by_address[topic]}"]
        assert ops, f"{topic}: no operation of the gate's side"
        for op in ops:
            b = op["bindings"]["mqtt"]
            assert (b["qos"], b["retain"]) == (qos, retain), f"{topic}: QoS/retain {b} against SPEC's {qos}/{retain}"
    # SPEC §7: the bridge's state, retained "1"/"0", published by the site broker and not by a gate
    assert "acs/{site}/bridge/state" in by_address
    assert contract.check("acs/s1/bridge/state", b"1") == [] and contract.check("acs/s1/bridge/state", b"0") == []
    assert contract.check("acs/s1/bridge/state", b"2")
    assert not contract.gate_sends("acs/s1/bridge/state")
    # the gate's side: what it publishes and what it only receives
    for topic in ("acs/s1/g1/events/access.granted", "acs/s1/g1/status", "acs/s1/g1/muster",
                  "acs/s1/g1/allowlist/resync", "acs/s1/g1/key", "acs/s1/mode"):
        assert contract.gate_sends(topic), topic
    for topic in ("acs/s1/allowlist/changes", "acs/s1/g1/allowlist/snapshot", "acs/s1/visits/signoff",
                  "acs/s1/central/heartbeat", "acs/s1/g1/muster/request", "acs/s1/g1/replay"):
        assert not contract.gate_sends(topic), topic
    will = doc["servers"]["site"]["bindings"]["mqtt"]["lastWill"]
    assert (will["topic"], will["qos"], will["retain"]) == ("acs/{site}/{gate}/status", 1, True)


_EVENT = re.compile(r"""(?:record|append)\(\(?["']([a-z_]+\.[a-z_]+)["']""")
_ALARM = re.compile(r"""["']alarm["']: ["']([a-z_]+)["']|alarm: str = ["']([a-z_]+)["']|self\._alarm\([^\n]*, ["']([a-z_]+)["']\)""")


def _edge_sources() -> dict[Path, str]:
    return {p: p.read_text(encoding="utf-8") for p in sorted((ROOT / "edge").rglob("*.py"))}


def test_spec2_every_event_type_the_code_journals_has_a_message(contract):
    found = {m for text in _edge_sources().values() for m in _EVENT.findall(text)}
    # the scan sees the journal's callers of every kind: decisions, hardware, the link, the desks
    assert {"access.granted", "door.forced", "door.opened", "device.fault", "alarm.raised", "visit.checked_in",
            "permit.changed", "mode.changed", "allowlist.applied", "muster.marked_safe"} <= found
    missing = found - contract.event_types()
    assert not missing, f"event types the code journals with no message in docs/asyncapi.yaml: {sorted(missing)}"
    # and every type of SPEC §2's list is in the document, implemented here yet or not
    spec = (ROOT / "docs" / "SPEC.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"`([a-z_]+\.[a-z_]+)`", spec.split("Event types and their `data`", 1)[1].split("**Allow-list", 1)[0]))
    assert "access.granted" in listed
    listed = {t for t in listed if not t.startswith("data.")}
    assert not listed - contract.event_types(), sorted(listed - contract.event_types())


def test_spec2_every_alarm_kind_the_code_raises_is_in_the_contract(contract):
    kinds = set()
    for text in _edge_sources().values():
        kinds.update(k for groups in _ALARM.findall(text) for k in groups if k)
    assert {"blocklisted", "clock_jump", "output_failed", "bad_message", "handler_failed"} <= kinds
    known = set(contract.doc["components"]["schemas"]["AlarmKind"]["enum"])
    assert not kinds - known, f"alarm kinds the code raises that docs/asyncapi.yaml does not name: {sorted(kinds - known)}"


def _event(etype: str, data: dict, source: str = "acs/s1/g1", **extra) -> bytes:
    return json.dumps({"specversion": "1.0", "id": "e-1", "source": source, "type": etype, "time": T,
                       "datacontenttype": "application/json", "epoch": "ep", "seq": 7, "data": data, **extra}).encode()


GRANT = {"door": "main", "direction": "in", "reader": "r-in", "area": "site/lobby", "reason": "ok", "flags": [],
         "decision_us": 210, "credential_kind": "badge", "credential_ref": "badge:04A1B2C3", "holder": "h-1",
         "category": "staff", "tier": None, "party": 1, "to_area": "site/lobby"}


def test_spec2_an_event_is_checked_by_its_envelope_and_the_data_of_its_type(contract):
    topic = "acs/s1/g1/events/access.granted"
    assert contract.check(topic, _event("access.granted", GRANT)) == []
    assert contract.check(topic, _event("access.granted", GRANT, subject="main")) == []
    # the envelope: fixed fields, the type of the topic, the gate of the topic
    assert any("specversion" in p for p in contract.check(topic, _event("access.granted", GRANT).replace(b'"1.0"', b'"0.3"')))
    assert any(p.startswith("type:") for p in contract.check(topic, _event("access.denied", GRANT)))
    assert any(p.startswith("source:") for p in contract.check(topic, _event("access.granted", GRANT, source="acs/s1/g2")))
    assert any("extra" in p for p in contract.check(topic, _event("access.granted", GRANT, extra=1)))
    # the data: required fields, POLICY's reason codes, SPEC's names
    assert any("'door' is a required property" in p
               for p in contract.check(topic, _event("access.granted", {k: v for k, v in GRANT.items() if k != "door"})))
    assert any(p.startswith("data.reason:") for p in contract.check(topic, _event("access.granted", {**GRANT, "reason": "fine"})))
    denied = {**GRANT, "reason": "area_not_permitted"}
    assert contract.check("acs/s1/g1/events/access.denied", _event("access.denied", denied)) == []
    override = {"door": "main", "actor": "g-1", "actor_role": "guard", "reason": "delivery"}
    assert contract.check("acs/s1/g1/events/override.opened", _event("override.opened", override)) == []
    old = {"door": "main", "person": "g-1", "role": "guard", "reason": "delivery"}
    problems = contract.check("acs/s1/g1/events/override.opened", _event("override.opened", old))
    assert any("person: a retired name" in p for p in problems) and any("'actor'" in p for p in problems)
    arrived = {"door": "main", "holder": "h-v", "tier": "special", "host": "h-9", "party": 2, "priority": True,
               "credential_ref": "pass:00112233445566778899aabbccddeeff"}
    assert any(p.startswith("data.priority:") for p in contract.check("acs/s1/g1/events/visitor.arrived",
                                                                      _event("visitor.arrived", arrived)))
    # an alarm kind names what it must carry
    alarm = {"alarm": "clock_jump", "priority": "high", "jump_s": -3600.0, "expected": T, "clock": T}
    assert contract.check("acs/s1/g1/events/alarm.raised", _event("alarm.raised", alarm)) == []
    assert contract.check("acs/s1/g1/events/alarm.raised", _event("alarm.raised", {**alarm, "alarm": "made_up"}))
    assert contract.check("acs/s1/g1/events/alarm.raised", _event("alarm.raised", {"alarm": "clock_jump", "priority": "high"}))
    with pytest.raises(ContractError, match="event type 'nope.never' has no message"):
        contract.check("acs/s1/g1/events/nope.never", _event("nope.never", {}))


def test_spec2_fixed_shapes_refuse_anything_else(contract):
    status = {"state": "online", "mode": "normal", "allowlist_version": 3, "devices": {"r-in": "up", "io": "unsupervised"},
              "session": 4, "last_seq": 9, "epoch": "ep", "time": T}
    fixed = {
        "acs/s1/g1/status": status,
        "acs/s1/mode": {"mode": "lockdown", "actor": "sup-1", "reason": "drill", "time": T, "version": 2},
        "acs/s1/g1/allowlist/resync": {"have_version": 0},
        "acs/s1/g1/replay": {"after_seq": 10, "until_seq": 20},
        "acs/s1/central/heartbeat": {"time": T},
        "acs/s1/g1/muster/request": {},
        "acs/s1/g1/key": {"kid": "gate-1", "public_key": "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n",
                          "scope": ["visitor"]},
        "acs/s1/visits/signoff": {"visit": "00112233445566778899aabbccddeeff", "host": "h-9", "time": T},
    }
    for topic, body in fixed.items():
        assert contract.check(topic, json.dumps(body).encode()) == [], topic
        assert contract.check(topic, json.dumps({**body, "extra": 1}).encode()), f"{topic} took an extra field"
    assert contract.check("acs/s1/g1/status", b'{"state":"offline","session":4}') == []  # the last will
    assert contract.check("acs/s1/g1/status", json.dumps({**status, "devices": {"r-in": "broken"}}).encode())
    assert contract.check("acs/s1/mode", json.dumps({**fixed["acs/s1/mode"], "mode": "fire"}).encode())  # never fire
    assert contract.check("acs/s1/g1/replay", b'{"until_seq": 5}')
    assert contract.check("acs/s1/g1/allowlist/resync", b"not json") == ["not JSON: Expecting value: line 1 column 1 (char 0)"]
    with pytest.raises(ContractError, match="matches no channel"):
        contract.check("acs/s1/g1/whatever", b"{}")
    # the topic root is the config's (SPEC §2)
    assert Contract(root="plant").check("plant/s1/g1/allowlist/resync", b'{"have_version":1}') == []


def test_spec2_allowlist_records_and_batches(contract):
    rec = {"credential": "badge:04A1B2C3", "holder": "h-1", "category": "vip", "tier": "special", "roles": [],
           "areas": ["site/office"], "valid_from": None, "valid_until": "2027-01-01T00:00:00+08:00", "schedule": None,
           "party": 1, "host": None, "escort": False, "id_hash": None, "name": "王小明", "temporary": False,
           "private": True, "extended_access": True, "pin_required": True,
           "pin_hash": "scrypt$8192$8$1$c2FsdA==$aGFzaA==", "duress_hash": None}
    plate = {"credential": "plate:沪A12345", "holder": "h-2", "category": "staff", "areas": ["site"]}
    batch = {"from_version": 3, "to_version": 4, "upserts": [rec, plate], "deletes": ["badge:0102030405"],
             "revoke": [{"pass": "00112233445566778899aabbccddeeff"}, {"credential": "badge:04A1B2C3"}],
             "blocklist_add": [{"holder": "h-x", "reason": "theft", "action": "alert"}],
             "blocklist_remove": [{"id_hash": "a" * 64}], "keys_add": [{"kid": "k1", "public_key": "PEM", "scope": None}],
             "keys_remove": ["k0"], "calendar_set": [{"date": "2027-02-07", "kind": "workday", "as": "mon"}],
             "calendar_remove": ["2027-01-01"]}
    assert contract.check("acs/s1/allowlist/changes", json.dumps(batch).encode()) == []
    snap = {"version": 4, "chunk": 0, "chunks": 1, "upserts": [rec], "revoke": [], "blocklist": [], "keys": [],
            "calendar": [{"date": "2027-01-01", "kind": "holiday"}]}
    assert contract.check("acs/s1/g1/allowlist/snapshot", json.dumps(snap).encode()) == []
    for bad in ({**rec, "name": "a\u202eb"}, {**rec, "duress_hash": "1234"}, {**rec, "credential": "badge:04a1b2c3"},
                {**rec, "colour": "red"}, {k: v for k, v in rec.items() if k != "areas"}):
        assert contract.check("acs/s1/allowlist/changes", json.dumps({**batch, "upserts": [bad]}).encode()), bad
    assert contract.check("acs/s1/allowlist/changes",
                          json.dumps({**batch, "blocklist_add": [{"holder": "h", "id_hash": "a" * 64}]}).encode())
    assert contract.check("acs/s1/allowlist/changes",
                          json.dumps({**batch, "calendar_set": [{"date": "2027-01-01", "kind": "party"}]}).encode())
    for day in ({"date": "2027-02-07", "kind": "workday"}, {"date": "2027-01-01", "kind": "holiday", "as": "fri"}):
        assert contract.check("acs/s1/allowlist/changes", json.dumps({**batch, "calendar_set": [day]}).encode()), day


def test_spec2_p25_a_signoff_names_a_visit_or_a_badge_ref(contract):
    for visit in ("v-1", "00112233445566778899aabbccddeeff", "badge:04A1B2C3"):
        msg = {"visit": visit, "host": "h-1", "time": "2026-11-25T02:00:00Z"}
        assert contract.check("acs/s1/visits/signoff", json.dumps(msg).encode()) == [], visit
    for visit in ("badge:04a1b2c3", "badge:04A1"):
        msg = {"visit": visit, "host": "h-1", "time": "2026-11-25T02:00:00Z"}
        assert contract.check("acs/s1/visits/signoff", json.dumps(msg).encode()), visit


# ---------------------------------------------------------------- what a gate journals, through the code that does

from test_gate import STAFF, SUPERVISOR, visitor_pass  # noqa: E402
CARD = "badge:0CA4D000"  # a visitor card (P27)


@pytest.fixture
def site(tmp_path):
    """test_gate's site of two staff, with walk-in registration (P13) and a blocklisted ID document."""
    from edge.desks.walkin import id_hash
    from sitekit import ID_SECRET, make_site
    s = make_site(tmp_path / "site", walkin=True)
    r = s.import_lines([
        {"credential": STAFF, "holder": "h-1", "category": "staff", "areas": ["site"]},
        {"credential": SUPERVISOR, "holder": "h-2", "category": "staff", "areas": ["site"], "roles": ["supervisor"]},
        {"credential": CARD, "holder": "h-card", "category": "contractor", "areas": ["site"], "temporary": True},
        {"blocklist": {"id_hash": id_hash(ID_SECRET.encode(), "B99999999"), "reason": "theft"}},
    ])
    assert r.returncode == 0, r.stderr
    return s


@pytest.fixture
def gate(site):
    from sitekit import in_process_gate
    with in_process_gate(site) as g:
        yield g


def test_spec2_the_events_a_gate_journals_conform_to_the_contract(contract, site, gate):
    """The gate's own code paths, in one process: grants, refusals (a line that is no credential too), a VIP arrival, a held exit released, a
    sign-off, modes, a muster mark, an alarm acknowledged, a walk-in registered and amended, a blocklisted ID
    document, a contractor permit, a device fault and its recovery. Each journal
    entry, as its envelope goes out, is checked on its event topic."""
    from edge.config import load_config
    from edge.core.model import Mode
    from edge.desks.permits import PermitDesk
    from edge.desks.walkin import Desk
    from edge.errors import Refused
    from edge.hardware.devices import DeviceBoard
    from sitekit import DAY
    now = time.time()
    assert gate.present("main-in", "badge", STAFF, now).opens
    gate.present("main-in", "badge", "badge:DEADBEEF", now)
    assert gate.present("main-in", "malformed", "no credential at all", now).decision.reason == "malformed"
    vip = site.issue(holder="h-vip", category="vip", tier="special", areas=["site"], valid_from=now - 60,
                     valid_until=now + 3600, host="h-1")
    assert gate.present("main-in", "pass", vip, now).opens
    text = visitor_pass(site, now, holder="h-30")
    assert gate.present("main-in", "pass", text, now + 1).opens
    assert gate.present("main-out", "pass", text, now + 60).decision.held
    assert gate.release(next(iter(gate.held_exits)), "g-1", "guard", "host confirmed by phone", now + 61) is not None
    signed = visitor_pass(site, now, holder="h-31", visit="v-31")
    assert gate.present("main-in", "pass", signed, now + 2).opens
    gate.sign_off("v-31", "h-1", "central", now + 62)
    assert gate.present("main-out", "pass", signed, now + 63).opens
    from edge.core.cards import returned
    assert gate.present("main-in", "badge", CARD, now + 3).opens  # P27: a visitor card held and taken back
    assert gate.present("main-out", "badge", CARD, now + 64).decision.reason == "card_return_required"
    assert returned(gate, CARD, "g-1", "guard", "card in the drawer", now + 65) is not None
    gate.modes.request(Mode.LOCKDOWN, "g-1", "guard", "intruder reported", "gate")
    gate.modes.request(Mode.FIRE, "s-1", "supervisor", "smoke on floor 2", "gate")
    gate.mark_safe("h-1", "g-1", "guard", None)
    gate.modes.request(Mode.NORMAL, "s-1", "supervisor", "all clear", "gate")
    forced = gate.record("door.forced", {"door": "main"})
    gate.alarms.acknowledge(forced.seq, "g-1", "guard", "nobody there", time.time())
    cfg, base = load_config(site.config)
    desk = Desk(cfg, base, gate)
    ten = datetime.now(gate.settings.tz).replace(hour=10, minute=0, second=0, microsecond=0).timestamp()  # P13 hours
    visit = desk.register(name="Zhang Wei", company="ACME", id_number="E12345678", purpose="meeting", host="h-1",
                          host_confirmation="phone", areas=None, party=1, guard="g-1", now=ten)["visit"]
    desk.amend(visit, ["site/lobby"], "meeting moved", "s-1", ten + 60)
    with pytest.raises(Refused):
        desk.register(name="X", company="Y", id_number="B99999999", purpose="z", host="h-1",
                      host_confirmation="phone", areas=None, party=1, guard="g-1", now=ten + 120)
    PermitDesk(cfg, gate).create(credential="badge:0A0B0C0D", holder="c-1", name="Li Lei", company="ACME",
                                 areas=["site"], valid_from=None, valid_until=now + DAY, deposit=None, by="s-1", now=now)
    board = DeviceBoard(gate.record)
    board.register("reader-1", "wiegand")
    board.down("reader-1", "no answer")
    board.up("reader-1")

    source, epoch = "acs/test/gate-1", gate.store.epoch
    broken, seen = {}, set()
    for entry in gate.journal.entries():
        seen.add(entry.type)
        for problem in contract.check(f"{source}/events/{entry.type}", entry.envelope_json(source, epoch).encode()):
            broken[f"{entry.type}: {problem}"] = None
    assert {"access.granted", "access.denied", "visitor.arrived", "exit.held", "exit.released", "visit.checked_out",
            "visit.signed_off", "mode.changed", "muster.marked_safe", "alarm.acknowledged", "device.fault",
            "device.recovered", "allowlist.applied", "permit.changed", "door.forced", "visit.checked_in", "visit.amended",
            "alarm.raised", "card.returned"} <= seen, seen
    assert not broken, "journal entries out of the MQTT contract:\n" + "\n".join(broken)

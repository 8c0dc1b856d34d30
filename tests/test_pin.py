"""P34 card and PIN, duress: the pure decision, the PIN hashes, the keypad lines, the config check, and the gate's
card waiting for its PIN (timeout, second card, lockout across a restart, duress), on a real config and database."""
from __future__ import annotations

import base64
import json
import time
from dataclasses import replace

import pytest
from pydantic import ValidationError

from drivers.line_protocol import classify, qr_presentation
from edge.config import ConfigError, load_config
from edge.core import pin
from edge.core.model import Credential, Direction, DoorView, Facts
from edge.core.pinpad import LOCK_S, PIN_WAIT_S
from edge.core.policy import decide
from edge.store.records import AllowRecord
from sitekit import in_process_gate, make_site
from test_policy import NOW, SETTINGS, STAFF, VISITOR

PEPPER = b"a-test-pin-pepper-of-32-bytes!!!"
FAST_N = 1 << 10  # tests hash with a cheaper N than a site (2^13): the same code, a tenth of the time

PIN_DOOR = DoorView("vault", "site/office", Direction.IN, pin_required=True, keypad=True)
PIN_DOOR_OUT = DoorView("vault", "site/office", Direction.OUT, pin_required=True, keypad=True)
KEYPAD = DoorView("office", "site/office", Direction.IN, keypad=True)
PLAIN = DoorView("office", "site/office", Direction.IN)
HOLDER_PIN = replace(STAFF, pin_required=True)


# (case, credential, door, facts, granted, reason)
P34 = [
    ("PIN door, good PIN", STAFF, PIN_DOOR, {"pin": "ok"}, True, "ok"),
    ("PIN door, duress PIN grants alike", STAFF, PIN_DOOR, {"pin": "duress"}, True, "ok"),
    ("PIN door, no PIN yet", STAFF, PIN_DOOR, {}, False, "pin_required"),
    ("PIN door, none can follow", STAFF, PIN_DOOR, {"pin": "missing"}, False, "pin_required"),
    ("PIN door, a pass", VISITOR, PIN_DOOR, {"pin": "missing"}, False, "pin_required"),
    ("PIN door, wrong PIN", STAFF, PIN_DOOR, {"pin": "incorrect"}, False, "pin_incorrect"),
    ("PIN door, locked", STAFF, PIN_DOOR, {"pin": "locked"}, False, "pin_locked"),
    ("PIN door, exit: no PIN", STAFF, PIN_DOOR_OUT, {}, True, "ok"),
    ("keypad reader, holder asks for PIN", HOLDER_PIN, KEYPAD, {}, False, "pin_required"),
    ("keypad reader, holder's good PIN", HOLDER_PIN, KEYPAD, {"pin": "ok"}, True, "ok"),
    ("keypad reader, holder without pin_required", STAFF, KEYPAD, {}, True, "ok"),
    ("no keypad: the holder's flag asks nothing", HOLDER_PIN, PLAIN, {}, True, "ok"),
    # the other entry rules come first (POLICY order: ... escort, then the PIN)
    ("blocklisted before the PIN", STAFF, PIN_DOOR, {"blocklisted": True, "pin": "ok"}, False, "blocklisted"),
    ("revoked before a wrong PIN", STAFF, PIN_DOOR, {"revoked": True, "pin": "incorrect"}, False, "revoked"),
    ("area before the PIN", replace(STAFF, areas=("site/lobby",)), PIN_DOOR, {}, False, "area_not_permitted"),
    ("antipassback before the PIN", replace(STAFF, category="contractor", escort=False), PIN_DOOR,
     {"presence": "site/office", "pin": "incorrect"}, False, "antipassback"),
    # refused after the PIN: the duress PIN still raises its alarm (the person is under duress all the same)
    ("duress PIN, then the mantrap", STAFF, PIN_DOOR, {"pin": "duress", "interlocked": True}, False, "interlock"),
    ("duress PIN, then the room left", STAFF, PIN_DOOR, {"pin": "duress", "area_full": True}, False, "area_full"),
    ("good PIN, then the room left", STAFF, PIN_DOOR, {"pin": "ok", "area_full": True}, False, "area_full"),
]
AFTER_PIN = ("interlock", "second_person_required", "area_full")  # the refusals decided after the PIN


@pytest.mark.parametrize("case, cred, door, facts, granted, reason", P34, ids=[c[0] for c in P34])
def test_p34_decision_table(case, cred, door, facts, granted, reason):
    d = decide(cred, door, NOW, Facts(**facts), SETTINGS)
    assert (d.granted, d.reason) == (granted, reason)
    assert d.duress == (facts.get("pin") == "duress" and (granted or reason in AFTER_PIN))


def test_p34_a_duress_grant_differs_from_a_good_one_only_in_the_duress_mark():
    good = decide(STAFF, PIN_DOOR, NOW, Facts(pin="ok"), SETTINGS)
    duress = decide(STAFF, PIN_DOOR, NOW, Facts(pin="duress"), SETTINGS)
    assert replace(duress, duress=False) == good and duress.flags == ()


# -- the hashes ---------------------------------------------------------------------------------------
def test_p34_hash_format_verify_and_duress():
    h = pin.make("1234", PEPPER, n=FAST_N)
    assert h.startswith(f"scrypt${FAST_N}$8$1$") and pin.parse(h)[:3] == (FAST_N, 8, 1)
    d = pin.make("9999", PEPPER, n=FAST_N)
    assert pin.check("1234", PEPPER, h, d) == "ok"
    assert pin.check("9999", PEPPER, h, d) == "duress"
    assert pin.check("1235", PEPPER, h, d) == "incorrect"
    assert pin.check("1234", PEPPER, h, None) == "ok"
    assert pin.check("1234", b"another-site-pepper-xxxxxxxxxxxxx", h, d) == "incorrect"  # the pepper keys it
    assert pin.check("12a4", PEPPER, h, d) == "incorrect"


def test_p34_the_pepper_keys_scrypt_as_the_spec_says():
    """SPEC §2: scrypt(password = HMAC-SHA256(pepper, PIN digits), salt, N, r=8, p=1, 32 bytes)."""
    import hashlib
    import hmac
    salt = b"0123456789abcdef"
    h = pin.make("4711", PEPPER, n=FAST_N, salt=salt)
    want = hashlib.scrypt(hmac.new(PEPPER, b"4711", hashlib.sha256).digest(), salt=salt, n=FAST_N, r=8, p=1, dklen=32)
    assert h == f"scrypt${FAST_N}$8$1${base64.b64encode(salt).decode()}${base64.b64encode(want).decode()}"


@pytest.mark.parametrize("bad, why", [
    ("scrypt$16384$8$1$MDEyMzQ1Njc4OWFiY2RlZg==$" + "A" * 43 + "=", "up to 2^13"),
    ("scrypt$1000$8$1$MDEyMzQ1Njc4OWFiY2RlZg==$" + "A" * 43 + "=", "power of two"),
    ("scrypt$8192$16$1$MDEyMzQ1Njc4OWFiY2RlZg==$" + "A" * 43 + "=", "r and p"),
    ("scrypt$8192$8$2$MDEyMzQ1Njc4OWFiY2RlZg==$" + "A" * 43 + "=", "r and p"),
    ("bcrypt$2b$10$abc", "scrypt$N$r$p"),
    ("scrypt$8192$8$1$!!!$AAAA", "scrypt$N$r$p"),
    ("scrypt$8192$8$1$QQ==$" + "A" * 43 + "=", "salt"),
])
def test_p34_a_record_with_a_costlier_or_odd_hash_is_refused(bad, why):
    rec = {"credential": "badge:04A1B2C3", "holder": "h-1", "category": "staff", "areas": ["site"]}
    for field in ("pin_hash", "duress_hash"):
        with pytest.raises(ValidationError) as e:
            AllowRecord.model_validate({**rec, field: bad})
        assert why in e.value.errors()[0]["msg"] and bad not in e.value.errors()[0]["msg"]


def test_p34_record_fields_are_stored_in_their_columns():
    from edge.store.staging import CREDENTIAL_FIELDS
    h = pin.make("1234", PEPPER, n=FAST_N)
    r = AllowRecord.model_validate({"credential": "badge:04A1B2C3", "holder": "h-1", "category": "staff",
                                    "areas": ["site"], "pin_required": True, "pin_hash": h})
    row = dict(zip([c for c, _ in CREDENTIAL_FIELDS], r.row()))
    assert (row["pin_required"], row["pin_hash"], row["duress_hash"]) == (1, h, None)


# -- keypad lines -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("line, expected", [
    ("PIN:1234", ("pin", "1234")),
    ("PIN:12345678\r", ("pin", "12345678")),
    ("pin:0000", ("pin", "0000")),
    ("PIN:123", ("malformed", "a PIN line without 4 to 8 digits")),
    ("PIN:123456789", ("malformed", "a PIN line without 4 to 8 digits")),
    ("PIN:12a4", ("malformed", "a PIN line without 4 to 8 digits")),
    ("PIN:", ("malformed", "a PIN line without 4 to 8 digits")),
])
def test_p34_keypad_lines(line, expected):
    assert classify(line) == expected


def test_p34_a_qr_code_is_never_a_pin():
    assert qr_presentation("cam", "PIN:1234", 1).kind == "malformed"


# -- the config -------------------------------------------------------------------------------------------
def pin_site(tmp_path, **kw):
    """The test site with a PIN office door (its `in` reader has a keypad), a keypad at the main entrance,
    and the site's PIN pepper."""
    site = make_site(tmp_path / "site", **kw)
    (site.dir / "pin.pepper").write_bytes(PEPPER + b"\n")
    (site.dir / "pin.pepper").chmod(0o600)
    site.edit_door("office", pin_required=True)
    text = site.config.read_text()
    for reader in ("office-in", "main-in"):
        text = text.replace(f'name = "{reader}"\n', f'name = "{reader}"\nkeypad = true\n', 1)
    site.config.write_text(text + '\n[pin]\npepper_file = "pin.pepper"\n')
    return site


def test_p34_config_reads(tmp_path):
    cfg, _ = load_config(pin_site(tmp_path).config)
    assert next(d for d in cfg.doors if d.name == "office").pin_required
    assert [r.name for r in cfg.readers if r.keypad] == ["main-in", "office-in"]


@pytest.mark.parametrize("edit, problem", [
    (('name = "office-in"\nkeypad = true\n', 'name = "office-in"\n'),
     "door 'office' has pin_required: its `in` reader 'office-in' needs a keypad"),
    (('\n[pin]\npepper_file = "pin.pepper"\n', '\n'), "add [pin] pepper_file"),
])
def test_p34_check_refuses_a_pin_door_without_keypad_or_pepper(tmp_path, edit, problem):
    site = pin_site(tmp_path)
    text = site.config.read_text()
    assert edit[0] in text
    site.config.write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(ConfigError) as e:
        load_config(site.config)
    assert problem in str(e.value)


def test_p34_check_refuses_a_short_pepper(tmp_path):
    from edge.config.files import check
    from edge.config.filecheck import current_user
    site = pin_site(tmp_path)
    (site.dir / "pin.pepper").write_bytes(b"short\n")
    problems = check(site.config, current_user())
    assert any("pin.pepper_file" in p and "at least 16" in p for p in problems), problems


# -- the gate ---------------------------------------------------------------------------------------------
CARD = "badge:04A1B2C3"  # a PIN and a duress PIN
NOPIN = "badge:0BADC0DE"  # no PIN at all
HOLDER = "badge:0AC0FFEE"  # pin_required on the record: asked at every keypad reader


@pytest.fixture
def site(tmp_path):
    s = pin_site(tmp_path)
    r = s.import_lines([
        {"credential": CARD, "holder": "h-1", "category": "staff", "areas": ["site"],
         "pin_hash": pin.make("1234", PEPPER, n=FAST_N), "duress_hash": pin.make("9999", PEPPER, n=FAST_N)},
        {"credential": NOPIN, "holder": "h-2", "category": "staff", "areas": ["site"]},
        {"credential": HOLDER, "holder": "h-3", "category": "staff", "areas": ["site"], "pin_required": True,
         "pin_hash": pin.make("5555", PEPPER, n=FAST_N)},
    ])
    assert r.returncode == 0, r.stderr
    return s


class Clock:
    def __init__(self):
        self.t = time.time()

    def __call__(self):
        return self.t


@pytest.fixture
def gate(site):
    with in_process_gate(site, clock=Clock()) as g:
        g.pin_pepper = PEPPER
        yield g


def denied(gate, reader, value, kind="badge"):
    out = gate.present(reader, kind, value)
    assert out is not None and not out.opens
    return out.decision.reason


def test_p34_a_card_waits_for_its_pin_and_the_pin_decides(gate):
    assert gate.present("office-in", "badge", CARD) is None  # not decided yet
    assert gate.pin_waiting("office-in")
    gate.clock.t += PIN_WAIT_S - 1
    out = gate.present("office-in", "pin", "1234")
    assert out.opens and out.decision.reason == "ok" and [e.type for e in out.entries] == ["access.granted"]
    assert not gate.pin_waiting("office-in")


def test_p34_a_pin_with_no_card_is_ignored(gate):
    before = gate.journal.last_seq()
    assert gate.present("office-in", "pin", "1234") is None
    assert gate.journal.last_seq() == before


def test_p34_a_pin_at_another_reader_decides_nothing(gate):
    gate.present("office-in", "badge", CARD)
    assert gate.present("main-in", "pin", "1234") is None
    assert gate.pin_waiting("office-in")


def test_p34_no_pin_within_10_s_is_pin_required_journaled_when_they_run_out(gate):
    gate.present("office-in", "badge", CARD)
    assert gate.expire_pins(gate.clock.t + PIN_WAIT_S - 0.5) == []
    gate.clock.t += PIN_WAIT_S + 0.5
    (out,) = gate.expire_pins()
    assert not out.opens and out.decision.reason == "pin_required" and out.reader == "office-in"
    assert [e.type for e in out.entries] == ["access.denied"]
    assert gate.present("office-in", "pin", "1234") is None  # too late: nothing waits


def test_p34_a_second_card_ends_the_first_entry_as_pin_required(gate):
    gate.present("office-in", "badge", CARD)
    assert gate.present("office-in", "badge", HOLDER) is None  # waits in its turn
    last = json.loads(gate.store.conn.execute("SELECT data FROM journal ORDER BY seq DESC LIMIT 1").fetchone()[0])
    assert (last["credential_ref"], last["reason"]) == (CARD, "pin_required")
    assert gate.present("office-in", "pin", "5555").opens


def test_p34_a_pass_or_a_holder_without_a_pin_is_refused_at_once(site, gate):
    assert denied(gate, "office-in", NOPIN) == "pin_required"
    text = site.issue(holder="h-9", category="visitor", areas=["site/office"], valid_from=gate.clock.t - 60,
                      valid_until=gate.clock.t + 3600, host="h-1")
    assert denied(gate, "office-in", text, "pass") == "pin_required"
    assert not gate.pin_waiting("office-in")


def test_p34_a_holder_with_pin_required_gives_it_at_every_keypad_reader(gate):
    assert gate.present("main-in", "badge", HOLDER) is None
    assert gate.present("main-in", "pin", "5555").opens
    assert gate.present("main-in", "badge", CARD).opens  # the record does not ask, the main door does not either


def test_p34_a_wrong_pin_is_pin_incorrect(gate):
    gate.present("office-in", "badge", CARD)
    out = gate.present("office-in", "pin", "4321")
    assert not out.opens and out.decision.reason == "pin_incorrect"


def five_wrong(gate, reader="office-in", card=CARD):
    for _ in range(5):
        gate.present(reader, "badge", card)
        assert gate.present(reader, "pin", "0000").decision.reason == "pin_incorrect"
        gate.clock.t += 30


def test_p34_five_wrong_pins_lock_the_credential_for_10_minutes(gate):
    five_wrong(gate)
    assert denied(gate, "office-in", CARD) == "pin_locked"  # at once: no PIN is asked
    assert gate.present("main-in", "badge", CARD).opens  # no PIN asked of this holder at the main door
    gate.clock.t += LOCK_S
    assert gate.present("office-in", "badge", CARD) is None
    assert gate.present("office-in", "pin", "1234").opens


def test_p34_a_lockout_holds_at_every_keypad_reader_of_the_gate(gate):
    five_wrong(gate, "office-in", HOLDER)
    assert denied(gate, "main-in", HOLDER) == "pin_locked"


def test_p34_four_wrong_pins_then_the_good_one_opens(gate):
    for _ in range(4):
        gate.present("office-in", "badge", CARD)
        gate.present("office-in", "pin", "0000")
    gate.present("office-in", "badge", CARD)
    assert gate.present("office-in", "pin", "1234").opens


def test_p34_wrong_pins_spread_over_more_than_10_minutes_lock_nothing(gate):
    for _ in range(5):
        gate.present("office-in", "badge", CARD)
        gate.present("office-in", "pin", "0000")
        gate.clock.t += 200
    assert gate.present("office-in", "badge", CARD) is None


def test_p34_a_lockout_survives_a_restart(site):
    clock = Clock()
    with in_process_gate(site, clock=clock) as g:
        g.pin_pepper = PEPPER
        five_wrong(g)
    with in_process_gate(site, clock=clock) as g:
        g.pin_pepper = PEPPER
        assert denied(g, "office-in", CARD) == "pin_locked"


def test_p34_duress_grants_as_a_good_pin_and_raises_alarm_duress(gate):
    gate.present("office-in", "badge", CARD)
    urgent = []
    gate.urgent = urgent.append
    out = gate.present("office-in", "pin", "9999")
    assert out.opens and out.decision.reason == "ok" and out.decision.flags == ()
    assert [e.type for e in out.entries] == ["access.granted", "alarm.duress"]
    granted, alarm = (json.loads(e.data) for e in out.entries)
    assert "duress" not in json.dumps(granted)
    assert alarm == {"priority": "high", "door": "office", "reader": "office-in",
                     "holder": "h-1", "credential_ref": CARD}
    assert urgent == [out.entries[1]]
    # never a guard's alarm to acknowledge
    assert gate.store.conn.execute("SELECT count(*) FROM alarms WHERE type='alarm.duress'").fetchone()[0] == 0
    # the same grant with the good PIN: the same event but for its seq, id, time, decision time and flags
    gate.clock.t += 5
    gate.present("office-in", "badge", CARD)
    good = gate.present("office-in", "pin", "1234")
    other = json.loads(good.entries[0].data)
    assert granted["flags"] == []
    assert {k: v for k, v in other.items() if k not in ("decision_us", "flags")} == \
        {k: v for k, v in granted.items() if k not in ("decision_us", "flags")}  # (here: antipassback_soft)


SECOND = "badge:0D0D0D0D"  # a second holder with a PIN


@pytest.mark.parametrize("first_pin, alarms", [("1234", []), ("9999", ["alarm.duress"])], ids=["good", "duress"])
def test_p34_p33_a_pair_at_a_two_person_pin_door_each_gives_a_pin_and_one_opening_admits_both(tmp_path, first_pin,
                                                                                             alarms):
    """The first gives its PIN and waits for a second person; the second's card and PIN open the door for both,
    the first not asked again. A first under duress raises the alarm when it is refused for want of a second."""
    site = pin_site(tmp_path)
    site.config.write_text(site.config.read_text().replace(
        'escort_required = ["site/production"]', 'escort_required = ["site/production"]\ntwo_person = ["site/office"]', 1))
    assert site.import_lines([
        {"credential": CARD, "holder": "h-1", "category": "staff", "areas": ["site"],
         "pin_hash": pin.make("1234", PEPPER, n=FAST_N), "duress_hash": pin.make("9999", PEPPER, n=FAST_N)},
        {"credential": SECOND, "holder": "h-4", "category": "staff", "areas": ["site"],
         "pin_hash": pin.make("4321", PEPPER, n=FAST_N)},
    ]).returncode == 0
    with in_process_gate(site, clock=Clock()) as g:
        g.pin_pepper = PEPPER
        assert g.present("office-in", "badge", CARD) is None
        first = g.present("office-in", "pin", first_pin)
        assert first.decision.reason == "second_person_required"
        assert [e.type for e in first.entries] == ["access.denied"] + alarms
        g.clock.t += 5
        assert g.present("office-in", "badge", SECOND) is None
        out = g.present("office-in", "pin", "4321")
        assert out.opens
        assert [(e.type, json.loads(e.data)["credential_ref"]) for e in out.entries] == [
            ("access.granted", SECOND), ("access.granted", CARD)]


# -- the outbox: alarm.duress ahead of any backlog ---------------------------------------------------------
def _outbox(store, sent, window=10):
    from edge.link.outbox import Outbox
    mids = iter(range(1, 10_000))

    def publish(topic, payload):
        sent.append((topic, json.loads(payload)["seq"]))
        return next(mids)
    return Outbox(store, publish, lambda t: t, "acs/test/gate-1", window)


def test_p34_alarm_duress_is_published_ahead_of_the_backlog_and_once(tmp_path):
    from edge.store import Store
    from edge.store.journal import Journal
    store = Store(tmp_path / "j.db")
    try:
        j = Journal(store)
        sent: list = []
        outbox = _outbox(store, sent)
        for i in range(30):  # a backlog while the broker was away
            j.append("access.granted", {"i": i})
        duress = j.append("alarm.duress", {"alarm": "duress"})
        j.append("access.denied", {})
        outbox.expedite(duress.seq)  # as the gate does the moment it is journaled
        outbox.pump()
        assert sent[0] == ("alarm.duress", duress.seq)  # first, whatever waits before it
        assert [s for _, s in sent[1:]] == list(range(1, 10))  # then the backlog in order, in what the window leaves
        outbox.on_acks(list(range(1, 12)))
        while outbox.pump():
            outbox.on_acks(list(range(1, 100)))
        seqs = [s for _, s in sent]
        assert sorted(seqs) == list(range(1, 33)) and seqs.count(duress.seq) == 1  # once, and nothing lost
        assert outbox.acked == 32  # the watermark crossed it in seq order
    finally:
        store.close()


def test_p34_an_unsent_alarm_duress_goes_first_after_a_restart(tmp_path):
    from edge.store import Store
    from edge.store.journal import Journal
    store = Store(tmp_path / "j.db")
    try:
        j = Journal(store)
        for i in range(5):
            j.append("access.granted", {"i": i})
        duress = j.append("alarm.duress", {"alarm": "duress"})
        sent: list = []
        _outbox(store, sent, window=2).pump()  # a new outbox over an unsent journal: what a restart builds
        assert sent[0] == ("alarm.duress", duress.seq)
    finally:
        store.close()


# -- a costlier hash arriving: refused with a clear error, nothing applied ------------------------------------
COSTLY = "scrypt$16384$8$1$MDEyMzQ1Njc4OWFiY2RlZg==$" + "A" * 43 + "="


def test_p34_an_import_with_a_costlier_hash_is_refused_naming_the_line(tmp_path):
    site = pin_site(tmp_path)
    r = site.import_lines([
        {"credential": NOPIN, "holder": "h-2", "category": "staff", "areas": ["site"]},
        {"credential": CARD, "holder": "h-1", "category": "staff", "areas": ["site"], "pin_hash": COSTLY},
    ])
    assert r.returncode != 0
    assert ":2:" in r.stderr and "pin_hash" in r.stderr and "up to 2^13" in r.stderr
    assert site.query("SELECT count(*) FROM credentials")[0] == 0  # all or nothing


def test_p34_a_batch_with_a_costlier_hash_is_a_bad_message():
    from edge.link.messages import BadMessage, ChangeBatch, parse
    rec = {"credential": CARD, "holder": "h-1", "category": "staff", "areas": ["site"], "duress_hash": COSTLY}
    with pytest.raises(BadMessage) as e:
        parse(ChangeBatch, json.dumps({"from_version": 1, "to_version": 2, "upserts": [rec]}).encode())
    assert "upserts.0.duress_hash" in str(e.value) and "up to 2^13" in str(e.value)

"""The database: a gapless, chained journal; all-or-nothing imports; mirrors that follow other writers."""
from __future__ import annotations

import json
import sqlite3

import pytest

from edge.store import Store
from edge.store.allowlist import ImportError_, apply_items, lookup_badge, parse_lines
from edge.store.journal import Journal
from edge.store.staging import CREDENTIAL_FIELDS

NAME_AT = [column for column, _ in CREDENTIAL_FIELDS].index("name")

RECORD = {"credential": "badge:04A1B2C3", "holder": "h-1", "category": "staff", "areas": ["site"]}


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "gk.db")
    yield s
    s.close()


def test_p19_seq_rises_by_one_and_survives_reopen(tmp_path):
    s = Store(tmp_path / "gk.db")
    j = Journal(s)
    seqs = [j.append("access.granted", {"n": i}).seq for i in range(5)]
    epoch = s.epoch
    s.close()
    s = Store(tmp_path / "gk.db")
    assert Journal(s).append("access.denied", {}).seq == 6
    assert seqs == [1, 2, 3, 4, 5]
    assert s.epoch == epoch  # same journal, same epoch
    s.close()


def test_p19_new_database_has_a_new_epoch(tmp_path):
    a, b = Store(tmp_path / "a.db"), Store(tmp_path / "b.db")
    assert a.epoch != b.epoch
    a.close(), b.close()


def test_p19_chain_detects_a_changed_row(store):
    j = Journal(store)
    for i in range(4):
        j.append("access.granted", {"holder": f"h-{i}"})
    assert j.verify()[0]
    store.conn.execute("UPDATE journal SET data=? WHERE seq=2", (json.dumps({"holder": "h-x"}),))
    ok, why = j.verify()
    assert not ok and "seq 2" in why


def test_p19_chain_detects_a_removed_row(store):
    j = Journal(store)
    for i in range(4):
        j.append("access.granted", {"i": i})
    store.conn.execute("DELETE FROM journal WHERE seq=3")
    ok, why = j.verify()
    assert not ok and "gap" in why


def test_envelope_matches_spec(store):
    e = Journal(store).append("access.granted", {"door": "main"}, at=1795600000.5)
    env = e.envelope("acs/demo/gate-1", store.epoch)
    assert env["specversion"] == "1.0" and env["datacontenttype"] == "application/json"
    assert env["source"] == "acs/demo/gate-1" and env["seq"] == 1 and env["epoch"] == store.epoch
    assert env["time"] == "2026-11-25T09:46:40.500Z" and env["data"] == {"door": "main"}


def test_rollback_assigns_no_seq(store):
    j = Journal(store)
    j.append("a", {})
    with pytest.raises(RuntimeError):
        with store.tx():
            j.append("b", {})
            raise RuntimeError("power cut")
    assert j.append("c", {}).seq == 2


def test_second_writer_gets_the_next_seq(tmp_path):
    a, b = Store(tmp_path / "gk.db"), Store(tmp_path / "gk.db")
    Journal(a).append("x", {})
    assert Journal(b).append("y", {}).seq == 2
    assert Journal(a).append("z", {}).seq == 3
    assert Journal(a).verify()[0]
    a.close(), b.close()


def test_import_applies_whole_file(store):
    lines = [json.dumps(RECORD), json.dumps({"revoke": {"pass": "00112233445566778899"}}),
             json.dumps({"blocklist": {"holder": "h-9", "reason": "theft"}})]
    with store.tx():
        counts = apply_items(store, parse_lines(lines), 0)
    assert counts == {"record": 1, "revoke": 1, "blocklist": 1, "key": 0}
    cred = lookup_badge(store, "badge:04A1B2C3")
    assert cred.holder == "h-1" and cred.areas == ("site",)


def test_import_with_one_bad_line_applies_nothing(store):
    lines = [json.dumps(RECORD), json.dumps({**RECORD, "credential": "badge:xyz"}), "{not json"]
    with pytest.raises(ImportError_) as e:
        parse_lines(lines, "people.jsonl")
    assert e.value.problems[0].startswith("people.jsonl:2: credential")
    assert e.value.problems[1].startswith("people.jsonl:3: not JSON")
    assert lookup_badge(store, "badge:04A1B2C3") is None


def test_p1_import_rejects_unknown_fields_and_keeps_unknown_categories(store):
    with pytest.raises(ImportError_, match="unknown field"):
        parse_lines([json.dumps({**RECORD, "colour": "red"})])
    # P1: a record of another category is stored as it came (and refused at every scan as malformed)
    items = parse_lines([json.dumps({**RECORD, "category": "salesman"}), json.dumps({**RECORD, "credential": "badge:0A0B0C0D"})])
    with store.tx():
        assert apply_items(store, items, 0)["record"] == 2
    assert lookup_badge(store, "badge:04A1B2C3").category == "salesman"


def test_mirrors_follow_another_process(tmp_path):
    a, b = Store(tmp_path / "gk.db"), Store(tmp_path / "gk.db")
    with b.tx():
        apply_items(b, parse_lines([json.dumps({"blocklist": {"holder": "h-9"}})]), 0)
    assert "h-9" not in a.blocked_holders
    assert a.refresh() and "h-9" in a.blocked_holders
    a.close(), b.close()


def test_p6_mirrors_see_a_commit_made_while_this_connection_also_committed(tmp_path):
    """Another process commits a blocklist entry and a revocation; this connection then commits its own
    (a door event, the outbox watermark): the next look still sees the other process's commit."""
    a, b = Store(tmp_path / "gk.db"), Store(tmp_path / "gk.db")
    with b.tx():
        apply_items(b, parse_lines([json.dumps({"blocklist": {"holder": "h-9"}}),
                                    json.dumps({"revoke": {"credential": "badge:04A1B2C3"}})]), 0)
    Journal(a).append("door.opened", {"door": "main"})  # our own commit, after theirs
    a.defer_meta("outbox_acked", "1")
    a.flush_deferred()
    a.refresh()
    assert "h-9" in a.blocked_holders and "badge:04A1B2C3" in a.revoked
    a.close(), b.close()


def test_p8_p9_p7_state_changed_by_another_process_reaches_this_gates_mirrors(tmp_path):
    """A consumed pass, a sign-off, a presence and a voided card written by another process (a tool, a
    second daemon by mistake): the next look sees each, though this connection committed meanwhile."""
    a, b = Store(tmp_path / "gk.db"), Store(tmp_path / "gk.db")
    b.consume("v-1", 1.0)
    b.sign_off("v-2", "h-1", 1.0)
    b.move_presence("badge:01", "h-1", "staff", "site/lobby", 1, 1.0)
    b.revoke_locally("pass:aa", 1.0, "desk")
    Journal(a).append("door.opened", {"door": "main"})  # our own commit, after theirs
    assert a.refresh()
    assert "v-1" in a.consumed and "v-2" in a.signoffs and a.presence == {"badge:01": "site/lobby"}
    assert "pass:aa" in a.revoked
    b.move_presence("badge:01", None, None, None, 1, 2.0)  # left the site
    b.unrevoke_locally("pass:aa")
    assert a.refresh() and a.presence == {} and "pass:aa" not in a.revoked
    a.close(), b.close()


def test_deferred_meta_rides_with_the_next_commit_and_survives_a_rollback(store):
    store.defer_meta("outbox_acked", "7")
    assert store.meta("outbox_acked") == "7"  # read back at once, written later
    with pytest.raises(RuntimeError):
        with store.tx():
            raise RuntimeError("refused")
    Journal(store).append("x", {})
    assert store.conn.execute("SELECT value FROM meta WHERE key='outbox_acked'").fetchone() == ("7",)


def test_p19_pruning_by_seq_keeps_one_chain_after_a_wrong_clock(store):
    """Rows written under a clock years behind sit between current rows: pruning takes only the oldest
    rows in seq order, and what is left verifies from its anchor."""
    j = Journal(store)
    now = 1_800_000_000.0
    for i, at in enumerate([now - 400 * 86400, now - 390 * 86400, now - 10, 1_000_000_000.0, now - 5, now]):
        j.append("access.granted", {"i": i}, at)
    assert j.prune(now - 365 * 86400) == 2
    ok, why = j.verify()
    assert ok, why
    assert [e.seq for e in j.entries()] == [3, 4, 5, 6]
    store.conn.execute("DELETE FROM journal WHERE seq=3")  # a row removed by hand still shows
    assert not j.verify()[0]


def test_database_of_a_newer_version_is_refused(tmp_path):
    from edge.store import StoreError
    p = tmp_path / "gk.db"
    Store(p).close()
    c = sqlite3.connect(p)
    c.execute("PRAGMA user_version=99")
    c.commit(), c.close()
    with pytest.raises(StoreError, match="newer"):
        Store(p)


def test_spec6_the_disk_reserve_is_sized_to_the_disk():
    from edge.store.holdback import reserve_size
    mib = 1 << 20
    assert reserve_size(20 * mib, 18 * mib) == 409 * 1024 + 614  # 2% of a 20 MB disk
    assert reserve_size(64 * 1024 * mib, 30 * 1024 * mib) == 8 * mib  # capped on a big disk
    assert reserve_size(4 * mib, 3 * mib) == 256 * 1024  # at least 256 KiB
    assert reserve_size(20 * mib, mib) == 0  # too little room left to hold any back


@pytest.mark.parametrize("name, ok", [
    ("张" * 100, True), ("Zoë O'Brien-李", True), ("\u3000王 伟", True), ("👩\u200d🔧 Ana", True),
    ("张" * 101, False), ("", False), ("Li\tLei", False), ("Li\x85Lei", False), ("Li\u2028Lei", False),
    ("Li\u202eiel", False), ("Li\u2066Lei", False)])
def test_a_display_name_is_1_to_100_characters_of_any_script_and_refused_with_control_characters(name, ok):
    line = json.dumps({**RECORD, "name": name})
    if ok:
        [(kind, record)] = parse_lines([line])
        assert record.name == name and record.row()[NAME_AT] == name
        return
    with pytest.raises(ImportError_) as e:
        parse_lines([line])
    assert str(e.value).startswith("input:1: name: ")


def test_a_database_of_the_previous_schema_upgrades_and_its_records_read_without_a_name(tmp_path):
    from edge.store.db import _statements
    from edge.store.importing import CHUNK, import_file
    from edge.store.migrations import MIGRATIONS
    from edge.store.people import people
    names = next(n for n, m in enumerate(MIGRATIONS) if "ADD COLUMN name" in m)
    p = tmp_path / "gk.db"
    c = sqlite3.connect(p, isolation_level=None)
    for script in MIGRATIONS[:names]:
        for stmt in _statements(script):
            c.execute(stmt)
    c.execute(f"PRAGMA user_version={names}")
    c.execute("INSERT INTO credentials(credential, holder, category, areas) VALUES('badge:04A1B2C3', 'h-1', 'staff',"
              " 'site')")
    c.execute("INSERT INTO permits(id, credential, holder, name, company, areas, valid_from, valid_until, deposit,"
              " currency, created, created_by) VALUES('pm-1', 'badge:0C0C0C0C', 'c-1', 'Wang Wu', 'Build Co',"
              " 'site', 0, 1e10, 10, 'CNY', 0, 's-1')")
    # an import of that version that crashed midway left its staging, of the old shape
    c.execute("CREATE TABLE import_credentials(credential TEXT PRIMARY KEY, holder TEXT NOT NULL) WITHOUT ROWID")
    c.close()

    s = Store(p)
    try:
        assert s.conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert lookup_badge(s, "badge:04A1B2C3").holder == "h-1"
        assert people(s.conn, ["h-1", "c-1"]) == {
            "h-1": {"holder": "h-1", "name": None, "company": None, "category": "staff"},
            "c-1": {"holder": "c-1", "name": "Wang Wu", "company": "Build Co", "category": "contractor"}}
        # the next import, streamed (more than a chunk), keeps the old record beside the named ones
        f = tmp_path / "more.jsonl"
        f.write_text("".join(json.dumps({**RECORD, "credential": f"badge:{0x20000000 + i:08X}", "holder": f"h-n{i}",
                                         "name": f"员工{i}"}, ensure_ascii=False) + "\n" for i in range(CHUNK + 1)),
                     encoding="utf-8")
        assert import_file(s, f).records == CHUNK + 1
        assert people(s.conn, ["h-1", "h-n7"]) == {
            "h-1": {"holder": "h-1", "name": None, "company": None, "category": "staff"},
            "h-n7": {"holder": "h-n7", "name": "员工7", "company": None, "category": "staff"}}
    finally:
        s.close()


def test_p19_entry_times_and_ids_read_as_the_contract_says():
    """SPEC conventions: UTC, milliseconds, `Z`, the microseconds rounded as datetime rounds them (the text a
    journal entry carries must not change with how it is computed); ids are version 4 UUIDs."""
    import uuid
    from datetime import datetime, timezone

    from edge.store.journal import event_id, rfc3339

    def expected(epoch: float) -> str:
        dt = datetime.fromtimestamp(epoch, timezone.utc)
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
    for epoch in (0, 1.9999996, 1.9999994, 1.0005, -1.5, -0.0000004, 1764583200.123, 1764583200.9995,
                  1764583201.0, 253402300799.999):
        assert rfc3339(epoch) == expected(epoch), epoch
    assert rfc3339(1764583200.5) == "2025-12-01T10:00:00.500Z"
    ids = {event_id() for _ in range(100)}
    assert len(ids) == 100 and all(len(i) == 32 and uuid.UUID(hex=i).version == 4 for i in ids)


"""People by name (issue 13): the allow-list record's display name arrives by every path that writes the cache
(a change batch, a snapshot, the import, streamed or not), and the guard's screens show it: GET /people for the
live feed's holder ids, and the muster of GET /occupancy."""
from __future__ import annotations

import json

import httpx
import pytest

from mqttkit import Peer, batch, record
from sitekit import WAIT_S, gatekeeper, wait_until
from test_e2e_gate import STAFF
from test_link import OTHER, local_version, start_gate

from edge.store.importing import CHUNK

pytestmark = pytest.mark.e2e

THIRD = "01020304"


def central_of(broker) -> Peer:
    """The central system's end, once the gate listens: the gate says it is online after it subscribed, on the
    same connection, so a batch published from here on reaches it."""
    central = Peer(broker.port, "acs/test/gate-1/status")
    central.wait(lambda m: any(json.loads(p).get("state") == "online" for _, p, _ in m), what="the gate online")
    return central


def test_a_chinese_name_sent_by_import_change_batch_and_snapshot_is_shown_by_people_and_occupancy(
        tmp_path, procs, broker):
    g = start_gate(tmp_path, procs, broker, api=True, items=[])
    site = g.site
    # more lines than one chunk: the import sorts its records in a file of their own before staging them
    big = site.dir / "people.jsonl"
    with open(big, "w", encoding="utf-8") as f:
        f.write(json.dumps(record(f"badge:{STAFF}", "h-1", name="王伟"), ensure_ascii=False) + "\n")
        for i in range(CHUNK + 10):
            f.write(json.dumps(record(f"badge:{0x20000000 + i:08X}", f"h-bulk-{i}", name=f"职员{i}"),
                               ensure_ascii=False) + "\n")
    r = gatekeeper("allowlist", "import", "--config", str(site.config), str(big))
    assert r.returncode == 0, r.stderr
    assert site.import_lines([record("badge:0D0D0D0D", "h-4", name="陈静 (访客接待)")]).returncode == 0  # one chunk
    central = central_of(broker)
    client = httpx.Client(base_url=site.api_url, timeout=WAIT_S,
                          headers={"Authorization": f"Bearer {site.token('guard')}"})
    try:
        site.wait_api()
        # as the central system's export would send it: UTF-8 text, not \u escapes
        central.publish("acs/test/allowlist/changes",
                        json.dumps(batch(0, 1, upserts=[record(f"badge:{OTHER}", "h-2", name="李娜")]),
                                   ensure_ascii=False).encode())
        wait_until(lambda: local_version(g) == 1, what="the batch applied")
        people = client.get("/people", params={"holder": ["h-1", "h-2", "h-4", "h-bulk-7", "h-nobody"]}).json()
        assert people == {
            "h-1": {"holder": "h-1", "name": "王伟", "company": None, "category": "staff"},
            "h-2": {"holder": "h-2", "name": "李娜", "company": None, "category": "staff"},
            "h-4": {"holder": "h-4", "name": "陈静 (访客接待)", "company": None, "category": "staff"},
            "h-bulk-7": {"holder": "h-bulk-7", "name": "职员7", "company": None, "category": "staff"},
        }

        _, etype, _ = g.scan("main-in", STAFF, holder="h-1")
        assert etype == "access.granted"
        on_site = client.get("/occupancy").json()["people"]
        assert [(p["holder"], p["name"], p["company"]) for p in on_site] == [("h-1", "王伟", None)]

        central.publish("acs/test/gate-1/allowlist/snapshot", {
            "version": 5, "chunk": 0, "chunks": 1, "revoke": [], "blocklist": [], "keys": [],
            "upserts": [record(f"badge:{STAFF}", "h-1", name="王伟"), record(f"badge:{OTHER}", "h-2"),
                        record(f"badge:{THIRD}", "h-3", "contractor", name="张敏")]})
        wait_until(lambda: local_version(g) == 5, what="the snapshot swapped in")
        people = client.get("/people", params={"holder": ["h-1", "h-2", "h-3", "h-4"]}).json()
        assert {h: p["name"] for h, p in people.items()} == {"h-1": "王伟", "h-2": None, "h-3": "张敏"}
        assert people["h-3"]["category"] == "contractor"
        _, etype, _ = g.scan("main-in", THIRD, holder="h-3")
        on_site = {p["holder"]: p["name"] for p in client.get("/occupancy").json()["people"]}
        assert on_site == {"h-1": "王伟", "h-3": "张敏"}
    finally:
        client.close()
        central.close()


def test_a_name_too_long_or_with_control_characters_is_refused_naming_the_field_and_changes_nothing(
        tmp_path, procs, broker):
    g = start_gate(tmp_path, procs, broker)
    site = g.site
    for bad in ("名" * 101, "Li\nLei", "Li\u202eLei"):
        r = site.import_lines([record(f"badge:{OTHER}", "h-2", name=bad)])
        assert r.returncode != 0 and ":1: name: " in r.stderr, r.stderr
    assert site.query("SELECT count(*) FROM credentials WHERE credential=?", f"badge:{OTHER}")[0] == 0
    assert site.import_lines([record(f"badge:{OTHER}", "h-2", name="名" * 100)]).returncode == 0  # the most

    central = central_of(broker)
    try:
        central.publish("acs/test/allowlist/changes",
                        batch(0, 1, upserts=[record(f"badge:{THIRD}", "h-3"),
                                             record("badge:0D0D0D0D", "h-4", name="Zhang\x00Min")]))
        _, _, alarm = g.journal.next("alarm.raised", alarm="bad_message")
        assert alarm["error"].startswith("upserts.1.name: control characters"), alarm
        assert local_version(g) == 0
        assert site.query("SELECT count(*) FROM credentials WHERE credential=?", f"badge:{THIRD}")[0] == 0
    finally:
        central.close()

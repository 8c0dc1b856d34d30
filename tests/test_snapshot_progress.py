"""A snapshot's progress while it is staged (SPEC §2): in the log, in /status, and in the database."""
from __future__ import annotations

import json

import httpx
import pytest

from mqttkit import Peer, record
from sitekit import wait_until
from test_e2e_gate import STAFF
from test_link import local_version, start_gate

pytestmark = pytest.mark.e2e


def test_a_snapshot_being_staged_reports_its_progress_until_it_is_swapped_in(tmp_path, procs, broker):
    g = start_gate(tmp_path, procs, broker, api=True)
    token = g.site.token("guard")
    central = Peer(broker.port, "acs/none")

    def status() -> dict:
        return httpx.get(g.site.api_url + "/status", headers={"Authorization": f"Bearer {token}"},
                         timeout=10).json()

    def chunk(i: int) -> dict:
        return {"version": 9, "chunk": i, "chunks": 3, "revoke": [], "blocklist": [], "keys": [],
                "upserts": [record(f"badge:{0x10000000 + i * 100 + n:08X}", f"h-{i}-{n}") for n in range(100)]}
    try:
        assert status()["allowlist_snapshot"] is None
        central.publish("acs/test/gate-1/allowlist/snapshot", chunk(0))
        g.daemon.wait_for("allow-list snapshot 9: 1 of 3 chunks staged, 100 records")
        progress = wait_until(lambda: status()["allowlist_snapshot"], what="the snapshot's progress in /status")
        assert {k: progress[k] for k in ("version", "chunks_received", "chunks", "records")} == \
            {"version": 9, "chunks_received": 1, "chunks": 3, "records": 100}
        kept = json.loads(g.site.query("SELECT value FROM meta WHERE key='snapshot_progress'")[0])
        assert (kept["chunks_received"], kept["records"]) == (1, 100)
        central.publish("acs/test/gate-1/allowlist/snapshot", chunk(1))
        wait_until(lambda: (status()["allowlist_snapshot"] or {}).get("chunks_received") == 2,
                   what="the second chunk in /status")
        central.publish("acs/test/gate-1/allowlist/snapshot", chunk(2))
        wait_until(lambda: local_version(g) == 9, what="the snapshot swapped in")
        g.daemon.wait_for("allow-list snapshot 9 swapped in: 300 records")
        assert status()["allowlist_snapshot"] is None
        assert g.site.query("SELECT value FROM meta WHERE key='snapshot_progress'") is None
        _, etype, data = g.scan("main-in", STAFF)  # the staff badge is not in the snapshot: gone with the old cache
        assert (etype, data["reason"]) == ("access.denied", "unknown_credential")
    finally:
        central.close()

"""A full disk, for real: the gate's state folder on a 20 MB tmpfs that only the gate's processes see (a
mount namespace of their own, so nothing is left mounted whatever happens), filled by the test.

SPEC §6: decisions go on while the database refuses writes; what was held is written when space comes
back, in bounded transactions, so the recovery cannot refill the disk with its own log; at a stop, what
could not be written is counted and committed as `lost_events` at the next start; inbound changes wait
and are applied in order.
"""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import threading

import httpx
import pytest

from mqttkit import Peer, batch, record, rfc3339_now
from sitekit import ROOT, JournalWatch, Proc, make_site, metric, wait_until
from test_e2e_gate import STAFF, Gate

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")]


class SmallDisk:
    """A tmpfs mounted in a mount namespace held open by one sleeping process; the gate's commands run
    inside it (nsenter), and the test reaches its files through /proc/PID/root."""

    def __init__(self, procs, folder, size: str = "20m"):
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.holder = Proc("small-disk", ["unshare", "-m", "sh", "-c",
                                          f"mount -t tmpfs -o size={size} tmpfs {folder} && echo mounted "
                                          "&& exec sleep infinity"])
        procs.all.append(self.holder)
        self.holder.wait_for("mounted")
        self.procs = procs

    def path(self, name: str):
        from pathlib import Path
        return Path(f"/proc/{self.holder.p.pid}/root{self.folder}") / name

    def inside(self, *args: str) -> list[str]:
        return ["nsenter", "-t", str(self.holder.p.pid), "-m", *args]

    def gatekeeper(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(self.inside(sys.executable, "-m", "edge.cli", "--log-level", "warning", *args),
                              cwd=ROOT, capture_output=True, text=True, timeout=60)

    def start(self, name: str, *args: str) -> Proc:
        p = Proc(name, self.inside(sys.executable, *args))
        self.procs.all.append(p)
        return p

    def journal(self, config) -> "NsJournal":
        return NsJournal(self, config)

    def fill(self) -> None:
        """Write until the disk says it is full."""
        with open(self.path("filler"), "ab") as f:
            chunk = b"\0" * (64 << 10)
            while True:
                try:
                    f.write(chunk)
                    f.flush()
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
        try:
            with open(self.path("filler"), "ab") as f:  # the last few blocks a 64 KiB write did not fit in
                while True:
                    f.write(b"\0" * 4096)
                    f.flush()
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise

    def keep_full(self) -> None:
        """Full, and kept so: the gate gives back blocks its write-ahead log no longer needs (a checkpoint
        cuts it back), and a thread takes them again as soon as they are free, until `free`."""
        self.fill()
        self._full = threading.Event()

        def take_back() -> None:
            while not self._full.wait(0.02):
                try:
                    self.fill()
                except OSError:
                    pass
        self._filler = threading.Thread(target=take_back, daemon=True)
        self._filler.start()

    def free(self) -> None:
        if getattr(self, "_filler", None) is not None:
            self._full.set()
            self._filler.join(10)
            self._filler = None
        self.path("filler").unlink()


class NsJournal(JournalWatch):
    """The journal read with `gatekeeper events` inside the namespace (SQLite resolves /proc/PID/root to
    this namespace's root, so the test cannot open the file itself)."""

    def __init__(self, disk: SmallDisk, config):
        super().__init__(disk.path("gatekeeper.db"))
        self.disk, self.config = disk, config

    def rows(self, after: int = 0) -> list[tuple[int, str, dict]]:
        r = self.disk.gatekeeper("events", "--config", str(self.config), "--after-seq", str(after))
        if r.returncode != 0:
            return []
        return [(e["seq"], e["type"], e["data"]) for e in map(json.loads, r.stdout.splitlines())]


def _site_on_small_disk(tmp_path, procs, **kw):
    site = make_site(tmp_path / "site", api=True, **kw)
    site.config.write_text(site.config.read_text().replace('path = "gatekeeper.db"', 'path = "state/gatekeeper.db"'))
    disk = SmallDisk(procs, site.dir / "state")
    r = disk.gatekeeper("allowlist", "import", "--config", str(site.config), str(_people(site)))
    assert r.returncode == 0, r.stderr
    return site, disk


def _people(site):
    f = site.dir / "people.jsonl"
    f.write_text(json.dumps({"credential": f"badge:{STAFF}", "holder": "h-1", "category": "staff",
                             "areas": ["site"]}) + "\n")
    return f


def _start(g: Gate, disk: SmallDisk) -> None:
    g.daemon = disk.start("daemon", "-m", "edge.cli", "run", "--config", str(g.site.config))
    g.site.daemon = g.daemon  # where the API's port is read from
    g.daemon.wait_for("gatekeeper ready")
    for r in g.readers.values():
        r.wait_for("badge_reader connected", already=True)
    g.site.wait_api()


def _held(site) -> int:
    health = httpx.get(site.api_url + "/health", timeout=5).json()["database"]
    return int(health.split()[1]) if health.startswith("holding") else 0


def _decided(site) -> int:
    """Grants decided, journaled or not (from /metrics: the journal cannot be read while the disk is full)."""
    text = httpx.get(site.api_url + "/metrics", timeout=5).text
    return int(metric(text, "gatekeeper_decisions_total", result="granted") or 0)


def _grants(journal) -> int:
    return sum(1 for _, t, _ in journal.rows() if t == "access.granted")


def _scan_until_held(g: Gate, site, at_least: int = 20) -> None:
    """Scan until the gate holds writes: on a full disk the write-ahead log's blocks already allocated still
    take a few hundred commits, until the database file must grow and cannot."""
    sent = start = _decided(site)
    while _held(site) < at_least:
        assert sent < start + 5000, "the database never refused a write on a full disk"
        for _ in range(20):
            g.readers["main-in"].send(STAFF)
        sent += 20
        wait_until(lambda: _decided(site) >= sent, timeout=60, what="the scans decided")


def test_spec6_disk_full_then_freed_loses_nothing_and_a_stop_counts_what_it_could_not_write(tmp_path, procs):
    site, disk = _site_on_small_disk(tmp_path, procs)
    g = Gate(site, procs)
    journal = disk.journal(site.config)
    g.start_hardware()
    _start(g, disk)
    follower = disk.start("follow", "-m", "edge.cli", "events", "--config", str(site.config), "--follow")
    disk.fill()
    n = 300
    for _ in range(n):
        g.readers["main-in"].send(STAFF)
    # every scan decided (the door opened for each); some written before the disk filled again, the rest held
    wait_until(lambda: _decided(site) >= n, timeout=60, what="every scan decided")
    assert _held(site) > 0
    disk.free()
    _, _, alarm = journal.next("alarm.raised", alarm="storage_recovered", timeout=60)
    assert alarm["lost_events"] == 0
    assert _grants(journal) == n and _held(site) == 0
    wal = disk.path("gatekeeper.db-wal")
    assert not wal.exists() or wal.stat().st_size <= 8 << 20  # checkpointed and cut back, not left to grow
    r = disk.gatekeeper("events", "--config", str(site.config), "--verify")
    assert r.returncode == 0, r.stdout + r.stderr
    wait_until(lambda: sum('"access.granted"' in ln for ln in follower.output) == n, timeout=60,
               what="the attached follower seeing every grant")

    # full again, and the reserve (made again once the disk had room) already spent, then stopped: what it
    # could not write is counted, and committed at the next start
    assert disk.path("gatekeeper.db.reserve").stat().st_blocks * 512 >= 256 << 10  # real blocks, not sparse
    disk.path("gatekeeper.db.reserve").unlink()
    disk.fill()
    _scan_until_held(g, site)
    held = _held(site)
    assert g.daemon.stop() == 1
    assert any("counted as lost_events" in ln for ln in g.daemon.output)
    disk.free()
    _start(g, disk)
    _, _, alarm = journal.next("alarm.raised", alarm="storage_recovered", timeout=60)
    assert alarm["lost_events"] >= held  # every held write counted (a scan decided after the reading, too)
    r = disk.gatekeeper("events", "--config", str(site.config), "--verify")
    assert r.returncode == 0, r.stdout + r.stderr


def test_spec6_signoff_and_batch_arriving_on_a_full_disk_are_applied_when_it_has_room(tmp_path, procs, broker):
    site, disk = _site_on_small_disk(tmp_path, procs, broker_port=broker.port)
    g = Gate(site, procs)
    g.journal = disk.journal(site.config)
    g.start_hardware()
    _start(g, disk)
    central = Peer(broker.port, "acs/none")
    try:
        text = site.visitor_pass("h-9", visit="v-5")
        _, etype, _ = g.scan("main-in", text)
        assert etype == "access.granted"
        _, etype, _ = g.scan("main-out", text)
        assert etype == "exit.held"
        disk.path("gatekeeper.db.reserve").unlink(missing_ok=True)  # no reserve left: truly full
        disk.keep_full()
        _scan_until_held(g, site)
        central.publish("acs/test/visits/signoff", {"visit": "v-5", "host": "h-1", "time": rfc3339_now()})
        central.publish("acs/test/allowlist/changes",
                        batch(0, 1, upserts=[record("badge:0A0B0C0D", "h-2")]))
        # the batch goes to its own connection: it waits, or finds room in log blocks the gate gave back
        # (the waiting itself is made exact in test_link); either way it is taken before the disk has room
        wait_until(lambda: any("waits: the database refuses writes" in ln for ln in g.daemon.output)
                   or any(d.get("to_version") == 1 for _, _, d in g.journal.rows()),
                   timeout=60, what="the batch received")
        disk.free()
        # the sign-off (the gate's own held writes) and the batch (the sync worker's) are separate streams,
        # each applied in its own order
        wait_until(lambda: {t for _, t, d in g.journal.rows() if d.get("visit") == "v-5" or d.get("to_version") == 1}
                   >= {"visit.signed_off", "allowlist.applied"}, timeout=60, what="the sign-off and the batch applied")
        _, etype, data = g.scan("main-out", text)
        assert (etype, data["reason"]) == ("access.granted", "ok")
        _, etype, _ = g.scan("main-in", "0A0B0C0D")
        assert etype == "access.granted"
    finally:
        central.close()

"""`gatekeeper allowlist import` streamed: staged in committed chunks while the gate decides, swapped in at
the end, all or nothing, in bounded memory, a progress bar on a terminal only.

The file is a named pipe the test writes to, so the import is held midway for as long as the test needs:
no timing decides where it is.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import pty
import select
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge.store import Store
from edge.store.allowlist import generation, write_lists
from edge.store.importing import CHUNK, import_file
from edge.store.records import AllowRecord
from sitekit import ROOT, gatekeeper, make_site, wait_until
from test_e2e_gate import STAFF, staffed_gate

NEW = "0E0E0E0E"  # a badge only the import brings


def record(i: int, badge: str | None = None) -> str:
    return json.dumps({"credential": f"badge:{badge or f'{0x10000000 + i:08X}'}", "holder": f"h-{i}",
                       "category": "staff", "areas": ["site"]}) + "\n"


class Feed:
    """The write end of the named pipe an import reads, opened once the import opened its end."""

    def __init__(self, path: Path, importer):
        self.importer = importer

        def opened():
            try:
                return os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as e:
                if e.errno != errno.ENXIO:  # ENXIO: the import has not opened it yet
                    raise
                assert importer.p.poll() is None, f"the import ended first: {importer.output}"
                return None
        fd = wait_until(opened, what="the import reading the pipe")
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        self.f = os.fdopen(fd, "w")

    def write(self, lines) -> None:
        for line in lines:
            self.f.write(line)
        self.f.flush()

    def close(self) -> None:
        self.f.close()


def start_import(procs, site, fifo: Path):
    os.mkfifo(fifo)
    p = procs.start("import", "-m", "edge.cli", "--log-level", "warning", "allowlist", "import", "--config",
                    str(site.config), str(fifo))
    return p, Feed(fifo, p)


def staged(site) -> int:
    """Records of the import committed so far, in the file where they are sorted before the swap."""
    try:
        conn = sqlite3.connect(f"file:{site.db}-import.sort?mode=ro", uri=True)
    except sqlite3.OperationalError:  # not made yet, or gone
        return 0
    try:
        return conn.execute("SELECT count(*) FROM raw").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


def leftovers(site) -> list[str]:
    """What an import leaves in the database's folder and in the database: nothing once it ended."""
    conn = sqlite3.connect(site.db)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE name LIKE 'import%'")]
    finally:
        conn.close()
    return tables + [p.name for p in site.db.parent.glob("*-import.sort*")]


def test_the_gate_decides_during_an_import_and_its_records_apply_only_at_its_end(tmp_path, procs):
    site = make_site(tmp_path / "site")
    g = staffed_gate(site, procs)
    importer, feed = start_import(procs, site, tmp_path / "people.jsonl")
    feed.write([record(0, NEW)] + [record(i) for i in range(1, 4 * CHUNK)])
    wait_until(lambda: staged(site) >= 3 * CHUNK, what="chunks of the import committed")

    # The import is midway (it waits on the pipe), thousands of records read and committed to be sorted, its
    # staging tables made in the gate's database: the daemon decides and journals durably all the same, on
    # the cache as it was.
    _, etype, data = g.scan("main-in", STAFF)
    assert (etype, data["reason"]) == ("access.granted", "ok")
    _, etype, data = g.scan("main-in", NEW)
    assert (etype, data["reason"]) == ("access.denied", "unknown_credential")
    _, etype, data = g.scan("main-out", STAFF)
    assert (etype, data["reason"]) == ("access.granted", "ok")
    assert importer.p.poll() is None and staged(site) >= 3 * CHUNK

    feed.write(record(i) for i in range(4 * CHUNK, 6 * CHUNK))
    feed.close()
    assert importer.p.wait(120) == 0, importer.output
    assert importer.output == [f"imported {6 * CHUNK} records, 0 revocations, 0 blocklist entries, 0 keys"]
    _, etype, data = g.scan("main-in", NEW)
    assert (etype, data["reason"]) == ("access.granted", "ok")
    assert site.query("SELECT count(*) FROM credentials")[0] == 6 * CHUNK + 1  # the staff badge kept
    assert leftovers(site) == []


def test_an_import_with_a_bad_line_at_its_end_changes_nothing_and_its_staging_goes(tmp_path, procs):
    site = make_site(tmp_path / "site")
    assert site.import_lines([json.loads(record(0, STAFF))]).returncode == 0
    before = site.query("SELECT max(seq) FROM journal")[0]
    importer, feed = start_import(procs, site, tmp_path / "people.jsonl")
    feed.write(record(i) for i in range(1, 5 * CHUNK + 1))
    wait_until(lambda: staged(site) >= 4 * CHUNK, what="chunks of the import committed")
    feed.write(['{"credential": "badge:0F0F0F0F", "holder": "h-x", "category": "staff", "areas": ["Site!"]}\n'])
    feed.close()
    assert importer.p.wait(120) == 1
    assert any(f":{5 * CHUNK + 1}: areas.0" in line for line in importer.output), importer.output
    assert importer.output[-1].endswith("nothing imported")
    assert site.query("SELECT count(*) FROM credentials")[0] == 1
    assert site.query("SELECT max(seq) FROM journal")[0] == before  # no allowlist.applied
    assert leftovers(site) == []


def _hwm_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def test_an_import_reads_in_bounded_memory(tmp_path, procs):
    """The peak RSS after 300,000 records is about what it was after 20,000: read, checked and staged a chunk
    at a time (holding them all took some 1.5 KB a record, 400 MB here)."""
    site = make_site(tmp_path / "site")
    importer, feed = start_import(procs, site, tmp_path / "people.jsonl")
    feed.write(record(i) for i in range(20_000))
    wait_until(lambda: staged(site) >= 20_000 - 2 * CHUNK, what="20,000 records staged")
    early = _hwm_mb(importer.p.pid)
    feed.write(record(i) for i in range(20_000, 300_000))
    wait_until(lambda: staged(site) >= 300_000 - 2 * CHUNK, what="300,000 records staged", timeout=300)
    late = _hwm_mb(importer.p.pid)  # still running: the pipe is open
    feed.close()
    assert importer.p.wait(120) == 0, importer.output
    assert late - early < 30, f"peak RSS grew from {early:.0f} MB to {late:.0f} MB"


def test_a_batch_applied_while_the_cache_is_copied_is_kept(tmp_path):
    """The cache changes while the import copies it (a sync batch, here from another connection, at the
    moment the copy began): the copy would miss it, so the import builds it again, and both apply."""
    site = make_site(tmp_path / "site")
    f = tmp_path / "people.jsonl"
    f.write_text("".join(record(i) for i in range(3 * CHUNK)))
    assert site.import_lines([json.loads(record(0, STAFF))]).returncode == 0
    store, other = Store(site.db), Store(site.db)

    class BatchAtCopy:
        phases: list[str] = []

        def phase(self, name, total):
            self.phases.append(name)
            if name.startswith("merging") and self.phases.count(name) == 1:
                with other.tx() as c:
                    write_lists(c, time.time(), upserts=[AllowRecord(
                        credential="badge:" + NEW, holder="h-new", category="staff", areas=["site"]).row()])

        def advance(self, n):
            pass
    try:
        gen = generation(store.conn)
        progress = BatchAtCopy()
        done = import_file(store, f, progress)
        assert done.records == 3 * CHUNK
        assert progress.phases.count("merging with the cache") == 2  # built again
        refs = {r[0] for r in store.conn.execute("SELECT credential FROM credentials")}
        assert {"badge:" + NEW, "badge:" + STAFF} <= refs and len(refs) == 3 * CHUNK + 2
        assert generation(store.conn) == gen + 2  # the batch, then the import's swap
    finally:
        store.close()
        other.close()


def test_progress_is_drawn_on_a_terminal_and_nothing_is_printed_for_it_elsewhere(tmp_path):
    site = make_site(tmp_path / "site")
    f = tmp_path / "people.jsonl"
    f.write_text("".join(record(i) for i in range(3 * CHUNK)))
    r = gatekeeper("allowlist", "import", "--config", str(site.config), str(f))
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout == f"imported {3 * CHUNK} records, 0 revocations, 0 blocklist entries, 0 keys\n"

    main, sub = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "edge.cli", "--log-level", "warning", "allowlist", "import",
                          "--config", str(site.config), str(f)], cwd=ROOT, stdin=subprocess.DEVNULL, stdout=sub,
                         stderr=sub, env={**os.environ, "TERM": "xterm", "COLUMNS": "100"})
    os.close(sub)
    out = b""
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if not select.select([main], [], [], 1)[0]:
                continue
            try:
                chunk = os.read(main, 65536)
            except OSError:  # EIO: the import closed the terminal
                break
            if not chunk:
                break
            out += chunk
        assert p.wait(60) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(main)
    text = out.decode(errors="replace")
    assert "staging people.jsonl" in text and "100%" in text
    assert f"imported {3 * CHUNK} records" in text



def test_a_large_file_is_checked_in_a_helper_process_with_the_same_result(tmp_path, monkeypatch):
    """Past HELPER_BYTES the lines are checked in a process of their own; nothing else changes: records,
    revocations and blocklist entries in file order (the last line for a credential wins), bad lines named."""
    from edge.store import reading
    from edge.store.allowlist import ImportError_
    monkeypatch.setattr(reading, "HELPER_BYTES", 0)
    site = make_site(tmp_path / "site")
    f = tmp_path / "people.jsonl"
    lines = [record(i) for i in range(3 * CHUNK)]
    lines.append(json.dumps({"credential": "badge:10000005", "holder": "h-last", "category": "visitor",
                             "areas": ["site"], "valid_from": "2026-01-01T00:00:00Z",
                             "valid_until": "2030-01-01T00:00:00Z", "host": "h-1"}) + "\n")
    lines += [json.dumps({"revoke": {"pass": "00" * 10}}) + "\n", json.dumps({"blocklist": {"holder": "h-9"}}) + "\n"]
    f.write_text("".join(lines))
    store = Store(site.db)
    try:
        done = import_file(store, f)
        assert (done.records, done.revokes, done.blocklists) == (3 * CHUNK + 1, 1, 1)
        assert store.conn.execute("SELECT holder, category FROM credentials WHERE credential='badge:10000005'"
                                  ).fetchone() == ("h-last", "visitor")
        assert store.conn.execute("SELECT count(*) FROM credentials").fetchone()[0] == 3 * CHUNK
        assert store.conn.execute("SELECT ref FROM revocations").fetchall() == [("pass:" + "00" * 10,)]
        f.write_text("".join(lines[:-1]) + "not json\n" + lines[-1])
        with pytest.raises(ImportError_) as e:
            import_file(store, f)
        assert e.value.problems == [f"{f}:{3 * CHUNK + 3}: not JSON: Expecting value at column 1"]
        assert store.conn.execute("SELECT count(*) FROM credentials").fetchone()[0] == 3 * CHUNK
    finally:
        store.close()


def test_a_second_import_while_one_runs_is_refused_and_changes_nothing(tmp_path, procs):
    """Imports share their staging tables: one at a time (a lock the kernel drops if the import dies)."""
    site = make_site(tmp_path / "site")
    importer, feed = start_import(procs, site, tmp_path / "people.jsonl")
    feed.write(record(i) for i in range(2 * CHUNK))
    wait_until(lambda: staged(site) >= CHUNK, what="the first import staging")
    r = site.import_lines([json.loads(record(0, NEW))])
    assert r.returncode == 1 and "another import" in r.stderr, r.stderr
    feed.close()
    assert importer.p.wait(120) == 0, importer.output
    assert site.query("SELECT count(*) FROM credentials WHERE credential=?", "badge:" + NEW)[0] == 0
    assert site.query("SELECT count(*) FROM credentials")[0] == 2 * CHUNK

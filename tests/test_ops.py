"""The operator's commands through the real CLI: status, backup, the journal by time and as CSV, completion.

Against a real daemon where the command is about one (status, a backup taken while it writes), else against
the database a gate in this process wrote on a clock the test sets."""
from __future__ import annotations

import csv
import io
import json
import sqlite3
import stat
import subprocess

import pytest

from edge.config import load_config
from edge.core.gate import Gate as InProcessGate
from edge.passes.keyring import build_keyring
from edge.store import Store
from sitekit import ROOT, gatekeeper, make_site, wait_until
from unitsandbox import confined

STAFF = "04A1B2C3"
FORMULA = "=HYPERLINK(\"http://x\")"


def staff_site(d, **kw):
    site = make_site(d, **kw)
    r = site.import_lines([{"credential": f"badge:{STAFF}", "holder": "h-1", "category": "staff", "areas": ["site"]},
                           {"credential": "badge:0000F0F0", "holder": FORMULA, "category": "staff",
                            "areas": ["site"]}])
    assert r.returncode == 0, r.stderr
    return site


@pytest.fixture
def running(tmp_path, procs):
    """A site with its API, and its daemon running (its hardware absent: named faults, the daemon serves)."""
    site = staff_site(tmp_path / "site", api=True)
    # not under the unit's filter: the clock test needs the kernel's sync state, which the unit's ProtectClock=
    # refuses (what the daemon reports then is in test_unit_sandbox.py)
    site.daemon = procs.start("daemon", "-m", "edge.cli", "run", "--config", str(site.config))
    site.daemon.wait_for("gatekeeper ready")
    site.wait_api()
    return site


# -- status ----------------------------------------------------------------------------------------------
def test_status_of_a_running_gate_reads_its_database_and_health(running):
    r = gatekeeper("status", "--config", str(running.config), "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["daemon"]["running"] and s["daemon"]["pid"] == running.daemon.p.pid
    assert s["health"]["status"] == "degraded"  # its I/O module and readers are not there
    assert "io1" in s["devices_down"] and "main-in" in s["devices_down"]
    assert s["mode"]["mode"] == "normal" and s["held_exits"] == 0 and s["on_site"] == 0
    assert s["allowlist"]["applied"] is not None and s["allowlist"]["age_s"] >= 0
    assert s["outbox_depth"] is None  # no central link configured
    assert s["journal"]["last_seq"] >= 1
    assert s["clock"]["sync"] in ("synced", "unsynced", "unknown") and s["clock"]["valid"] is True
    human = gatekeeper("status", "--config", str(running.config))
    assert human.returncode == 0, human.stderr
    for line in ("daemon      running", "mode        normal", "DOWN: ", "held exits  0", "on site     0 people",
                 "clock       "):
        assert line in human.stdout, human.stdout


def test_status_with_the_daemon_down_says_so_and_shows_the_database(tmp_path, procs):
    site = staff_site(tmp_path / "site", api=True)
    daemon = procs.start("daemon", *confined("-m", "edge.cli", "run", "--config", str(site.config)))
    daemon.wait_for("gatekeeper ready")
    assert gatekeeper("status", "--config", str(site.config), "--json").returncode == 0
    daemon.stop()  # a stop leaves its run file behind, unlocked: it must not read as running
    r = gatekeeper("status", "--config", str(site.config), "--json")
    assert r.returncode == 3, r.stderr
    s = json.loads(r.stdout)
    assert not s["daemon"]["running"] and s["health"] is None and s["devices_down"] is None
    assert s["allowlist"]["applied"] and s["journal"]["last_seq"] >= 1
    human = gatekeeper("status", "--config", str(site.config))
    assert human.returncode == 3 and "NOT RUNNING" in human.stdout and "allow-list  version 0" in human.stdout


def test_status_of_a_killed_daemon_is_not_running(tmp_path, procs):
    site = staff_site(tmp_path / "site")
    daemon = procs.start("daemon", *confined("-m", "edge.cli", "run", "--config", str(site.config)))
    daemon.wait_for("gatekeeper ready")
    daemon.kill()  # kill -9: the kernel drops its lock on the run file
    assert gatekeeper("status", "--config", str(site.config)).returncode == 3


def test_status_never_makes_a_database(tmp_path):
    site = make_site(tmp_path / "site")
    r = gatekeeper("status", "--config", str(site.config))
    assert r.returncode == 1 and "no database" in r.stderr and not site.db.exists()


def test_p3_clock_state_in_health_and_metrics(running):
    import httpx
    from edge.runtime import timesync
    health = lambda: httpx.get(running.api_url + "/health", timeout=10).json()  # noqa: E731
    h = health()
    assert h["clock"]["valid"] is True and h["clock"]["central_offset_s"] is None  # no heartbeat heard
    assert h["clock"]["sync"] in ("synced", "unsynced", "unknown")
    m = httpx.get(running.api_url + "/metrics", timeout=10).text
    assert "gatekeeper_clock_valid 1" in m
    if timesync.kernel_status() is not None:  # Linux: the daemon reads the machine's sync state once started
        h = wait_until(lambda: (got := health())["clock"]["sync"] != "unknown" and got, what="the sync state read")
        assert h["clock"]["source"] in ("timedatectl", "adjtimex") and h["clock"]["est_error_s"] is not None
        m = httpx.get(running.api_url + "/metrics", timeout=10).text
        assert "gatekeeper_clock_synchronized " in m and "gatekeeper_clock_estimated_error_seconds " in m


# -- backup ----------------------------------------------------------------------------------------------
def test_backup_while_the_daemon_writes_is_verified_and_private(running, tmp_path):
    import threading
    out = tmp_path / "copy.db"
    running.token("guard", "p-first")
    # another writer commits while the copy is taken (the daemon journals its devices' faults meanwhile too)
    done, made = threading.Event(), []

    def write():
        while not done.is_set():
            made.append(running.token("guard", f"p-{len(made)}"))
    writer = threading.Thread(target=write, name="token-writer")
    writer.start()
    try:
        wait_until(lambda: len(made) >= 1, what="a token made while the daemon runs")
        r = gatekeeper("backup", "--config", str(running.config), "--out", str(out))
    finally:
        done.set()
        writer.join(60)
    assert r.returncode == 0, r.stderr
    assert "chain intact" in r.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert not out.with_name(out.name + "-wal").exists()  # one self-contained file
    conn = sqlite3.connect(f"file:{out}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        copied = conn.execute("SELECT count(*) FROM tokens").fetchone()[0]
    finally:
        conn.close()
    assert 2 <= copied <= 1 + len(made)  # one instant of the database, somewhere in the writer's run
    # the copy is a gate's database like the original: `events --verify` on it, through a config naming it
    copy_cfg = running.dir / "copy.toml"
    copy_cfg.write_text(running.config.read_text().replace('path = "gatekeeper.db"', f'path = "{out}"'))
    v = gatekeeper("events", "--config", str(copy_cfg), "--verify")
    assert v.returncode == 0 and "chain intact" in v.stdout, v.stdout + v.stderr
    again = gatekeeper("backup", "--config", str(running.config), "--out", str(out))
    assert again.returncode == 1 and "--force" in again.stderr
    forced = gatekeeper("backup", "--config", str(running.config), "--out", str(out), "--force")
    assert forced.returncode == 0, forced.stderr


def test_backup_of_a_tampered_journal_fails_and_leaves_no_copy(tmp_path):
    site = staff_site(tmp_path / "site")
    conn = sqlite3.connect(site.db)
    conn.execute("UPDATE journal SET data = replace(data, 'import', 'imp0rt') WHERE seq = 1")
    conn.commit()
    conn.close()
    out = tmp_path / "copy.db"
    r = gatekeeper("backup", "--config", str(site.config), "--out", str(out))
    assert r.returncode == 1 and "does not verify" in r.stderr and "seq 1" in r.stderr
    assert not out.exists() and not list(tmp_path.glob(".copy.db*"))


def test_backup_into_a_missing_folder_says_so(tmp_path):
    site = staff_site(tmp_path / "site")
    r = gatekeeper("backup", "--config", str(site.config), "--out", str(tmp_path / "nowhere" / "copy.db"))
    assert r.returncode == 1 and "cannot write" in r.stderr and "Traceback" not in r.stderr


def test_backup_refuses_to_copy_over_the_database(tmp_path):
    site = staff_site(tmp_path / "site")
    r = gatekeeper("backup", "--config", str(site.config), "--out", str(site.db), "--force")
    assert r.returncode == 1 and "own database" in r.stderr


# -- events by time, as CSV -------------------------------------------------------------------------------
T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z


@pytest.fixture
def journaled(tmp_path):
    """Three decisions an hour apart, written by a gate on the test's clock (the machine's is never moved)."""
    site = staff_site(tmp_path / "site")
    cfg, base = load_config(site.config)
    store = Store(site.db)
    gate = InProcessGate(cfg, store, build_keyring(cfg, base, store), clock=lambda: T0)
    for i, credential in enumerate((STAFF, "0000F0F0", "DEADBEEF")):
        gate.present("main-in", "badge", f"badge:{credential}", T0 + i * 3600)
    store.close()
    return site


def _events(site, *args):
    r = gatekeeper("events", "--config", str(site.config), *args)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_events_since_until_take_any_offset(journaled):
    # 08:30Z to 09:30Z, said in Shanghai's time: only the decision at 09:00Z
    got = [json.loads(line) for line in _events(journaled, "--since", "2027-01-15T16:30:00+08:00",
                                                "--until", "2027-01-15T17:30:00+08:00").splitlines()]
    assert [(e["time"], e["data"]["holder"]) for e in got] == [("2027-01-15T09:00:00.000Z", FORMULA)]
    # `since` is inclusive, `until` exclusive
    at = [json.loads(line)["time"] for line in _events(journaled, "--since", "2027-01-15T08:00:00Z",
                                                       "--until", "2027-01-15T10:00:00Z").splitlines()]
    assert at == ["2027-01-15T08:00:00.000Z", "2027-01-15T09:00:00.000Z"]


def test_events_since_with_after_seq(journaled):
    all_ = [json.loads(line) for line in _events(journaled).splitlines()]
    second = next(e for e in all_ if e["time"] == "2027-01-15T09:00:00.000Z")
    got = [json.loads(line) for line in _events(journaled, "--since", "2027-01-15T08:00:00Z",
                                                "--after-seq", str(second["seq"])).splitlines()]
    assert [e["time"] for e in got] == ["2027-01-15T10:00:00.000Z"]


def test_events_refuse_a_time_without_an_offset(journaled):
    r = gatekeeper("events", "--config", str(journaled.config), "--since", "2027-01-15T08:00:00")
    assert r.returncode == 2 and "--since" in r.stderr


def test_p19_events_as_csv_one_event_a_line_with_a_header(journaled):
    text = _events(journaled, "--format", "csv", "--since", "2027-01-15T00:00:00Z")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert text.splitlines()[0].startswith("seq,time,type,door,direction,reason,holder,")
    assert len(text.splitlines()) == 1 + len(rows) == 4
    granted, formula, denied = rows
    assert (granted["type"], granted["door"], granted["direction"], granted["reason"], granted["holder"]) == \
        ("access.granted", "main", "in", "ok", "h-1")
    assert formula["holder"] == "'" + FORMULA  # a spreadsheet shows it, never runs it
    assert (denied["type"], denied["reason"], denied["credential_ref"]) == \
        ("access.denied", "unknown_credential", "badge:DEADBEEF")
    other = json.loads(granted["other"])
    assert "decision_us" in other and "holder" not in other  # the rest of `data`, nothing twice


def test_spec2_events_as_csv_name_who_acted_in_actor_and_actor_role(tmp_path):
    """SPEC §2: who acted is `actor` with `actor_role` in every event, and the CSV has a column for each."""
    from edge.core.model import Mode
    site = staff_site(tmp_path / "site")
    cfg, base = load_config(site.config)
    store = Store(site.db)
    gate = InProcessGate(cfg, store, build_keyring(cfg, base, store), clock=lambda: T0)
    gate.modes.request(Mode.LOCKDOWN, "p-guard", "guard", "intruder seen", "gate")
    gate.modes.inputs(fire=True, key_switch=None)
    store.close()
    text = _events(site, "--format", "csv")
    header = text.splitlines()[0].split(",")
    assert "actor" in header and "actor_role" in header and "person" not in header
    rows = [r for r in csv.DictReader(io.StringIO(text)) if r["type"] == "mode.changed"]
    assert [(r["mode"], r["actor"], r["actor_role"]) for r in rows] == \
        [("lockdown", "p-guard", "guard"), ("fire", "fire_input", "")]  # the fire panel is no person: null
    assert all("actor" not in r["other"] and "by" not in json.loads(r["other"]) for r in rows)


def test_events_follow_as_csv(journaled, procs):
    follow = procs.start("follow", "-m", "edge.cli", "events", "--config", str(journaled.config), "--format",
                         "csv", "--follow")
    follow.wait_for("2027-01-15T10:00:00.000Z,access.denied")
    assert journaled.import_lines([{"credential": "badge:01020304", "holder": "h-new", "category": "staff",
                                    "areas": ["site"]}]).returncode == 0
    line = follow.wait_for("allowlist.applied")
    assert next(csv.reader([line]))[2] == "allowlist.applied"
    assert sum(1 for out in follow.output if out.startswith("seq,")) == 1  # one header


def test_events_follow_with_until_is_a_clear_error(journaled):
    r = gatekeeper("events", "--config", str(journaled.config), "--follow", "--until", "2027-01-15T00:00:00Z")
    assert r.returncode == 1 and "--until" in r.stderr


# -- completion ------------------------------------------------------------------------------------------
def _subcommands():
    import argparse
    from edge.cli import build_parser
    p = build_parser()
    return next(a for a in p._actions if isinstance(a, argparse._SubParsersAction)).choices


def test_the_shipped_completion_is_the_generated_one():
    r = gatekeeper("completion", "bash")
    assert r.returncode == 0, r.stderr
    assert (ROOT / "completions" / "gatekeeper.bash").read_text() == r.stdout, \
        "completions/gatekeeper.bash is stale: gatekeeper completion bash > completions/gatekeeper.bash"


def complete(*words: str) -> list[str]:
    """What bash offers after `words` (the last one being completed), with the shipped script."""
    script = ROOT / "completions" / "gatekeeper.bash"
    quoted = " ".join(f"'{w}'" for w in ("gatekeeper", *words))
    r = subprocess.run(["bash", "--norc", "-c", f'source "{script}"; COMP_WORDS=({quoted}); '
                        f'COMP_CWORD=$((${{#COMP_WORDS[@]}}-1)); _gatekeeper; printf "%s\\n" "${{COMPREPLY[@]}}"'],
                       capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def test_bash_completion_lists_the_real_subcommands_and_options():
    subs = set(_subcommands())
    assert {"run", "status", "backup", "events", "completion", "tokens"} <= subs
    assert subs <= set(complete(""))
    assert complete("ba") == ["backup"]
    assert set(complete("events", "--config", "x.toml", "--")) >= {"--since", "--until", "--format", "--follow",
                                                                    "--after-seq", "--verify"}
    assert complete("events", "--format", "") == ["jsonl", "csv"]
    assert complete("tokens", "add", "--role", "") == ["guard", "supervisor", "central"]
    assert complete("backup", "--out", "completions/gate") == ["completions/gatekeeper.bash"]

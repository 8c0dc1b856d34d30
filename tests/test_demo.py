"""`gatekeeper demo` plays its story against the real daemon and simulators, and cleans up after itself."""
from __future__ import annotations

import os

import pytest

from sitekit import gatekeeper

pytestmark = pytest.mark.e2e


def test_demo_story_shows_each_decision_with_its_reason(tmp_path):
    r = gatekeeper("demo", "--state", str(tmp_path / "demo"), "--story-only", timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    expected = [
        ("Li Wei", "GRANTED", "reason=ok"),
        ("Chen Jie", "GRANTED", "reason=ok"),
        ("Zhang Lei", "DENIED", "reason=area_not_permitted"),
        ("Sun Qiang", "DENIED", "reason=expired"),
        ("Ma Tao", "DENIED", "reason=blocklisted"),
        ("Zhang Lei", "GRANTED", "reason=ok"),
        ("Zhang Lei", "DENIED", "reason=antipassback"),
        ("Zhang Lei", "HELD", "reason=host_signoff_missing"),
        ("Zhang Lei", "GRANTED", "reason=ok"),  # after the host's sign-off from the central system
        ("Liu Yang", "DENIED", "reason=outside_schedule"),  # P24: a holiday the central system declared
        ("京A12345", "HELD", "reason=unknown_credential"),  # P26: a van at the barrier, held for the guard
        ("Wang Fang", "DENIED", "reason=lockdown"),
        ("Zhao Min", "GRANTED", "reason=ok"),
    ]
    decisions = [l for l in lines if "reason=" in l]
    assert len(decisions) == len(expected), r.stdout
    for line, (who, verdict, reason) in zip(decisions, expected):
        assert who in line and verdict in line and reason in line, line
    assert any("PRIORITY: special tier" in l for l in lines)  # P12 for the special-tier VIP
    assert any("mode -> lockdown" in l for l in lines)
    taps = [l for l in lines if " tap " in l]  # P21: the guard's round, due when the demo runs
    assert len(taps) == 2 and all("counted" in l and "NOT" not in l and "in_order" in l for l in taps), r.stdout
    assert any("tour.completed: round 1 of night-round" in l for l in lines), r.stdout
    assert any("the guard lets it through once" in l for l in lines)  # P26, through the API
    assert any("visit.signed_off received over MQTT" in l for l in lines)
    assert any("0 missing, 0 out of order" in l for l in lines)  # the central simulator got every event
    banner = next(l for l in lines if l.startswith("Guard console: http://127.0.0.1:"))
    assert "sign in with the guard token gk_" in banner  # SPEC §1: the demo prints the console URL
    events = gatekeeper("events", "--config", str(tmp_path / "demo" / "site.toml"), "--verify")
    assert events.returncode == 0, events.stdout
    assert not processes_mentioning(str(tmp_path / "demo")), "the demo left a simulator or daemon running"


def processes_mentioning(text: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if text.encode() in f.read():
                        found.append(int(pid))
            except OSError:
                continue
    return found


def test_the_demo_serves_the_console_and_a_sigterm_stops_everything_it_started(tmp_path, procs):
    import signal

    import httpx
    state = tmp_path / "live"
    demo = procs.start("demo", "-m", "edge.cli", "demo", "--state", str(state), stdin=True)
    url = demo.wait_for("Guard console: http://", timeout=90).split()[2]
    assert httpx.get(url, timeout=5).status_code == 200
    started = children_of(demo.p.pid)  # broker, central, simulators, daemon: each in its own session
    assert len(started) >= 5
    os.kill(demo.p.pid, signal.SIGTERM)  # the demo alone, as systemd or `kill` would
    assert demo.p.wait(30) == 0
    alive = [pid for pid in started if os.path.exists(f"/proc/{pid}") and not _zombie(pid)]
    assert not alive and not processes_mentioning(str(state)), "the demo left a simulator or daemon running"


def children_of(ppid: int) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == ppid:
                        found.append(int(pid))
            except (OSError, ValueError, IndexError):
                continue
    return found


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True

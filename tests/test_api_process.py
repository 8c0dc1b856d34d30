"""The local API runs in a process of its own beside the gate: what a site sees when that process dies, when
the gate dies, and what the gate accepts from it."""
from __future__ import annotations

import asyncio
import os
import pickle
import signal
from pathlib import Path

import httpx
import pytest

from edge.api import wire
from sitekit import WAIT_S, make_site, metric, wait_until
from test_e2e_gate import STAFF, staffed_gate

pytestmark = pytest.mark.e2e


def api_processes(daemon_pid: int) -> list[int]:
    """The daemon's children that serve the API."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == daemon_pid and b"edge.api.child" in cmdline:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def gate(tmp_path, procs):
    site = make_site(tmp_path, api=True)
    g = staffed_gate(site, procs)
    g.daemon.wait_for("io module io1 ready", already=True)
    site.wait_api()
    yield g, httpx.Client(base_url=site.api_url, timeout=WAIT_S,
                          headers={"Authorization": f"Bearer {site.token('guard')}"})
    g.io.close()


def test_api_process_killed_is_a_device_fault_and_comes_back_while_the_gate_decides(gate):
    g, client = gate
    assert client.get("/status").status_code == 200
    [child] = api_processes(g.daemon.p.pid)
    os.kill(child, signal.SIGKILL)
    _, _, fault = g.journal.next(("device.fault",), device="api")
    assert "API process" in fault["error"]
    # the doors never depended on it
    assert g.scan("main-in", STAFF)[1] == "access.granted"
    g.journal.next(("device.recovered",), device="api")
    assert client.get("/status").json()["mode"] == "normal"
    [again] = api_processes(g.daemon.p.pid)
    assert again != child


def test_the_api_process_yields_the_cpu_to_the_gates_doors(gate):
    g, client = gate
    assert client.get("/health").status_code == 200
    [child] = api_processes(g.daemon.p.pid)
    gate_nice = os.getpriority(os.PRIO_PROCESS, g.daemon.p.pid)
    assert os.getpriority(os.PRIO_PROCESS, child) >= gate_nice + 10  # the console waits, the door does not


def test_metrics_are_the_gates_though_the_api_process_makes_them(gate):
    g, client = gate
    text = client.get("/metrics").text
    [child] = api_processes(g.daemon.p.pid)
    ticks, boot = os.sysconf("SC_CLK_TCK"), boot_time()

    def started(pid: int) -> float:
        return boot + int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]) / ticks

    assert metric(text, "process_start_time_seconds") == pytest.approx(started(g.daemon.p.pid))
    assert started(child) != started(g.daemon.p.pid)  # or this test could not tell them apart


def boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise AssertionError("no btime in /proc/stat")


def test_api_process_ends_with_the_gate_killed(gate):
    g, client = gate
    assert client.get("/health").status_code == 200
    [child] = api_processes(g.daemon.p.pid)
    g.daemon.p.kill()
    g.daemon.p.wait(WAIT_S)
    wait_until(lambda: not alive(child), what="the API process gone with its gate")


def test_api_process_ends_with_the_gate_stopped(gate):
    g, client = gate
    assert client.get("/health").status_code == 200
    [child] = api_processes(g.daemon.p.pid)
    g.daemon.p.send_signal(signal.SIGTERM)
    assert g.daemon.p.wait(WAIT_S) == 0
    assert not alive(child)


def frame(message) -> asyncio.StreamReader:
    data = pickle.dumps(message)
    reader = asyncio.StreamReader()
    reader.feed_data(wire.HEADER.pack(len(data)) + data)
    reader.feed_eof()
    return reader


def test_the_gate_reads_plain_data_only_from_the_api_process():
    async def check():
        call = ("call", 1, "svc", "health", (), {})
        assert await wire.receive(frame(call), plain=True) == call
        with pytest.raises(wire.WireError, match="system is not accepted"):
            await wire.receive(frame(("call", 1, "svc", "health", (os.system,), {})), plain=True)
        oversize = asyncio.StreamReader()
        oversize.feed_data(wire.HEADER.pack(wire.MAX_FRAME + 1))
        with pytest.raises(wire.WireError, match="over"):
            await wire.receive(oversize, plain=True)
        garbage = asyncio.StreamReader()
        garbage.feed_data(wire.HEADER.pack(3) + b"\x80\x05x")
        with pytest.raises(wire.WireError, match="unreadable"):
            await wire.receive(garbage, plain=True)
    asyncio.run(check())


def test_refusals_cross_to_the_api_process_whole():
    from edge.core.modes import ModeRefused
    from edge.errors import Refused
    r = pickle.loads(pickle.dumps(Refused(409, "areas", "not now", "busy")))
    assert (r.status, r.field, r.message, r.reason) == (409, "areas", "not now", "busy")
    m = pickle.loads(pickle.dumps(ModeRefused(403, "a supervisor ends a lockdown", "mode_not_yours")))
    assert (m.status, m.detail, m.code) == (403, "a supervisor ends a lockdown", "mode_not_yours")
    assert isinstance(wire.portable(ValueError(lambda: 0)), RuntimeError)  # what cannot cross is named

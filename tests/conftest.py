"""Shared fixtures: real child processes that are always reaped, and a site on disk."""
from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
import threading
import time

import pytest

from sitekit import Procs


@pytest.fixture
def procs():
    """Every process a test starts goes through this; none outlives the test, whatever happens."""
    p = Procs()
    yield p
    p.stop_all()


@pytest.fixture
def broker(tmp_path):
    """A mosquitto of the test's own (persistent sessions), stopped whatever happens."""
    from simulators.mosquitto import Broker
    b = Broker(tmp_path / "broker").start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def module_procs():
    p = Procs()
    yield p
    p.stop_all()


@pytest.fixture(autouse=True, scope="session")
def no_leftover_processes():
    """Fail loudly if a test run leaves a child of ours behind."""
    yield
    leftovers = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == os.getpid():
            leftovers.append(int(pid))
    for pid in leftovers:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue  # a zombie we never waited for is no running process
        except OSError:
            continue
        os.kill(pid, signal.SIGKILL)
        pytest.fail(f"a test left process {pid} running")


def _children() -> set[int]:
    """This process's running children (zombies not counted)."""
    out = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == os.getpid() and fields[0] != "Z":
            out.add(int(pid))
    return out


def _pending_tasks() -> list[asyncio.Task]:
    """asyncio tasks not done, of loops not closed (a module's browser keeps its own for the module)."""
    return [t for t in gc.get_objects() if isinstance(t, asyncio.Task) and not t.done() and not t.get_loop().is_closed()]


@pytest.fixture(autouse=True)
def mqtt_contract():
    """SPEC §2: every message the gate published that a test peer (tests/mqttkit.py) received conforms to
    docs/asyncapi.yaml; a violation fails the test that saw it."""
    yield
    mqttkit = sys.modules.get("mqttkit")
    if mqttkit is None:
        return  # no peer in this test run
    broken = mqttkit.contract_violations()
    if broken:
        pytest.fail(f"{len(broken)} messages out of the MQTT contract (docs/asyncapi.yaml):\n" + "\n".join(broken[:40]),
                    pytrace=False)


@pytest.fixture(autouse=True)
def no_leaks():
    """Each test leaves nothing running: no thread, no child process and no asyncio task it started. A
    thread or process on its way out is given a generous moment (a busy machine), never a fixed sleep."""
    threads, children, tasks_before = set(threading.enumerate()), _children(), set(_pending_tasks())
    yield
    # a loop that outlives the test (a module's browser) keeps its executor's threads: they are its own
    for loop in {t.get_loop() for t in tasks_before}:
        threads |= set(getattr(getattr(loop, "_default_executor", None), "_threads", ()))
    deadline = time.monotonic() + 10
    for t in set(threading.enumerate()) - threads:
        t.join(max(0.0, deadline - time.monotonic()))
    left = [t.name for t in set(threading.enumerate()) - threads if t.is_alive()]
    while (procs := _children() - children) and time.monotonic() < deadline:
        time.sleep(0.05)
    tasks = [t for t in _pending_tasks() if t not in tasks_before]
    assert not left, f"the test left threads running: {left}"
    assert not procs, f"the test left processes running: {sorted(procs)}"
    assert not tasks, f"the test left asyncio tasks pending: {tasks}"

"""Shared fixtures: real child processes that are always reaped, and a site on disk."""
from __future__ import annotations

import os
import signal

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

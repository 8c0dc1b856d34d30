"""The daemon as the shipped unit confines it: its system-call filter and descriptor limit. A call the unit
forbids kills the process with SIGSYS on a site; here it kills it in the test instead."""
from __future__ import annotations

import os
import pwd
import shutil
import signal
import tempfile
from pathlib import Path

import httpx
import pytest

from sitekit import WAIT_S, make_site
from test_api_process import alive, api_processes
from test_e2e_gate import STAFF, Gate
from unitsandbox import allowed

pytestmark = pytest.mark.e2e

USER = "nobody"  # the unit's User= is made by the package; any unprivileged account confines alike


@pytest.fixture
def site_dir():
    """The site's folder where USER can reach it (pytest's own folders are root's alone)."""
    d = Path(tempfile.mkdtemp(prefix="gk-unit-", dir="/tmp"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def hand_over(d: Path) -> None:
    """Everything of the site USER's, as the package makes /var/lib/gatekeeper the service's."""
    if os.geteuid() != 0:
        return
    user = pwd.getpwnam(USER)
    for path in [d, *d.rglob("*")]:
        os.chown(path, user.pw_uid, user.pw_gid, follow_symlinks=False)


def test_the_filter_keeps_what_the_unit_means_to_keep():
    names = allowed()
    # the hardening holds: no module loading, no clock setting, no raising of limits
    assert not {"init_module", "settimeofday", "setrlimit", "sched_setscheduler"} & names
    # and what the daemon needs passes: the API process lowers its own priority (it cannot raise it: the
    # unit grants no capability), the clock's state is read, numpy places its buffers (a camera's OpenCV),
    # the serial lines are set up by ioctl
    assert {"setpriority", "adjtimex", "mbind", "ioctl", "execve"} <= names


def test_p18_the_daemon_its_api_and_its_doors_work_under_the_units_filter(site_dir, procs):
    site = make_site(site_dir, api=True)
    assert site.import_lines([{"credential": f"badge:{STAFF}", "holder": "h-1", "category": "staff",
                               "areas": ["site"]}]).returncode == 0
    g = Gate(site, procs)
    g.start_hardware()
    token = site.token("guard")
    hand_over(site_dir)
    g.start_daemon(user=USER)
    g.daemon.wait_for("io module io1 ready", already=True)
    site.wait_api()
    client = httpx.Client(base_url=site.api_url, timeout=WAIT_S,
                          headers={"Authorization": f"Bearer {token}"})
    assert client.get("/status").status_code == 200
    # the kernel's clock state is refused under ProtectClock= (EPERM, not a kill): the daemon says what it knows
    assert client.get("/health").json()["clock"]["sync"] in ("synced", "unsynced", "unknown")
    [child] = api_processes(g.daemon.p.pid)
    assert g.scan("main-in", STAFF)[1] == "access.granted"
    g.daemon.p.send_signal(signal.SIGHUP)  # systemctl reload
    g.daemon.wait_for("SIGHUP:")
    assert client.get("/health").status_code == 200
    assert alive(child) and api_processes(g.daemon.p.pid) == [child], "the API process was not killed meanwhile"
    g.daemon.p.send_signal(signal.SIGTERM)  # systemctl stop
    assert g.daemon.p.wait(WAIT_S) == 0
    g.io.close()

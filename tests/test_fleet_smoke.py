"""The fleet benchmark keeps working at a thousand gates: site brokers bridged to a central one, every event
stored once at central through a steady load, a central outage, a site broker killed -9, gate crashes and a
consumer killed -9."""
from __future__ import annotations

import subprocess
import sys

import pytest
from sitekit import ROOT


@pytest.mark.timeout(600)  # about a minute on an idle machine; the suite's default is two
def test_spec7_fleet_quick_loses_no_event_and_keeps_retained_state():
    r = subprocess.run([sys.executable, "bench/fleet.py", "--quick"], cwd=ROOT, capture_output=True, text=True,
                       timeout=580)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = {line.split("|")[0].strip(): [c.strip() for c in line.split("|")] for line in r.stdout.splitlines()
            if line.startswith("S")}
    assert set(rows) == {"S1 steady", "S2 central down", "S3 site broker kill -9", "S5 retained after churn",
                         "S7 consumer kill -9"}, r.stdout
    for name, cells in rows.items():
        assert cells[1] == "1000" and int(cells[2]) > 0, (name, cells)  # gates, events
        assert cells[3] == cells[2] and cells[4] == "0", (name, cells)  # stored every event, none missing
    assert " restarted; 0 of 1000 status/key wrong" in r.stdout

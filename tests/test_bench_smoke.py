"""The benchmark keeps working (at a tiny size; its figures are not checked here)."""
from __future__ import annotations

import subprocess
import sys

from sitekit import ROOT


def test_decide_benchmark_prints_its_table():
    r = subprocess.run([sys.executable, "bench/decide.py", "--size", "300", "--samples", "60", "--seconds", "0.05",
                        "--pin-samples", "4"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    for row in ("badge decision", "pass decision", "decision + durable journal", "decisions + journal / s",
                "start to ready", "RSS when ready"):
        assert row in r.stdout


def test_import_benchmark_prints_its_table():
    r = subprocess.run([sys.executable, "bench/import.py", "--sizes", "3000,5000", "--samples", "60"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    for row in ("import 3,000 records", "import 5,000 records", "decision + journal during it", "cache file size",
                "badge decision", "start to ready", "RSS when ready"):
        assert row in r.stdout


def test_events_benchmark_prints_its_table():
    r = subprocess.run([sys.executable, "bench/events.py", "--backlog", "500", "--snapshot", "500", "--batch", "50",
                        "--changes", "3"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    for row in ("sustained publish rate", "drained", "0 missing at the consumer", "central change to enforced",
                "snapshot of 500 records", "decision while the snapshot applies"):
        assert row in r.stdout


def test_hardware_benchmark_prints_its_table():
    r = subprocess.run([sys.executable, "bench/hardware.py", "--scans", "3", "--frames", "2", "--shows", "2",
                        "--cards", "2"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    for row in ("QR decode 640x480", "camera frame to coil", "OSDP card to decision", "serial badge to coil, Modbus TCP",
                "RTU 9600 baud"):
        assert row in r.stdout


def test_api_benchmark_prints_its_table():
    r = subprocess.run([sys.executable, "bench/api.py", "--seconds", "2"], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    for row in ("API request", "API errors", "decision, no API load", "decision under API load",
                "badge line to decision under API load"):
        assert row in r.stdout


def test_pipeline_benchmark_prints_its_table():
    r = subprocess.run([sys.executable, "bench/pipeline.py", "--scans", "3"], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    for row in ("floor: badge line to coil", "gatekeeper: badge line to coil", "gatekeeper / floor",
                "scans delayed > 50 ms", "API requests during the scans", "API errors", "MQTT events received"):
        assert row in r.stdout

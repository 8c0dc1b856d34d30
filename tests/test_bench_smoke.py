"""The benchmark keeps working (at a tiny size; its figures are not checked here)."""
from __future__ import annotations

import subprocess
import sys

from sitekit import ROOT


def test_decide_benchmark_prints_its_table():
    r = subprocess.run([sys.executable, "bench/decide.py", "--size", "300", "--samples", "60", "--seconds", "0.05"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    for row in ("badge decision", "pass decision", "decision + durable journal", "decisions + journal / s",
                "start to ready", "RSS when ready"):
        assert row in r.stdout

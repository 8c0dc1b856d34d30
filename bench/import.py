"""The allow-list at controller scale (issue 12): `gatekeeper allowlist import` of millions of records, and the
gate with that cache.

    .venv/bin/python bench/import.py                            # 1,000,000 and 5,000,000 records (a few minutes)
    .venv/bin/python bench/import.py --sizes 20000 --samples 500   # a quick look

Prints one table: for each size, the import's wall time and peak RSS (`gatekeeper allowlist import` as its own
process, on a file in random credential order); decisions with their durable journal write made meanwhile
by a gate on the same database, as the daemon would; then, with the largest cache, its file size, the badge
decision latency, and `gatekeeper run` start-to-ready time and RSS.
"""
from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, add_staff_badge, pct, print_table, site_toml  # noqa: E402  (puts the project on sys.path)
from decide import KEY, daemon_ready, timed  # noqa: E402

from demo.procs import HeldPort  # noqa: E402
from edge.config import load_config  # noqa: E402
from edge.core.gate import Gate  # noqa: E402
from edge.passes.keyring import build_keyring  # noqa: E402
from edge.passes.keys import generate_keypair  # noqa: E402
from edge.store import Store  # noqa: E402


def badge(i: int) -> str:
    """The i-th record's badge: a multiplicative hash, so the file is in no order of the cache's."""
    return f"badge:{(i * 2654435761) % (1 << 40):010X}"


SURNAMES, GIVEN = "王李张刘陈杨黄赵吴周", "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平"


def write_file(path: Path, size: int) -> None:
    """One record a line, as the central system's export would have them, each with a display name in UTF-8;
    a tenth are visitors with a window. Holder ids are issued with the badges (their order follows the badge's)."""
    now = time.time()
    window = (',"valid_from":"%s","valid_until":"%s","host":"h-1"'
              % (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 3600)),
                 time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 86400))))
    with open(path, "w", encoding="utf-8") as f:
        for i in range(size):
            ref = badge(i)
            visitor = i % 10 == 9
            name = SURNAMES[i % 10] + GIVEN[i // 10 % 20] + GIVEN[i // 200 % 20]
            f.write('{"credential":"%s","holder":"h-%s","name":"%s","category":"%s","areas":["site"]%s}\n'
                    % (ref, ref[6:], name, "visitor" if visitor else "staff", window if visitor else ""))


def run_import(config: Path, data: Path, gate: Gate) -> tuple[float, float, list[float]]:
    """The import as its own process: wall seconds, its peak RSS (MB), and the latencies (µs) of the decisions
    with their durable journal write the gate made meanwhile, one every 20 ms."""
    t0 = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-m", "edge.cli", "--log-level", "warning", "allowlist", "import",
                          "--config", str(config), str(data)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    lat = []
    while True:
        pid, status, usage = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        t = time.perf_counter_ns()
        out = gate.present("main-in", "badge", "badge:04A1B2C3")
        lat.append((time.perf_counter_ns() - t) / 1000)
        assert out.decision.granted, out.decision.reason
        time.sleep(0.02)  # a steady trickle of scans, as at a door, not a flood
    seconds = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit(f"the import failed ({p.returncode})")
    print(p.stdout.read().strip(), file=sys.stderr)
    return seconds, usage.ru_maxrss / 1024, lat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000000,5000000", help="records per import, comma-separated")
    ap.add_argument("--samples", type=int, default=20_000, help="timed badge decisions with the largest cache")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix="gk-bench-import-") as tmp:
            d = Path(tmp)
            generate_keypair("bench-1", d)
            io, reader = HeldPort(), HeldPort()  # nothing listens: the daemon's devices are simply down
            (d / "site.toml").write_text(site_toml(io.port, reader.port, extra=KEY))
            cfg, base = load_config(d / "site.toml")
            add_staff_badge(d / "gatekeeper.db")
            t = time.perf_counter()
            write_file(d / "people.jsonl", size)
            print(f"{size:,} records written in {time.perf_counter() - t:.1f} s", file=sys.stderr)
            store = Store(d / "gatekeeper.db")
            gate = Gate(cfg, store, build_keyring(cfg, base, store))
            seconds, rss, during = run_import(d / "site.toml", d / "people.jsonl", gate)
            rows += [(f"import {size:,} records", "wall time / peak RSS", f"{seconds:.0f} s / {rss:.0f} MB",
                      "≤ 120 s / ≤ 150 MB" if size == 5_000_000 else "-"),
                     (f"decision + journal during it", f"p50 / p99 / max ({len(during)})",
                      f"{pct(during, .5):.0f} / {pct(during, .99):.0f} / {max(during):.0f} µs", "-")]
            if size != sizes[-1]:
                store.close()
                io.close()
                reader.close()
                continue
            (d / "people.jsonl").unlink()
            size_mb = sum(f.stat().st_size for f in d.glob("gatekeeper.db*")) / 1e6
            rnd = random.Random(7)
            badges = [badge(rnd.randrange(size)) for _ in range(args.samples)]
            for b in badges[:1000]:  # warm the page cache as a running gate's would be
                gate.evaluate("main-in", "badge", b)
            assert gate.evaluate("main-in", "badge", badges[0]).decision.granted
            lat = timed(lambda b: gate.evaluate("main-in", "badge", b), badges)
            store.close()
            ready_s, daemon_rss = daemon_ready(d / "site.toml")
            io.close()
            reader.close()
            rows += [("cache file size", f"{size:,} records", f"{size_mb:.0f} MB", "-"),
                     ("badge decision", "p50 / p99", f"{pct(lat, .5):.0f} / {pct(lat, .99):.0f} µs", "p99 ≤ 500 µs"),
                     ("gatekeeper run: start to ready", "with this cache", f"{ready_s:.2f} s", "≤ 1 s"),
                     ("gatekeeper run: RSS when ready", "with this cache", f"{daemon_rss:.0f} MB", "≤ 150 MB")]
    print_table(rows)


if __name__ == "__main__":
    main()

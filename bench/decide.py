"""Decision speed with a large allow-list cache (issue: gate core).

    .venv/bin/python bench/decide.py            # 1,000,000 credentials (about a minute)
    .venv/bin/python bench/decide.py --size 5000000   # the scale target (issue 12: a few minutes)
    .venv/bin/python bench/decide.py --size 2000 --samples 500   # a quick look

Prints one table: cache build time and size, RSS, decision latency for badges and passes (signature
check included, journal excluded), for badges at a door into an area with an occupancy limit (P35) and at an
interlocked door (P32), a card and its PIN at a PIN door (P34: both scrypt hashes checked, journal included), decision + durable journal commit, decisions per second on one core,
and `gatekeeper run` start-to-ready time and RSS with that cache.
"""
from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from common import ROOT, pct, print_table, site_toml  # noqa: E402  (puts the project on sys.path)

from edge.config import load_config  # noqa: E402
from edge.core.gate import Gate  # noqa: E402
from edge.hardware.interlock import Interlock  # noqa: E402
from edge.passes.keyring import build_keyring  # noqa: E402
from edge.passes import issue_pass  # noqa: E402
from edge.passes.keys import generate_keypair  # noqa: E402
from edge.store import Store  # noqa: E402
from edge.store.allowlist import upsert_sql  # noqa: E402
from edge.store.records import AllowRecord  # noqa: E402



KEY = """
[[keys]]
kid = "bench-1"
public_key_file = "bench-1.pub"
"""
# Issue 16's doors beside the plain one: a PIN door (P34), a door into an area with an occupancy limit
# (P35, its limit high enough that every timed entry is decided in full), an interlocked pair (P32).
AREAS = ('tree = ["site", "site/lobby", "site/office"]',
         'tree = ["site", "site/lobby", "site/office", "site/vault", "site/lab"]\n'
         'max_occupancy = {"site/lab" = 1000000}')
DOORS = """
[pin]
pepper_file = "pin.pepper"

[[doors]]
name = "vault"
area = "site/vault"
io = "io1"
lock_coil = 1
pin_required = true
antipassback = "off"

[[readers]]
name = "vault-in"
url = "socket://127.0.0.1:{reader_port}"
door = "vault"
direction = "in"
keypad = true

[[doors]]
name = "lab"
area = "site/lab"
io = "io1"
lock_coil = 2
antipassback = "off"

[[readers]]
name = "lab-in"
url = "socket://127.0.0.1:{reader_port}"
door = "lab"
direction = "in"

[[readers]]
name = "lab-out"
url = "socket://127.0.0.1:{reader_port}"
door = "lab"
direction = "out"

[[doors]]
name = "trap-a"
area = "site/office"
io = "io1"
lock_coil = 3
contact_input = 3
interlock = "trap"
antipassback = "off"

[[readers]]
name = "trap-a-in"
url = "socket://127.0.0.1:{reader_port}"
door = "trap-a"
direction = "in"

[[doors]]
name = "trap-b"
area = "site/office"
io = "io1"
lock_coil = 4
contact_input = 4
interlock = "trap"
antipassback = "off"
"""
PIN, DURESS = "2468", "1357"


def closed_mantrap(cfg) -> Interlock:
    """P32 as the daemon wires it, each door of the mantrap read closed and locked (no module runs here)."""
    lock = Interlock(cfg.doors)
    for name in lock.others:
        lock.busy[name] = lambda now: False
        lock.claims[name] = lambda now: None
    return lock


def badge(i: int) -> str:
    """Badge numbers spread over the 40-bit space in the order of `i`, so the cache is built by appending
    (5,000,000 rows in a minute, not an hour of page shuffling); lookups are random all the same."""
    return f"badge:{i * 219_902:010X}"


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat()


def build(store: Store, size: int) -> float:
    """`size` credentials, 50,000 per transaction: the write-ahead log stays small whatever the size."""
    now = time.time()
    cats = ("staff",) * 8 + ("visitor", "contractor")
    store.conn.execute("PRAGMA synchronous=OFF")  # the bench's own build: a crash only costs a rerun
    # one stored row per category, made by the record model (so it follows the stored columns); each
    # credential takes its own badge and holder: a model per row would cost more than the build itself
    template = {}
    for cat in set(cats):
        windowed = cat != "staff"
        template[cat] = AllowRecord(
            credential="badge:00000000", holder="h-0", category=cat, areas=["site"],
            valid_from=_iso(now - 3600) if windowed else None, valid_until=_iso(now + 86400) if windowed else None,
            host="h-1" if windowed else None).row()[2:]
    t0 = time.perf_counter()
    for start in range(0, size, 50_000):
        batch = [(badge(i), f"h-{i:08d}", *template[cats[i % 10]]) for i in range(start, min(size, start + 50_000))]
        with store.tx():
            store.conn.executemany(upsert_sql(), batch)
    store.conn.execute("PRAGMA synchronous=FULL")
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return time.perf_counter() - t0


def add_pins(store: Store, pepper: bytes, count: int) -> list[str]:
    """`count` staff badges with a PIN and a duress PIN hashed at the capped cost (P34: N = 2^13), as the
    central system sends them."""
    from edge.core.pin import make
    refs = [f"badge:FF{i:08X}" for i in range(count)]
    with store.tx():
        for ref in refs:
            store.conn.execute(upsert_sql(), AllowRecord(
                credential=ref, holder=f"p-{ref[-8:]}", category="staff", areas=["site"], pin_required=True,
                pin_hash=make(PIN, pepper), duress_hash=make(DURESS, pepper)).row())
    return refs


def card_and_pin(gate: Gate, ref: str, pin: str) -> None:
    """P34: the card waits at the PIN door, its PIN decides it (both hashes checked, the journal written)."""
    assert gate.present("vault-in", "badge", ref) is None
    assert gate.present("vault-in", "pin", pin).decision.granted


def timed(fn, items) -> list[float]:
    """Microseconds per call."""
    out = []
    for it in items:
        t0 = time.perf_counter_ns()
        fn(it)
        out.append((time.perf_counter_ns() - t0) / 1000)
    return out


def rate(fn, items, seconds: float) -> float:
    """Decisions per second, back to back, checking the clock every 100 decisions."""
    n, i, t0 = 0, 0, time.perf_counter()
    end = t0 + seconds
    while time.perf_counter() < end:
        for it in items[i:i + 100]:
            fn(it)
        n += len(items[i:i + 100])
        i = (i + 100) % len(items)
    return n / (time.perf_counter() - t0)


def rss_mb(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def daemon_ready(config: Path) -> tuple[float, float]:
    """Seconds from spawning `gatekeeper run` to its ready line, and its RSS then."""
    t0 = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-m", "edge.cli", "--log-level", "error", "run", "--config", str(config)],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        for line in p.stdout:
            if line.startswith("gatekeeper ready"):
                ready = time.perf_counter() - t0
                return ready, rss_mb(p.pid)
        raise SystemExit("the daemon exited before it was ready")
    finally:
        p.terminate()
        p.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=1_000_000, help="credentials in the cache")
    ap.add_argument("--samples", type=int, default=20_000, help="timed decisions per measurement")
    ap.add_argument("--seconds", type=float, default=2.0, help="length of each throughput run")
    ap.add_argument("--pin-samples", type=int, default=100, help="timed card + PIN decisions (about 70 ms each)")
    ap.add_argument("--calendar", metavar="FILE", help="a site calendar (P24) for visiting hours, e.g. "
                                                        "config/calendars/cn-2026-2027.toml")
    args = ap.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as the targets say

    with tempfile.TemporaryDirectory(prefix="gk-bench-") as tmp:
        d = Path(tmp)
        private = generate_keypair("bench-1", d)
        from demo.procs import HeldPort
        # no I/O module and no reader run here: their ports are held, not listened on, so the daemon's
        # connections are refused at once (as by a device that is off) and no other program answers them
        io, reader = HeldPort(), HeldPort()
        cal = f'\n[calendars.site]\nfile = "{Path(args.calendar).resolve()}"\n' if args.calendar else ""
        pepper = os.urandom(32)
        (d / "pin.pepper").write_bytes(pepper)
        text = site_toml(io.port, reader.port, extra=KEY + cal + DOORS.format(reader_port=reader.port))
        (d / "site.toml").write_text(text.replace(*AREAS))
        cfg, base = load_config(d / "site.toml")
        store = Store(d / "gatekeeper.db")
        build_s = build(store, args.size)
        pinned = add_pins(store, pepper, args.pin_samples)
        size_mb = sum(f.stat().st_size for f in d.glob("gatekeeper.db*")) / 1e6
        gate = Gate(cfg, store, build_keyring(cfg, base, store))
        gate.pin_pepper = pepper
        mantrap = closed_mantrap(cfg)
        gate.interlock, gate.interlock_claim = mantrap.blocking, mantrap.claim

        rnd = random.Random(7)
        badges = [badge(rnd.randrange(args.size)) for _ in range(args.samples)]
        now = time.time()
        passes = [issue_pass(private, "bench-1", holder=f"v-{i}", category="visitor", areas=["site/lobby"],
                             valid_from=now - 60, valid_until=now + 3600, host="h-1")
                  for i in range(min(args.samples, 5000))]
        for b in badges[:1000]:  # warm the page cache as a running gate's would be
            gate.evaluate("main-in", "badge", b)

        results = []
        b_lat = timed(lambda b: gate.evaluate("main-in", "badge", b), badges)
        assert gate.evaluate("main-in", "badge", badges[0]).decision.granted
        p_lat = timed(lambda p: gate.evaluate("main-in", "pass", p), passes)
        assert gate.evaluate("main-in", "pass", passes[0]).decision.granted
        lab_lat = timed(lambda b: gate.evaluate("lab-in", "badge", b), badges)  # P35: the count looked at
        assert gate.evaluate("lab-in", "badge", badges[0]).decision.granted
        trap_lat = timed(lambda b: gate.evaluate("trap-a-in", "badge", b), badges)  # P32: the group looked at
        assert gate.evaluate("trap-a-in", "badge", badges[0]).decision.granted
        pin_lat = timed(lambda r: card_and_pin(gate, r, PIN), pinned[: len(pinned) // 2])
        pin_lat += timed(lambda r: card_and_pin(gate, r, DURESS), pinned[len(pinned) // 2:])
        j_lat = timed(lambda b: gate.present("main-in", "badge", b), badges[: min(len(badges), 5000)])
        b_rate = rate(lambda b: gate.evaluate("main-in", "badge", b), badges, args.seconds)
        p_rate = rate(lambda p: gate.evaluate("main-in", "pass", p), passes, args.seconds)
        j_rate = rate(lambda b: gate.present("main-in", "badge", b), badges, args.seconds)
        bench_rss = rss_mb()
        store.close()
        ready_s, daemon_rss = daemon_ready(d / "site.toml")
        io.close()
        reader.close()

        results = [
            ("cache build", f"{args.size:,} credentials", f"{build_s:.1f} s", "-"),
            ("cache file size", "", f"{size_mb:.0f} MB", "-"),
            ("badge decision", "p50 / p99", f"{pct(b_lat, .5):.0f} / {pct(b_lat, .99):.0f} µs", "p99 ≤ 500 µs"),
            ("pass decision (verify incl.)", "p50 / p99", f"{pct(p_lat, .5):.0f} / {pct(p_lat, .99):.0f} µs",
             "p99 ≤ 1000 µs"),
            ("badge at a limited area (P35)", "p50 / p99", f"{pct(lab_lat, .5):.0f} / {pct(lab_lat, .99):.0f} µs",
             "p99 as a plain door's"),
            ("badge at an interlocked door (P32)", "p50 / p99",
             f"{pct(trap_lat, .5):.0f} / {pct(trap_lat, .99):.0f} µs", "p99 as a plain door's"),
            ("card + PIN (P34, duress incl.)", "p50 / p99, journal incl.",
             f"{pct(pin_lat, .5) / 1000:.1f} / {pct(pin_lat, .99) / 1000:.1f} ms", "p99 ≤ 100 ms"),
            ("decision + durable journal", "p50 / p99", f"{pct(j_lat, .5):.0f} / {pct(j_lat, .99):.0f} µs",
             "p99 ≤ 2000 µs"),
            ("badge decisions / s", "one core", f"{b_rate:,.0f}", "≥ 10,000"),
            ("pass decisions / s", "one core", f"{p_rate:,.0f}", "≥ 5,000"),
            ("decisions + journal / s", "one core", f"{j_rate:,.0f}", "≥ 2,000"),
            ("bench process RSS", "after all runs", f"{bench_rss:.0f} MB", "-"),
            ("gatekeeper run: start to ready", "with this cache", f"{ready_s:.2f} s", "≤ 1 s"),
            ("gatekeeper run: RSS when ready", "with this cache", f"{daemon_rss:.0f} MB", "≤ 150 MB"),
        ]
    print_table(results)

if __name__ == "__main__":
    main()

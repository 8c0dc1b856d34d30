"""The local API under load beside the gate's decisions (issue: local API).

    .venv/bin/python bench/api.py                     # 20 s a phase, 200 requests/s, 50 scans/s
    .venv/bin/python bench/api.py --seconds 5 --rate 400

Prints one table: API latency p50/p99 at a fixed request rate (open loop: a request every 1/rate s whether
or not the last one answered, over /status, /events, /occupancy, /metrics and /health), while a serial reader
presents a badge at a fixed rate; and the decision time of those scans with and without that API load. The
decision time is the gate's own `decision_us` (lookup and policy, before the journal write), read back from
the journal through the API, with the `gatekeeper_decision_seconds` histogram (decision plus journal write)
beside it, and the badge line to the decision's journal time (what a scan waits for an event loop busy with
the API). The daemon, the reader and the I/O module are separate processes; the bench is the serial reader
and the API client.
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

from common import (  # noqa: E402  (puts the project on sys.path)
    ROOT, add_staff_badge, guard_token, pct, print_table, site_toml)

import httpx  # noqa: E402

from demo.procs import listen_port  # noqa: E402

API = """
[api]
port = 0
"""
WAIT_S = 60.0  # the limit of every wait for an event: a slow start on a busy machine is not a failure

BADGE = b"04A1B2C3\r\n"
PATHS = ("/status", "/events?limit=50", "/occupancy", "/metrics", "/health")


def drain(stream) -> None:
    # door_io reports every lock transition; an unread pipe would fill and stall the module mid-run
    for _ in stream:
        pass


def api_base(daemon: subprocess.Popen, log: Path) -> str:
    """The API's address, from the daemon's `gatekeeper api on http://HOST:PORT` (the config asks for port 0);
    the rest of its output is read on a thread so the pipe never fills."""
    for line in daemon.stdout:
        if line.startswith("gatekeeper api on"):
            threading.Thread(target=drain, args=(daemon.stdout,), daemon=True).start()
            return f"http://127.0.0.1:{listen_port(line)}"
    sys.exit(f"gatekeeper exited with {daemon.wait()} before its API listened:\n{log.read_text()[-3000:]}")


def wait_healthy(base: str, daemon: subprocess.Popen, log: Path, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            sys.exit(f"gatekeeper exited with {daemon.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(base + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    sys.exit(f"gatekeeper's API did not answer /health in {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def journal_after(client: httpx.Client, seq: int) -> tuple[list[dict], int]:
    """Every journal envelope after `seq`, and the last seq seen."""
    out = []
    while True:
        page = client.get("/events", params={"after_seq": seq, "limit": 1000})
        page.raise_for_status()
        batch = page.json()
        if not batch:
            return out, seq
        out += batch
        seq = batch[-1]["seq"]


def wait_grants(client: httpx.Client, seq: int, n: int, timeout: float = WAIT_S) -> tuple[list[dict], int]:
    """The journal after `seq` once it holds `n` grants (or when `timeout` is up: a dropped scan shows as fewer)."""
    out, deadline = [], time.monotonic() + timeout
    while True:
        got, seq = journal_after(client, seq)
        out += got
        if len(grants(out)) >= n or time.monotonic() > deadline:
            return out, seq
        time.sleep(0.05)  # polling the journal through the API: the next look, not a guess at how long


def grants(envelopes: list[dict]) -> list[dict]:
    return [e for e in envelopes if e["type"] == "access.granted"]


def decision_ms(envelopes: list[dict]) -> list[float]:
    return [e["data"]["decision_us"] / 1000 for e in grants(envelopes)]


def line_to_decision_ms(sent: list[float], envelopes: list[dict]) -> list[float]:
    """Each scan's send time to its grant's journal time, taken as the decision starts. `decision_us` cannot see a
    scan waiting for an event loop busy with API requests; this can. The journal keeps whole milliseconds, so
    each figure is an upper bound, up to 1 ms over (the steady pacing holds that error nearly constant within a
    phase, so halving it would not average out). Scans and grants pair in order, so a dropped scan voids the
    lot."""
    g = grants(envelopes)
    if len(g) != len(sent):
        return []
    at = [datetime.strptime(e["time"], "%Y-%m-%dT%H:%M:%S.%f%z").timestamp() for e in g]
    return [(a - s) * 1000 + 1 for s, a in zip(sent, at)]


def histogram(client: httpx.Client) -> dict[float, int]:
    """The cumulative `gatekeeper_decision_seconds` buckets, by upper bound in seconds."""
    from prometheus_client.parser import text_string_to_metric_families
    return {float(s.labels["le"]): int(s.value) for fam in text_string_to_metric_families(client.get("/metrics").text)
            for s in fam.samples if s.name == "gatekeeper_decision_seconds_bucket"}


def bucket_p99(before: dict[float, int], after: dict[float, int]) -> str:
    """The bucket bound under which 99% of the decisions between two scrapes fell (Prometheus can say no more),
    and how many of them went over the 2 ms the histogram's buckets are drawn around."""
    bounds = sorted(after)
    total = after[float("inf")] - before.get(float("inf"), 0)
    if not total:
        return "no decisions"
    over = total - (after[0.002] - before.get(0.002, 0))
    for le in bounds:
        if after[le] - before.get(le, 0) >= 0.99 * total:
            p99 = f"≤ {le * 1000:g} ms" if le != float("inf") else f"> {bounds[-2] * 1000:g} ms"
            return f"{p99}, {over} of {total} > 2 ms"


def scan(conn: socket.socket, per_s: float, stop: threading.Event, sent: list[float]) -> None:
    # paced against an absolute schedule so a late wake-up does not shift every later scan
    period, t = 1 / per_s, time.monotonic()
    while not stop.is_set():
        sent.append(time.time())  # wall clock: what the journal's times are in
        conn.sendall(BADGE)
        t += period
        delay = t - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def scans_for(conn: socket.socket, per_s: float, seconds: float) -> list[float]:
    stop, sent = threading.Event(), []
    th = threading.Thread(target=scan, args=(conn, per_s, stop, sent), daemon=True)
    th.start()
    time.sleep(seconds)
    stop.set()
    th.join()
    return sent


async def api_load(base: str, token: str, rate: float, seconds: float) -> tuple[list[float], int]:
    """Open loop: latency counts from each request's scheduled time, so a slow answer cannot hide the ones queued
    behind it (coordinated omission)."""
    lat: list[float] = []
    errors = 0

    async def one(client: httpx.AsyncClient, path: str, at: float) -> None:
        nonlocal errors
        try:
            r = await client.get(path)
            ok = r.status_code == 200
        except httpx.HTTPError:
            ok = False
        lat.append((time.perf_counter() - at) * 1000)
        errors += not ok

    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30,
                                 limits=limits) as client:
        tasks = []
        start = time.perf_counter()
        n = int(rate * seconds)
        for i, path in zip(range(n), itertools.cycle(PATHS)):
            at = start + i / rate
            delay = at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(client, path, at)))
        await asyncio.gather(*tasks)
    return lat, errors


def run(seconds: float, rate: float, per_s: float) -> list[tuple[str, str, str, str]]:
    with tempfile.TemporaryDirectory(prefix="gk-bench-") as tmp:
        d = Path(tmp)
        config = d / "site.toml"
        # the bench is the serial reader: it owns the socket the daemon dials, on a port it bound (0)
        srv = socket.create_server(("127.0.0.1", 0))
        srv.settimeout(WAIT_S)
        log = d / "daemon.log"
        procs: list[subprocess.Popen] = []
        try:
            io = subprocess.Popen([sys.executable, "-m", "simulators.door_io", "--port", "0", "--door",
                                   "main:lock=0"], cwd=ROOT, stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True)
            procs.append(io)
            io_port = listen_port(io.stdout.readline())  # `door_io listening on HOST:PORT`
            threading.Thread(target=drain, args=(io.stdout,), daemon=True).start()
            config.write_text(site_toml(io_port, srv.getsockname()[1], pulse_s=0.05, extra=API))
            add_staff_badge(d / "gatekeeper.db")
            token = guard_token(config)
            with open(log, "w") as err:
                daemon = subprocess.Popen([sys.executable, "-m", "edge.cli", "--log-level", "error", "run", "--config",
                                           str(config)], cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True)
            procs.append(daemon)
            base = api_base(daemon, log)
            wait_healthy(base, daemon, log)
            conn, _ = srv.accept()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
                # the first grant proves the line and the I/O module are up; the measurement starts after it
                seq = 0
                deadline = time.monotonic() + WAIT_S
                while True:
                    conn.sendall(BADGE)  # again if none is granted: one sent while the line opened is lost
                    got, seq = wait_grants(client, seq, 1, 5.0)
                    if decision_ms(got):
                        break
                    if time.monotonic() > deadline:
                        sys.exit(f"no grant within {WAIT_S:.0f} s of the first scan:\n{log.read_text()[-3000:]}")

                h0 = histogram(client)
                sent = scans_for(conn, per_s, seconds)
                got, seq = wait_grants(client, seq, len(sent))  # the last scans reach the journal
                quiet, quiet_line = decision_ms(got), line_to_decision_ms(sent, got)
                h1 = histogram(client)

                stop, sent = threading.Event(), []
                th = threading.Thread(target=scan, args=(conn, per_s, stop, sent), daemon=True)
                th.start()
                try:
                    api_lat, errors = asyncio.run(api_load(base, token, rate, seconds))
                finally:
                    stop.set()
                    th.join()
                got, seq = wait_grants(client, seq, len(sent))
                loaded, loaded_line = decision_ms(got), line_to_decision_ms(sent, got)
                h2 = histogram(client)
            conn.close()
        finally:
            for p in reversed(procs):
                p.terminate()
            for p in reversed(procs):
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            srv.close()

    def ms(v: list[float]) -> str:
        return f"{pct(v, .5):.2f} / {pct(v, .99):.2f} ms" if v else "none"

    return [
        ("API request", f"p50 / p99 at {rate:g}/s", ms(api_lat), "p99 ≤ 50 ms"),
        ("API errors", f"non-200 of {len(api_lat)}", str(errors), "0"),
        ("decision, no API load", f"p50 / p99 of {len(quiet)}", ms(quiet), "-"),
        ("decision under API load", f"p50 / p99 of {len(loaded)}", ms(loaded), "p99 ≤ 2 ms"),
        ("decision + journal, no API load", "histogram p99", bucket_p99(h0, h1), "-"),
        ("decision + journal under API load", "histogram p99", bucket_p99(h1, h2), "-"),
        ("badge line to decision, no API load", f"p50 / p99 of {len(quiet_line)}, ≤", ms(quiet_line), "-"),
        ("badge line to decision under API load", f"p50 / p99 of {len(loaded_line)}, ≤", ms(loaded_line), "-"),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=20, help="length of each phase")
    ap.add_argument("--rate", type=float, default=200, help="API requests per second in the loaded phase")
    ap.add_argument("--scans-per-s", type=float, default=50, help="badge scans per second in both phases")
    args = ap.parse_args()
    print_table(run(args.seconds, args.rate, args.scans_per_s))


if __name__ == "__main__":
    main()

"""The central link under load, against mosquitto on loopback (issue: central link).

    .venv/bin/python bench/events.py                  # 1,000,000 events and records (a few minutes)
    .venv/bin/python bench/events.py --backlog 20000 --snapshot 20000 --batch 2000   # a quick look

Prints one table: sustained publish rate, time to drain a backlog of events after an outage, time to
apply a snapshot and a change batch, central-change to enforced-at-gate latency, and the decision
latency while a snapshot applies. The gate runs as `gatekeeper run`, the broker as a mosquitto process.
"""
from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import ROOT, mqtt_peer, pct, print_table, site_toml  # noqa: E402  (puts the project on sys.path)

from demo.procs import HeldPort, listen_port  # noqa: E402
from edge.store import Store  # noqa: E402
from edge.store.journal import Journal  # noqa: E402
from simulators.mosquitto import Broker  # noqa: E402

MQTT = """
[mqtt]
port = {broker_port}
"""
WAIT_S = 60.0  # the limit of a wait for an event: a slow start on a busy machine is not a failure



def compact(i: int) -> dict:
    """A record with its defaults left out: 10,000 of them fit one 1 MiB message."""
    return {"credential": f"badge:{(i * 2654435761) % (1 << 40):010X}", "holder": f"h-{i}", "category": "staff",
            "areas": ["site"]}


def record(i: int) -> dict:
    return {"credential": f"badge:{(i * 2654435761) % (1 << 40):010X}", "holder": f"h-{i}", "category": "staff",
            "tier": None, "roles": [], "areas": ["site"], "valid_from": None, "valid_until": None, "schedule": None,
            "party": 1, "host": None, "escort": False, "id_hash": None}


class Central:
    """The bench's MQTT peer: counts the gate's events and publishes allow-list changes."""

    def __init__(self, port: int):
        self.seqs: set[int] = set()
        self.received = 0
        self.first_at: float | None = None
        self.marks: list[tuple[float, int]] = []
        self.lock = threading.Lock()
        self.c = mqtt_peer(port, "acs/bench/none", self._on_message, "bench-central", WAIT_S, clean_session=False)

    def _on_message(self, c, u, msg) -> None:
        body = msg.payload
        i = body.find(b'"seq":')
        seq = int(body[i + 6:body.find(b",", i)])
        with self.lock:
            now = time.perf_counter()
            if self.first_at is None:
                self.first_at = now
            self.received += 1
            self.seqs.add(seq)
            if self.received % 10_000 == 0:
                self.marks.append((now, self.received))

    def publish(self, topic: str, body: bytes | str) -> None:
        self.c.publish(topic, body, qos=1).wait_for_publish(60)


class Consumer:
    """mosquitto_sub, QoS 1, one payload a line into a file; seqs are read from it incrementally."""

    def __init__(self, port: int, out: Path):
        self.out = out
        self.f = open(out, "wb")
        self.p = subprocess.Popen(["mosquitto_sub", "-p", str(port), "-q", "1", "-t", "acs/bench/+/events/#",
                                   "-i", "bench-consumer", "-F", "%p"], stdout=self.f)
        self._seen: set[int] = set()
        self._pos = 0

    def wait_subscribed(self, central: "Central") -> None:
        """Until a probe published on the consumer's topics is in its file: then it is subscribed, before the
        gate starts publishing (mosquitto_sub says nothing when its subscription is acknowledged). A probe sent
        before that is lost, so one is sent again each second."""
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            central.publish("acs/bench/probe/events/probe", b"probe")  # no "seq": not counted as an event
            look_until = min(deadline, time.monotonic() + 1.0)  # QoS 1 on loopback: milliseconds
            while time.monotonic() < look_until:
                if b"probe" in self.out.read_bytes():
                    return
                time.sleep(0.01)
        raise SystemExit(f"mosquitto_sub was not subscribed within {WAIT_S:.0f} s")

    def seqs(self) -> set[int]:
        with open(self.out, "rb") as f:
            f.seek(self._pos)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self._pos += end
        for line in data[:end].splitlines():
            i = line.find(b'"seq":')
            if i >= 0:
                self._seen.add(int(line[i + 6:line.find(b",", i)]))
        return self._seen

    def stop(self) -> None:
        self.p.terminate()
        self.p.wait(10)
        self.f.close()


def meta_int(db: Path, key: str) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return int(row[0]) if row else 0
    finally:
        conn.close()


def outbox_acked(db: Path) -> int:
    return meta_int(db, "outbox_acked")


def version(db: Path) -> int:
    return meta_int(db, "allowlist_version")


def wait_version(db: Path, v: int, timeout: float = 600) -> float:
    t0 = time.perf_counter()
    while version(db) < v:
        if time.perf_counter() - t0 > timeout:
            raise SystemExit(f"version {v} not reached in {timeout} s")
        time.sleep(0.001)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backlog", type=int, default=1_000_000, help="events journaled while the broker is away")
    ap.add_argument("--snapshot", type=int, default=1_000_000, help="records in the snapshot")
    ap.add_argument("--batch", type=int, default=10_000, help="changes in one batch")
    ap.add_argument("--changes", type=int, default=200, help="single changes timed for change-to-enforced")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="gk-bench-") as tmp:
        d = Path(tmp)
        broker = Broker(d / "broker", persistence=False).start()
        nobody = HeldPort()  # the site's I/O module is not there: refused, never another program's port
        db = d / "gatekeeper.db"
        # 1. an outage's backlog: events journaled while no broker was reachable
        store = Store(db, durable=False)
        j = Journal(store)
        t0 = time.perf_counter()
        with store.tx():
            for i in range(args.backlog):
                j.append("access.denied", {"door": "main", "direction": "in", "reason": "unknown_credential",
                                           "credential_ref": f"badge:{i:08X}", "decision_us": 20})
        store.close()
        print(f"(journaled a backlog of {args.backlog:,} events in {time.perf_counter() - t0:.0f} s)", flush=True)

        central = Central(broker.port)
        consumer = Consumer(broker.port, d / "events.out")
        consumer.wait_subscribed(central)
        reader = subprocess.Popen([sys.executable, "-m", "simulators.badge_reader", "--listen", "127.0.0.1:0"],
                                  cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        reader_port = listen_port(reader.stdout.readline())  # `badge_reader listening on HOST:PORT`
        threading.Thread(target=lambda: [None for _ in reader.stdout], daemon=True).start()  # a line per scan
        (d / "site.toml").write_text(site_toml(nobody.port, reader_port, extra=MQTT.format(broker_port=broker.port)))
        daemon = subprocess.Popen([sys.executable, "-m", "edge.cli", "--log-level", "error", "run", "--config",
                                   str(d / "site.toml")], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  text=True)
        try:
            for line in daemon.stdout:
                if line.startswith("gatekeeper ready"):
                    break
            t_ready = time.perf_counter()
            # The gate's rate is what reached a consumer through the broker (mosquitto_sub, written in C, so
            # the consumer is not the bottleneck), which also proves nothing was lost. The outbox watermark
            # in the database is a restart hint written at most once a second: it only has to catch up.
            want = set(range(1, args.backlog + 1))
            acked_marks = []
            while True:
                have = len(want & consumer.seqs())
                acked_marks.append((time.perf_counter(), have))
                if have >= args.backlog:
                    break
                if time.perf_counter() - t_ready > 900:
                    raise SystemExit(f"backlog not delivered: {args.backlog - have} missing")
                time.sleep(0.25)
            delivered = time.perf_counter() - t_ready
            while outbox_acked(db) < args.backlog:
                if time.perf_counter() - t_ready > 900:
                    raise SystemExit(f"backlog not acknowledged: {outbox_acked(db)} of {args.backlog}")
                time.sleep(0.1)
            to_broker = time.perf_counter() - t_ready
            gaps = len(want - consumer.seqs())
            a = next(m for m in acked_marks if m[1] >= args.backlog // 10)
            b = acked_marks[-1]
            sustained = (b[1] - a[1]) / (b[0] - a[0]) if b[0] > a[0] else args.backlog / to_broker
            rows.append(("sustained publish rate", "QoS 1, at the consumer", f"{sustained:,.0f} events/s", "≥ 8,000/s"))
            rows.append((f"backlog of {args.backlog:,} drained", "acked, and the watermark saved", f"{to_broker:.1f} s",
                         "≤ 180 s"))
            rows.append((f"backlog of {args.backlog:,} delivered", f"{gaps} missing at the consumer",
                         f"{delivered:.1f} s", "zero loss"))
            print("(" + "; ".join(" ".join(r[:3]) for r in rows) + ")", flush=True)

            # 2. one batch of many changes
            v = 0
            recs = [compact(i) for i in range(args.batch)]
            body = json.dumps({"from_version": v, "to_version": v + 1, "upserts": recs}, separators=(",", ":"))
            t0 = time.perf_counter()
            central.publish("acs/bench/allowlist/changes", body)
            wait_version(db, v + 1)
            took = time.perf_counter() - t0  # from the publish, so the broker's part is included
            v += 1
            rows.append((f"change batch of {args.batch:,}", f"{len(body) / 1e6:.1f} MB", f"{took:.2f} s", "-"))

            # 3. change to enforced, one change at a time
            lat = []
            for i in range(args.changes):
                body = json.dumps({"from_version": v, "to_version": v + 1, "upserts": [record(10_000_000 + i)]})
                t0 = time.perf_counter()
                central.c.publish("acs/bench/allowlist/changes", body, qos=1)
                wait_version(db, v + 1, 30)
                lat.append((time.perf_counter() - t0) * 1000)
                v += 1
            rows.append(("central change to enforced", "p50 / p99", f"{pct(lat, .5):.1f} / {pct(lat, .99):.1f} ms",
                         "p99 ≤ 1000 ms"))

            # 4. a snapshot of many records while scans go on at 50/s
            stop = threading.Event()

            def scans():
                i = 0
                while not stop.is_set():
                    reader.stdin.write(f"{(i * 2654435761) % (1 << 40):010X}\n")
                    reader.stdin.flush()
                    i += 1
                    time.sleep(0.02)

            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            seq_before = conn.execute("SELECT max(seq) FROM journal").fetchone()[0]
            chunks, cur, size = [], [], 0
            for i in range(args.snapshot):
                r = json.dumps(record(i))
                if size + len(r) > 900_000 and cur:
                    chunks.append(cur)
                    cur, size = [], 0
                cur.append(r)
                size += len(r) + 1
            chunks.append(cur)
            bodies = [f'{{"version":{v + 1000},"chunk":{k},"chunks":{len(chunks)},"upserts":[{",".join(c)}],'
                      f'"revoke":[],"blocklist":[],"keys":[]}}' for k, c in enumerate(chunks)]
            scanner = threading.Thread(target=scans, daemon=True)
            scanner.start()
            deadline = time.monotonic() + WAIT_S
            while not conn.execute("SELECT 1 FROM journal WHERE seq > ? AND type LIKE 'access.%'",
                                   (seq_before,)).fetchone():  # scans under way before the snapshot
                if time.monotonic() > deadline:
                    raise SystemExit(f"no scan decided within {WAIT_S:.0f} s")
                time.sleep(0.01)
            t0 = time.perf_counter()
            for body in bodies:
                central.c.publish("acs/bench/gate-1/allowlist/snapshot", body, qos=1)
            took = wait_version(db, v + 1000, 900)
            time.sleep(1)
            stop.set()
            during = [json.loads(x)["decision_us"] / 1000 for (x,) in conn.execute(
                "SELECT data FROM journal WHERE seq > ? AND type LIKE 'access.%'", (seq_before,))]
            n = conn.execute("SELECT count(*) FROM credentials").fetchone()[0]
            conn.close()
            rows.append((f"snapshot of {args.snapshot:,} records", f"{len(chunks)} chunks, {n:,} applied",
                         f"{took:.1f} s", "≤ 60 s"))
            rows.append(("decision while the snapshot applies", f"p50 / p99 of {len(during)}",
                         f"{pct(during, .5):.2f} / {pct(during, .99):.2f} ms" if during else "no scans", "p99 ≤ 5 ms"))
        finally:
            daemon.terminate()
            reader.terminate()
            daemon.wait(30)
            reader.wait(10)
            central.c.disconnect()
            central.c.loop_stop()
            consumer.stop()
            broker.stop()
            nobody.close()
    print_table(rows)

if __name__ == "__main__":
    main()

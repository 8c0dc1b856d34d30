"""What the benchmarks share: a one-door site, percentiles and the printed table."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SITE = """
[site]
id = "bench"
gate = "gate-1"
timezone = "Asia/Shanghai"
[areas]
tree = ["site", "site/lobby", "site/office"]
[schedules.visiting_hours]
start = "00:00"
end = "24:00"
[storage]
path = "gatekeeper.db"
[[io_modules]]
name = "io1"
port = {io_port}
[[doors]]
name = "main"
area = "site/lobby"
perimeter = true
io = "io1"
lock_coil = 0
pulse_s = {pulse_s}
antipassback = "off"
[[readers]]
name = "main-in"
url = "socket://127.0.0.1:{reader_port}"
door = "main"
direction = "in"
"""


def add_staff_badge(db: Path) -> None:
    """The badge every benchmark scans: staff, all areas, no bounds (anti-passback is off at the door)."""
    from edge.store import Store
    from edge.store.allowlist import upsert_sql
    from edge.store.records import AllowRecord
    store = Store(db)
    with store.tx():
        store.conn.execute(upsert_sql(), AllowRecord(credential="badge:04A1B2C3", holder="h-1", category="staff",
                                                     areas=["site"]).row())
    store.close()


def guard_token(config: Path) -> str:
    """A guard's API token for the site, made as an operator would (`gatekeeper tokens add`)."""
    r = subprocess.run([sys.executable, "-m", "edge.cli", "tokens", "add", "--config", str(config), "--person", "bench",
                        "--role", "guard"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    return r.stdout.strip().splitlines()[-1]


def site_toml(io_port: int, reader_port: int, *, pulse_s: float = 3, extra: str = "") -> str:
    """The benchmark site: one perimeter door with one reader, anti-passback off so a badge repeats."""
    return SITE.format(io_port=io_port, reader_port=reader_port, pulse_s=pulse_s) + extra


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def print_table(rows: list[tuple[str, str, str, str]]) -> None:
    head = ("measure", "", "result", "target")
    w = [max(len(r[i]) for r in rows + [head]) for i in range(4)]
    print(" | ".join(h.ljust(w[i]) for i, h in enumerate(head)))
    print("-+-".join("-" * x for x in w))
    for r in rows:
        print(" | ".join(c.ljust(w[i]) for i, c in enumerate(r)))


def mqtt_peer(port: int, topic: str, on_message, client_id: str, wait_s: float = 60.0, **client_kw):
    """A paho client on the local broker, subscribed to `topic` (QoS 1) before this returns."""
    import threading

    import paho.mqtt.client as mqtt
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, **client_kw)
    c.max_inflight_messages_set(1000)
    subscribed = threading.Event()
    c.on_connect = lambda c, u, f, r, p: c.subscribe(topic, 1)
    c.on_subscribe = lambda *a: subscribed.set()
    c.on_message = on_message
    c.connect("127.0.0.1", port)
    c.loop_start()
    if not subscribed.wait(wait_s):
        c.loop_stop()
        raise SystemExit(f"the bench's MQTT client was not subscribed to {topic} within {wait_s:.0f} s")
    return c

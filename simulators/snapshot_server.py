"""The central system's answer to a fleet's resyncs (SPEC §2 Sync rules), for the resync-storm benchmark.

    python -m simulators.snapshot_server --broker 127.0.0.1:1883 --records 5000 --chunk-records 2500

Subscribes `acs/+/+/allowlist/resync` on the central broker and answers each with the whole allow-list at
one version, in chunks on `acs/{site}/{gate}/allowlist/snapshot`. The allow-list is made up (staff badges)
and encoded once: ten thousand gates asking at once cost the broker and the network, not this process.
Prints `snapshots ready` once subscribed; stdin `stats` answers `snapshots {"requests":N,"chunks":M,
"bytes":B}`; `quit` ends it. It imports nothing from `edge`.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections import deque

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from simulators.mqtt5 import Client  # noqa: E402

MAX_CHUNK = 1 << 20  # SPEC §2: each chunk ≤ 1 MiB


def chunks(records: int, per_chunk: int, version: int) -> list[bytes]:
    recs = [{"credential": f"badge:{i:08X}", "holder": f"h-{i}", "category": "staff", "tier": None,
             "roles": [], "areas": ["site/office"], "valid_from": None, "valid_until": None, "schedule": None,
             "party": 1, "host": None, "escort": False, "id_hash": None, "name": f"Holder {i}"}
            for i in range(records)]
    parts = [recs[i:i + per_chunk] for i in range(0, records, per_chunk)] or [[]]
    out = []
    for n, part in enumerate(parts):
        body = json.dumps({"version": version, "chunk": n, "chunks": len(parts), "upserts": part, "revoke": [],
                           "blocklist": [], "keys": [], "calendar": []}, separators=(",", ":")).encode()
        if len(body) > MAX_CHUNK:
            raise SystemExit(f"a chunk of {per_chunk} records is {len(body)} bytes, above 1 MiB: use fewer per chunk")
        out.append(body)
    return out


async def run(args) -> None:
    payloads = chunks(args.records, args.chunk_records, args.version)
    stats = {"requests": 0, "chunks": 0, "bytes": 0}
    host, _, port = args.broker.rpartition(":")

    queue: deque = deque()

    def pump(_code=None):
        # no more in flight than the broker's receive maximum (MQTT 5 §4.9): beyond it the broker disconnects
        while queue and c.connected and c.inflight < min(c.server_receive_max, 50):
            topic, body = queue.popleft()
            c.publish(topic, body, on_ack=pump)
            stats["chunks"] += 1
            stats["bytes"] += len(body)

    def on_message(client, topic, payload, _pid):
        gate = topic[:-len("/allowlist/resync")]
        stats["requests"] += 1
        queue.extend((f"{gate}/allowlist/snapshot", body) for body in payloads)
        pump()

    c = Client("central-snapshots", keepalive=30, on_message=on_message)
    await c.connect(host, int(port))
    await c.subscribe([("acs/+/+/allowlist/resync", 1, 0)])
    print(f"snapshots ready {sum(map(len, payloads))} bytes in {len(payloads)} chunks", flush=True)
    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = (await reader.readline()).decode().strip()
        if not line or line == "quit":
            break
        if line == "stats":
            print("snapshots " + json.dumps(stats), flush=True)
        else:
            print(f"snapshots error: unknown command {line!r} (stats | quit)", flush=True)
    c.disconnect()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--broker", required=True, help="HOST:PORT of the central broker")
    p.add_argument("--records", type=int, default=5000)
    p.add_argument("--chunk-records", type=int, default=2500, help="records per chunk (each chunk ≤ 1 MiB)")
    p.add_argument("--version", type=int, default=1)
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()

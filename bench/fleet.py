"""From one gate to ten thousand (SPEC §7): site brokers bridged to a central one, thousands of gate links, a
central consumer; completeness, latency and the brokers' memory and CPU per scenario.

    .venv/bin/python bench/fleet.py                 # S1 to S8 at 100 sites x 100 gates, 2,000 events/s
    .venv/bin/python bench/fleet.py --quick         # 10 x 100 gates, short phases: a smoke test under two minutes
    .venv/bin/python bench/fleet.py --scenarios S1 --sites 20 --gates 50 --rate 500 --seconds 30

Every broker is a real mosquitto (Debian's 2.0.11) with its own port and directory: one per site, each
bridged to the central broker with MQTT 5, QoS 1 and persistent sessions on both sides and the topics per
direction of SPEC §7; the gate links (simulators/gate_links.py) are one process, the consumer
(simulators/consumer.py) another, so the figures are the processes' own (read from /proc).

S1 steady load: every seq of every gate stored once at central, end-to-end latency p50/p99.
S2 the central broker stopped (SIGTERM, its store saved) for a while under load, then started again.
S2k the same with kill -9: what the central had acknowledged in its last second and not saved is gone from
    it, and comes back by the consumer's replay requests (not in the default list: opt in).
S5 retained state after churn: a tenth of the gates crash for good (no DISCONNECT), another tenth crash and
   reconnect at once; every status and key at central is checked: crashed gates `offline` with their last
   session, the others `online` with their current one.
S3 a site broker with 1,000 gates (300 with --quick) killed -9 under load and started again: what it had
   acknowledged and lost comes back by replay (the consumer asks, the gates answer from their log).
S7 the consumer killed -9 mid-run and started again on the same session and store: nothing lost.
S8 shared consumers: three members of `$share/consumers/...` on the central broker (each its own client id and
   persistent session, one store; the first also asks for replays, judging from that store), the load of S1;
   mid-run the second member is killed -9 and started again on its session. The broker keeps dealing that
   member its share while it is down (mosquitto queues it in the session, and sends again what it had not
   acknowledged): every event stored once, none missing; the note gives the events each member stored.
S4 resync storm: 1,000 new gates at once, each taking a 5,000-record snapshot (about 1 MB) from the
   central's answerer (simulators/snapshot_server.py): time until every snapshot is complete, brokers' memory.
S6 peer fan-out: one site of 50, 100 and 200 gates each subscribed to the peers' site-state events:
   deliveries per second at the gates.
S1 also runs real `gatekeeper run` gates (--daemons) on the first site, scanned during the load.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from edge.ops import site_broker  # noqa: E402
from simulators.mosquitto import Broker  # noqa: E402
from simulators.mqtt5 import Client  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
DRAIN_S = 120.0  # how long the bench waits for everything sent to be stored after the load stops


def bridge_conf(site: str, central_port: int) -> str:
    """The site broker's bridge to the central one, as `gatekeeper site-broker` writes it (SPEC §7); the
    bench's brokers take anonymous clients, and a bridge that drops comes back within 5 s."""
    return site_broker.bridge_conf(site=site, central=f"127.0.0.1:{central_port}", retry_s=(1, 5))


class SiteBroker(Broker):
    """A site's mosquitto: the shared test broker's config plus the bridge section (which must come last)."""

    def __init__(self, workdir: Path, site: str, central_port: int):
        super().__init__(workdir)
        self.site, self.central_port = site, central_port

    def _write_conf(self, port: int) -> None:
        super()._write_conf(port)
        with open(self.conf, "a") as f:
            f.write(bridge_conf(self.site, self.central_port))


def proc_usage(pid: int) -> tuple[float, int]:
    """(CPU seconds, RSS bytes) of a live process, from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / CLK
        rss = int(fields[21]) * PAGE
        return cpu, rss
    except (OSError, IndexError, ValueError):
        return 0.0, 0


class Sampler:
    """Peak RSS and CPU seconds of named processes, sampled every half second while a scenario runs."""

    def __init__(self):
        self.pids: dict[str, list[int]] = {}
        self.peak: dict[str, int] = {}
        self.cpu0: dict[int, float] = {}
        self.cpu: dict[int, float] = {}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def watch(self, group: str, pid: int) -> None:
        self.pids.setdefault(group, []).append(pid)
        self.cpu0.setdefault(pid, proc_usage(pid)[0])

    def _sample(self) -> None:
        for group, pids in self.pids.items():
            total = 0
            for pid in pids:
                cpu, rss = proc_usage(pid)
                if rss:
                    self.cpu[pid] = cpu
                    total = max(total, rss) if group.endswith("(max)") else total + rss
            self.peak[group] = max(self.peak.get(group, 0), total)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self._sample()

    def start(self) -> "Sampler":
        self._t.start()
        return self

    def stop(self) -> None:
        self._sample()
        self._stop.set()
        self._t.join()

    def cpu_s(self, group: str) -> float:
        return sum(self.cpu.get(p, self.cpu0[p]) - self.cpu0[p] for p in self.pids.get(group, []))


class Proc:
    """A child speaking lines on stdin/stdout."""

    def __init__(self, argv: list[str], log: Path, quit_line: str = "quit"):
        self.quit_line = quit_line
        self.log = open(log, "w")
        self.p = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                  text=True, start_new_session=True)

    def line(self, timeout: float = 180.0) -> str:
        out: list[str] = []
        t = threading.Thread(target=lambda: out.append(self.p.stdout.readline()), daemon=True)
        t.start()
        t.join(timeout)
        if not out:
            raise RuntimeError(f"{self.p.args[2]} gave no answer within {timeout:.0f} s (see {self.log.name})")
        if not out[0]:
            raise RuntimeError(f"{self.p.args[2]} exited (see {self.log.name})")
        return out[0].strip()

    def send(self, text: str) -> None:
        self.p.stdin.write(text + "\n")
        self.p.stdin.flush()

    def ask(self, text: str, timeout: float = 180.0) -> str:
        self.send(text)
        return self.line(timeout)

    def kill(self, sig=signal.SIGKILL) -> None:
        if self.p.poll() is None:
            os.killpg(self.p.pid, sig)
        self.p.wait(30)

    def close(self) -> None:
        if self.p.poll() is None:
            try:
                self.p.stdin.write(self.quit_line + "\n")
                self.p.stdin.flush()
                self.p.wait(20)
            except (OSError, subprocess.TimeoutExpired, BrokenPipeError):
                self.kill()
        self.log.close()


class Fleet:
    """The brokers, the gate links and the consumer of one scenario, in one work directory."""

    def __init__(self, work: Path, sites: int, gates: int, peers: bool = False, sizes: dict | None = None,
                 members: int = 0):
        self.work, self.n_sites, self.n_gates, self.peers = work, sites, gates, peers
        self.members = members  # 0: one consumer; n: n members of one shared subscription, one store
        self.sizes = sizes or {}  # site -> gates, where a site differs from `gates`
        self.central = Broker(work / "central")
        self.sites: list[SiteBroker] = []
        self.links: Proc | None = None
        self.consumer: Proc | None = None  # the one asked for reports (the first member when shared)
        self.shared: dict[int, Proc] = {}
        self.snapshots: Proc | None = None
        self.sampler = Sampler()

    def start(self, snapshot_records: int = 0) -> "Fleet":
        self.central.start()
        for i in range(1, self.n_sites + 1):
            self.sites.append(SiteBroker(self.work / f"site{i:03d}", f"s{i:03d}", self.central.port).start())
        if self.members:
            for k in range(1, self.members + 1):
                self.start_member(k)
        else:
            self.start_consumer()
        if snapshot_records:  # the central's answer to resyncs, before any gate asks
            self.snapshots = Proc([sys.executable, "-m", "simulators.snapshot_server", "--broker", self.central.url,
                                   "--records", str(snapshot_records)], self.work / "snapshots.log")
            self.snapshot_info = self.snapshots.line(120)
        self.sampler.watch("central broker", self.central.proc.pid)
        for b in self.sites:
            self.sampler.watch("site brokers", b.proc.pid)
            self.sampler.watch("site broker (max)", b.proc.pid)
        for c in (self.shared.values() if self.shared else [self.consumer]):
            self.sampler.watch("consumer", c.p.pid)
        self.sampler.start()
        argv = [sys.executable, "-m", "simulators.gate_links", "--gates", str(self.n_gates)]
        for b in self.sites:
            argv += ["--site", f"{b.site}={b.url}"]
        for site, n in self.sizes.items():
            argv += ["--site-gates", f"{site}={n}"]
        if self.peers:
            argv.append("--peers")
        self.links_started = time.monotonic()
        self.links = Proc(argv, self.work / "gate_links.log", quit_line='{"cmd":"quit"}')
        self.sampler.watch("gate links", self.links.p.pid)
        ready = json.loads(self.links.line(300))
        if ready["ready"] != ready["gates"]:
            raise RuntimeError(f"only {ready['ready']} of {ready['gates']} gate links connected")
        return self

    def start_consumer(self) -> None:
        self.consumer = Proc([sys.executable, "-m", "simulators.consumer", "--broker", self.central.url,
                              "--client-id", "central-consumer", "--out", str(self.work / "consumer")],
                             self.work / f"consumer-{time.monotonic_ns()}.log")
        line = self.consumer.line(120)
        if line != "consumer ready":
            raise RuntimeError(f"consumer: {line}")

    def start_member(self, k: int) -> Proc:
        """Member k of the shared subscription `consumers`, on its own persistent session; all write one store and
        the first asks for replays."""
        argv = [sys.executable, "-m", "simulators.consumer", "--broker", self.central.url, "--share", "consumers",
                "--client-id", f"central-consumer-{k}", "--out", str(self.work / "consumer")]
        if k == 1:
            argv.append("--replay-leader")
        p = Proc(argv, self.work / f"consumer{k}-{time.monotonic_ns()}.log")
        line = p.line(120)
        if line != "consumer ready":
            raise RuntimeError(f"consumer member {k}: {line}")
        self.shared[k] = p
        if k == 1:
            self.consumer = p
        return p

    def gates(self, cmd: dict) -> dict:
        return json.loads(self.links.ask(json.dumps(cmd)))

    def report(self) -> dict:
        expect = self.work / "expect.json"
        self.gates({"cmd": "dump", "path": str(expect)})
        line = self.consumer.ask(f"report {expect}", 300)
        if not line.startswith("consumer report "):
            raise RuntimeError(f"consumer: {line}")
        return json.loads(line[len("consumer report "):])

    def drain(self, timeout: float = DRAIN_S) -> tuple[dict, float]:
        """Waits until the gates' outboxes are empty and central stored every event; (report, seconds)."""
        t0 = time.monotonic()
        rep = {}
        while time.monotonic() - t0 < timeout:
            st = self.gates({"cmd": "stats"})
            if st["pending"] == 0:
                rep = self.report()
                if rep["missing"] == 0:
                    break
            time.sleep(1.0)
        else:
            rep = self.report()
        return rep, time.monotonic() - t0

    def load(self, rate: float, seconds: float, during=None) -> None:
        self.gates({"cmd": "rate", "per_s": rate})
        t0 = time.monotonic()
        if during:
            during()
        time.sleep(max(0.0, seconds - (time.monotonic() - t0)))
        self.gates({"cmd": "rate", "per_s": 0})

    def stop(self) -> None:
        self.sampler.stop() if self.sampler._t.is_alive() else None
        for p in (self.links, self.snapshots, *(self.shared.values() or [self.consumer])):
            if p:
                p.close()
        for b in self.sites:
            b.stop()
        self.central.stop()


class GateDaemon:
    """A real `gatekeeper run` among the simulated links: its own config, a badge reader simulator to scan on,
    no I/O module (a refused port: the door is not what is measured) and the site broker of `site`."""

    def __init__(self, work: Path, site: str, gate: str, broker_port: int):
        from common import site_toml
        from demo.procs import HeldPort, listen_port
        work.mkdir(parents=True, exist_ok=True)
        self.source = f"acs/{site}/{gate}"
        self.nobody = HeldPort()
        self.reader = subprocess.Popen([sys.executable, "-m", "simulators.badge_reader", "--listen", "127.0.0.1:0"],
                                       cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                       start_new_session=True)
        port = listen_port(self.reader.stdout.readline())  # `badge_reader listening on HOST:PORT`
        threading.Thread(target=lambda: [None for _ in self.reader.stdout], daemon=True).start()  # a line per scan
        toml = site_toml(self.nobody.port, port, extra=f"[mqtt]\nport = {broker_port}\n")
        toml = toml.replace('id = "bench"', f'id = "{site}"').replace('gate = "gate-1"', f'gate = "{gate}"')
        (work / "site.toml").write_text(toml)
        self.log = open(work / "daemon.log", "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "--log-level", "warning", "run", "--config",
                                      str(work / "site.toml")], cwd=ROOT, stdout=subprocess.PIPE, stderr=self.log,
                                     text=True, start_new_session=True)
        self.scans = 0

    def wait_ready(self, timeout: float = 120.0) -> None:
        ok: list[bool] = []

        def watch():
            for line in self.proc.stdout:
                if line.startswith("gatekeeper ready"):
                    ok.append(True)
                    break
            for _ in self.proc.stdout:  # keep the pipe drained
                pass
        t = threading.Thread(target=watch, daemon=True)
        t.start()
        deadline = time.monotonic() + timeout
        while not ok and time.monotonic() < deadline and self.proc.poll() is None:
            time.sleep(0.1)
        if not ok:
            raise RuntimeError(f"gatekeeper run for {self.source} not ready (see {self.log.name})")

    def scan(self) -> None:
        """An unknown badge: one `access.denied` event."""
        self.scans += 1
        self.reader.stdin.write(f"{(self.scans * 2654435761) % (1 << 40):010X}\n")
        self.reader.stdin.flush()

    def stop(self) -> None:
        for p in (self.proc, self.reader):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
        self.nobody.close()
        self.log.close()


def daemon_events(consumer_dir: Path, sources: list[str]) -> list[tuple[str, int, int, int]]:
    """What central stored of each real gate: (gate, events, highest seq, access.denied events)."""
    import sqlite3
    db = sqlite3.connect(f"file:{consumer_dir / 'events.db'}?mode=ro", uri=True)
    out = []
    for src in sources:
        n, hi = db.execute("SELECT COUNT(DISTINCT seq), MAX(seq) FROM events WHERE source = ?", (src,)).fetchone()
        denied = db.execute("SELECT COUNT(*) FROM events WHERE source = ? AND type = 'access.denied'",
                            (src,)).fetchone()[0]
        out.append((src.rsplit("/", 1)[1], n, hi or 0, denied))
    db.close()
    return out


def retained_check(port: int, expect: dict) -> tuple[int, int]:
    """Reads every retained status and key at central; (wrong, checked). `expect`: source -> (state, session)."""
    got: dict[str, bytes] = {}

    async def run():
        last = [time.monotonic()]

        def on_message(_c, topic, payload, _pid):
            got[topic] = payload
            last[0] = time.monotonic()

        c = Client("bench-retained-check", on_message=on_message)
        await c.connect("127.0.0.1", port)
        await c.subscribe([("acs/+/+/status", 1, 0), ("acs/+/+/key", 1, 0)])
        while time.monotonic() - last[0] < 2.0 and len(got) < 2 * len(expect):  # retained ones come at once
            await asyncio.sleep(0.1)
        c.disconnect()

    asyncio.run(run())
    wrong = 0
    for source, (state, session) in expect.items():
        try:
            status = json.loads(got[f"{source}/status"])
            key = json.loads(got[f"{source}/key"])
        except (KeyError, ValueError):
            wrong += 1
            continue
        if status.get("state") != state or status.get("session") != session or "kid" not in key:
            wrong += 1
    return wrong, len(expect)


def row(name: str, fleet: Fleet, st: dict, rep: dict, note: str = "") -> dict:
    s = fleet.sampler
    mb = lambda b: f"{b / 2**20:.0f}"  # noqa: E731
    lat = rep.get("latency_ms", {})
    return {"scenario": name, "gates": st["gates"], "events": st["emitted"], "stored": rep.get("stored"),
            "missing": rep.get("missing"), "dups": rep.get("duplicates"),
            "p50 ms": lat.get("p50"), "p99 ms": lat.get("p99"),
            "central RSS MB": mb(s.peak.get("central broker", 0)), "central CPU s": f"{s.cpu_s('central broker'):.1f}",
            "sites RSS MB (max one)": f"{mb(s.peak.get('site brokers', 0))} ({mb(s.peak.get('site broker (max)', 0))})",
            "sites CPU s": f"{s.cpu_s('site brokers'):.1f}",
            "links RSS MB/CPU s": f"{mb(s.peak.get('gate links', 0))}/{s.cpu_s('gate links'):.1f}",
            "consumer CPU s": f"{s.cpu_s('consumer'):.1f}", "note": note}


def s1(a, work: Path) -> dict:
    f = Fleet(work, a.sites, a.gates).start()
    daemons: list[GateDaemon] = []
    try:
        for k in range(1, a.daemons + 1):  # real gates beside the simulated ones, on the first site's broker
            daemons.append(GateDaemon(work / f"gk{k:02d}", f.sites[0].site, f"gk{k:02d}", f.sites[0].port))
        for d in daemons:
            d.wait_ready()
        stop = threading.Event()

        def scans():
            while not stop.wait(1.0 / a.daemon_rate):
                for d in daemons:
                    d.scan()
        t = threading.Thread(target=scans, daemon=True)
        if daemons:
            t.start()
        f.load(a.rate, a.seconds)
        stop.set()
        rep, drained = f.drain()
        note = f"drained in {drained:.1f} s"
        st = f.gates({"cmd": "stats"})
        if daemons:
            deadline = time.monotonic() + 60
            while True:  # the real gates' events have no expectation file: wait until every scan's event is in
                got = daemon_events(work / "consumer", [d.source for d in daemons])
                if all(denied >= d.scans for (_, _, _, denied), d in zip(got, daemons)) or time.monotonic() > deadline:
                    break
                time.sleep(1)
            rep = f.report()
            st["emitted"] += sum(hi for _, _, hi, _ in got)  # every seq a real gate journaled is an event sent
            note += f"; {len(daemons)} gatekeeper run, {daemons[0].scans} scans each: " + ", ".join(
                f"{g} {n} events (seq 1..{hi}), {denied} denials" for g, n, hi, denied in got)
        return row("S1 steady", f, st, rep, note)
    finally:
        for d in daemons:
            d.stop()
        f.stop()


def s2(a, work: Path, sig: int = signal.SIGTERM) -> dict:
    f = Fleet(work, a.sites, a.gates).start()
    try:
        def outage():
            time.sleep(a.seconds / 4)
            f.central.stop(sig)  # SIGTERM: mosquitto saves its store on the way out; SIGKILL: up to 1 s is lost
            time.sleep(a.outage)
            f.central.start()  # same port, same store
            f.sampler.watch("central broker", f.central.proc.pid)
        f.load(a.rate, max(a.seconds, a.seconds / 4 + a.outage + 5), outage)
        rep, drained = f.drain()
        st = f.gates({"cmd": "stats"})
        return row("S2 central down" if sig == signal.SIGTERM else "S2k central kill -9", f, st, rep,
                   f"{a.outage:.0f} s outage; {rep['replay_requests']} replays asked, {st['replayed']} events "
                   f"replayed; drained {drained:.1f} s after load")
    finally:
        f.stop()


def s3(a, work: Path) -> dict:
    """One site broker with many gates killed -9 under load, started again from what it saved: the events it had
    acknowledged but not yet bridged are gone from it, and come back by the consumer's replay requests."""
    total = a.sites * a.gates
    big = 1000 if total >= 5000 else 300
    f = Fleet(work, max(1, (total - big) // a.gates) + 1, a.gates, sizes={"s001": big}).start()
    victim = f.sites[0]
    try:
        def crash():
            time.sleep(a.seconds / 3)
            victim.stop(signal.SIGKILL)
            time.sleep(a.site_down)
            victim.start()  # same port; its store as autosaved up to a second before the kill
            f.sampler.watch("site brokers", victim.proc.pid)
            f.sampler.watch("site broker (max)", victim.proc.pid)
        f.load(a.rate, max(a.seconds, a.seconds / 3 + a.site_down + 5), crash)
        rep, drained = f.drain()
        st = f.gates({"cmd": "stats"})
        return row("S3 site broker kill -9", f, st, rep,
                   f"{big} gates down {a.site_down:.0f} s; {rep['replay_requests']} replays asked, "
                   f"{st['replayed']} events replayed; drained {drained:.1f} s after load")
    finally:
        f.stop()


def s4(a, work: Path) -> dict:
    """Every gate new at once (no session): each sends `resync` and takes a 5,000-record snapshot of about 1 MB."""
    gates = min(a.sites * a.gates, a.storm_gates)
    sites = max(1, gates // a.gates)
    f = Fleet(work, sites, a.gates).start(snapshot_records=a.snapshot_records)
    try:
        deadline = time.monotonic() + 300
        while True:
            st = f.gates({"cmd": "stats"})
            if st["snapshots"] >= st["gates"] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        took = time.monotonic() - f.links_started
        rep = f.report()
        r = row("S4 resync storm", f, st, rep,
                f"{st['snapshots']} of {st['gates']} snapshots ({f.snapshot_info.split(' ', 2)[2]}) complete "
                f"{took:.1f} s after the links started; slowest gate {st['snapshot_max_s']} s from its resync")
        r["wrong"] = st["gates"] - st["snapshots"]
        return r
    finally:
        f.stop()


def s6(a, work: Path) -> dict:
    """Peer fan-out: one site, every gate subscribed to its peers' site-state events; deliveries per second."""
    notes, last = [], None
    for n in (50, 100, 200):
        f = Fleet(work / f"n{n}", 1, n, peers=True).start()
        try:
            before = f.gates({"cmd": "stats"})["peer_deliveries"]
            t0 = time.monotonic()
            f.load(a.peer_rate, a.seconds / 2)
            expected = f.gates({"cmd": "stats"})["emitted"] * n
            deadline = time.monotonic() + 60
            while True:  # until every delivery arrived, or a minute
                st = f.gates({"cmd": "stats"})
                if st["peer_deliveries"] - before >= expected or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            took = time.monotonic() - t0
            got = st["peer_deliveries"] - before
            notes.append(f"{n}/site: {got / took:,.0f}/s ({got} of {expected})")
            rep, _ = f.drain()
            last = row("S6 peer fan-out", f, st, rep)
            last["wrong"] = expected - got
        finally:
            f.stop()
    last["note"] = f"{a.peer_rate:.0f} events/s at the site; deliveries " + "; ".join(notes)
    return last


def s5(a, work: Path) -> dict:
    f = Fleet(work, a.sites, a.gates).start()
    try:
        f.load(a.rate, a.seconds / 2)
        names = [f"{b.site}/g{i:04d}" for b in f.sites for i in range(1, a.gates + 1)]
        killed, bounced = names[::10], names[5::10]
        f.gates({"cmd": "kill", "gates": killed})
        f.gates({"cmd": "bounce", "gates": bounced})
        f.load(a.rate, a.seconds / 2)  # the bounced gates' wills and new statuses race with live traffic
        rep, _ = f.drain()
        dump = work / "sessions.json"
        f.gates({"cmd": "dump", "path": str(dump)})
        info = json.loads(dump.read_text())
        expect = {src: ("offline" if v[3] else "online", v[2]) for src, v in info.items()}
        deadline = time.monotonic() + 60
        while True:  # the wills travel over the bridges: wait until central shows them, or give up and count
            wrong, checked = retained_check(f.central.port, expect)
            if wrong == 0 or time.monotonic() > deadline:
                break
            time.sleep(1)
        r = row("S5 retained after churn", f, f.gates({"cmd": "stats"}), rep,
                f"{len(killed)} gates crashed, {len(bounced)} restarted; "
                f"{wrong} of {checked} status/key wrong at central")
        r["wrong"] = wrong
        return r
    finally:
        f.stop()


def s7(a, work: Path) -> dict:
    f = Fleet(work, a.sites, a.gates).start()
    try:
        def crash():
            time.sleep(a.seconds / 3)
            f.consumer.kill(signal.SIGKILL)
            time.sleep(a.consumer_down)
            f.start_consumer()
            f.sampler.watch("consumer", f.consumer.p.pid)
        f.load(a.rate, max(a.seconds, a.seconds / 3 + a.consumer_down + 5), crash)
        rep, drained = f.drain()
        return row("S7 consumer kill -9", f, f.gates({"cmd": "stats"}), rep,
                   f"down {a.consumer_down:.0f} s; drained {drained:.1f} s after load")
    finally:
        f.stop()


def s8(a, work: Path) -> dict:
    f = Fleet(work, a.sites, a.gates, members=3).start()
    try:
        def crash():
            time.sleep(a.seconds / 3)
            f.shared[2].kill(signal.SIGKILL)
            f.shared[2].close()  # its log
            time.sleep(a.consumer_down)
            f.sampler.watch("consumer", f.start_member(2).p.pid)
        f.load(a.rate, max(a.seconds, a.seconds / 3 + a.consumer_down + 5), crash)
        rep, drained = f.drain()
        by = rep.get("by_member", {})
        return row("S8 shared consumers", f, f.gates({"cmd": "stats"}), rep,
                   f"3 members, one store; member 2 killed -9, down {a.consumer_down:.0f} s; stored by member: "
                   + ", ".join(f"{m.rsplit('-', 1)[-1]} {n}" for m, n in sorted(by.items()))
                   + f"; {rep['replay_requests']} replays asked; drained {drained:.1f} s after load")
    finally:
        f.stop()


SCENARIOS = {"S1": s1, "S2": s2, "S2K": lambda a, work: s2(a, work, signal.SIGKILL), "S3": s3, "S4": s4, "S5": s5,
             "S6": s6, "S7": s7, "S8": s8}


def print_table(rows: list[dict]) -> None:
    cols = [c for c in rows[0] if c != "wrong"]
    w = {c: max(len(c), *(len(str(r.get(c))) for r in rows)) for c in cols}
    print(" | ".join(c.ljust(w[c]) for c in cols))
    print("-+-".join("-" * w[c] for c in cols))
    for r in rows:
        print(" | ".join(str(r.get(c)).ljust(w[c]) for c in cols))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="10 sites x 100 gates, short phases (a smoke test)")
    p.add_argument("--scenarios", default="S1,S2,S3,S4,S5,S6,S7,S8", help="comma-separated, e.g. S1,S8")
    p.add_argument("--sites", type=int, default=100)
    p.add_argument("--gates", type=int, default=100, help="gates per site")
    p.add_argument("--rate", type=float, default=2000, help="events per second over the whole fleet")
    p.add_argument("--seconds", type=float, default=60, help="load per scenario")
    p.add_argument("--outage", type=float, default=60, help="S2: seconds the central broker is down")
    p.add_argument("--consumer-down", type=float, default=10, help="S7, S8: seconds the consumer (member) is dead")
    p.add_argument("--site-down", type=float, default=10, help="S3: seconds the killed site broker stays down")
    p.add_argument("--storm-gates", type=int, default=1000, help="S4: gates asking for a snapshot at once")
    p.add_argument("--snapshot-records", type=int, default=5000, help="S4: allow-list records in the snapshot")
    p.add_argument("--peer-rate", type=float, default=50, help="S6: events per second at the site")
    p.add_argument("--daemons", type=int, default=2, help="S1: real `gatekeeper run` gates among the links")
    p.add_argument("--daemon-rate", type=float, default=5, help="S1: badge scans per second at each real gate")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, stores)")
    a = p.parse_args()
    if a.quick:
        a.sites, a.gates, a.rate, a.seconds, a.outage, a.consumer_down, a.site_down = 10, 100, 200, 8, 6, 3, 3
        a.storm_gates, a.snapshot_records, a.peer_rate = 200, 1000, 20
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = a.sites * a.gates + 1000
    if soft < need:  # the gate links' sockets; the brokers inherit the limit
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(need, soft)), hard))
    work = Path(tempfile.mkdtemp(prefix="fleet-"))
    rows = []
    t0 = time.monotonic()
    try:
        for name in a.scenarios.split(","):
            rows.append(SCENARIOS[name.strip().upper()](a, work / name.strip()))
            print(f"{name}: {json.dumps(rows[-1])}", file=sys.stderr, flush=True)
    finally:
        if a.keep:
            print(f"work directory kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"fleet: {a.sites} sites x {a.gates} gates, {a.rate:.0f} events/s, {a.seconds:.0f} s load per scenario, "
          f"{os.cpu_count()} cores shared with whatever else runs; {time.monotonic() - t0:.0f} s in all")
    print_table(rows)
    bad = [r["scenario"] for r in rows if r["missing"] or r.get("wrong")]
    if bad:
        print(f"FAILED: {', '.join(bad)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

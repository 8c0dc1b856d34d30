"""The gate tried from outside, as a site would: its CLI, its config file, its API and MQTT, nothing else.

The daemon runs as a site runs it (`python -m edge.cli run --config FILE`, under the 1,024 open-files limit
of a unit that sets no LimitNOFILE), its allow-list is changed with `allowlist import` while it runs, its
journal is read with `events`, its passes are made with `pass issue`. Its peers are the test's own
(tests/outside_peers.py): a Modbus TCP module that logs every coil write on the machine's monotonic clock,
serial lines on TCP ports, and a central system on MQTT. A bounded random campaign (fixed seeds, so CI
runs the same campaigns) of scans, imports, change batches, sign-offs, heartbeats, site modes, lockdowns,
fire, door contacts, guard overrides, malformed messages, a module that hangs (SIGSTOP) or dies, slow API
clients and kill -9 of the daemon runs against the test's own model of what the gate must do, and checks:

1. No unlock for a credential the gate must refuse: revoked, blocklisted or unknown as of the last import
   or batch that completed before the scan (at entries: egress stays free, SPEC §5), a visitor or
   contractor while the gate is stale (a malformed message is not the central system being heard), anyone
   but a supervisor in lockdown, a pass of an unknown category (P1) or with a non-empty unprotected header
   (SPEC §3); every write 1 of a lock coil has a cause the test made; the mode is the one it must be.
2. Every lock coil is locked (last write 0) except within its door's pulse after a grant or an override,
   or while fire mode frees a fail-safe door; once a supervisor clears fire that door relocks (at once if
   closed, on closing if open); a write that waited in a hung module executes late for a moment only.
3. The journal: `events --verify` passes after every restart and at the end; what was journaled before a
   kill -9 is there after the restart; every event reaches the central system over MQTT.
4. The daemon never exits by itself; /health answers while slow clients hold connections; errors do not
   flood the log.
5. A grant opens its door (a coil write 1) while the module is up; a grant whose lock could not be driven
   is journaled as such, naming the grant's seq (the gate must not only say "granted").
6. The MQTT contract: a malformed message raises `alarm.raised` naming its topic; a malformed muster
   request republishes nothing; `{}` republishes the muster list; a new gate asks for a resync at once.
7. The gate admits whom it must, where the model is sure of it.

`test_outside_full_disk` (root only: a tmpfs in a mount namespace of the test's own) puts the gate's state
folder on a 20 MB disk and, after some of the same campaign, fills it while staff badge in and a sign-off
and a change batch arrive; then a little room comes back, or the daemon is stopped with SIGTERM and
started again. Every decision must reach the journal or be counted in one `lost_events`, doors keep
opening meanwhile, and the sign-off and the batch are applied (SPEC §6).

Every failure names the invariant, the seed, the step, the steps before it, and the issue item it points
to. The campaign log, the daemon's log and the module's writes (modbus.jsonl) stay in the test's tmp
folder. OUTSIDE_STEPS=N runs shorter campaigns while working on the test itself.
"""
from __future__ import annotations

import json
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest

from outside_peers import Central, ModbusModule, SerialLine, SlowClients, connected_to, pass_claims, sign_pass
from simulators.mosquitto import Broker

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
SEEDS = (101, 202, 303)
STEPS = int(os.environ.get("OUTSIDE_STEPS", "120"))  # fewer while working on the test itself
FLOOD_SEEDS = (101,)  # the 1,100-connection flood (B8) is slow when it bites: one campaign carries it

SITE, GATE, KID = "test", "gate-1", "central-1"
FIRE_INPUT, KEY_INPUT = 100, 101
PULSE_S = 1.0
MAX_AGE_S = 5.0           # policy.max_sync_age_s
AGE_MARGIN_S = 1.5        # the model is sure a gate is stale (or fresh) only this far from the limit
DECISION_S = 20.0         # a scan's decision in the journal
OPEN_S = 10.0             # a grant's coil write 1
RELOCK_SLACK_S = 1.5      # a pulse's relock, late on a busy machine
LATE_MAX_S = 0.25         # a write that waited in a hung module may hold the door this long, no more
CLEAR_SLACK_S = 3.0       # a freed door relocks this soon after fire is cleared (or the door closes)
LOG_FLOOD_BYTES = 2 << 20
FD_LIMIT = 1024

T = {
    "changes": f"acs/{SITE}/allowlist/changes",
    "snapshot": f"acs/{SITE}/{GATE}/allowlist/snapshot",
    "resync": f"acs/{SITE}/{GATE}/allowlist/resync",
    "signoff": f"acs/{SITE}/visits/signoff",
    "mode": f"acs/{SITE}/mode",
    "heartbeat": f"acs/{SITE}/central/heartbeat",
    "muster_request": f"acs/{SITE}/{GATE}/muster/request",
    "muster": f"acs/{SITE}/{GATE}/muster",
    "status": f"acs/{SITE}/{GATE}/status",
    "replay": f"acs/{SITE}/{GATE}/replay",
    "events": f"acs/{SITE}/{GATE}/events/",
    "peer_event": f"acs/{SITE}/gate-9/events/access.granted",
    "peer_key": f"acs/{SITE}/gate-9/key",
}
DECISIONS = ("access.granted", "access.denied", "exit.held")
PROBE = "F0F0"  # badges starting so are the test's probes of a reader line, never credentials


@dataclass(frozen=True)
class Door:
    name: str
    coil: int
    contact: int
    area: str
    parent: str
    perimeter: bool
    fail_safe: bool


DOORS = {"main": Door("main", 0, 0, "site/lobby", "site", True, False),
         "lab": Door("lab", 1, 2, "site/office", "site", False, True)}
READERS = {"main-in": ("main", "in"), "main-out": ("main", "out"), "lab-in": ("lab", "in"), "lab-out": ("lab", "out")}

CONFIG = """
[site]
id = "{site}"
gate = "{gate}"
timezone = "UTC"

[policy]
max_sync_age_s = {max_age}

[areas]
tree = ["site", "site/lobby", "site/office"]

[schedules.visiting_hours]
start = "00:00"
end = "24:00"

[storage]
path = "state/gatekeeper.db"

[[io_modules]]
name = "io1"
host = "127.0.0.1"
port = {modbus}
timeout_s = 1.0

[site_inputs]
io = "io1"
fire_input = {fire}
lockdown_input = {key}
poll_ms = 100

[[doors]]
name = "main"
area = "site/lobby"
perimeter = true
io = "io1"
lock_coil = 0
contact_input = 0
pulse_s = {pulse}
fail_mode = "fail_secure"

[[doors]]
name = "lab"
area = "site/office"
io = "io1"
lock_coil = 1
contact_input = 2
pulse_s = {pulse}
fail_mode = "fail_safe"

[[readers]]
name = "main-in"
url = "socket://127.0.0.1:{main_in}"
door = "main"
direction = "in"

[[readers]]
name = "main-out"
url = "socket://127.0.0.1:{main_out}"
door = "main"
direction = "out"

[[readers]]
name = "lab-in"
url = "socket://127.0.0.1:{lab_in}"
door = "lab"
direction = "in"

[[readers]]
name = "lab-out"
url = "socket://127.0.0.1:{lab_out}"
door = "lab"
direction = "out"

[[keys]]
kid = "{kid}"
public_key_file = "keys/{kid}.pub"

[mqtt]
host = "127.0.0.1"
port = {broker}
keepalive_s = 5

[api]
port = {api}
"""


def rfc3339(t: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if t is None else t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


def _strings(v) -> list[str]:
    if isinstance(v, str):
        return [v]
    if isinstance(v, dict):
        return [s for x in v.values() for s in _strings(x)]
    if isinstance(v, list):
        return [s for x in v for s in _strings(x)]
    return []


def _names_seq(data, seq: int) -> bool:
    """An event's data names a seq: a key with `seq` in it holding the number."""
    if isinstance(data, dict):
        for k, v in data.items():
            if "seq" in k and (v == seq or v == str(seq) or (isinstance(v, list) and seq in v)):
                return True
            if isinstance(v, (dict, list)) and _names_seq(v, seq):
                return True
    if isinstance(data, list):
        return any(_names_seq(x, seq) for x in data)
    return False


class Abort(Exception):
    """The campaign cannot go on (the daemon does not start): report what was found so far."""


# -- what the test presents ---------------------------------------------------------------------------
@dataclass
class Cred:
    kind: str  # badge | pass | unknown | garbage | badpass
    text: str
    ref: str | None = None
    holder: str | None = None
    category: str | None = None
    roles: tuple = ()
    areas: tuple = ()
    visit: str | None = None
    expired: bool = False
    why: str = ""  # a badpass or garbage: why it must be refused
    hint: str = ""

    @property
    def label(self) -> str:
        if self.kind in ("badge", "unknown"):
            return f"{self.ref} ({self.category or 'unknown'} {self.holder or ''})".replace(" )", ")")
        if self.kind == "pass":
            return f"pass {self.holder} ({self.category}{', expired' if self.expired else ''})"
        if self.kind == "badpass":
            return f"pass {self.holder} ({self.why})"
        return f"line {self.text[:24]!r}{'...' if len(self.text) > 24 else ''}"

    def refs(self) -> set:
        """The credential_ref its decision may carry (a pass refused for its signature carries none)."""
        if self.kind == "garbage":
            return {None}
        if self.kind == "badpass":
            return {self.ref, None}
        return {self.ref}


def record(c: Cred) -> dict:
    return {"credential": c.ref, "holder": c.holder, "category": c.category, "tier": None, "roles": list(c.roles),
            "areas": list(c.areas), "valid_from": None, "valid_until": None, "schedule": None, "party": 1,
            "host": None, "escort": False, "id_hash": None}


def within(area: str | None, ancestor: str) -> bool:
    return area is not None and (area == ancestor or area.startswith(ancestor + "/"))


@dataclass
class Prediction:
    verdict: str  # grant | refuse | held | may
    why: str
    hint: str = ""


# -- the model: what the gate must do -----------------------------------------------------------------
@dataclass
class Model:
    records: dict = field(default_factory=dict)    # ref -> Cred: the allow-list as the test made it
    gone: dict = field(default_factory=dict)       # ref -> Cred deleted from it
    gone_how: dict = field(default_factory=dict)   # ref -> how it was deleted
    passes: list = field(default_factory=list)     # trusted, well-formed passes
    revoked: dict = field(default_factory=dict)    # ref -> how (step, what, when)
    blocked: dict = field(default_factory=dict)    # holder -> how
    uncertain: set = field(default_factory=set)    # refs and holders whose state the test could not establish
    presence: dict = field(default_factory=dict)   # ref -> area, as the gate's grants moved it
    consumed: set = field(default_factory=set)
    signed_off: set = field(default_factory=set)
    mode: str = "normal"
    mode_source: str | None = None
    mode_why: str = "the gate's first start"
    fire_input: bool = False
    key: bool = False
    heard_sure: float = 0.0       # the gate surely heard the central system at or after this
    heard_possible: float = 0.0   # ... and possibly as late as this
    heard_why: str = "the database's creation"
    version: int = 0

    def heard(self, sure: float | None, possible: float, why: str) -> None:
        if sure is not None and sure > self.heard_sure:
            self.heard_sure = sure
        if possible > self.heard_possible:
            self.heard_possible = possible
            self.heard_why = why

    def staleness(self, now: float) -> str:
        if now - self.heard_possible > MAX_AGE_S + AGE_MARGIN_S:
            return "stale"
        if now - self.heard_sure < MAX_AGE_S - AGE_MARGIN_S:
            return "fresh"
        return "unsure"

    def set_mode(self, mode: str, why: str, source: str | None = None) -> None:
        self.mode, self.mode_why, self.mode_source = mode, why, source

    def freed(self, door: Door) -> bool:
        return door.fail_safe and self.mode == "fire"

    def valid(self, c: Cred) -> bool:
        return (c.ref in self.records and c.ref not in self.revoked and c.holder not in self.blocked
                and c.ref not in self.uncertain and c.holder not in self.uncertain)

    def predict(self, c: Cred, door: Door, direction: str, now: float, malformed_since) -> Prediction:
        if c.kind == "garbage":
            return Prediction("refuse", "not a credential (SPEC §5 line protocol: malformed)", "P2")
        if c.kind == "unknown":
            return Prediction("refuse", "a badge the allow-list never held", "P2")
        if c.kind == "badpass":
            return Prediction("refuse", c.why, c.hint)
        if c.kind == "badge" and c.ref not in self.records:
            if c.ref in self.uncertain:
                return Prediction("may", "deleted by a change the test could not confirm")
            info = self.gone_how.get(c.ref)
            if info is None:
                return Prediction("refuse", "a badge the allow-list never held", "P2")
            return Prediction("refuse", f"deleted from the allow-list by {info['how']} at step {info['step']}, "
                                        f"{now - info['t']:.1f} s before the scan", info["hint"])
        single = c.kind == "pass" and c.category == "visitor"
        if direction == "out":  # SPEC §5: leaving is refused only as unusable or consumed, or held (P9)
            if single and c.visit in self.consumed:
                return Prediction("refuse", "the pass was consumed at the perimeter exit (P8)", "P8")
            if self.mode == "fire":
                return Prediction("grant", "fire mode: every exit is free (P16)")
            if door.perimeter and c.category == "visitor" and c.visit not in self.signed_off:
                return Prediction("held", "a visitor's perimeter exit without the host's sign-off (P9)", "P9")
            return Prediction("grant", "an exit")
        if c.holder in self.blocked:
            b = self.blocked[c.holder]
            return Prediction("refuse", f"holder {c.holder} blocklisted by {b['how']} at step {b['step']}, "
                                        f"{now - b['t']:.1f} s before the scan", b["hint"])
        if c.ref in self.revoked:
            r = self.revoked[c.ref]
            return Prediction("refuse", f"revoked by {r['how']} at step {r['step']}, {now - r['t']:.1f} s "
                                        "before the scan", r["hint"])
        if c.ref in self.uncertain or c.holder in self.uncertain:
            return Prediction("may", "changed by an import or batch the test could not confirm")
        if single and c.visit in self.consumed:
            return Prediction("refuse", "the pass was consumed (P8)", "P8")
        if c.expired:
            return Prediction("refuse", "the pass expired an hour ago (P3)", "P3")
        if c.category in ("visitor", "contractor"):
            s = self.staleness(now)
            if s == "stale":
                bad = malformed_since(self.heard_possible)
                return Prediction(
                    "refuse", f"the gate is stale: the central system was last heard {now - self.heard_possible:.1f} s "
                              f"before the scan ({self.heard_why}), over max_sync_age_s = {MAX_AGE_S:g}" +
                              (f"; malformed messages since: {bad}" if bad else ""),
                    "A3 (a malformed message refreshes the gate's staleness)" if bad else "P23")
            if s == "unsure":
                return Prediction("may", "the gate is about max_sync_age_s from the central system's last word")
        if self.mode == "lockdown" and "supervisor" not in c.roles:
            return Prediction("refuse", f"lockdown ({self.mode_why}); only supervisors enter (P15)",
                              "A4 (a site-mode message ended a newer lockdown) / P15")
        if not any(within(door.area, a) for a in c.areas):
            return Prediction("refuse", f"areas {list(c.areas)} do not include {door.area} (P4)", "P4")
        where = self.presence.get(c.ref)
        if within(where, door.area):
            if c.category == "staff":
                return Prediction("grant", "staff re-entering (soft anti-passback, P7)")
            return Prediction("refuse", f"already in {where}: hard anti-passback for {c.category} (P7)", "P7")
        return Prediction("grant", "a valid credential for this door")

    def on_grant(self, c: Cred, door: Door, direction: str, reason: str | None) -> None:
        """Presence and consumption follow what the gate did (P7, P8)."""
        if c.ref is None:
            return
        if direction == "in":
            self.presence[c.ref] = door.area
        else:
            self.presence[c.ref] = None if door.perimeter else door.parent
            if door.perimeter and c.kind == "pass" and c.category == "visitor" and reason == "ok":
                self.consumed.add(c.visit)


# -- the daemon and its journal ------------------------------------------------------------------------
class Daemon:
    """`python -m edge.cli run --config FILE` as a service manager runs it: its own session, READY=1 on
    NOTIFY_SOCKET, the open-files limit of a unit that sets none (1,024), its output in a log file."""

    def __init__(self, config: Path, workdir: Path, prefix: list[str]):
        self.config = config
        self.prefix = prefix  # nsenter into the full-disk test's mount namespace, or nothing
        self.log = workdir / "daemon.log"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self, timeout: float = 60.0) -> bool:
        self.starts += 1
        name = f"gk-outside-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind("\0" + name)
        sock.settimeout(0.2)
        env = {**os.environ, "NOTIFY_SOCKET": "@" + name, "PYTHONUNBUFFERED": "1"}
        try:
            with open(self.log, "ab") as out:
                out.write(f"\n==== start {self.starts} at monotonic {time.monotonic():.3f} ====\n".encode())
                out.flush()
                self.proc = subprocess.Popen(
                    [*self.prefix, sys.executable, "-m", "edge.cli", "--log-level", "info", "run", "--config",
                     str(self.config)],
                    cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                    start_new_session=True, preexec_fn=_fd_limit)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    if b"READY=1" in sock.recv(4096):
                        return True
                except socket.timeout:
                    if self.proc.poll() is not None:
                        return False
            return False
        finally:
            sock.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def api_port(self) -> int | None:
        """The port this start's API bound (`gatekeeper api on SCHEME://HOST:PORT`, said before READY=1)."""
        text = self.log.read_text(errors="replace")
        this_start = text.rsplit("==== start ", 1)[-1]
        for line in this_start.splitlines():
            if line.startswith("gatekeeper api on "):
                return int(line.rsplit(":", 1)[1])
        return None

    def kill9(self) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)  # the daemon and its sync worker, as at a power cut
            self.proc.wait(20)

    def terminate(self) -> int | None:
        if not self.alive():
            return self.proc.returncode if self.proc else None
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            rc = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            rc = None
        self.reap()
        return rc

    def reap(self) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                pass

    def log_tail(self, n: int = 25) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


class Journal:
    """`gatekeeper events --follow`: the journal as the site reads it, one envelope a line."""

    def __init__(self, config: Path, workdir: Path, prefix: list[str]):
        self.events: list[dict] = []
        self.cond = threading.Condition()
        self.cursor: dict[tuple[str, str], int] = {}
        err = open(workdir / "events-follow.err", "w")
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "edge.cli", "--log-level", "warning", "events", "--config", str(config),
             "--follow"], cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True, bufsize=1,
            start_new_session=True)
        err.close()
        threading.Thread(target=self._pump, daemon=True, name="journal").start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            ev["_seen"] = time.monotonic()
            with self.cond:
                self.events.append(ev)
                self.cond.notify_all()

    def mark(self) -> int:
        with self.cond:
            return len(self.events)

    def wait(self, pred, after: int = 0, timeout: float = 15.0):
        """(index, event) of the first event from `after` on matching `pred`, or None at the deadline."""
        deadline = time.monotonic() + timeout
        with self.cond:
            i = after
            while True:
                while i < len(self.events):
                    if pred(self.events[i]):
                        return i, self.events[i]
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)

    def next_decision(self, door: str, direction: str, refs: set, timeout: float):
        """The decision on the scan just made at this reader: the next one there carrying its ref."""
        key = (door, direction)

        def pred(ev):
            d = ev.get("data") or {}
            return (ev["type"] in DECISIONS and d.get("door") == door and d.get("direction") == direction
                    and d.get("credential_ref") in refs)
        found = self.wait(pred, self.cursor.get(key, 0), timeout)
        if found:
            self.cursor[key] = found[0] + 1
        return found

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


# -- the campaign ---------------------------------------------------------------------------------------
class Campaign:
    def __init__(self, seed: int, workdir: Path, steps: int):
        self.seed = seed
        self.rng = random.Random(seed)
        self.dir = workdir
        self.n_steps = steps
        self.model = Model()
        self.violations: list[dict] = []
        self.steps: list[dict] = []
        self.step_no = -1
        self.logf = open(workdir / "campaign.log", "w")
        self.claims: dict[int, dict] = {}       # module log index of a write 1 -> the cause the test made
        self.causes: list[dict] = []
        self.late_pending: list[tuple[dict, int]] = []
        self.unexecuted: list[dict] = []
        self.fire_episodes: list[dict] = []
        self.daemon_kills: list[float] = []
        self.hangs: list[tuple[float, float | None]] = []
        self.door_open = {d: False for d in DOORS}
        self.door_events: list[tuple[float, str, bool]] = []
        self.malformed: list[dict] = []
        self.recent: list[tuple[int, Cred]] = []
        self.v_seen = 0
        self.v_applied = 0
        self.local_changes = 0
        self.fresh_msgs: list[dict] = []
        self.silent = False
        self.silent_extra = 0.0
        self.resync_mark = 0
        self.mode_mark = 0
        self.resyncs: list[float] = []
        self.t_first_connect: float | None = None
        self.probe_no = 0
        self.badge_seq = 0
        self.first_silence = self.rng.randint(min(8, steps), max(8, steps // 3))  # the central falls silent (P23, A3)
        self.flood_at = (self.rng.randint(steps // 3, 2 * steps // 3) if seed in FLOOD_SEEDS else None)
        self.broker = self.module = self.central = self.journal = self.daemon = None
        self.lines: dict[str, SerialLine] = {}
        self.presented: set = set()
        self.no_decision_hint = "B8 (slow clients starve the gate) / B10 (a part dies after READY)"
        self.slow_windows: list[tuple[float, float]] = []
        self.ns: list[str] = []  # a command prefix that runs inside the gate's mount namespace (full disk)

    # -- bookkeeping --------------------------------------------------------------------------------------
    def note(self, text: str) -> None:
        if self.steps:
            self.steps[-1]["notes"].append(text)
        self.logf.write(f"{time.monotonic():.3f} [{self.step_no}] {text}\n")
        self.logf.flush()

    def violation(self, inv: int, what: str, detail: str = "", hint: str = "") -> None:
        v = {"inv": inv, "step": self.step_no, "what": what, "detail": detail, "hint": hint, "t": time.monotonic()}
        self.violations.append(v)
        self.note(f"VIOLATION of invariant {inv}: {what} {detail} [{hint}]")

    def add_violation(self, v: dict) -> None:
        """One found after the fact (the coil analysis), dated by its own step."""
        self.violations.append(v)
        self.logf.write(f"{v['t']:.3f} [{v['step']}] VIOLATION of invariant {v['inv']}: {v['what']} [{v['hint']}]\n")

    def step_at(self, t: float) -> int:
        no = -1
        for s in self.steps:
            if s["t0"] <= t:
                no = s["no"]
        return no

    def context(self, step: int, n: int = 8) -> str:
        lines = []
        for s in self.steps:
            if step - n < s["no"] <= step:
                lines.append(f"    {s['no']:>4} {s['kind']}: " + " | ".join(s["notes"])[:600])
        return "\n".join(lines)

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([*self.ns, sys.executable, "-m", "edge.cli", "--log-level", "warning", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=timeout)

    def api(self, method: str, path: str, token: str | None = None, body: dict | None = None,
            timeout: float = 10.0, report: bool = True):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{self.api_port}", timeout=timeout, trust_env=False) as c:
                return c.request(method, path, json=body, headers=headers)
        except httpx.HTTPError as e:
            if report:
                self.violation(4, f"{method} {path}: the local API did not answer ({type(e).__name__})",
                               hint="B8 (slow clients starve the gate) / B10 (a part dies after READY)")
            return None

    def health(self, timeout: float = 5.0) -> bool:
        r = self.api("GET", "/health", timeout=timeout, report=False)
        return r is not None and r.status_code == 200

    # -- setting the site up ----------------------------------------------------------------------------------
    def setup(self) -> None:
        d = self.dir
        (d / "state").mkdir(exist_ok=True)
        for attempt in range(5):  # mosquitto cannot listen on port 0: a taken port is retried
            broker = Broker(d / f"broker-{attempt}", persistence=False)
            try:
                self.broker = broker.start()
                break
            except RuntimeError:
                continue
        assert self.broker, "mosquitto did not start"
        self.module = ModbusModule(d, {0: False, 2: False, FIRE_INPUT: False, KEY_INPUT: False})
        self.module.start()
        self.lines = {name: SerialLine(name) for name in READERS}
        self.api_port = 0  # the config asks for any port; each start of the daemon says which it bound
        self.config = d / "site.toml"
        self.config.write_text(CONFIG.format(
            site=SITE, gate=GATE, max_age=MAX_AGE_S, modbus=self.module.port, fire=FIRE_INPUT, key=KEY_INPUT,
            pulse=PULSE_S, kid=KID, broker=self.broker.port, api=self.api_port,
            **{k.replace("-", "_"): line.port for k, line in self.lines.items()}))
        r = self.cli("keys", "new", "--kid", KID, "--out", str(d / "keys"))
        assert r.returncode == 0, r.stderr
        self.private_pem = (d / "keys" / f"{KID}.key").read_bytes()

        m = self.model
        staff = [self.new_badge("staff", f"h-s{i}") for i in range(1, 5)]
        self.supervisor = self.new_badge("staff", "h-sup", roles=("supervisor",))
        contractors = [self.new_badge("contractor", f"h-c{i}") for i in (1, 2)]
        for c in staff + [self.supervisor] + contractors:
            m.records[c.ref] = c
        m.heard(time.monotonic(), time.monotonic(), "the database's creation")  # P23 counts from it
        r = self.import_items([record(c) for c in m.records.values()])
        assert r.returncode == 0, r.stderr
        m.heard(None, time.monotonic(), "the database's creation")
        self.guard = self.token("guard", "g-1")
        self.sup = self.token("supervisor", "s-1")
        self.make_passes()

        self.central = Central(self.broker.port, f"central-{self.seed}-{uuid.uuid4().hex[:6]}")
        self.journal = Journal(self.config, d, self.ns)
        self.daemon = Daemon(self.config, d, self.ns)
        self.start_daemon("first start", first=True)

    def new_badge(self, category: str, holder: str, roles: tuple = ()) -> Cred:
        self.badge_seq += 1
        hexid = "04%02X%04X" % (self.badge_seq, self.rng.getrandbits(16))
        return Cred("badge", hexid, f"badge:{hexid}", holder, category, roles, ("site",))

    def token(self, role: str, person: str) -> str:
        r = self.cli("tokens", "add", "--config", str(self.config), "--person", person, "--role", role)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip().splitlines()[-1]

    def import_items(self, items: list[dict]) -> subprocess.CompletedProcess:
        f = self.dir / f"import-{time.monotonic_ns()}.jsonl"
        f.write_text("".join(json.dumps(i) + "\n" for i in items))
        return self.cli("allowlist", "import", "--config", str(self.config), str(f))

    def make_passes(self) -> None:
        """Visitors' passes from `gatekeeper pass issue`; the ones it will not make, signed per SPEC §3."""
        now = time.time()
        specs = []
        for n in range(10):
            areas = "site/lobby,site/office" if n < 8 else "site/lobby"
            specs.append((f"h-v{n}", areas, now - 600, now + 4 * 3600, False))
        specs.append(("h-x1", "site/lobby,site/office", now - 7200, now - 3600, True))
        procs = []
        for holder, areas, frm, until, expired in specs:
            visit = "%016x" % self.rng.getrandbits(64)
            p = subprocess.Popen(
                [sys.executable, "-m", "edge.cli", "pass", "issue", "--key", str(self.dir / "keys" / f"{KID}.key"),
                 "--kid", KID, "--holder", holder, "--category", "visitor", "--areas", areas, "--from", rfc3339(frm),
                 "--until", rfc3339(until), "--host", "h-s1", "--visit", visit],
                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            procs.append((p, holder, areas, visit, expired))
        for p, holder, areas, visit, expired in procs:
            out, err = p.communicate(60)
            assert p.returncode == 0, err
            text = out.strip().splitlines()[-1]
            cti = pass_claims(text)[7].hex()
            self.model.passes.append(Cred("pass", text, f"pass:{cti}", holder, "visitor", (), tuple(areas.split(",")),
                                          visit, expired))
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        rogue = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

        def claims(holder: str, cat: str, cti: bytes) -> dict:
            return {1: "central", 2: holder, 4: int(now + 4 * 3600), 5: int(now - 600), 6: int(now), 7: cti,
                    "cat": cat, "areas": ["site"], "host": "h-s1"}
        self.badpasses = []
        cti = self.rng.randbytes(10)
        self.badpasses.append(Cred("badpass", sign_pass(self.private_pem, KID, claims("h-z1", "salesman", cti)),
                                   f"pass:{cti.hex()}", "h-z1", "salesman",
                                   why="a validly signed pass of the unknown category 'salesman' (P1: malformed)",
                                   hint="A5 (a pass of an unknown category is admitted)"))
        cti = self.rng.randbytes(10)
        self.badpasses.append(Cred("badpass", sign_pass(self.private_pem, KID, claims("h-z2", "visitor", cti),
                                                        unprotected={4: KID.encode()}),
                                   f"pass:{cti.hex()}", "h-z2", "visitor",
                                   why="a pass whose unprotected COSE header is not {} (SPEC §3)",
                                   hint="C15 (a non-empty unprotected COSE header is accepted)"))
        cti = self.rng.randbytes(10)
        self.badpasses.append(Cred("badpass", sign_pass(rogue, KID, claims("h-z3", "visitor", cti)), None, "h-z3",
                                   "visitor", why="a pass signed by a key the gate does not trust (bad_signature)",
                                   hint="P2"))
        cti = self.rng.randbytes(10)
        self.badpasses.append(Cred("badpass", sign_pass(self.private_pem, "rogue-9", claims("h-z4", "visitor", cti)),
                                   None, "h-z4", "visitor", why="a pass under an unknown kid (bad_signature)",
                                   hint="P2"))

    # -- the daemon's (re)start, readers, the I/O module -----------------------------------------------------
    def start_daemon(self, why: str, first: bool = False) -> None:
        t0 = time.monotonic()
        gens = {n: line.generation for n, line in self.lines.items()}
        cmark = self.central.mark()
        if not self.daemon.start():
            self.violation(4, f"the daemon did not send READY=1 ({why}); rc {self.daemon.proc.poll()}",
                           detail=self.daemon.log_tail(), hint="B10")
            raise Abort("the daemon does not start")
        self.api_port = self.daemon.api_port() or self.api_port
        self.note(f"daemon started ({why}), pid {self.daemon.proc.pid}, API on port {self.api_port}")
        if self.module.state == "up":
            self.wait_io_live(after_t=t0, why=f"the daemon's {why}")
        for name, line in self.lines.items():
            if not line.wait_connection(gens[name], 30):
                self.violation(5, f"reader line {name} was never opened after the daemon's {why}", hint="B10")
            else:
                self.probe(name)
        deadline = time.monotonic() + 30
        while not self.health(timeout=3):
            if time.monotonic() > deadline:
                self.violation(4, f"/health never answered after the daemon's {why}", hint="B10")
                break
        st = self.central.wait(lambda t, p, r: t == T["status"] and b'"offline"' not in p, after=cmark, timeout=30)
        if st is None:
            self.violation(6, f"no retained status online after the daemon's {why}", hint="SPEC §2 status")
        elif first:
            self.t_first_connect = st[0]
        self.barrier()  # the retained site mode (re)delivered on subscribing is behind us now

    def probe(self, reader: str) -> bool:
        """A unique unknown badge, sent until its refusal is journaled: the line is open end to end
        (pyserial drops what arrives while it opens a port, so the first one may be lost)."""
        door, direction = READERS[reader]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            self.probe_no += 1
            uid = f"{PROBE}{self.probe_no:08X}"
            self.lines[reader].send(uid)
            if self.journal.next_decision(door, direction, {f"badge:{uid}"}, timeout=2.0):
                return True
        self.violation(4, f"reader {reader}: nothing read there is decided", hint="B8/B10")
        return False

    def io_reads_after(self, t: float, n: int = 2, timeout: float = 30.0, gen: int | None = None) -> bool:
        """The daemon polls the module: n reads after t (from the module process of generation gen)."""
        seen = []

        def pred(e):
            if e["ev"] == "read" and e["t"] > t and (gen is None or e.get("gen") == gen):
                seen.append(e)
            return len(seen) >= n
        return self.module.wait(pred, timeout=timeout) is not None

    def wait_io_live(self, after_t: float, why: str, timeout: float = 30.0, fault_mark: int | None = None) -> bool:
        """The daemon drives and reads the module again: after a pause, its device.recovered and polls
        after it; after a (re)start, polls of the module process now running."""
        if fault_mark is not None:
            rec = self.journal.wait(lambda e: e["type"] == "device.recovered" and e["data"].get("device") == "io1",
                                    after=fault_mark, timeout=timeout)
            if rec is None:
                self.violation(5, f"no device.recovered for the I/O module within {timeout:g} s after {why}",
                               hint="B8 (the door loop starved) / P18")
                return False
            after_t = max(after_t, rec[1]["_seen"])
        if not self.io_reads_after(after_t, timeout=timeout, gen=self.module.generation):
            self.violation(5, f"the gate did not poll its I/O module within {timeout:g} s after {why}",
                           hint="B8 (the module could not reconnect) / P18")
            return False
        return True

    # -- what the test observes ---------------------------------------------------------------------------------
    def barrier(self):
        """`{}` on muster/request and its answer: the gate handled every message published before it."""
        mark = self.central.mark()
        self.central.publish(T["muster_request"], "{}")
        got = self.central.wait(lambda t, p, r: t == T["muster"], after=mark, timeout=15)
        if got is None:
            self.violation(6, "muster/request {} was not answered with the muster list within 15 s",
                           hint="SPEC §2 muster/request")
            return None
        # a request from the central system may count as hearing it: possibly, never surely
        self.model.heard(None, got[0], f"muster request at step {self.step_no}")
        return got

    def gate_mode(self) -> str | None:
        r = self.api("GET", "/status", self.guard)
        if r is None or r.status_code != 200:
            return None
        return r.json().get("mode")

    def check_mode(self, after: str, hint: str) -> None:
        mode = self.gate_mode()
        if mode is None:
            return
        if mode != self.model.mode:
            self.violation(1, f"after {after} the gate's mode is {mode!r}; it must be {self.model.mode!r} "
                              f"({self.model.mode_why})", hint=hint)
            # the campaign goes on from what the gate did, so one wrong mode is reported once
            self.model.set_mode(mode, f"the gate's own mode after step {self.step_no}", "gate")

    def malformed_since(self, t: float) -> str:
        items = [f"{m['label']} on {m['topic']} (step {m['step']})" for m in self.malformed if m["t"] > t]
        return "; ".join(items[-4:])

    def names_seq(self, seq: int, timeout: float) -> bool:
        return self.journal.wait(lambda e: e["seq"] > seq and _names_seq(e.get("data"), seq), timeout=timeout) is not None

    # -- scans -----------------------------------------------------------------------------------------------
    def scan(self, reader: str, c: Cred):
        door_name, direction = READERS[reader]
        door = DOORS[door_name]
        pred = self.model.predict(c, door, direction, time.monotonic(), self.malformed_since)
        mmark = len(self.module.log)
        t_sent = time.monotonic()
        sent = self.lines[reader].send(c.text)
        found = self.journal.next_decision(door_name, direction, c.refs(), timeout=DECISION_S)
        if found is None:
            self.violation(4, f"scan of {c.label} at {reader}: no decision journaled within {DECISION_S:g} s"
                              + ("" if sent else " (the reader line was not open)"), hint=self.no_decision_hint)
            return None
        ev = found[1]
        data = ev["data"]
        outcome = {"access.granted": "GRANTED", "access.denied": "refused", "exit.held": "held"}[ev["type"]]
        self.note(f"scan {reader} {c.label}: {outcome} ({data.get('reason')}, seq {ev['seq']}); "
                  f"model: {pred.verdict} ({pred.why})")
        granted = ev["type"] == "access.granted"
        cause = {"kind": "grant", "step": self.step_no, "door": door_name, "t": t_sent, "seq": ev["seq"],
                 "label": f"scan of {c.label} at {reader} (step {self.step_no})"}
        if granted and pred.verdict in ("refuse", "held"):
            cause["kind"] = "false grant"
            w = self.expect_unlock(door, cause, mmark, report=False)
            if w:
                pulsed = f"lock coil {door.coil} was written 1 {w['t'] - t_sent:+.2f} s after the scan"
            else:
                pulsed = f"lock coil {door.coil} was not written: " + (
                    "it was unlocked already" if self.module.coil(door.coil) == 1 else
                    "fire mode frees that door" if self.model.freed(door) else
                    f"its module was {self.module.state}" if self.module.state != "up" else "no write followed")
            self.violation(1, f"{c.label} at {reader} was GRANTED ({data.get('reason')}, seq {ev['seq']}); {pulsed}",
                           detail=f"it must be {'held' if pred.verdict == 'held' else 'refused'}: {pred.why}",
                           hint=pred.hint)
        elif pred.verdict == "grant" and not granted:
            self.violation(7, f"{c.label} at {reader} was {outcome} ({data.get('reason')}, seq {ev['seq']})",
                           detail=f"it must be granted: {pred.why}")
        elif pred.verdict == "held" and ev["type"] == "access.denied":
            self.violation(7, f"{c.label} at {reader} was refused ({data.get('reason')}); it must be held (P9)")
        if granted:
            self.model.on_grant(c, door, direction, data.get("reason"))
            if cause["kind"] == "grant":
                self.expect_unlock(door, cause, mmark)
            if self.module.state == "up" and not self.door_open[door_name] and self.rng.random() < 0.25:
                self.set_door(door, True)  # the holder walks through; the door swings shut behind
                self.set_door(door, False)
        return ev

    def expect_unlock(self, door: Door, cause: dict, mmark: int, report: bool = True):
        """A grant or an override drives the lock: find its coil write 1 and claim it for the cause."""
        self.causes.append(cause)
        if self.model.freed(door):
            return None  # fire mode holds the fail-safe door unlocked: there is nothing to write
        if self.module.state == "paused":
            self.late_pending.append((cause, mmark))
            return None
        if self.module.state == "down":
            self.unexecuted.append(cause)
            return None
        # a lock already unlocked (a pulse under way, or stuck) is written 1 again at once, or not at all
        already = self.module.coil(door.coil) == 1
        w = self.module.wait(lambda e: (e["ev"] == "write" and e["addr"] == door.coil and e["value"] == 1
                                        and e["i"] not in self.claims and e["t"] >= cause["t"]),
                             after=mmark, timeout=OPEN_S if report and not already else 1.0)
        if w is not None:
            self.claims[w["i"]] = cause
            return w
        if not report or self.module.coil(door.coil) == 1:
            return None  # already unlocked: whether it may be is the coil analysis's to say
        if cause.get("seq") is not None and self.names_seq(cause["seq"], timeout=3):
            self.note(f"the gate journaled that grant seq {cause['seq']} was not executed")
            return None
        self.violation(5, f"{cause['label']} was granted (seq {cause.get('seq')}) but lock coil {door.coil} was "
                          f"never written 1 within {OPEN_S:g} s, and no event names the grant",
                       hint="B8 (doors stop opening) / B9 (granted but not opened; the journal says granted)")
        return None

    def pick_credential(self) -> tuple[Cred, str]:
        m, rng = self.model, self.rng
        now = time.monotonic()
        stale_phase = self.silent and m.staleness(now) != "fresh"
        recent = [c for s, c in self.recent if s > self.step_no - 12]
        staff = [c for c in list(m.records.values()) + list(m.gone.values())
                 if c.category == "staff" and c is not self.supervisor]
        kinds = {"staff": 26, "recent": 16 if recent else 0, "supervisor": 5, "contractor": 12 if stale_phase else 5,
                 "visitor": 40 if stale_phase else 28, "unknown": 5, "garbage": 5, "badpass": 8, "expired": 2}
        if stale_phase and m.staleness(now) == "stale" and rng.random() < 0.6:
            pick = self.pick_fresh_only()
            if pick:
                return pick
        kind = rng.choices(list(kinds), weights=list(kinds.values()))[0]
        if kind == "staff":
            c = rng.choice(staff)
        elif kind == "recent":
            c = rng.choice(recent)
        elif kind == "supervisor":
            c = self.supervisor
        elif kind == "contractor":
            c = rng.choice([x for x in m.records.values() if x.category == "contractor"] or staff)
        elif kind in ("visitor", "expired"):
            pool = [p for p in m.passes if p.expired == (kind == "expired")]
            fresh = [p for p in pool if p.visit not in m.consumed]
            c = rng.choice(fresh if fresh and rng.random() < 0.85 else pool)
        elif kind == "unknown":
            hexid = "0E%06X" % rng.getrandbits(24)
            c = Cred("unknown", hexid, f"badge:{hexid}")
        elif kind == "garbage":
            text = rng.choice(["hello there", "04A1B2C", "GK1:%%%%", "ZZZZZZZZ", "0x04A1B2C3", "' OR 1=1 --",
                               "04A1B2C3D4E5F60718293A4B", "GK1:" + "A" * 40, "\u00e9\u20ac\u00fcnicode", "A" * 5000,
                               "%x" % rng.getrandbits(28) + "z"])
            c = Cred("garbage", text)
        else:  # each of them once before any twice
            unseen = [b for b in self.badpasses if b.ref not in self.presented and b.text not in self.presented]
            c = rng.choice(unseen or self.badpasses)
        self.presented.add(c.ref or c.text)
        return c, self.pick_reader(c)

    def pick_reader(self, c: Cred) -> str:
        rng = self.rng
        if c.kind == "pass":
            where = self.model.presence.get(c.ref)
            if where is None:
                return "main-in" if rng.random() < 0.75 else rng.choice(list(READERS))
            if where == "site/lobby":
                return rng.choice(["lab-in", "lab-in", "main-out", "main-out", "main-in"])
            if where == "site/office":
                return rng.choice(["lab-out", "lab-out", "lab-in", "main-out"])
            return rng.choice(["main-out", "main-in", "lab-in"])
        return rng.choice(["main-in", "lab-in", "main-in", "lab-in", "main-out", "lab-out"])

    def pick_fresh_only(self) -> tuple[Cred, str] | None:
        """A visitor or contractor that a gate which heard the central system a moment ago must admit:
        what a stale gate admits wrongly (P23)."""
        m, now = self.model, time.monotonic()
        saved = m.heard_sure, m.heard_possible
        m.heard_sure = m.heard_possible = now
        try:
            cands = [p for p in m.passes if not p.expired] + [c for c in m.records.values() if c.category == "contractor"]
            self.rng.shuffle(cands)
            for c in cands:
                for reader in ("main-in", "lab-in"):
                    door, direction = READERS[reader]
                    if m.predict(c, DOORS[door], direction, now, self.malformed_since).verdict == "grant":
                        return c, reader
            return None
        finally:
            m.heard_sure, m.heard_possible = saved

    def pick_granted(self, readers=("main-in", "lab-in"), exclude=()) -> tuple[Cred, str] | None:
        """A credential the model says must be granted at one of these readers, if there is one."""
        now = time.monotonic()
        cands = [c for c in self.model.records.values() if c.category == "staff" and c not in exclude]
        self.rng.shuffle(cands)
        for reader in self.rng.sample(list(readers), len(readers)):
            door, direction = READERS[reader]
            for c in cands:
                if self.model.predict(c, DOORS[door], direction, now, self.malformed_since).verdict == "grant":
                    return c, reader
        return None

    # -- the steps ---------------------------------------------------------------------------------------------
    def instead(self, step):
        """A step with nothing to do in this state does another (and says so in the log)."""
        if self.steps:
            self.steps[-1]["kind"] += " -> " + step.__name__.removeprefix("step_")
        return step()

    def step_scan(self):
        c, reader = self.pick_credential()
        self.scan(reader, c)

    def step_door(self):
        open_now = [d for d, o in self.door_open.items() if o]
        if open_now and self.rng.random() < 0.8:
            self.set_door(DOORS[self.rng.choice(open_now)], False)
        else:
            door = DOORS[self.rng.choice(list(DOORS))]
            self.set_door(door, not self.door_open[door.name])

    def set_door(self, door: Door, opening: bool) -> None:
        if self.door_open[door.name] == opening:
            return
        jm = self.journal.mark()
        self.module.set_input(door.contact, opening)
        self.door_open[door.name] = opening
        self.door_events.append((time.monotonic(), door.name, opening))
        types = ("door.opened", "door.forced") if opening else ("door.closed",)
        got = self.journal.wait(lambda e: e["type"] in types and e["data"].get("door") == door.name, after=jm,
                                timeout=15)
        self.note(f"door {door.name} {'opened' if opening else 'closed'} (contact {door.contact}); journal: "
                  f"{got[1]['type'] if got else 'nothing within 15 s'}")

    def valid_holders(self, exclude=()) -> list[Cred]:
        return [c for c in self.model.records.values() if c.category == "staff" and c is not self.supervisor
                and self.model.valid(c) and c not in exclude]

    def plan_changes(self, can_delete: bool) -> tuple[list, list]:
        """Revocations, blocklist entries, new staff and deletions, keeping two usable staff badges."""
        m, rng = self.model, self.rng
        effects = []
        targets = [c for c in m.records.values() if c is not self.supervisor and m.valid(c)]
        usable = [p for p in m.passes if p.ref not in m.revoked and p.holder not in m.blocked]
        if len(usable) > len(m.passes) // 2:  # half the visitors stay usable, for the rules only they meet
            targets += usable
        rng.shuffle(targets)
        taken: list[Cred] = []
        for c in targets[:rng.randint(1, 2)]:
            if c.category == "staff" and len(self.valid_holders(taken + [c])) < 2:
                continue
            taken.append(c)
            effects.append(("revoke", c))
        if rng.random() < 0.5:
            holders = [c for c in targets if c not in taken and c.holder not in m.blocked
                       and not (c.category == "staff" and len(self.valid_holders(taken + [c])) < 2)]
            if holders:
                c = rng.choice(holders)
                taken.append(c)
                effects.append(("block", c))
        if rng.random() < 0.5 or len(self.valid_holders(taken)) < 3:
            effects.append(("add", self.new_badge("staff", f"h-s{self.badge_seq + 100}")))
        if can_delete and rng.random() < 0.3:
            gone = [c for c in m.records.values() if c is not self.supervisor and c not in taken
                    and c.category == "staff" and len(self.valid_holders(taken + [c])) >= 2]
            if gone:
                effects.append(("delete", rng.choice(gone)))
        return effects, taken

    def apply_effects(self, effects, how: str, hint: str, t: float) -> None:
        m = self.model
        for kind, c in effects:
            info = {"how": how, "step": self.step_no, "t": t, "hint": hint}
            if kind == "revoke":
                m.revoked[c.ref] = info
            elif kind == "block":
                m.blocked[c.holder] = info
            elif kind == "unblock":
                m.blocked.pop(c.holder, None)
            elif kind == "add":
                m.records[c.ref] = c
            elif kind == "delete":
                m.records.pop(c.ref, None)
                m.gone[c.ref] = c
                m.gone_how[c.ref] = info
            self.recent.append((self.step_no, c))

    def step_import(self, while_down: bool = False):
        effects, _ = self.plan_changes(can_delete=False)
        items = []
        for kind, c in effects:
            if kind == "revoke":
                items.append({"revoke": {"pass": c.ref[5:]} if c.kind == "pass" else {"credential": c.ref}})
            elif kind == "block":
                items.append({"blocklist": {"holder": c.holder, "reason": "campaign"}})
            elif kind == "add":
                items.append(record(c))
        r = self.import_items(items)
        t = time.monotonic()
        what = ", ".join(f"{k} {c.label}" for k, c in effects)
        if r.returncode != 0:
            self.violation(3, f"`allowlist import` failed ({what}): {r.stderr.strip()[-300:]}",
                           hint="an import while the daemon runs must go through")
            for _, c in effects:
                self.model.uncertain.update({c.ref, c.holder})
            return
        how = "`allowlist import` " + ("while the daemon was down" if while_down else "while the daemon ran")
        self.apply_effects(effects, how, "P6" if while_down else
                           "A1 (revocations and blocklist entries imported while the daemon runs are ignored)", t)
        self.note(f"imported: {what}")

    def step_batch(self):
        m = self.model
        effects, taken = self.plan_changes(can_delete=True)
        if m.blocked and self.rng.random() < 0.4:
            holder = self.rng.choice(sorted(m.blocked))
            c = next((x for x in list(m.records.values()) + m.passes if x.holder == holder), None)
            if c is not None and c not in taken:
                effects.append(("unblock", c))
        batch = {"from_version": m.version, "to_version": m.version + 1, "upserts": [], "deletes": [], "revoke": [],
                 "blocklist_add": [], "blocklist_remove": [], "keys_add": [], "keys_remove": []}
        for kind, c in effects:
            if kind == "revoke":
                batch["revoke"].append({"pass": c.ref[5:]} if c.kind == "pass" else {"credential": c.ref})
            elif kind == "block":
                batch["blocklist_add"].append({"holder": c.holder, "reason": "campaign"})
            elif kind == "unblock":
                batch["blocklist_remove"].append({"holder": c.holder})
            elif kind == "add":
                batch["upserts"].append(record(c))
            elif kind == "delete":
                batch["deletes"].append(c.ref)
        jm = self.journal.mark()
        t = self.central.publish(T["changes"], batch)
        got = self.journal.wait(lambda e: e["type"] == "allowlist.applied"
                                and e["data"].get("to_version") == m.version + 1, after=jm, timeout=20)
        what = ", ".join(f"{k} {c.label}" for k, c in effects)
        if got is None:
            self.violation(6, f"change batch {m.version}->{m.version + 1} ({what}) was not applied within 20 s",
                           hint="SPEC §2 sync rules")
            for _, c in effects:
                m.uncertain.update({c.ref, c.holder})
            return
        m.version += 1
        self.apply_effects(effects, f"change batch v{m.version} over MQTT", "A1 (a change committed by "
                           "another process, here the sync worker, is not seen by the next scan)", got[1]["_seen"])
        m.heard(t, got[1]["_seen"], f"change batch at step {self.step_no}")
        self.note(f"batch v{m.version}: {what}")

    def step_signoff(self, visit: str | None = None):
        m = self.model
        if visit is None:
            on_site = [p for p in m.passes if m.presence.get(p.ref) is not None and p.visit not in m.signed_off
                       and p.visit not in m.consumed]
            if not on_site:
                return self.instead(self.step_heartbeat)
            visit = self.rng.choice(on_site).visit
        jm = self.journal.mark()
        t = self.central.publish(T["signoff"], {"visit": visit, "host": "h-s1", "time": rfc3339()})
        got = self.journal.wait(lambda e: e["type"] == "visit.signed_off" and e["data"].get("visit") == visit,
                                after=jm, timeout=15)
        if got is None:
            self.violation(6, f"the sign-off of visit {visit} was not journaled within 15 s", hint="P9")
            return None
        m.signed_off.add(visit)
        m.heard(t, got[1]["_seen"], f"sign-off at step {self.step_no}")
        self.note(f"sign-off of visit {visit}")
        return got

    def step_heartbeat(self):
        t = self.central.publish(T["heartbeat"], {"time": rfc3339()}, qos=0)
        got = self.barrier()
        if got is not None:
            self.model.heard(t, got[0], f"heartbeat at step {self.step_no}")
        self.note("heartbeat")

    def malformed_menu(self) -> list[tuple[str, bytes, str]]:
        m = self.model
        other = "normal" if m.mode == "lockdown" else "lockdown"
        old_v = self.rng.randint(0, self.v_applied) if self.v_applied else 0
        menu = [
            ("heartbeat", b"garbage", "garbage"), ("heartbeat", b'{"time": 12}', "time of the wrong type"),
            ("heartbeat", b"", "an empty payload"), ("signoff", b"garbage", "garbage"),
            ("signoff", b'{"visit": 5}', "visit of the wrong type"), ("signoff", b"[]", "a JSON array"),
            ("changes", b"garbage", "garbage"), ("changes", b'{"from_version": "x"}', "out of schema"),
            ("changes", b'{"from_version":0,"to_version":1,"upserts":[{"credential":"badge:XYZ"}]}',
             "a record out of schema"),
            ("snapshot", b"{", "broken JSON"), ("snapshot", b'{"version":1,"chunk":3,"chunks":1}', "chunk beyond chunks"),
            ("peer_event", b"garbage", "garbage"), ("peer_event", b'{"type":"access.granted"}', "an event missing fields"),
            ("peer_key", b"garbage", "garbage"), ("replay", b"garbage", "garbage"),
        ]
        if not self.silent:  # these need a barrier, which the central's silence must not have
            menu += [
                ("muster_request", b"garbage", "garbage"), ("muster_request", b"[1, 2]", "a JSON array"),
                ("mode", b"garbage", "garbage"),
                ("mode", json.dumps({"mode": other, "by": "x"}).encode(), f"the old {other!r} form, no time (A4)"),
                ("mode", json.dumps({"mode": other, "by": "central", "reason": "old form", "time": rfc3339()}).encode(),
                 f"the old {other!r} form with a fresh time, no version or actor"),
                ("mode", json.dumps({"mode": other, "actor": "central", "reason": "no time", "version":
                                     self.v_seen + self.local_changes + 1}).encode(), f"{other!r} without its time"),
                ("mode", json.dumps({"mode": "fire", "actor": "central", "reason": "x", "time": rfc3339(),
                                     "version": old_v}).encode(), "'fire' (never from the network, P16)"),
                ("changes", b'{"from_version":0,"to_version":1,"pad":"' + b"a" * (1100 * 1024) + b'"}',
                 "1.1 MiB, over the 1 MiB limit"),
            ]
        return menu

    def step_malformed(self):
        menu = self.malformed_menu()
        if self.silent and self.model.staleness(time.monotonic()) == "stale" and self.rng.random() < 0.7:
            # the topics a gate hears the central system on: one of these must not make a stale gate fresh (P23)
            menu = [x for x in menu if x[0] in ("heartbeat", "signoff", "changes", "snapshot")]
        key, payload, label = self.rng.choice(menu)
        topic = T[key]
        cmark = self.central.mark()
        t = self.central.publish(topic, payload, qos=0 if key == "heartbeat" else 1)
        self.malformed.append({"step": self.step_no, "topic": topic, "label": label, "t": t})
        self.note(f"malformed message on {topic}: {label}")
        if key == "mode":
            self.barrier()
            self.check_mode(f"a malformed site-mode message ({label})",
                            "A4 (a site-mode message out of the schema, without version, changes the mode)")
        elif key == "muster_request":
            # `{}` right behind it is answered with one muster list; the gate handles the two requests in
            # order and publishes in order, so a list for the malformed one would come first, moments apart
            self.barrier()
            lists = lambda: [x for x in self.central.since(cmark) if x[1] == T["muster"]]  # noqa: E731
            until = time.monotonic() + 2.0
            while len(lists()) < 2 and time.monotonic() < until:
                self.central.wait(lambda *a: True, after=self.central.mark(), timeout=0.2)
            if len(lists()) >= 2:
                self.violation(6, f"a malformed muster request ({label}) republished the muster list",
                               hint="B11 (a muster request of any payload republishes the list)")
        elif not self.silent and self.rng.random() < 0.3:
            self.barrier()

    def next_version(self) -> int:
        return self.v_seen + self.local_changes + 1

    def step_site_mode(self):
        m = self.model
        if m.mode == "fire" or m.key or self.silent:
            return self.instead(self.step_scan)
        target = "normal" if m.mode == "lockdown" else "lockdown"
        kind = self.rng.choice(["fresh", "fresh", "stale", "stale", "replay", "old"] if self.fresh_msgs
                               else ["fresh", "old"])
        if kind == "fresh":
            v = self.next_version()
            msg = {"mode": target, "actor": "central", "reason": "site drill", "time": rfc3339(), "version": v}
            self.central.publish(T["mode"], msg, retain=True)
            self.barrier()
            m.set_mode(target, f"site mode {target} v{v} from the central system at step {self.step_no}", "central")
            self.v_seen = self.v_applied = v
            self.local_changes = 0
            self.fresh_msgs.append(msg)
            self.note(f"site mode {target} version {v}")
            self.check_mode(f"a site-mode message {target} v{v}", "SPEC §2 site mode")
            return
        if kind == "stale":
            v = self.rng.randint(1, self.v_applied)
            msg = {"mode": target, "actor": "central", "reason": "replayed", "time": rfc3339(), "version": v}
            what = f"a site-mode {target} with a fresh time but version {v} (last applied v{self.v_applied})"
        elif kind == "old":  # a gate or a bridge that still speaks the old form: out of the schema now
            msg = {"mode": target, "by": "gate-0", "reason": "old form", "time": rfc3339()}
            what = f"a site-mode {target} of the old form (by, time; no actor, no version)"
            self.malformed.append({"step": self.step_no, "topic": T["mode"], "label": what, "t": time.monotonic()})
        else:
            msg = self.rng.choice(self.fresh_msgs)
            what = f"a replay of the site-mode message {msg['mode']} v{msg['version']}"
        self.central.publish(T["mode"], msg)
        self.barrier()
        self.note(what)
        self.check_mode(what, "A4 (a replayed site-mode message changes the mode: one whose version is not above "
                              "the last applied must change nothing)")

    def step_api_mode(self):
        m = self.model
        scope = self.rng.choice(["gate", "site"])
        if m.mode == "normal":
            r = self.api("POST", "/mode", self.guard, {"mode": "lockdown", "scope": scope, "reason": "a guard's lockdown"})
            target, who = "lockdown", "guard"
        elif m.mode == "lockdown" and m.mode_source != "key":
            r = self.api("POST", "/mode", self.sup, {"mode": "normal", "scope": scope, "reason": "all clear"})
            target, who = "normal", "supervisor"
        else:
            return self.instead(self.step_scan)
        if r is None:
            return
        self.note(f"POST /mode {target} scope {scope} by a {who}: {r.status_code}")
        if r.status_code != 200:
            self.violation(7, f"a {who}'s POST /mode {target} (scope {scope}) was answered {r.status_code}: "
                              f"{r.text[:200]}", hint="P15")
            return
        m.set_mode(target, f"{who}'s {target} through the API at step {self.step_no}", who)
        self.local_changes += 1
        self.check_mode(f"a {who}'s {target} through the API", "P15")

    def step_key(self):
        m = self.model
        if not m.key and m.mode != "normal":
            return self.instead(self.step_scan)
        on = not m.key
        jm = self.journal.mark()
        t = time.monotonic()
        self.module.set_input(KEY_INPUT, on)
        m.key = on
        self.local_changes += 1
        if on or (m.mode == "lockdown" and m.mode_source == "key"):
            target = "lockdown" if on else "normal"
            got = self.journal.wait(lambda e: e["type"] == "mode.changed" and e["data"].get("mode") == target,
                                    after=jm, timeout=15)
            m.set_mode(target, f"the lockdown key switch turned {'on' if on else 'off'} at step {self.step_no}",
                       "key" if on else None)
            self.note(f"key switch {'on' if on else 'off'}: {'mode.changed ' + target if got else 'no mode.changed'}")
        else:
            self.io_reads_after(t, n=3, timeout=10)
            self.note(f"key switch {'on' if on else 'off'}")
        self.check_mode(f"the key switch turned {'on' if on else 'off'}", "P15")

    def step_fire(self):
        m = self.model
        lab = DOORS["lab"]
        if m.mode != "fire" and not m.fire_input:
            if m.key:
                return self.instead(self.step_scan)
            jm, mmark = self.journal.mark(), len(self.module.log)
            t = time.monotonic()
            if self.rng.random() < 0.75:
                self.module.set_input(FIRE_INPUT, True)
                m.fire_input = True
                got = self.journal.wait(lambda e: e["type"] == "mode.changed" and e["data"].get("mode") == "fire",
                                        after=jm, timeout=15)
                how = "the fire input"
                self.note(f"fire input on: {'fire mode journaled' if got else 'no mode.changed'}")
            else:
                r = self.api("POST", "/mode", self.sup, {"mode": "fire", "reason": "fire reported by phone"})
                if r is None or r.status_code != 200:
                    self.violation(7, f"a supervisor's POST /mode fire was answered {r.status_code if r else None}",
                                   hint="P16")
                    return
                how = "a supervisor through the API"
                self.note("fire mode by a supervisor")
            m.set_mode("fire", f"fire mode by {how} at step {self.step_no}", "fire")
            self.local_changes += 1
            self.fire_episodes.append({"start": t, "step": self.step_no, "clear": None, "open_at_clear": False})
            self.check_mode(f"fire mode by {how}", "P16")
            if m.mode == "fire":
                already = self.module.coil(lab.coil) == 1
                w = self.module.wait(lambda e: (e["ev"] == "write" and e["addr"] == lab.coil and e["value"] == 1
                                                and e["i"] not in self.claims), after=mmark, timeout=2 if already else 10)
                if w is not None:
                    self.claims[w["i"]] = {"kind": "fire", "step": self.step_no, "door": "lab", "t": t,
                                           "label": f"fire mode (step {self.step_no})"}
                elif self.module.coil(lab.coil) != 1:
                    self.violation(2, f"fire mode ({how}) did not free the fail-safe door lab within 10 s",
                                   hint="P16 (fire unlocks every fail-safe door)")
            return
        if m.fire_input:
            if self.rng.random() < 0.25:
                r = self.api("POST", "/mode", self.sup, {"mode": "normal", "reason": "trying to clear fire"})
                self.note(f"supervisor tries to clear fire with the input on: {r.status_code if r else None}")
                self.check_mode("a supervisor's attempt to clear fire while the fire input is on",
                                "P16 (never cleared while the fire input is active)")
                return
            t = time.monotonic()
            self.module.set_input(FIRE_INPUT, False)
            m.fire_input = False
            self.io_reads_after(t, n=3, timeout=10)  # the gate has read it
            self.note("fire input off")
            return
        if m.mode != "fire":
            return self.instead(self.step_scan)
        if self.door_open["lab"] and self.rng.random() < 0.5:
            self.set_door(lab, False)
        mmark = len(self.module.log)
        r = self.api("POST", "/mode", self.sup, {"mode": "normal", "reason": "fire cleared by the brigade"})
        t = time.monotonic()
        if r is None:
            return
        if r.status_code != 200:
            self.violation(7, f"the supervisor could not clear fire with the fire input off: {r.status_code} "
                              f"{r.text[:200]}", hint="P16")
            return
        ep = self.fire_episodes[-1] if self.fire_episodes else None
        if ep is not None and ep["clear"] is None:
            ep["clear"], ep["clear_step"], ep["open_at_clear"] = t, self.step_no, self.door_open["lab"]
        m.set_mode("normal", f"fire cleared by a supervisor at step {self.step_no}", None)
        self.local_changes += 1
        self.check_mode("fire cleared by a supervisor", "P16")
        if not self.door_open["lab"]:
            w = self.module.wait(lambda e: e["ev"] == "write" and e["addr"] == lab.coil and e["value"] == 0,
                                 after=mmark, timeout=CLEAR_SLACK_S + 2)
            self.note(f"fire cleared; lab relocked {'at +%.2f s' % (w['t'] - t) if w else 'not within %g s' % (CLEAR_SLACK_S + 2)}")
        else:
            self.note("fire cleared with the lab door open: it must relock when it closes")

    def step_override(self):
        door = DOORS[self.rng.choice(list(DOORS))]
        mmark = len(self.module.log)
        t = time.monotonic()
        r = self.api("POST", f"/doors/{door.name}/open", self.guard, {"reason": "a delivery at the door"})
        if r is None:
            return
        self.note(f"guard override at {door.name}: {r.status_code} {r.text[:80]}")
        if r.status_code == 200 and r.json().get("opened"):
            self.expect_unlock(door, {"kind": "override", "step": self.step_no, "door": door.name, "t": t,
                                      "seq": None, "label": f"override at {door.name} (step {self.step_no})"}, mmark)

    def step_io_pause(self):
        # from locked doors, so that what the pause leaves unlocked is the pause's doing
        for door in DOORS.values():
            if not self.model.freed(door) and self.module.coil(door.coil) == 1:
                self.module.wait(lambda e: e["ev"] == "write" and e["addr"] == door.coil and e["value"] == 0,
                                 after=len(self.module.log), timeout=PULSE_S + RELOCK_SLACK_S)
        jm = self.journal.mark()
        length = self.rng.uniform(1.6, 2.6)
        t_pause = self.module.pause()
        self.note(f"I/O module paused (SIGSTOP) for {length:.1f} s at least")
        for _ in range(self.rng.randint(1, 2)):
            # the lab door first: the gate's relock-all on reconnection drives the main door's coil first, which
            # can relock it by chance; nothing relocks the lab door's coil but a relock meant for it
            pick = self.pick_granted(("lab-in",)) or self.pick_granted()
            if pick:
                self.scan(pick[1], pick[0])
        fault = self.journal.wait(lambda e: e["type"] == "device.fault" and e["data"].get("device") == "io1",
                                  after=jm, timeout=20)
        if fault is None:
            self.violation(5, "the I/O module stopped answering and no device.fault was journaled within 20 s",
                           hint="P18")
        left = t_pause + length - time.monotonic()
        if left > 0:
            threading.Event().wait(left)  # the length of the fault itself, not a synchronisation
        if self.rng.random() < 0.7:
            # Resume between two of the gate's attempts to reach the module, once one more has failed: then no
            # relock of its own is on its way, and a write that waited in the module is all that happens.
            deadline = time.monotonic() + 12
            was, closed = True, 0
            while time.monotonic() < deadline:
                now_connected = connected_to(self.daemon.proc.pid, self.module.port)
                closed += was and not now_connected
                was = now_connected
                if closed >= 2 and not now_connected:
                    self.note("resuming while the gate is between two reconnection attempts")
                    break
                threading.Event().wait(0.02)
        t_resume = self.module.resume()
        self.note("I/O module resumed (SIGCONT)")
        live = self.wait_io_live(t_resume, "the module answered again", fault_mark=fault[0] if fault else jm)
        self.hangs.append((t_pause, time.monotonic() if live else None))
        for cause, mmark in self.late_pending:
            coil = DOORS[cause["door"]].coil
            for e in self.module.entries()[mmark:]:
                if (e["ev"] == "write" and e["addr"] == coil and e["value"] == 1 and e["i"] not in self.claims
                        and e["t"] >= cause["t"]):
                    self.claims[e["i"]] = dict(cause, kind="late")
                    self.note(f"the write 1 of {cause['label']} executed late, at +{e['t'] - t_resume:.3f} s "
                              "after the module resumed")
                    break
        self.late_pending = []

    def step_io_kill(self, reason: str = "", scans: int | None = None) -> bool:
        self.module.kill()
        self.note(f"I/O module killed{reason}")
        for _ in range(scans or self.rng.randint(1, 2)):
            pick = self.pick_granted()
            if pick:
                self.scan(pick[1], pick[0])
        deadline = time.monotonic() + 3
        for cause in self.unexecuted:
            if not self.names_seq(cause["seq"], timeout=max(0.0, deadline - time.monotonic())):
                self.violation(5, f"{cause['label']} was granted (seq {cause['seq']}) while the I/O module was down: "
                                  "no lock was driven and no event names the grant",
                               hint="B9 (granted but not opened, and the journal says granted)")
        self.unexecuted = []
        t = time.monotonic()
        self.module.start()
        self.note(f"I/O module started again on port {self.module.port}")
        return self.wait_io_live(t, "the module came back", timeout=15 if reason else 30)

    def step_slow_clients(self, flood: bool = False):
        """A few dozen clients that send one byte every half second; or, once, 1,100 of them against the
        daemon's 1,024 descriptors while its module drops off and comes back (B8 as the site saw it)."""
        n = 1100 if flood else self.rng.randint(24, 60)
        size0 = self.daemon.log.stat().st_size
        t0 = time.monotonic()
        slow = SlowClients(self.api_port, n)
        hint = "B8 (slow clients starve the doors)"
        try:
            self.note(f"{len(slow.socks)} slow API clients connected ({slow.refused} refused), one byte every 0.5 s")
            for k in range(1 if flood else 2):
                t = time.monotonic()
                if not self.health(timeout=5):
                    self.violation(4, f"/health did not answer within 5 s with {n} slow API clients connected",
                                   hint=hint)
                self.note(f"/health probe {k}: {time.monotonic() - t:.2f} s")
                pick = self.pick_granted()
                if pick:
                    self.scan(pick[1], pick[0])
            if flood:  # the module drops off and must come back while the clients hold their connections
                if self.step_io_kill(" during the flood", scans=1):
                    pick = self.pick_granted()
                    if pick:
                        self.scan(pick[1], pick[0])
        finally:
            slow.close()
            self.slow_windows.append((t0, time.monotonic()))
        grown = self.daemon.log.stat().st_size - size0
        self.note(f"slow clients gone; the daemon's log grew {grown} bytes meanwhile")
        if grown > LOG_FLOOD_BYTES:
            self.violation(4, f"the daemon's log grew {grown / 1e6:.1f} MB while {n} slow clients were connected",
                           hint=hint + ": repeated errors must be logged once with a count")
        deadline = time.monotonic() + 30
        while not self.health(timeout=3):
            if time.monotonic() > deadline:
                self.violation(4, "/health did not answer within 30 s after the slow clients left", hint=hint)
                break
        if flood:
            self.io_reads_after(time.monotonic(), timeout=30, gen=self.module.generation)

    def step_daemon_kill(self):
        if self.silent:
            return self.instead(self.step_scan)
        before = {e["seq"]: e["id"] for e in self.journal.events}
        t = time.monotonic()
        self.daemon.kill9()
        self.daemon_kills.append(t)
        self.note(f"daemon killed (SIGKILL), {len(before)} events journaled before")
        if self.rng.random() < 0.4:
            self.step_import(while_down=True)
        self.start_daemon(f"restart after kill -9 at step {self.step_no}")
        self.verify_journal(f"after the restart at step {self.step_no}")
        after = {e["seq"]: e["id"] for e in self.cli_events()}
        lost = sorted(s for s, i in before.items() if after.get(s) != i)
        if lost:
            self.violation(3, f"{len(lost)} events journaled before the kill -9 are missing or changed after the "
                              f"restart: seqs {lost[:20]}", hint="SPEC §6 (a crash loses no committed event)")

    def answer_resyncs(self):
        new = [x for x in self.central.since(self.resync_mark) if x[1] == T["resync"]]
        if not new or self.silent:
            return
        self.resync_mark = self.central.mark()
        self.resyncs += [x[0] for x in new]
        m = self.model
        snap = {"version": m.version, "chunk": 0, "chunks": 1, "upserts": [record(c) for c in m.records.values()],
                "revoke": [{"pass": r[5:]} if r.startswith("pass:") else {"credential": r} for r in m.revoked],
                "blocklist": [{"holder": h, "reason": "campaign"} for h in m.blocked], "keys": []}
        jm = self.journal.mark()
        t = self.central.publish(T["snapshot"], snap)
        got = self.journal.wait(lambda e: e["type"] == "allowlist.applied" and e["data"].get("source") == "snapshot",
                                after=jm, timeout=20)
        self.note(f"answered {len(new)} resync request(s) with a snapshot at version {m.version}: "
                  f"{'applied' if got else 'not applied within 20 s'}")
        if got:
            m.uncertain.clear()
            m.heard(t, got[1]["_seen"], f"snapshot at step {self.step_no}")
        else:
            self.violation(6, f"the snapshot answering the gate's resync (version {m.version}) was not applied within "
                              "20 s", hint="SPEC §2 sync rules")

    def track_mode_versions(self):
        """Versions the gate published on the site-mode topic: the next fresh one must be above them."""
        for _, topic, payload, _ in self.central.since(self.mode_mark):
            if topic == T["mode"]:
                try:
                    v = json.loads(payload).get("version")
                except (ValueError, AttributeError):
                    continue
                if isinstance(v, int):
                    self.v_seen = max(self.v_seen, v)
        self.mode_mark = self.central.mark()

    # -- the journal as the site checks it ----------------------------------------------------------------------
    def verify_journal(self, when: str) -> None:
        r = self.cli("events", "--config", str(self.config), "--verify")
        self.note(f"events --verify {when}: rc {r.returncode} {r.stdout.strip()}")
        if r.returncode != 0:
            self.violation(3, f"`events --verify` failed {when}: {(r.stdout + r.stderr).strip()[-300:]}",
                           hint="SPEC §2 seq / the hash chain")

    def cli_events(self) -> list[dict]:
        r = self.cli("events", "--config", str(self.config))
        return [json.loads(x) for x in r.stdout.splitlines() if x.strip()]

    # -- the campaign ---------------------------------------------------------------------------------------------
    def choose(self):
        m = self.model
        opts: list[tuple[float, object]] = [(40, self.step_scan), (5, self.step_door), (5, self.step_import),
                                            (7, self.step_malformed), (2, self.step_override),
                                            (2.5, self.step_api_mode), (2, self.step_key), (3.5, self.step_fire),
                                            (1.5, self.step_io_pause), (1, self.step_io_kill),
                                            (1.5, self.step_slow_clients)]
        if self.silent:
            opts.append((12, self.step_malformed))  # and then the next visitors (A3)
        else:
            opts += [(3, self.step_batch), (3, self.step_signoff), (2, self.step_heartbeat),
                     (5, self.step_site_mode), (1.5, self.step_daemon_kill)]
        if m.mode == "fire":
            opts.append((6, self.step_fire))  # fire episodes end within the campaign
        weights = [w for w, _ in opts]
        return self.rng.choices([f for _, f in opts], weights=weights)[0]

    def run(self) -> None:
        for no in range(self.n_steps):
            self.step_no = no
            now = time.monotonic()
            m = self.model
            if self.silent and now - m.heard_possible > MAX_AGE_S + AGE_MARGIN_S + self.silent_extra:
                self.silent = False
            elif not self.silent and (no == self.first_silence or (no > self.first_silence
                                                                   and self.rng.random() < 0.03)):
                self.silent, self.silent_extra = True, self.rng.uniform(2, 5)
            fn = self.step_slow_clients if no == self.flood_at else self.choose()
            kind = "flood" if no == self.flood_at else fn.__name__.removeprefix("step_")
            self.steps.append({"no": no, "kind": kind + (" (central silent)" if self.silent else ""), "notes": [],
                               "t0": now})
            self.logf.write(f"{now:.3f} [{no}] ---- {kind}{' (central silent)' if self.silent else ''}\n")
            if not self.silent and now - m.heard_sure > 2.0:
                self.step_heartbeat()
            if no == self.flood_at:
                self.silent = False  # a broker reconnection after the flood may deliver the retained mode
                self.step_slow_clients(flood=True)
                self.barrier()
            else:
                fn()
            self.answer_resyncs()
            self.track_mode_versions()
            if not self.daemon.alive():
                self.violation(4, f"the daemon exited by itself (rc {self.daemon.proc.returncode})",
                               detail=self.daemon.log_tail(), hint="B10 (nothing dies after READY)")
                self.start_daemon(f"restart after it exited at step {no}")
            self.steps[-1]["t1"] = time.monotonic()

    def begin(self, kind: str) -> None:
        """A step the test scripts rather than draws."""
        self.step_no = len(self.steps)
        self.steps.append({"no": self.step_no, "kind": kind, "notes": [], "t0": time.monotonic()})
        self.logf.write(f"{time.monotonic():.3f} [{self.step_no}] ---- {kind}\n")

    def finish(self) -> None:
        if self.daemon is None:
            return  # the site never came up: the setup's own failure says why
        self.begin("final checks")
        if self.module.state == "paused":
            self.module.resume()
        if not self.daemon.alive():
            self.start_daemon("restart for the final checks")
        # every event of the journal reaches the central system (at least once)
        want = {(e["epoch"], e["seq"]) for e in self.cli_events()}
        deadline = time.monotonic() + 60
        have: set = set()
        mark = 0
        while True:
            for _, topic, payload, _ in self.central.since(mark):
                mark += 1
                if topic.startswith(T["events"]):
                    try:
                        e = json.loads(payload)
                        have.add((e["epoch"], e["seq"]))
                    except (ValueError, KeyError, TypeError):
                        pass
            missing = sorted(want - have)
            if not missing or time.monotonic() > deadline:
                break
            self.central.wait(lambda *a: True, after=mark, timeout=1.0)
        self.note(f"{len(want)} journal events, {len(want) - len(missing)} seen on MQTT")
        if missing:
            self.violation(3, f"{len(missing)} of {len(want)} journal events never reached the central system "
                              f"within 60 s: seqs {[s for _, s in missing][:30]}", hint="SPEC §2 outbox")
        self.verify_journal("at the end, the daemon running")
        # P23 / B11 / A6: what the MQTT side must have shown
        alarms = [e for e in self.journal.events if e["type"] == "alarm.raised"]
        hints = {T["heartbeat"]: "B11 (malformed central/heartbeat and muster/request raise no alarm)",
                 T["muster_request"]: "B11 (malformed central/heartbeat and muster/request raise no alarm)",
                 T["mode"]: "A4 (site-mode messages of the old form, without version, are taken as valid)"}
        for topic in sorted({x["topic"] for x in self.malformed} - {T["replay"]}):
            if not any(topic in s for a in alarms for s in _strings(a.get("data"))):
                bad = [f"{x['label']} (step {x['step']})" for x in self.malformed if x["topic"] == topic]
                self.violation(6, f"malformed messages on {topic} raised no alarm.raised naming it: {bad[:5]}",
                               hint=hints.get(topic, "SPEC §2 (out of schema changes nothing and raises alarm.raised)"))
        if self.t_first_connect is not None and not any(
                self.t_first_connect - 2 <= t <= self.t_first_connect + 15 for t in self.resyncs):
            late = [round(t - self.t_first_connect, 1) for t in self.resyncs]
            self.violation(6, "the new gate (version 0, no MQTT session) sent no allowlist/resync within 15 s of its "
                              f"first connection (resyncs at {late} s)",
                           hint="A6 (a gate that lost its MQTT session never catches up)")
        self.analyse_coils(time.monotonic())
        rc = self.daemon.terminate()
        self.note(f"daemon stopped with SIGTERM: rc {rc}")
        if rc != 0:
            self.violation(4, f"SIGTERM: the daemon exited with rc {rc}", detail=self.daemon.log_tail(), hint="P18")
        self.verify_journal("after SIGTERM")

    # -- what reached the locks ----------------------------------------------------------------------------------
    def fire_end(self, ep: dict, t_end: float) -> float:
        if ep["clear"] is None:
            return t_end
        if ep["open_at_clear"]:
            closes = [t for t, d, opening in self.door_events if d == "lab" and not opening and t >= ep["clear"]]
            return (closes[0] if closes else t_end) + CLEAR_SLACK_S
        return ep["clear"] + CLEAR_SLACK_S

    def analyse_coils(self, t_end: float) -> None:
        """Every unlocked stretch of every lock coil, from the module's own log, against what may hold it
        unlocked: a grant's or an override's pulse, fire mode at a fail-safe door, and, for a lock already
        unlocked when it began, a hung module (until the gate drives it again) or a killed daemon (until
        the restarted one relocks)."""
        log = self.module.entries()
        inf = float("inf")
        for door in DOORS.values():
            coil = door.coil
            windows: list[dict] = []
            if door.fail_safe:
                for ep in self.fire_episodes:
                    windows.append({"a": ep["start"], "b": self.fire_end(ep, t_end), "before": inf,
                                    "cause": {"kind": "fire", "label": f"fire mode from step {ep['step']}", "ep": ep}})
            for tk in self.daemon_kills:
                back = next((e["t"] for e in log if e["ev"] == "write" and e["addr"] == coil and e["t"] > tk), t_end)
                windows.append({"a": tk, "b": back + 0.05, "before": tk,
                                "cause": {"kind": "daemon down", "label": "the daemon killed"}})
            for t_pause, t_live in self.hangs:
                windows.append({"a": t_pause, "b": (t_live or t_end) + RELOCK_SLACK_S, "before": t_pause,
                                "cause": {"kind": "hung", "label": "the module hung"}})
            for e in log:
                if e["ev"] != "write" or e["addr"] != coil or e["value"] != 1:
                    continue
                cause = self.claims.get(e["i"])
                if cause is None:  # a grant the test did not wait on long enough: the nearest one
                    claimed = [id(c) for c in self.claims.values()]
                    cause = next((c for c in self.causes if c["door"] == door.name and c["t"] <= e["t"] <= c["t"] + 3
                                  and id(c) not in claimed), None)
                    if cause is not None:
                        self.claims[e["i"]] = cause
                if cause is None:
                    if any(w["a"] <= e["t"] <= w["b"] for w in windows if w["cause"]["kind"] == "fire"):
                        continue  # fire mode frees the fail-safe door again after a reconnection or a restart
                    step = self.step_at(e["t"])
                    self.add_violation({
                        "inv": 1, "step": step, "t": e["t"], "hint": "P2 / P18 (nothing but a grant, an override or "
                        "fire mode unlocks; a (re)start pulses nothing)", "detail": "recent steps:\n" + self.context(step),
                        "what": f"lock coil {coil} ({door.name}) was written 1 with no grant, override or fire mode to "
                                f"explain it, during step {step}"})
                    continue
                span = LATE_MAX_S if cause["kind"] == "late" else PULSE_S + RELOCK_SLACK_S
                windows.append({"a": e["t"], "b": e["t"] + span, "before": inf, "cause": cause})
            for a, b in self.unlocked(log, coil, t_end):
                usable = [w for w in windows if w["before"] > a]
                for u0, u1 in self.uncovered(a, b, usable):
                    if u1 - u0 < 0.05:
                        continue
                    before = [w for w in usable if w["a"] <= u0 <= w["b"] + 0.001]
                    if not before:
                        continue  # an unlock with no cause: reported above
                    why = max(before, key=lambda w: w["b"])["cause"]
                    step = self.step_at(u0)
                    held = f"{u1 - u0:.2f} s" + (" (until the end of the campaign)" if u1 >= t_end - 0.01 else "")
                    if why["kind"] == "fire":
                        ep = why["ep"]
                        what = (f"fire was cleared by the supervisor at step {ep.get('clear_step')} with the door "
                                f"{'open' if ep['open_at_clear'] else 'closed'}, but lock coil {coil} ({door.name}) "
                                f"was still unlocked {held} after the {CLEAR_SLACK_S:g} s it may take"
                                + (" to relock once the door closed" if ep["open_at_clear"] else ""))
                        hint = "A2 (fire cleared, the fail-safe door stays unlocked)"
                    elif why["kind"] == "late":
                        what = (f"a write 1 that waited in the hung module ({why['label']}) executed late and held "
                                f"lock coil {coil} ({door.name}) unlocked {u1 - a:.2f} s after the module resumed, "
                                f"not a moment (at most {LATE_MAX_S:g} s)")
                        hint = "A7 (a hung I/O module unlocks late: a relock must be queued right behind)"
                    elif why["kind"] in ("daemon down", "hung"):
                        what = (f"lock coil {coil} ({door.name}), unlocked when {why['label']}, was not relocked when "
                                f"the gate drove the module again: unlocked {held} more")
                        hint = "P18 (every lock is driven locked on (re)connection)"
                    else:
                        what = (f"lock coil {coil} ({door.name}) stayed unlocked {held} past the pulse of "
                                f"{why['label']} (pulse {PULSE_S:g} s + {RELOCK_SLACK_S:g} s)")
                        hint = "P2 / P17 (a lock relocks after its pulse)"
                        if any(s0 <= u0 <= s1 for s0, s1 in self.slow_windows):
                            hint = "B8 (slow API clients starve the door loop: the relock came late) / " + hint
                    self.add_violation({"inv": 2, "step": step, "what": what, "hint": hint, "t": u0,
                                            "detail": "recent steps:\n" + self.context(step)})

    @staticmethod
    def unlocked(log: list[dict], coil: int, t_end: float) -> list[tuple[float, float]]:
        out, on = [], None
        for e in log:
            if e["ev"] in ("boot", "kill") or (e["ev"] == "write" and e["addr"] == coil and e["value"] == 0):
                if on is not None:
                    out.append((on, e["t"]))
                    on = None
            elif e["ev"] == "write" and e["addr"] == coil and e["value"] == 1 and on is None:
                on = e["t"]
        if on is not None:
            out.append((on, t_end))
        return out

    @staticmethod
    def uncovered(a: float, b: float, windows: list[dict]) -> list[tuple[float, float]]:
        spans = sorted((max(a, w["a"]), min(b, w["b"])) for w in windows if w["b"] > a and w["a"] < b)
        out, at = [], a
        for s0, s1 in spans:
            if s0 > at:
                out.append((at, s0))
            at = max(at, s1)
        if at < b:
            out.append((at, b))
        return out

    # -- the report -----------------------------------------------------------------------------------------------
    def report(self) -> str:
        names = {1: "no unlock for a credential the gate must refuse; the mode is the one it must be",
                 2: "every lock locked outside a grant's pulse or fire mode",
                 3: "the journal: verified, nothing lost at kill -9, every event reaches MQTT",
                 4: "the daemon never exits by itself; /health answers; the log does not flood",
                 5: "a grant opens its door, or the journal says it could not",
                 6: "the MQTT contract (alarms for malformed messages, muster, resync)",
                 7: "the gate admits whom it must"}
        out = [f"seed {self.seed}: {len(self.violations)} violation(s) in {len(self.steps)} steps; files in {self.dir} "
               "(campaign.log, daemon.log)"]
        for inv in sorted({v["inv"] for v in self.violations}):
            vs = [v for v in self.violations if v["inv"] == inv]
            out.append(f"\n[invariant {inv}: {names[inv]}] {len(vs)} time(s)")
            firsts = []  # the first of each kind (by what it points to), then the rest by step number
            for v in vs:
                if v["hint"] not in [f["hint"] for f in firsts]:
                    firsts.append(v)
            rest = [v for v in vs if v not in firsts]
            vs = firsts + rest
            for v in vs[:max(3, len(firsts))]:
                out.append(f"  seed {self.seed}, step {v['step']}: {v['what']}")
                if v["detail"] and not v["detail"].startswith("recent steps"):
                    out.append(f"    {v['detail']}")
                out.append(f"    points to: {v['hint']}")
                ctx = v["detail"] if v["detail"].startswith("recent steps") else "recent steps:\n" + self.context(v["step"])
                out.append("    " + ctx)
            shown = max(3, len(firsts))
            if len(vs) > shown:
                out.append(f"  ... and {len(vs) - shown} more: steps {[v['step'] for v in vs[shown:]][:20]}")
        return "\n".join(out)

    def trim_log(self) -> None:
        """A flooded daemon log keeps its first and last MiB: the evidence, without 100 MB in tmp."""
        log = self.dir / "daemon.log"
        if log.exists() and log.stat().st_size > 8 << 20:
            with open(log, "rb") as f:
                head = f.read(1 << 20)
                f.seek(-(1 << 20), os.SEEK_END)
                tail = f.read()
            log.write_bytes(head + b"\n[... trimmed by the test ...]\n" + tail)

    def dump_module_log(self) -> None:
        """What reached the module (its polls left out), for whoever reads a failure."""
        if self.module is not None:
            with open(self.dir / "modbus.jsonl", "w") as f:
                for e in self.module.entries():
                    if e["ev"] != "read":
                        f.write(json.dumps(e) + "\n")

    def teardown(self) -> None:
        for part in (lambda: self.daemon and self.daemon.reap(), lambda: self.journal and self.journal.stop(),
                     lambda: self.module and self.module.stop(), lambda: self.central and self.central.close(),
                     lambda: self.broker and self.broker.stop(), lambda: [x.close() for x in self.lines.values()],
                     self.trim_log, self.dump_module_log, self.logf.close):
            try:
                part()
            except Exception:  # teardown goes on: every process must go
                pass


class DiskCampaign(Campaign):
    """The gate's state folder on a 20 MB tmpfs of its own: a mount namespace held by a sleeping process,
    so that a kill -9 of the daemon keeps its files and the test's end (or a crash of the test) leaves no
    mount behind. The daemon and every CLI command run inside it (nsenter); the test reaches the files
    through /proc/<holder>/root. After some ordinary life the disk fills, twice."""

    def setup(self) -> None:
        state = self.dir / "state"
        state.mkdir()
        self.holder = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c",
             'mount -t tmpfs -o size=20m gatekeeper-full-disk "$0" && echo mounted && exec sleep 86400', str(state)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True)
        if "mounted" not in self.holder.stdout.readline():
            self.holder.wait(10)
            pytest.skip("cannot mount a tmpfs in a mount namespace of the test's own: "
                        + self.holder.stderr.read().strip())
        # --wd: nsenter would otherwise start in /, and python -m would import another checkout's edge
        self.ns = ["nsenter", f"--target={self.holder.pid}", "--mount", f"--wd={ROOT}", "--"]
        self.state = Path(f"/proc/{self.holder.pid}/root") / state.relative_to("/")
        super().setup()

    def fill(self) -> int:
        """Fill the gate's disk to its last block; the bytes written."""
        fd = os.open(self.state / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        n = 0
        try:
            for size in (1 << 20, 1 << 16, 1 << 12):
                chunk = b"\xff" * size
                while True:
                    try:
                        n += os.write(fd, chunk)
                    except OSError:
                        break
        finally:
            os.close(fd)
        return n

    def free(self, nbytes: int | None = None) -> None:
        f = self.state / "filler"
        if nbytes is None:
            f.unlink(missing_ok=True)
        elif f.exists():
            os.truncate(f, max(0, f.stat().st_size - nbytes))
        st = os.statvfs(self.state)
        self.note(f"space freed on the gate's disk: {st.f_bavail * st.f_frsize >> 10} KiB free")

    def disk_phase(self, sigterm: bool) -> None:
        """The disk fills; staff badge in (decisions must go on and open doors); a sign-off and a batch
        revoking a badge arrive; then a little room comes back (or the daemon is stopped with SIGTERM and
        started with room again). Every decision must reach the journal, or be counted in one
        `lost_events`; the sign-off and the batch must be applied (SPEC §6; issue items C12, C14)."""
        from collections import Counter
        m = self.model
        self.begin("disk full" + (", then SIGTERM" if sigterm else ", then a little room"))
        if len(self.valid_holders()) < 3:
            c = self.new_badge("staff", f"h-s{self.badge_seq + 100}")
            if self.import_items([record(c)]).returncode == 0:
                m.records[c.ref] = c
        victim = self.valid_holders()[0]
        jm = self.journal.mark()
        filled = self.fill()
        self.note(f"the gate's disk filled: {filled >> 10} KiB written")
        expected: Counter = Counter()

        def decided() -> int:
            return sum(1 for e in self.journal.events[jm:] if e["type"] in DECISIONS
                       and (e["data"].get("door"), e["data"].get("direction"), e["data"].get("credential_ref")) in expected)
        # SQLite may still have room in a WAL it grew before: scan on until the gate holds its writes
        # (its journal stops following the scans), then some more
        holding_at, more = None, (100 if sigterm else 300)
        while sum(expected.values()) < 3000 and (holding_at is None or sum(expected.values()) < holding_at + more):
            pick = self.pick_granted(("main-in",), exclude=(victim,))  # a fail-secure lock shows every grant
            if pick is None:
                break
            c, reader = pick
            door_name, direction = READERS[reader]
            door = DOORS[door_name]
            mmark, t = len(self.module.log), time.monotonic()
            self.lines[reader].send(c.text)
            expected[(door_name, direction, c.ref)] += 1
            m.on_grant(c, door, direction, "ok")
            cause = {"kind": "grant", "step": self.step_no, "door": door_name, "t": t, "seq": None,
                     "label": f"scan of {c.label} at {reader} with the disk full (step {self.step_no})"}
            self.causes.append(cause)
            if not m.freed(door) and self.module.state == "up":
                already = self.module.coil(door.coil) == 1  # a lock stuck unlocked is the coil analysis's to report
                w = self.module.wait(lambda e: (e["ev"] == "write" and e["addr"] == door.coil and e["value"] == 1
                                                and e["i"] not in self.claims and e["t"] >= t), after=mmark,
                                     timeout=1.0 if already else OPEN_S)
                if w is not None:
                    self.claims[w["i"]] = cause
                elif not already:
                    self.violation(5, f"with the disk full, {cause['label']} opened nothing within {OPEN_S:g} s",
                                   hint="SPEC §6 (a full disk does not stop decisions)")
                    break
            n = sum(expected.values())
            if holding_at is None and n % 50 == 0:
                until = time.monotonic() + 2.0
                while decided() < n and time.monotonic() < until:
                    self.journal.wait(lambda e: True, after=self.journal.mark(), timeout=0.3)
                if decided() < n:
                    holding_at = n
                    self.note(f"the gate holds its writes from about scan {n} on")
        if holding_at is None:
            self.note("the gate's database never refused a write: nothing to check for held writes")
        sent = sum(expected.values())
        self.note(f"{sent} staff scans with the disk full, each opening its door")
        visit = "%016x" % self.rng.getrandbits(64)
        self.central.publish(T["signoff"], {"visit": visit, "host": "h-s1", "time": rfc3339()})
        v = m.version + 1
        self.central.publish(T["changes"], {"from_version": m.version, "to_version": v, "upserts": [], "deletes": [],
                                           "revoke": [{"credential": victim.ref}], "blocklist_add": [],
                                           "blocklist_remove": [], "keys_add": [], "keys_remove": []})
        self.note(f"with the disk full: a sign-off of visit {visit} and batch v{v} revoking {victim.label}")
        if sigterm:
            self.daemon_kills.append(time.monotonic())  # a stopped gate drives no lock until it starts again
            rc = self.daemon.terminate()
            self.note(f"SIGTERM with the disk full: rc {rc}")
            self.free()
            self.start_daemon("restart after a SIGTERM with writes held")
        else:
            self.free(2 << 20)
        deadline = time.monotonic() + 20

        def accounted() -> tuple[int, int]:
            events = self.journal.events[jm:]
            have = Counter((e["data"].get("door"), e["data"].get("direction"), e["data"].get("credential_ref"))
                           for e in events if e["type"] in DECISIONS)
            lost = sum(v for e in events if e["type"] == "alarm.raised" for k, v in (e.get("data") or {}).items()
                       if "lost" in k and isinstance(v, int))
            return sum((expected - have).values()), lost

        while True:
            missing, lost = accounted()
            if missing <= lost or time.monotonic() > deadline:
                break
            self.journal.wait(lambda e: True, after=self.journal.mark(), timeout=1.0)
        self.note(f"{sent - missing} of {sent} decisions journaled, lost_events {lost}")
        if missing > lost:
            after = "the restart that followed a SIGTERM" if sigterm else "2 MiB of the disk came free"
            self.violation(3, f"{missing} of {sent} decisions made with the disk full are not in the journal 20 s "
                              f"after {after}, and no lost_events counts them (lost_events: {lost})",
                           hint="C12 (disk full, then held writes lost: flushing refills the disk with its own WAL; "
                                "SIGTERM drops what is held)")
        so = self.journal.wait(lambda e: e["type"] == "visit.signed_off" and e["data"].get("visit") == visit,
                               after=jm, timeout=max(1.0, deadline - time.monotonic()))
        if so is None:
            self.violation(6, f"the sign-off of visit {visit}, received while the disk was full, was not applied "
                              "once the disk took writes again", hint="C14 (inbound changes wait for the next reconnect)")
        ap = self.journal.wait(lambda e: e["type"] == "allowlist.applied" and e["data"].get("to_version") == v,
                               after=jm, timeout=max(1.0, deadline - time.monotonic()))
        if ap is None:
            self.violation(6, f"change batch v{v}, received while the disk was full, was not applied once the disk "
                              "took writes again", hint="C14 (inbound changes wait for the next reconnect)")
        else:
            m.version = v
        # applied or not, the gate had it: from now on the revocation must hold
        self.apply_effects([("revoke", victim)], f"change batch v{v}, received while the disk was full",
                           "C14 (inbound changes received on a full disk are neither applied nor acknowledged)",
                           time.monotonic())
        self.no_decision_hint = "C12 (held writes are never written: nothing is journaled behind them)"
        self.scan("main-in", victim)
        self.no_decision_hint = "B8 (slow clients starve the gate) / B10 (a part dies after READY)"
        if not sigterm:
            self.free()  # all the room back for what comes next, once the gate has written what it held
            deadline = time.monotonic() + 30
            while accounted()[0] > accounted()[1] and time.monotonic() < deadline:
                self.journal.wait(lambda e: True, after=self.journal.mark(), timeout=1.0)
            missing, lost = accounted()
            self.note(f"with all the room back: {sent - missing} of {sent} decisions journaled, lost_events {lost}")
        if not self.daemon.alive():
            self.violation(4, f"the daemon exited by itself with the disk full (rc {self.daemon.proc.returncode})",
                           detail=self.daemon.log_tail(), hint="SPEC §6 / B10")
            self.start_daemon("restart after it exited")
        self.verify_journal(f"after the full disk of step {self.step_no}")

    def teardown(self) -> None:
        super().teardown()
        holder = getattr(self, "holder", None)
        if holder is not None and holder.poll() is None:
            os.killpg(holder.pid, signal.SIGKILL)  # the namespace, and its tmpfs, go with it
            holder.wait(10)


def _play(camp: Campaign, body) -> None:
    """Set up, play, check, and take everything down again, whatever happened; then report."""
    try:
        for part in (lambda: (camp.setup(), body()), camp.finish):
            try:
                part()
            except Abort as e:
                camp.note(f"campaign aborted: {e}")
    finally:
        camp.teardown()
    if camp.violations:
        pytest.fail(camp.report(), pytrace=False)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("seed", SEEDS)
def test_outside_campaign(seed, tmp_path):
    """A seeded campaign against the real daemon, its peers the test's own; see the module docstring."""
    camp = Campaign(seed, tmp_path, STEPS)
    _play(camp, camp.run)


@pytest.mark.timeout(600)
def test_outside_full_disk(tmp_path):
    """The same gate with its state folder on a 20 MB disk that fills (SPEC §6), after some ordinary life."""
    if os.geteuid() != 0:
        pytest.skip("needs root: the full disk is a tmpfs mounted in a mount namespace of the test's own")
    for tool in ("unshare", "nsenter"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool} (util-linux) for the full disk's mount namespace")
    camp = DiskCampaign(404, tmp_path, 30)
    _play(camp, lambda: (camp.run(), camp.disk_phase(sigterm=False), camp.disk_phase(sigterm=True)))

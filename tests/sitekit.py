"""Test kit: a site on disk (config, keys, allow-list), its processes, and ways to wait on its journal."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from demo.procs import Child, HeldPort, JournalWatch, listen_port, set_entry_port  # noqa: F401  (JournalWatch: the tests take it from here)

ROOT = Path(__file__).resolve().parent.parent
KID = "central-1"
DAY = 86400
WAIT_S = 60.0  # how long a test waits for something before it fails: the wait ends as soon as it happens, and a
# busy machine (other suites, other work) can take many times longer than an idle one
# The port in a new site's config until its hardware is started: 1 (tcpmux) is privileged, outside every range the
# kernel hands ports out from, and nothing here listens on it, so a daemon started before its simulators is refused
# (a device not there), never answered by some other test's simulator.
NO_PORT = 1


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class Proc(Child):
    """A test's child process: run from the repository root, its errors with its output."""

    def __init__(self, name: str, args: list[str], *, stdin: bool = False, cwd: Path | None = None,
                 env: dict | None = None):
        super().__init__(name, args, stdin=stdin, cwd=cwd or ROOT, env=env)


class Procs:
    def __init__(self) -> None:
        self.all: list[Proc] = []
        self.held: list[HeldPort] = []

    def start(self, name: str, *args: str, stdin: bool = False, env: dict | None = None) -> Proc:
        p = Proc(name, [sys.executable, *args], stdin=stdin, env=env)
        self.all.append(p)
        return p

    def hold(self, port: int = 0) -> HeldPort:
        """A port kept ours until these processes stop (see HeldPort): a listener started on it with
        `--reuse-port` can go and come back on the same port without another process taking it meanwhile."""
        h = HeldPort(port)
        self.held.append(h)
        return h

    def stop_all(self) -> None:
        for p in reversed(self.all):
            try:
                p.stop()
            except Exception:
                p.kill()
        for h in self.held:
            h.close()


@dataclass
class Site:
    dir: Path
    config: Path
    db: Path
    io_port: int
    reader_ports: dict[str, int]
    private_key: object = None
    extra: dict = field(default_factory=dict)
    daemon: Proc | None = None  # the running daemon, whose output says where its API listens

    def set_io_port(self, port: int) -> None:
        """The I/O module io1 listens on `port` (its simulator said so): the config says it too."""
        self.io_port = port
        self.config.write_text(set_entry_port(self.config.read_text(), "io_modules", "io1", port))

    def set_reader_port(self, name: str, port: int) -> None:
        """The reader `name` (socket://) listens on `port`: the config says it too."""
        self.reader_ports[name] = port
        self.config.write_text(set_entry_port(self.config.read_text(), "readers", name, port))

    def issue(self, **kw) -> str:
        from edge.passes import issue_pass
        return issue_pass(self.private_key, KID, **kw)

    def visitor_pass(self, holder: str, **kw) -> str:
        """A general visitor's pass for the lobby, valid for the next hour, hosted by h-1."""
        now = time.time()
        args = dict(holder=holder, category="visitor", areas=["site/lobby"], valid_from=now - 60,
                    valid_until=now + 3600, host="h-1")
        return self.issue(**{**args, **kw})

    def token(self, role: str, person: str | None = None) -> str:
        """An API token made with `gatekeeper tokens add` (works while the daemon runs: SQLite locks)."""
        r = gatekeeper("tokens", "add", "--config", str(self.config), "--person", person or f"p-{role}", "--role", role)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip().splitlines()[-1]

    @property
    def api_url(self) -> str:
        """The running daemon's API, on loopback. The config asks for port 0; the daemon prints the port it
        bound (`gatekeeper api on SCHEME://HOST:PORT`), and that line is waited for here."""
        if self.daemon is None:
            raise AssertionError("no daemon runs for this site (Gate.start_daemon sets site.daemon)")
        line = self.daemon.wait_for("gatekeeper api on", already=True)
        self.extra["api_port"] = listen_port(line)
        scheme = line.split("gatekeeper api on ", 1)[1].split(":", 1)[0]
        return f"{scheme}://127.0.0.1:{self.extra['api_port']}"

    def add_reader(self, **fields) -> None:
        """One more [[readers]] entry (a camera, an OSDP reader...) appended to the config."""
        body = "".join(f"{k} = {json.dumps(v)}\n" for k, v in fields.items())
        self.config.write_text(self.config.read_text() + "\n[[readers]]\n" + body)

    def edit_door(self, name: str, **fields) -> None:
        """Set keys of one [[doors]] entry in the config (`fail_mode="fail_safe"`, `pulse_s=8`...)."""
        lines = self.config.read_text().splitlines()
        start = lines.index(f'name = "{name}"')
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("[")), len(lines))
        for key, value in fields.items():
            line = f"{key} = {json.dumps(value)}"
            at = next((i for i in range(start, end) if lines[i].split("=")[0].strip() == key), None)
            if at is None:
                lines.insert(start + 1, line)
                end += 1
            else:
                lines[at] = line
        self.config.write_text("\n".join(lines) + "\n")

    def query(self, sql: str, *args):
        """One row from the gate's database, read-only (the daemon may be writing)."""
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
        try:
            return conn.execute(sql, args).fetchone()
        finally:
            conn.close()

    def wait_api(self) -> None:
        import httpx
        url = self.api_url  # the daemon printed it once its socket listens

        def answers() -> bool:
            try:
                return httpx.get(url + "/health", timeout=10).status_code == 200
            except httpx.TransportError:
                return False
        wait_until(answers, what="the API answering")

    def import_lines(self, items: list[dict]) -> subprocess.CompletedProcess:
        f = self.dir / f"import-{time.monotonic_ns()}.jsonl"
        f.write_text("".join(json.dumps(i) + "\n" for i in items))
        return gatekeeper("allowlist", "import", "--config", str(self.config), str(f))


SITE_TOML = """
[site]
id = "test"
gate = "gate-1"
timezone = "Asia/Shanghai"

[policy]
lobby = "site/lobby"
guard_room = "site/guard-room"

[areas]
tree = ["site", "site/lobby", "site/guard-room", "site/office", "site/production", "site/production/workshop-1"]
escort_required = ["site/production"]

[schedules.visiting_hours]
start = "00:00"
end = "24:00"

[schedules.holiday]
days = []

[storage]
path = "gatekeeper.db"

[[io_modules]]
name = "io1"
host = "127.0.0.1"
port = {no_port}
timeout_s = 0.5

[site_inputs]
io = "io1"
fire_input = 100
lockdown_input = 101
poll_ms = 100

[[doors]]
name = "main"
area = "site/lobby"
perimeter = true
io = "io1"
lock_coil = 0
contact_input = 0
pulse_s = 0.3

[[doors]]
name = "office"
area = "site/office"
io = "io1"
lock_coil = 1
contact_input = 2
pulse_s = 0.3

[[readers]]
name = "main-in"
url = "socket://127.0.0.1:{no_port}"
door = "main"
direction = "in"

[[readers]]
name = "main-out"
url = "socket://127.0.0.1:{no_port}"
door = "main"
direction = "out"

[[readers]]
name = "office-in"
url = "socket://127.0.0.1:{no_port}"
door = "office"
direction = "in"

[[keys]]
kid = "central-1"
public_key_file = "keys/central-1.pub"
"""


ID_SECRET = "a-test-site-secret-of-32-bytes!!"


def make_site(d: Path, *, broker_port: int | None = None, gate: str = "gate-1", private_key=None,
              mqtt_extra: str = "", api: bool = False, walkin: bool = False) -> Site:
    """A site folder. With `broker_port`, the gate talks to that broker; gates of one site share a key.
    Its I/O module and readers are at NO_PORT until their simulators run (Gate.start_hardware, or
    site.set_io_port / site.set_reader_port with the port a simulator reported)."""
    from edge.passes.keys import generate_keypair, public_pem
    d.mkdir(parents=True, exist_ok=True)
    (d / "keys").mkdir(exist_ok=True)
    if private_key is None:
        private = generate_keypair(KID, d / "keys")
    else:
        private = private_key
        (d / "keys" / f"{KID}.pub").write_bytes(public_pem(private.public_key()))
    cfg = d / "site.toml"
    text = SITE_TOML.format(no_port=NO_PORT).replace('gate = "gate-1"', f'gate = "{gate}"')
    if broker_port is not None:
        text += f'\n[mqtt]\nhost = "127.0.0.1"\nport = {broker_port}\nkeepalive_s = 5\nresync_retry_s = 5\n{mqtt_extra}\n'
    extra = {}
    if api:  # the local API on loopback (SPEC §4), on the port the daemon gets and prints (see Site.api_url)
        text += "\n[api]\nport = 0\n"
    if walkin:  # P13: the site's ID secret; the gate makes its own signing key on first start
        (d / "id.secret").write_text(ID_SECRET + "\n")
        (d / "id.secret").chmod(0o600)  # a secret readable by all is a problem --check names
        text += '\n[walkin]\nid_secret_file = "id.secret"\n'
    cfg.write_text(text)
    return Site(d, cfg, d / "gatekeeper.db", NO_PORT, {"main-in": NO_PORT, "main-out": NO_PORT, "office-in": NO_PORT},
                private, extra)


@contextmanager
def in_process_gate(site: "Site", **kw):
    """The site's gate in this process, on its database (no daemon): for tests of the gate's own code paths.
    `kw` goes to Gate (clocks)."""
    from edge.config import load_config
    from edge.core.gate import Gate
    from edge.passes.keyring import build_keyring
    from edge.store import Store
    cfg, base = load_config(site.config)
    store = Store(site.db)
    try:
        yield Gate(cfg, store, build_keyring(cfg, base, store), **kw)
    finally:
        store.close()


def gatekeeper(*args: str, input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge.cli", "--log-level", "warning", *args], cwd=ROOT,
                          capture_output=True, text=True, input=input, timeout=timeout)


def metric(text: str, name: str, **labels: str) -> float | None:
    """The sum of the samples `name` with these labels in a /metrics text (parsed: label order is free), or
    None when there is none."""
    from prometheus_client.parser import text_string_to_metric_families
    values = [s.value for fam in text_string_to_metric_families(text) for s in fam.samples
              if s.name == name and labels.items() <= s.labels.items()]
    return sum(values) if values else None


def wait_until(cond, timeout: float = WAIT_S, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError(f"{what} not reached within {timeout} s")


class Collector:
    """A credential source's callbacks, recorded, with a way to wait on them."""

    def __init__(self):
        self.presented, self.states = [], []
        self.cond = threading.Condition()

    @property
    def values(self):
        return [p.value for p in self.presented]

    def on_presentation(self, p):
        with self.cond:
            self.presented.append(p)
            self.cond.notify_all()

    def on_state(self, name, state, err):
        with self.cond:
            self.states.append(state)
            self.cond.notify_all()

    def wait(self, pred, timeout=WAIT_S):
        with self.cond:
            assert self.cond.wait_for(pred, timeout), (self.presented, self.states)

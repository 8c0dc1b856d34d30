"""`gatekeeper demo`: the daemon and hardware simulators on this machine, and a short story from the policy."""
from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import signal
import sqlite3
import sys
import time
from pathlib import Path

from demo.procs import Child, JournalWatch, listen_port, python_module, set_entry_port

DEMO_TOML = Path(__file__).resolve().parent.parent / "config" / "demo.toml"
KID = "central-1"
NAMES = {
    "h-1001": "Li Wei (staff)", "h-1002": "Wang Fang (staff)", "h-1003": "Zhao Min (supervisor)",
    "h-2001": "Chen Jie (VIP, special tier)", "h-2002": "Zhang Lei (visitor)", "h-3001": "Sun Qiang (contractor)",
    "h-4001": "Ma Tao (blocklisted)", "h-2003": "Liu Yang (visitor, working days)",
}
BADGES = {"li": "04A1B2C3", "wang": "04D5E6F7", "zhao": "04112233", "sun": "0C0FFEE0", "ma": "0BADBAD0"}
WAIT_S = 60.0  # for a decision or a process's line: the wait ends as soon as it comes; a busy machine is slow
# the children's own logs: shown with GATEKEEPER_DEMO_VERBOSE, else only what the story prints
STDERR = "inherit" if os.environ.get("GATEKEEPER_DEMO_VERBOSE") else "quiet"


def run_demo(state: str, *, story_only: bool = False) -> int:
    logging.getLogger().setLevel(logging.WARNING)  # the story is the output; the daemon logs to its own stream
    # `kill`, systemd or a CI timeout stop the demo with SIGTERM: the simulators and the daemon go with it
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    state_dir = Path(state).resolve()
    broker = None
    if shutil.which("mosquitto"):  # the central link joins the demo when a local broker can run
        from simulators.mosquitto import Broker
        broker = Broker(state_dir / "broker", persistence=False)
    children: list[Child] = []
    try:
        if broker:
            broker.start()  # it picks its port, which the config below names
        site, db, passes = prepare(state_dir, broker.port if broker else None)
        if broker:
            central = Child("central", stderr=STDERR, args=python_module(
                "simulators.central", "--broker", broker.url, "--site", "demo", "--client-id", "demo-central",
                # the central system holds the same people: a new gate asks it for a snapshot (SPEC §2)
                "--data", str(state_dir / "people.jsonl"), "--heartbeat", "60"), stdin=True)
            children.append(central)
            central.wait_for("central ready")
        readers = start_simulators(site, children)
        if broker:
            readers["central"] = central
        console_port = start_daemon(site, db, children)
        tail = JournalWatch(db)
        play_story(readers, tail, passes, site, console_port)
        print(console_banner(console_port, site.parent / "tokens.txt"), flush=True)
        if story_only:
            return 0
        interactive(readers, tail)
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        for c in reversed(children):
            c.stop()
        if broker:
            broker.stop()


def prepare(state_dir: Path, broker_port: int | None = None) -> tuple[Path, Path, dict[str, str]]:
    """A fresh demo site: keys, config, allow-list, passes. The config's hardware ports are set once the
    simulators listen (start_simulators)."""
    from edge.passes.keys import generate_keypair
    from edge.passes import issue_pass
    state_dir.mkdir(parents=True, exist_ok=True)
    for f in state_dir.glob("gatekeeper.db*"):
        f.unlink()  # each demo starts from an empty journal
    keys = state_dir / "keys"
    if keys.exists():
        shutil.rmtree(keys)
    keys.mkdir()
    private = generate_keypair(KID, keys)
    text = DEMO_TOML.read_text()
    if broker_port:
        text += f'\n[mqtt]\nhost = "127.0.0.1"\nport = {broker_port}\nclient_id = "demo-gate-1"\n'
    text = text.replace("port = 8080", f"port = {_console_port()}")
    # P13: the site's secret for ID hashes; the gate makes its walk-in key next to the database
    secret = state_dir / "id.secret"
    secret.write_text(secrets.token_hex(32) + "\n")
    secret.chmod(0o600)
    (state_dir / "walkin.key").unlink(missing_ok=True)
    text = _round_due_now(text)
    site = state_dir / "site.toml"
    site.write_text(text)
    # P24: the calendar files the config names, beside it as in config/
    shutil.copytree(DEMO_TOML.parent / "calendars", state_dir / "calendars", dirs_exist_ok=True)

    now = int(time.time())
    day = 86400
    people = [
        {"credential": f"badge:{BADGES['li']}", "holder": "h-1001", "name": "李伟", "category": "staff", "areas": ["site"],
         "roles": ["guard"]},  # P21: his taps at the patrol checkpoints count
        {"credential": f"badge:{BADGES['wang']}", "holder": "h-1002", "name": "王芳", "category": "staff", "areas": ["site"]},
        {"credential": f"badge:{BADGES['zhao']}", "holder": "h-1003", "name": "赵敏", "category": "staff", "areas": ["site"], "roles": ["supervisor"]},
        {"credential": f"badge:{BADGES['sun']}", "holder": "h-3001", "name": "孙强", "category": "contractor",
         "areas": ["site/production"], "valid_from": _iso(now - 30 * day), "valid_until": _iso(now - day)},
        {"credential": f"badge:{BADGES['ma']}", "holder": "h-4001", "name": "马涛", "category": "visitor", "areas": ["site/lobby"]},
        {"blocklist": {"holder": "h-4001", "reason": "banned after an incident"}},
    ]
    (state_dir / "people.jsonl").write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in people),
                                            encoding="utf-8")
    from edge.cli import main as cli
    cli(["--log-level", "warning", "allowlist", "import", "--config", str(site), str(state_dir / "people.jsonl")])
    _console_tokens(site, state_dir / "gatekeeper.db", state_dir / "tokens.txt")
    passes = {
        "vip": issue_pass(private, KID, holder="h-2001", category="vip", tier="special", areas=["site"],
                          valid_from=now - 300, valid_until=now + 8 * 3600, party=3, host="h-1001"),
        "visitor": issue_pass(private, KID, holder="h-2002", category="visitor", areas=["site/lobby"],
                              valid_from=now - 300, valid_until=now + 4 * 3600, host="h-1002", visit="v-zhang"),
        # P24: booked on the `working_days` schedule, which closes on a public holiday
        "working_days": issue_pass(private, KID, holder="h-2003", category="visitor", areas=["site/lobby"],
                                   valid_from=now - 300, valid_until=now + 4 * 3600, host="h-1001", visit="v-liu",
                                   schedule="working_days"),
    }
    for name, text_ in passes.items():
        (state_dir / f"{name}.pass").write_text(text_ + "\n")
    return site, state_dir / "gatekeeper.db", passes


def _console_port() -> int:
    """8080 when it is free, so the console's address is the one the README gives; else 0, any port the daemon
    gets (it prints it). 8080 is outside the range outgoing connections take their ports from: only another
    program listening there can take it before the daemon does (see start_daemon)."""
    import socket
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", 8080))
            return 8080
        except OSError:
            return 0


def start_daemon(site: Path, db: Path, children: list[Child]) -> int:
    """The daemon, ready; and the port its console listens on, from its `gatekeeper api on ...` line. The API
    is bound before the daemon says it is ready, or has failed (a `device.fault` named api, journaled by then):
    if 8080 was taken after it looked free, the daemon is started again on a port of its own."""
    while True:
        daemon = Child("daemon", python_module("edge.cli", "run", "--config", str(site)), stderr=STDERR)
        children.append(daemon)
        daemon.wait_for("gatekeeper ready")
        text = site.read_text()
        if _api_fault(db) and re.search(r"(?m)^\[api\]\nport = [1-9]", text):
            daemon.stop()
            children.remove(daemon)
            site.write_text(re.sub(r"(?m)^(\[api\]\nport = )\d+", r"\g<1>0", text))
            continue
        return listen_port(daemon.wait_for("gatekeeper api on", already=True))


def _api_fault(db: Path) -> bool:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT 1 FROM journal WHERE type = 'device.fault' AND "
                            "json_extract(data, '$.device') = 'api'").fetchone() is not None
    finally:
        conn.close()


def _console_tokens(site: Path, db: Path, out: Path) -> None:
    """A guard's and a supervisor's token for the console, kept (0600) in the state folder."""
    from edge.api import tokens
    from edge.store import Store
    store = Store(db)
    try:
        lines = [f"{role} {person}: {tokens.add(store, person, role)[1]}"
                 for role, person in (("guard", "Chen Gang"), ("supervisor", "Zhao Min"))]
    finally:
        store.close()
    out.write_text("\n".join(lines) + "\n")
    out.chmod(0o600)


def console_banner(port: int, tokens_file: Path) -> str:
    guard = tokens_file.read_text().splitlines()[0].split(": ", 1)[1]
    return (f"\nGuard console: http://127.0.0.1:{port}/  (sign in with the guard token {guard};\n"
            f"  the supervisor's is in {tokens_file})")


def _iso(t: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def start_simulators(site: Path, children: list[Child]) -> dict[str, Child]:
    """The door I/O module and the badge readers, each on a port it bound itself (0) and printed; the config
    is rewritten with those ports before the daemon reads it."""
    import tomllib
    text = site.read_text()
    cfg = tomllib.loads(text)
    io = Child("door_io", python_module("simulators.door_io", "--site", str(site), "--module", "io1", "--port", "0"),
               stdin=True, stderr=STDERR)
    children.append(io)
    text = set_entry_port(text, "io_modules", "io1", listen_port(io.wait_for("door_io listening")))
    readers = {"io": io}
    barriers = {d["name"] for d in cfg["doors"] if d.get("kind") == "barrier"}
    for r in cfg["readers"]:
        host = r["url"].removeprefix("socket://").rsplit(":", 1)[0]
        if r.get("door") in barriers:  # P26: a plate camera, in the reader's encoding
            c = Child(r["name"], python_module("simulators.plate_camera", "--listen", f"{host}:0", "--encoding",
                                               r.get("encoding", "utf-8")), stdin=True, stderr=STDERR)
            ready = "plate_camera listening"
        else:
            c = Child(r["name"], python_module("simulators.badge_reader", "--listen", f"{host}:0"), stdin=True,
                      stderr=STDERR)
            ready = "badge_reader listening"
        children.append(c)
        text = set_entry_port(text, "readers", r["name"], listen_port(c.wait_for(ready)))
        readers[r["name"]] = c
    site.write_text(text)
    return readers


DECISIONS = ("access.granted", "access.denied", "exit.held")


def show(etype: str, data: dict) -> None:
    verdict = {"access.granted": "GRANTED", "access.denied": "DENIED ", "exit.held": "HELD   "}[etype]
    who = NAMES.get(data.get("holder") or "", data.get("holder") or data.get("credential_ref") or "unreadable")
    party = f" party of {data['party']}" if (data.get("party") or 1) > 1 else ""
    flags = f" [{', '.join(data['flags'])}]" if data.get("flags") else ""
    print(f"  {data['door']:<8} {data['direction']:<3}  {verdict}  {who}{party}  reason={data['reason']}{flags}", flush=True)


def play_story(readers: dict[str, Child], tail: JournalWatch, passes: dict[str, str], site: Path,
               api_port: int | None = None) -> None:
    print("\nGatekeeper demo: a day at the gate (site 'demo', gate 'gate-1', no network needed)\n", flush=True)

    def scan(reader: str, text: str, say: str) -> None:
        print(f"- {say}", flush=True)
        readers[reader].send(text)
        got = tail.poll(DECISIONS)
        if got is None:
            print(f"  (no decision within {WAIT_S:.0f} s: is the daemon running?)", flush=True)
            return
        show(*got[1:])
        # journaled with the grant, in the same commit: there already, or not coming
        extra = tail.poll(("visitor.arrived",), timeout=0) if got[2].get("category") == "vip" else None
        if extra:
            print(f"  -> visitor.arrived: host {extra[2]['host']} told at once"
                  f"{' (PRIORITY: special tier)' if extra[2].get('priority') else ''}", flush=True)

    scan("main-in", BADGES["li"], "Li Wei, staff, badges in at the main gate")
    scan("main-in", passes["vip"], "Chen Jie, a special-tier VIP, shows her QR pass; two companions with her")
    scan("office-in", passes["visitor"], "Zhang Lei, a visitor for the lobby only, tries the office door")
    scan("main-in", BADGES["sun"], "Sun Qiang, a contractor whose permit ran out yesterday")
    scan("main-in", BADGES["ma"], "Ma Tao, on the blocklist, tries his old badge")
    scan("main-in", passes["visitor"], "Zhang Lei enters through the main gate")
    scan("main-in", passes["visitor"], "...and someone tries Zhang's pass again right behind him")
    scan("main-out", passes["visitor"], "Zhang Lei wants to leave, but his host has not signed off the visit")
    central = readers.get("central")
    if central:
        print("- Wang Fang, his host, signs the visit off in the central system (it opens nothing by itself)", flush=True)
        central.send("signoff v-zhang h-1002")
        if tail.poll(("visit.signed_off",)):
            print("  -> visit.signed_off received over MQTT", flush=True)
        scan("main-out", passes["visitor"], "Zhang Lei scans his pass at the exit again")
        if tail.poll(("visit.checked_out",), timeout=0):  # journaled with the grant, as above
            print("  -> the pass is consumed: it will not open any gate of the site again", flush=True)
        holiday(central, tail, scan, passes["working_days"], site)
    if api_port and "yard-in" in readers:
        vehicle(readers, tail, site, api_port)
    print("- The guard turns the lockdown key switch", flush=True)
    readers["io"].send("input 101 on")
    if tail.poll(("mode.changed",)):
        print("  mode -> lockdown", flush=True)
    scan("main-in", BADGES["wang"], "Wang Fang, staff, arrives during the lockdown")
    scan("main-in", BADGES["zhao"], "Zhao Min, a supervisor, arrives during the lockdown")
    readers["io"].send("input 101 off")
    if tail.poll(("mode.changed",)):
        print("- The key switch returns: mode -> normal", flush=True)
    guard_round(readers, tail)
    print("\nEvery decision above is in the journal: gatekeeper events --config", site, flush=True)
    if central:
        central.send("wait-published")
        central.wait_for("central published")
        report = _central_report(central, tail)
        if report:
            print(f"The central system received {report['received']} events from gate-1 over MQTT: "
                  f"{report['gaps']} missing, {report['out_of_order']} out of order.", flush=True)


def vehicle(readers: dict[str, Child], tail: JournalWatch, site: Path, port: int) -> None:
    """P26: a van nobody registered reaches the barrier: held for the guard, who lets it through once."""
    print("- A delivery van, plate 京A 12345, reaches the vehicle barrier (the camera sends GBK)", flush=True)
    readers["yard-in"].send("京A 12345")
    got = tail.poll(("vehicle.held", "access.granted", "access.denied"))
    if got is None or got[1] != "vehicle.held":
        print("  (the plate was not held)", flush=True)
        return
    print(f"  yard     in   HELD     plate {got[2]['plate']}  reason={got[2]['reason']}  (shown on the console)",
          flush=True)
    import httpx
    guard = (site.parent / "tokens.txt").read_text().splitlines()[0].split(": ", 1)[1]
    try:
        r = httpx.post(f"http://127.0.0.1:{port}/vehicles/{got[2]['plate']}/admit", timeout=10,
                       json={"reason": "delivery expected by stores"}, headers={"Authorization": f"Bearer {guard}"})
    except httpx.HTTPError as e:
        print(f"  (the API did not answer: {e})", flush=True)
        return
    if r.status_code == 200 and tail.poll(("override.opened",)):
        print("  -> the guard lets it through once, with a reason: the barrier rises, journaled as override.opened",
              flush=True)


def holiday(central: Child, tail: JournalWatch, scan, text: str, site: Path) -> None:
    """P24: the central system declares today (site local date) a public holiday in an allow-list batch; a
    visitor booked on working days is refused, and the day is taken back."""
    import tomllib
    from datetime import datetime
    from zoneinfo import ZoneInfo
    zone = tomllib.loads(site.read_text())["site"]["timezone"]
    today = datetime.now(ZoneInfo(zone)).date().isoformat()
    print(f"- The central system declares today ({today}) a public holiday: a `calendar` item in a batch", flush=True)
    central.send("calendar " + json.dumps({"date": today, "kind": "holiday"}))
    if tail.poll(("allowlist.applied",)):
        scan("main-in", text, "Liu Yang, a visitor booked on working days, arrives on the holiday")
    central.send(f"uncalendar {today}")
    if tail.poll(("allowlist.applied",)):
        print("  -> the central system takes the holiday back (calendar_remove)", flush=True)


def _round_due_now(text: str) -> str:
    """P21: the demo's night round starts at this minute (site local time) instead of 22:00, so the story can
    walk its first round whenever the demo runs; the other five follow every 80 minutes, as at night."""
    import tomllib
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo
    now = datetime.now(ZoneInfo(tomllib.loads(text)["site"]["timezone"]))
    start, end = now.strftime("%H:%M"), (now + timedelta(hours=8)).strftime("%H:%M")
    return text.replace('start = "22:00"\nend = "06:00"', f'start = "{start}"\nend = "{end}"', 1)


def guard_round(readers: dict[str, Child], tail: JournalWatch) -> None:
    """P21: Li Wei, a guard, walks the round that is due now: each tap is a checkpoint, never an entry."""
    print("- Li Wei, on guard duty, walks the patrol round due now (the demo's night round starts at its start)",
          flush=True)
    for checkpoint in ("patrol-1", "patrol-2"):
        readers[checkpoint].send(BADGES["li"])
        got = tail.poll(("tour.checkpoint",))
        if got is None:
            print(f"  (no tap at {checkpoint} within {WAIT_S:.0f} s: is the daemon running?)", flush=True)
            return
        d = got[2]
        print(f"  {checkpoint:<8} tap   {'counted' if d.get('counted') else 'NOT counted'}"
              f"  round {d.get('round')}  {d.get('order') or d.get('reason')}", flush=True)
    done = tail.poll(("tour.completed",))
    if done:
        print(f"  -> tour.completed: round {done[2]['round']} of {done[2]['tour']} in {done[2]['duration_s']:.0f} s,"
              " no door opened", flush=True)


def _central_report(central: Child, tail: "JournalWatch") -> dict | None:
    """What the central simulator has from gate-1, once it has everything journaled so far."""
    last = tail.last_seq()
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        central.send("report")
        line = central.wait_for("central report")
        gates = json.loads(line.split(" ", 2)[2]).get("gates", {})
        g = gates.get("gate-1")
        if g and g.get("max_seq", 0) >= last:
            return g
        time.sleep(0.2)
    return None


def interactive(readers: dict[str, Child], tail: JournalWatch) -> None:
    names = [n for n in readers if n != "io"]
    print(f"\nThe gate stays up. Scan more: type `READER CREDENTIAL`, e.g. `main-in {BADGES['li']}` "
          f"(readers: {', '.join(names)}; passes are in the state folder). Ctrl-C stops everything.", flush=True)
    if not sys.stdin.isatty():
        while True:
            time.sleep(3600)
    for line in sys.stdin:
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or parts[0] not in names:
            print(f"  usage: READER CREDENTIAL, READER one of {', '.join(names)}", flush=True)
            continue
        readers[parts[0]].send(parts[1].strip())
        got = tail.poll(DECISIONS)
        if got:
            show(*got[1:])
    while True:
        time.sleep(3600)

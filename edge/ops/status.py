"""`gatekeeper status`: the gate at a glance, from its database and, when the daemon runs, its /health.

Works with the daemon down: it says so and shows what the database holds. Exit 0 when the daemon runs,
3 when it does not (as `systemctl status`), so a script can tell without parsing.
"""
from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request

from edge.ops.common import database

NOT_RUNNING = 3
HEALTH_TIMEOUT_S = 3.0


def add_command(sub) -> None:
    st = sub.add_parser("status", help="the gate's state: mode, devices, allow-list, outbox, people, clock")
    st.add_argument("--config", required=True, help="site TOML file")
    st.add_argument("--json", action="store_true", help="one JSON object, for scripts")
    st.set_defaults(func=cmd_status)


def cmd_status(args) -> int:
    from edge.runtime import runfile, timesync
    cfg, path = database(args.config)
    run = runfile.running(path)
    report = {"site": cfg.site.id, "gate": cfg.site.gate, "database": str(path),
              "daemon": {"running": run is not None, "pid": (run or {}).get("pid")}}
    report.update(from_database(path, cfg.mqtt is not None))
    health, why = None, None
    if run is not None:
        url = run.get("api") or _configured_api(cfg)
        if url:
            health, why = fetch_health(url)
        else:
            why = "no local API configured"
    report["health"] = health
    if why:
        report["health_error"] = why
    if health:  # the daemon's own view is newer than what it last wrote
        report["mode"]["mode"] = health.get("mode", report["mode"]["mode"])
        report["devices_down"] = health.get("devices_down")
    else:
        report["devices_down"] = None
    sync = timesync.read()
    report["clock"] = {"now": _iso(time.time()), "sync": sync.state, "source": sync.source,
                       "offset_s": sync.offset_s, "est_error_s": sync.est_error_s,
                       **({k: health["clock"].get(k) for k in ("valid", "central_offset_s")}
                          if health and "clock" in health else {})}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(human(report))
    return 0 if run is not None else NOT_RUNNING


def from_database(path, has_link: bool) -> dict:
    """What the database holds, read in one short transaction (never holding the daemon's log back)."""
    import sqlite3
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        conn.execute("BEGIN")
        meta = dict(conn.execute("SELECT key, value FROM meta"))
        last_seq = conn.execute("SELECT coalesce(max(seq), 0) FROM journal").fetchone()[0]
        applied = conn.execute("SELECT time FROM journal WHERE type='allowlist.applied' ORDER BY seq DESC"
                               " LIMIT 1").fetchone()
        held = conn.execute("SELECT count(*) FROM held_exits").fetchone()[0]
        on_site = conn.execute("SELECT coalesce(sum(party), 0) FROM presence").fetchone()[0]
        conn.execute("COMMIT")
    finally:
        conn.close()
    heard = meta.get("central_heard_at")
    return {
        "mode": {"mode": meta.get("mode", "normal"), "by": meta.get("mode_by") or None,
                 "scope": meta.get("mode_scope", "gate"),
                 "since": _iso(float(meta["mode_at"])) if meta.get("mode_at") else None},
        "allowlist": {"version": int(meta.get("allowlist_version", "0")),
                      "applied": applied[0] if applied else None,
                      "age_s": _age(applied[0]) if applied else None},
        "central_heard": _iso(float(heard)) if heard else None,
        # the outbox is the journal beyond what the broker acknowledged (the watermark is saved about once a
        # second, so a running gate's depth may read a little high)
        "outbox_depth": max(0, last_seq - int(meta.get("outbox_acked", "0"))) if has_link else None,
        "held_exits": held,
        "on_site": on_site,
        "journal": {"last_seq": last_seq, "epoch": meta.get("epoch")},
    }


def fetch_health(url: str) -> tuple[dict | None, str | None]:
    """The daemon's /health, or why not. No token is sent, and the answer holds no secret; the daemon's own
    certificate is not checked (it names the gate's address, not the loopback this asks)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=HEALTH_TIMEOUT_S,
                                    context=ctx if url.startswith("https") else None) as r:
            return json.loads(r.read()), None
    except (urllib.error.URLError, OSError, ValueError) as e:
        return None, f"{url}/health: {getattr(e, 'reason', e)}"


def _configured_api(cfg) -> str | None:
    """The API's address from the config, for a daemon that did not say where it listens."""
    from edge.runtime.runfile import api_url
    a = cfg.api
    if a is None or a.port == 0:
        return None
    return api_url("https" if a.tls_cert_file else "http", a.bind, a.port)


def _iso(t: float) -> str:
    from edge.store.journal import rfc3339
    return rfc3339(t)


def _age(rfc: str) -> float:
    from datetime import datetime
    return round(time.time() - datetime.fromisoformat(rfc.replace("Z", "+00:00")).timestamp(), 1)


def _duration(s: float | None) -> str:
    if s is None:
        return "-"
    s = abs(s)
    for unit, n in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= n:
            return f"{s / n:.1f} {unit}"
    return f"{s:.0f} s"


def _seconds(s: float, signed: bool = False) -> str:
    """NTP's figures: milliseconds while small, seconds beyond."""
    sign = "+" if signed else ""
    return f"{s * 1000:{sign}.1f} ms" if abs(s) < 1 else f"{s:{sign}.1f} s"


def human(r: dict) -> str:
    d, m, al, c = r["daemon"], r["mode"], r["allowlist"], r["clock"]
    lines = [f"gate {r['site']}/{r['gate']}  ({r['database']})"]
    if d["running"]:
        h = r["health"]
        state = h["status"] if h else f"health unknown: {r.get('health_error')}"
        lines.append(f"daemon      running, pid {d['pid']}, {state}")
    else:
        lines.append("daemon      NOT RUNNING (what follows is what the database holds)")
    mode = m["mode"] + (f" by {m['by']}" if m["by"] else "") + (f" since {m['since']}" if m["since"] else "")
    lines.append(f"mode        {mode} ({m['scope']})")
    down = r["devices_down"]
    lines.append("devices     " + ("unknown (the daemon is not answering)" if down is None
                                   else ("all up" if not down else "DOWN: " + ", ".join(down))))
    lines.append(f"allow-list  version {al['version']}"
                 + (f", applied {al['applied']} ({_duration(al['age_s'])} ago)" if al["applied"] else ""))
    if r["central_heard"]:
        lines.append(f"central     last heard {r['central_heard']}")
    lines.append("outbox      " + ("no central link" if r["outbox_depth"] is None
                                   else f"{r['outbox_depth']} events not yet acknowledged"))
    lines.append(f"held exits  {r['held_exits']}")
    lines.append(f"on site     {r['on_site']} people")
    lines.append(f"journal     seq {r['journal']['last_seq']}, epoch {r['journal']['epoch']}")
    clock = f"{c['now']}, {c['sync']}" + (f" ({c['source']})" if c["source"] else "")
    if c["offset_s"] is not None:
        clock += f", offset {_seconds(c['offset_s'], signed=True)}"
    if c["est_error_s"] is not None:
        clock += f", est. error {_seconds(c['est_error_s'])}"
    if c.get("central_offset_s") is not None:
        clock += f", central {c['central_offset_s']:+.1f} s"
    if c.get("valid") is False:
        clock += ", IMPLAUSIBLE (P3: time-bounded credentials refused)"
    lines.append(f"clock       {clock}")
    return "\n".join(lines)


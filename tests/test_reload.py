"""SIGHUP on the running daemon, as an operator sends it (`systemctl reload`): what can change while the doors
work does, what needs a restart is named, and a config that no longer reads changes nothing and stops nothing."""
from __future__ import annotations

import os
import signal
import time

import pytest

from edge.passes import issue_pass
from edge.passes.keys import generate_keypair
from sitekit import DAY, iso, make_site
from test_e2e_gate import staffed_gate

pytestmark = pytest.mark.e2e


def _lines_before(daemon, needle: str) -> list[str]:
    out = list(daemon.output)
    return out[:next(i for i, line in enumerate(out) if needle in line)]


def test_sighup_trusts_a_new_key_changes_schedules_and_the_log_level_and_names_restart_only_changes(tmp_path, procs):
    site = make_site(tmp_path / "site")
    # the gate's own lines at warning: a decision (info) is not logged until a reload says info
    site.config.write_text(site.config.read_text() + '\n[log]\nlevel = "warning"\n')
    now = time.time()
    assert site.import_lines([{"credential": "badge:0C0FFEE1", "holder": "h-4", "category": "contractor",
                               "areas": ["site"], "valid_from": iso(now - DAY), "valid_until": iso(now + DAY),
                               "schedule": "holiday"}]).returncode == 0
    g = staffed_gate(site, procs)
    _, etype, data = g.scan("main-in", "0C0FFEE1")  # the holiday schedule has no days yet (P5)
    assert (etype, data["reason"]) == ("access.denied", "outside_schedule")
    key = generate_keypair("central-2", site.dir / "keys")  # a second signing key, not trusted yet
    visitor = issue_pass(key, "central-2", holder="h-7", category="visitor", areas=["site/lobby"],
                         valid_from=now - 60, valid_until=now + 3600, host="h-1")
    _, etype, data = g.scan("main-in", visitor)
    assert (etype, data["reason"]) == ("access.denied", "bad_signature")

    text = site.config.read_text().replace('level = "warning"', 'level = "info"')
    text = text.replace("[schedules.holiday]\ndays = []", '[schedules.holiday]\ndays = ["mon", "tue", "wed", '
                        '"thu", "fri", "sat", "sun"]\nstart = "00:00"\nend = "24:00"')
    site.config.write_text(text + '\n[[keys]]\nkid = "central-2"\npublic_key_file = "keys/central-2.pub"\n'
                                  'scope = ["visitor"]\n')
    site.edit_door("main", pulse_s=0.5)  # wired into the door's output at start: a restart's business
    os.kill(g.daemon.p.pid, signal.SIGHUP)
    reloaded = g.daemon.wait_for("reloaded")
    assert ("changed: schedules.holiday.days, schedules.holiday.start, schedules.holiday.end, keys, log.level; "
            "trusted keys: +central-2") in reloaded, reloaded
    assert "pulse_s" not in reloaded
    restart = g.daemon.wait_for("need a restart")
    assert restart.endswith("need a restart to take effect: doors[0].pulse_s"), restart
    assert not any("DENIED" in line for line in _lines_before(g.daemon, "reloaded")), "logged at warning"

    _, etype, data = g.scan("main-in", visitor)
    assert (etype, data["reason"], data["holder"]) == ("access.granted", "ok", "h-7")
    assert "main in GRANTED h-7" in g.daemon.wait_for("GRANTED h-7")  # info lines are logged now
    _, etype, data = g.scan("office-in", "0C0FFEE1")  # every hour of every day is a holiday now
    assert (etype, data["reason"]) == ("access.granted", "ok")

    # a config that no longer parses: named as an error, the running config stays, the daemon serves on
    site.config.write_text(site.config.read_text().replace("[site]", "[site", 1))
    os.kill(g.daemon.p.pid, signal.SIGHUP)
    refused = g.daemon.wait_for("not reloaded")
    assert "ERROR" in refused and "not valid TOML" in refused and f"{site.config}:2:" in refused, refused
    another = issue_pass(key, "central-2", holder="h-9", category="visitor", areas=["site/lobby"],
                         valid_from=now - 60, valid_until=now + 3600, host="h-1")
    _, etype, data = g.scan("main-in", another)  # decided on the config that stayed: central-2 trusted
    assert (etype, data["reason"], data["holder"]) == ("access.granted", "ok", "h-9")
    assert g.daemon.p.poll() is None


def test_sighup_with_a_missing_key_file_keeps_the_keys_it_has(tmp_path, procs):
    """A reload that cannot load a named key file trusts nothing less: the old keyring stays whole."""
    g = staffed_gate(make_site(tmp_path / "site"), procs)
    (g.site.dir / "keys" / "central-1.pub").unlink()
    os.kill(g.daemon.p.pid, signal.SIGHUP)
    refused = g.daemon.wait_for("not reloaded")
    assert "keys[0].public_key_file: cannot read" in refused, refused
    _, etype, data = g.scan("main-in", g.site.visitor_pass("h-8"))
    assert (etype, data["reason"]) == ("access.granted", "ok")
    assert g.daemon.p.poll() is None


def test_what_a_reload_takes_and_what_waits_for_a_restart(tmp_path):
    """Keys, schedules and the log are taken at once; the rest keeps its running value until a restart."""
    from edge.config import load_config
    from edge.config.reload import merge
    site = make_site(tmp_path / "site")
    running, _ = load_config(site.config)
    text = site.config.read_text().replace('[schedules.visiting_hours]\nstart = "00:00"',
                                           '[schedules.visiting_hours]\nstart = "07:00"')
    site.config.write_text(text + '\n[log]\nlevel = "debug"\n')
    site.edit_door("office", pulse_s=2)
    new, _ = load_config(site.config)
    cfg, live, restart = merge(running, new)
    assert live == ["schedules.visiting_hours.start", "log.level"]
    assert restart == ["doors[1].pulse_s"]
    assert cfg.schedule_windows()["visiting_hours"][1] == 7 * 60 and cfg.log.level == "debug"
    assert cfg.doors[1].pulse_s == running.doors[1].pulse_s  # the door keeps what its output was wired with

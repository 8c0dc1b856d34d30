"""OSDP readers against a libosdp peripheral-device simulator in its own process, over a pty bridge."""
from __future__ import annotations

import pytest

from drivers.osdp_reader import OsdpReader
from sitekit import Collector, JournalWatch, make_site
from test_e2e_gate import STAFF, Gate

pytestmark = pytest.mark.e2e

KEY = "00112233445566778899aabbccddeeff"


def bridge(procs):
    b = procs.start("ptybridge", "-m", "simulators.ptybridge")
    return b.wait_for("ptybridge").split()[1:3]


def reader_and_sim(procs, sim_key: str = KEY):
    """A peripheral simulator on one end of a serial bridge, our control panel on the other."""
    pd_end, cp_end = bridge(procs)
    sim = procs.start("osdp", "-m", "simulators.osdp_reader", "--device", pd_end, "--scbk", sim_key, stdin=True)
    sim.wait_for("osdp_reader ready")
    c = Collector()
    r = OsdpReader("side-in", cp_end, scbk=bytes.fromhex(KEY), on_presentation=c.on_presentation,
                   on_state=c.on_state)
    r.start()
    return pd_end, sim, c, r


def test_a_card_arrives_as_a_badge_of_its_hex_and_the_reader_shows_the_decision(procs):
    _, sim, c, r = reader_and_sim(procs)
    try:
        c.wait(lambda: "up" in c.states)
        sim.send("card 04a1b2c3")
        c.wait(lambda: c.values == ["badge:04A1B2C3"])
        assert (c.presented[0].reader, c.presented[0].kind) == ("side-in", "badge")
        r.feedback(True)
        sim.wait_for("osdp_reader led green")
        r.feedback(False)
        sim.wait_for("osdp_reader led red")
        sim.wait_for("osdp_reader buzzer 2")
    finally:
        r.stop()


def test_a_reader_without_the_site_key_never_comes_online(procs):
    _, sim, c, r = reader_and_sim(procs, sim_key="ff" * 16)
    try:
        sim.send("card 04a1b2c3")
        with pytest.raises(AssertionError):
            c.wait(lambda: "up" in c.states or c.presented, timeout=4)
    finally:
        r.stop()


def test_a_reader_that_goes_away_is_down_and_up_again_when_back(procs):
    pd_end, sim, c, r = reader_and_sim(procs)
    try:
        c.wait(lambda: "up" in c.states)
        sim.kill()
        c.wait(lambda: c.states[-1] == "down")
        sim = procs.start("osdp", "-m", "simulators.osdp_reader", "--device", pd_end, "--scbk", KEY, stdin=True)
        c.wait(lambda: c.states.count("up") == 2)
        sim.send("card 0a0b0c0d")
        c.wait(lambda: "badge:0A0B0C0D" in c.values)
    finally:
        r.stop()


def test_an_osdp_card_opens_the_door_and_the_reader_turns_green(tmp_path, procs):
    pd_end, cp_end = bridge(procs)
    sim = procs.start("osdp", "-m", "simulators.osdp_reader", "--device", pd_end, "--scbk", KEY, stdin=True)
    sim.wait_for("osdp_reader ready")
    site = make_site(tmp_path / "site")
    (site.dir / "keys" / "side-in.scbk").write_text(KEY + "\n")
    site.config.write_text(site.config.read_text() + f'''
[[readers]]
name = "side-in"
type = "osdp"
url = "{cp_end}"
scbk_file = "keys/side-in.scbk"
door = "main"
direction = "in"
''')
    assert site.import_lines([{"credential": f"badge:{STAFF}", "holder": "h-1", "category": "staff",
                               "areas": ["site"]}]).returncode == 0
    g = Gate(site, procs)
    g.start_hardware()
    g.daemon = procs.start("daemon", "-m", "edge.cli", "run", "--config", str(site.config))
    g.daemon.wait_for("gatekeeper ready")
    sim.wait_for("osdp_reader online")
    try:
        sim.send(f"card {STAFF}")
        _, etype, data = JournalWatch(site.db).next(("access.granted", "access.denied"))
        assert (etype, data["reader"], data["credential_ref"]) == ("access.granted", "side-in", f"badge:{STAFF}")
        sim.wait_for("osdp_reader led green")
        sim.send("card DEADBEEF")
        _, etype, data = JournalWatch(site.db).next(("access.denied",))
        assert data["reason"] == "unknown_credential"
        sim.wait_for("osdp_reader led red")
    finally:
        g.io.close()

"""OSDP readers against a libosdp peripheral-device simulator in its own process, over a pty bridge."""
from __future__ import annotations

import logging
import time

import pytest
from osdp import Event

from drivers.osdp_reader import OsdpReader
from sitekit import Collector, JournalWatch, make_site, wait_until
from unitsandbox import confined
from test_e2e_gate import STAFF, Gate

pytestmark = pytest.mark.e2e

KEY = "00112233445566778899aabbccddeeff"


def bridge(procs):
    b = procs.start("ptybridge", "-m", "simulators.ptybridge")
    return b.wait_for("ptybridge").split()[1:3]


def reader_and_sim(procs, sim_key: str = KEY, **kw):
    """A peripheral simulator on one end of a serial bridge, our control panel on the other."""
    pd_end, cp_end = bridge(procs)
    sim = procs.start("osdp", "-m", "simulators.osdp_reader", "--device", pd_end, "--scbk", sim_key, stdin=True)
    sim.wait_for("osdp_reader ready")
    c = Collector()
    r = OsdpReader("side-in", cp_end, scbk=bytes.fromhex(KEY), on_presentation=c.on_presentation,
                   on_state=c.on_state, **kw)
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


def osdp_side_in(procs, site, door: str, extra: str = ""):
    """A peripheral simulator on one end of a serial bridge, and the site's OSDP reader `side-in` at `door` on the
    other; the simulator (its reader comes online once the daemon runs)."""
    pd_end, cp_end = bridge(procs)
    sim = procs.start("osdp", "-m", "simulators.osdp_reader", "--device", pd_end, "--scbk", KEY, stdin=True)
    sim.wait_for("osdp_reader ready")
    (site.dir / "keys" / "side-in.scbk").write_text(KEY + "\n")
    site.config.write_text(site.config.read_text() + f'''
[[readers]]
name = "side-in"
type = "osdp"
url = "{cp_end}"
scbk_file = "keys/side-in.scbk"
door = "{door}"
direction = "in"
{extra}''')
    return sim


def daemon_with(site, procs, sim) -> Gate:
    """The door I/O simulator and the daemon running, the OSDP reader online."""
    g = Gate(site, procs)
    g.start_hardware()
    g.daemon = procs.start("daemon", *confined("-m", "edge.cli", "run", "--config", str(site.config)))
    g.daemon.wait_for("gatekeeper ready")
    sim.wait_for("osdp_reader online")
    return g


def test_an_osdp_card_opens_the_door_and_the_reader_turns_green(tmp_path, procs):
    site = make_site(tmp_path / "site")
    sim = osdp_side_in(procs, site, "main")
    assert site.import_lines([{"credential": f"badge:{STAFF}", "holder": "h-1", "category": "staff",
                               "areas": ["site"]}]).returncode == 0
    g = daemon_with(site, procs, sim)
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


def keys(sim, text: str) -> int:
    """Type on the simulator's keypad, one KeyPress event; back once the gate has polled it: the next keys
    are sure to come in a poll of their own. Returns when they were sent (monotonic ns)."""
    sim.send(f"keys {text}")
    at = int(sim.wait_for("osdp_reader keys sent").rsplit("at=", 1)[1])
    sim.wait_for("osdp_reader keys delivered")
    return at


def pins(c):
    return [p.value for p in c.presented if p.kind == "pin"]


def test_p34_a_pin_typed_over_several_polls_arrives_as_one_and_no_digit_is_logged(procs, caplog):
    caplog.set_level(logging.DEBUG)
    # the parts come within a fraction of a second of each other; a pause of 15 s keeps a busy machine
    # from splitting the entry (the 3 s pause has a test of its own)
    _, sim, c, r = reader_and_sim(procs, pin_pause_s=15)
    try:
        c.wait(lambda: "up" in c.states)
        keys(sim, "96")
        keys(sim, "5")
        keys(sim, "9#")
        c.wait(lambda: pins(c) == ["9659"])
        p = c.presented[0]
        assert (p.reader, p.kind, p.value) == ("side-in", "pin", "9659")
        keys(sim, "12*")  # `*` clears
        keys(sim, "5656#")
        c.wait(lambda: pins(c) == ["9659", "5656"])
        keys(sim, "569#")  # too short: nothing
        keys(sim, "9566#")
        c.wait(lambda: pins(c) == ["9659", "5656", "9566"])
    finally:
        r.stop()
    messages = [rec.getMessage() for rec in caplog.records]
    assert any("keypad entry at reader side-in ignored" in m for m in messages), messages
    assert not any(d in m for m in messages for d in "569"), messages


def test_p34_a_pause_longer_than_3_s_ends_the_pin(procs):
    _, sim, c, r = reader_and_sim(procs)  # the pause as shipped
    try:
        c.wait(lambda: "up" in c.states)
        at = keys(sim, "1234")
        c.wait(lambda: pins(c) == ["1234"])
        assert time.monotonic_ns() - at > 3e9  # not before the pause was over
        keys(sim, "5678#")  # a new entry
        c.wait(lambda: pins(c) == ["1234", "5678"])
    finally:
        r.stop()


def test_p34_a_second_card_mid_pin_discards_the_digits_and_is_a_card_as_usual(procs):
    _, sim, c, r = reader_and_sim(procs, pin_pause_s=15)  # only the card may end the entry here
    try:
        c.wait(lambda: "up" in c.states)
        sim.send("card 04a1b2c3")
        c.wait(lambda: c.values == ["badge:04A1B2C3"])
        keys(sim, "12")
        sim.send("card 0a0b0c0d")
        c.wait(lambda: c.values == ["badge:04A1B2C3", "badge:0A0B0C0D"])
        keys(sim, "34#")  # two digits since the card: no PIN
        keys(sim, "4321#")
        c.wait(lambda: pins(c) == ["4321"])
        assert c.values == ["badge:04A1B2C3", "badge:0A0B0C0D", "4321"]
    finally:
        r.stop()


def test_p34_a_pin_with_no_card_before_it_is_delivered(procs):
    """The core decides what a PIN without a card is; the pause here is the driver's, made short."""
    _, sim, c, r = reader_and_sim(procs, pin_pause_s=0.5)
    try:
        c.wait(lambda: "up" in c.states)
        keys(sim, "24680#")
        c.wait(lambda: c.values == ["24680"])
        keys(sim, "1357")
        c.wait(lambda: c.values == ["24680", "1357"])
    finally:
        r.stop()


def test_p34_key_presses_without_the_secure_channel_are_dropped(caplog):
    """libosdp never brings our reader up without its secure channel (so a real one cannot send keys then):
    an event handed over while it is not up is refused by the driver."""
    c = Collector()
    r = OsdpReader("side-in", "/dev/null", scbk=bytes.fromhex(KEY), on_presentation=c.on_presentation,
                   on_state=c.on_state)
    with caplog.at_level(logging.WARNING, logger="drivers.keypad"):
        r._event(0, {"event": Event.KeyPress, "reader_no": 0, "data": b"1234\r"})
        r._event(0, {"event": Event.KeyPress, "reader_no": 0, "data": b"56"})
        r._event(0, {"event": Event.KeyPress, "reader_no": 0, "data": b"78\r"})
        r._keypad_tick()
    assert "keypad entry at reader side-in dropped: secure channel down" in caplog.text
    assert "1234" not in caplog.text and "5678" not in caplog.text
    assert c.presented == []


def test_p34_prompt_pin_shows_the_prompt_colour(procs):
    _, sim, c, r = reader_and_sim(procs)
    try:
        c.wait(lambda: "up" in c.states)
        r.prompt_pin()
        sim.wait_for("osdp_reader led amber")
        r.feedback(True)
        sim.wait_for("osdp_reader led green")
    finally:
        r.stop()


def test_p34_a_card_then_its_pin_on_the_osdp_keypad_opens_the_pin_door(tmp_path, procs):
    """The daemon, an OSDP reader at the PIN door: the card makes the reader ask for the PIN (amber), the PIN
    typed over two polls opens the door (the coil read back) and the reader turns green; a wrong PIN is red."""
    from edge.core import pin
    from test_pin import FAST_N, PEPPER, pin_site
    site = pin_site(tmp_path)  # the office door needs the PIN
    sim = osdp_side_in(procs, site, "office", "keypad = true\n")
    assert site.import_lines([{"credential": f"badge:{STAFF}", "holder": "h-1", "category": "staff",
                               "areas": ["site"], "pin_hash": pin.make("86420975", PEPPER, n=FAST_N)}]).returncode == 0
    g = daemon_with(site, procs, sim)
    journal = JournalWatch(site.db)
    try:
        before = g.unlocks(1)
        sim.send(f"card {STAFF}")
        sim.wait_for("osdp_reader led amber")  # "enter PIN"
        keys(sim, "8642")
        keys(sim, "0975#")
        _, etype, data = journal.next(("access.granted", "access.denied"))
        assert (etype, data["reader"], data["door"]) == ("access.granted", "side-in", "office")
        sim.wait_for("osdp_reader led green")
        wait_until(lambda: g.unlocks(1) == before + 1, what="the office door unlocked once")
        sim.send(f"card {STAFF}")
        sim.wait_for("osdp_reader led amber")
        keys(sim, "31731731#")
        _, etype, data = journal.next(("access.granted", "access.denied"))
        assert (etype, data["reason"]) == ("access.denied", "pin_incorrect")
        sim.wait_for("osdp_reader led red")
        assert g.unlocks(1) == before + 1
    finally:
        g.io.close()
    log = "\n".join(g.daemon.output)
    assert "86420975" not in log and "31731731" not in log

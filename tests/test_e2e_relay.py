"""The serial relay board end to end: a grant switches the channel on then off; status says unsupervised."""
from __future__ import annotations

import re

import pytest

from drivers.relay_board import frame, parse
from demo.procs import listen_port
from sitekit import JournalWatch, make_site
from unitsandbox import confined
from test_e2e_gate import STAFF

pytestmark = pytest.mark.e2e


def test_relay_frames_carry_their_checksum():
    assert frame(1, True) == bytes.fromhex("a00101a2") and frame(2, False) == bytes.fromhex("a00200a2")
    assert parse(frame(7, True)) == (7, True)
    assert parse(bytes.fromhex("a00101a3")) is None  # a bad checksum


def test_a_granted_badge_switches_the_relay_channel_on_then_off(tmp_path, procs):
    board = procs.start("relay_board", "-m", "simulators.relay_board", "--listen", "127.0.0.1:0", stdin=True)
    port = listen_port(board.wait_for("relay_board listening"))
    site = make_site(tmp_path / "site")
    text = site.config.read_text()
    text = re.sub(r'\[\[io_modules\]\]\nname = "io1"\nhost = "127.0.0.1"\nport = \d+\n',
                  f'[[io_modules]]\nname = "io1"\ntype = "relay_serial"\ndevice = "socket://127.0.0.1:{port}"\n', text)
    text = re.sub(r'\[site_inputs\][^\[]*', "", text)  # a relay board has no inputs
    text = text.replace("lock_coil = 0\ncontact_input = 0\n", "lock_coil = 1\n")
    text = text.replace("lock_coil = 1\ncontact_input = 2\n", "lock_coil = 2\n")
    site.config.write_text(text)
    assert site.import_lines([{"credential": f"badge:{STAFF}", "holder": "h-1", "category": "staff",
                               "areas": ["site"]}]).returncode == 0
    reader = procs.start("main-in", "-m", "simulators.badge_reader", "--listen", "127.0.0.1:0", stdin=True)
    site.set_reader_port("main-in", listen_port(reader.wait_for("badge_reader listening")))
    daemon = procs.start("daemon", *confined("-m", "edge.cli", "run", "--config", str(site.config)))
    daemon.wait_for("gatekeeper ready")
    board.wait_for("relay_board channel 1 off")  # start: every output driven off (locked), no pulse
    board.wait_for("relay_board channel 2 off")
    reader.wait_for("badge_reader connected")
    reader.send(STAFF)
    _, etype, _ = JournalWatch(site.db).next(("access.granted", "access.denied"))
    assert etype == "access.granted"
    board.wait_for("relay_board channel 1 on")
    board.wait_for("relay_board channel 1 off")
    assert not any("bad frame" in line for line in board.output)

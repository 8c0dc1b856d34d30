"""Modbus RTU end to end: the daemon drives the I/O module over a serial line (two bridged ptys)."""
from __future__ import annotations

import re

import pytest

from demo.procs import listen_port
from sitekit import JournalWatch, make_site
from unitsandbox import confined
from test_e2e_gate import STAFF

pytestmark = pytest.mark.e2e


def test_p2_a_granted_badge_pulses_the_lock_over_modbus_rtu(tmp_path, procs):
    bridge = procs.start("ptybridge", "-m", "simulators.ptybridge", "--baudrate", "9600")
    module_end, gate_end = bridge.wait_for("ptybridge").split()[1:3]
    site = make_site(tmp_path / "site")
    text = re.sub(r'\[\[io_modules\]\]\nname = "io1"\nhost = "127.0.0.1"\nport = \d+\n',
                  f'[[io_modules]]\nname = "io1"\ntype = "modbus_rtu"\ndevice = "{gate_end}"\nbaudrate = 9600\n',
                  site.config.read_text())
    assert 'type = "modbus_rtu"' in text
    site.config.write_text(text)
    assert site.import_lines([{"credential": f"badge:{STAFF}", "holder": "h-1", "category": "staff",
                               "areas": ["site"]}]).returncode == 0
    io = procs.start("door_io", "-m", "simulators.door_io", "--site", str(site.config), "--module", "io1",
                     "--rtu", module_end, stdin=True)
    io.wait_for("door_io listening")
    reader = procs.start("main-in", "-m", "simulators.badge_reader", "--listen", "127.0.0.1:0", stdin=True)
    site.set_reader_port("main-in", listen_port(reader.wait_for("badge_reader listening")))
    daemon = procs.start("daemon", *confined("-m", "edge.cli", "run", "--config", str(site.config)))
    daemon.wait_for("gatekeeper ready")
    daemon.wait_for("io module io1 ready", already=True)
    reader.wait_for("badge_reader connected")
    reader.send(STAFF)
    _, etype, _ = JournalWatch(site.db).next(("access.granted", "access.denied"))
    assert etype == "access.granted"
    io.wait_for("coil 0 unlocked")  # the pulse crossed the serial line
    io.wait_for("coil 0 locked")
    io.send("input 101 on")  # and the inputs come back over it: the lockdown key switch
    _, _, mode = JournalWatch(site.db).next("mode.changed")
    assert mode["mode"] == "lockdown"

"""The daemon's log as journald takes it: a priority on every line (`journalctl -p err` shows the faults), the
libraries' chatter off unless [log] wire asks for it, and JSON lines when [log] format says so."""
from __future__ import annotations

import json
import re

from sitekit import WAIT_S, make_site
from unitsandbox import confined

SYSTEMD = {"JOURNAL_STREAM": "8:12345"}  # what systemd sets when stderr is the journal


def _log_lines(daemon) -> list[str]:
    """Everything the daemon wrote to stderr, once it stopped; its own announcements (`gatekeeper ready`,
    printed on stdout for whoever started it) left out."""
    daemon.stop()
    assert daemon.eof.wait(WAIT_S)
    return [line for line in daemon.output if line and not line.startswith("gatekeeper ")]


def test_under_systemd_every_line_has_its_priority_and_the_wire_is_off(tmp_path, procs):
    """The I/O module is not there: the daemon logs the fault (an error) and pymodbus retries the connection,
    which the gate keeps to itself by default."""
    site = make_site(tmp_path / "site")
    d = procs.start("daemon", *confined("-m", "edge.cli", "run", "--config", str(site.config)), env=SYSTEMD)
    fault = d.wait_for("device io1 fault")
    assert fault.startswith("<3>ERROR edge.hardware.devices: device io1 fault"), fault
    assert d.wait_for("edge.daemon: gatekeeper test/gate-1 ready", already=True).startswith("<6>INFO ")
    lines = _log_lines(d)
    assert lines and all(re.match(r"<[0-7]>", line) for line in lines), lines
    assert not any("pymodbus" in line or "gatekeeper.wire" in line for line in lines), lines


def test_the_wire_logger_and_json_lines_are_turned_on_in_the_config(tmp_path, procs):
    site = make_site(tmp_path / "site")
    site.config.write_text(site.config.read_text() + '\n[log]\nformat = "json"\nwire = "warning"\n')
    d = procs.start("daemon", *confined("-m", "edge.cli", "run", "--config", str(site.config)), env=SYSTEMD)
    d.wait_for("gatekeeper.wire.pymodbus")  # its failed connection: a warning, on the wire logger
    d.wait_for("device io1 fault", already=True)
    docs = []
    for line in _log_lines(d):
        m = re.match(r"<([0-7])>(\{.*\})$", line)
        assert m, line
        doc = json.loads(m.group(2))
        assert int(m.group(1)) == doc["priority"]
        docs.append(doc)
    wire = [x for x in docs if x["logger"].startswith("gatekeeper.wire.pymodbus")]
    assert wire and all(x["level"] == "warning" and x["priority"] == 4 for x in wire), wire
    fault = next(x for x in docs if x["message"].startswith("device io1 fault"))
    assert (fault["level"], fault["priority"], fault["logger"]) == ("error", 3, "edge.hardware.devices")


def test_a_traceback_carries_the_priority_on_each_of_its_lines():
    """journald cuts a stream at newlines: a traceback's lines without the prefix would be logged as info
    and missing from `journalctl -p err`."""
    import logging
    from edge.runtime.logsetup import TextFormatter
    try:
        raise ValueError("the module answered garbage")
    except ValueError:
        import sys
        record = logging.LogRecord("edge.x", logging.ERROR, __file__, 1, "scan failed", (), sys.exc_info())
    text = TextFormatter(journal=True).format(record)
    assert len(text.splitlines()) > 3 and all(line.startswith("<3>") for line in text.splitlines()), text
    assert "<3>ValueError: the module answered garbage" in text


def test_a_reload_keeps_repeated_faults_counted_once(tmp_path):
    """The log's setup changed in place (as SIGHUP does) keeps lograte's filter on the one handler: a fault
    repeated a thousand times is still one line."""
    import subprocess
    import sys
    from sitekit import ROOT
    script = (
        "import logging\n"
        "from edge.runtime import logsetup, lograte\n"
        "logsetup.configure('info')\n"
        "lograte.install()\n"
        "logsetup.configure('debug', 'json', 'warning')\n"
        "for _ in range(1000):\n"
        "    logging.getLogger('edge.x').error('module %s refused', 'io1')\n"
    )
    r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
                       env={"PATH": "/usr/bin:/bin", "JOURNAL_STREAM": "8:1"})
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("<3>{") and '"message":"module io1 refused"' in lines[0], lines

"""Where the log goes and how each line looks: one handler on stderr, its level and format from the config's
[log] section (changed in place on SIGHUP), journald priorities under systemd, and the libraries' chatter on
a wire logger of its own, off unless asked for."""
from __future__ import annotations

import json
import logging
import os
import sys
import time

WIRE = "gatekeeper.wire"
# Libraries that talk about the wire (pymodbus retries and frames, paho's packets, uvicorn's connections,
# libosdp): the daemon reports the faults that matter itself (device.fault), so their lines stay off by
# default and are turned on with [log] wire when a link needs looking at.
THIRD_PARTY = ("pymodbus", "paho", "uvicorn", "osdp", "serial")
OFF = logging.CRITICAL + 10

# sd-daemon(3): a line starting "<N>" is logged by journald at syslog priority N
PRIORITY = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))


def priority(levelno: int) -> int:
    return next((p for level, p in PRIORITY if levelno >= level), 7)


def under_systemd() -> bool:
    """stderr goes to the journal (JOURNAL_STREAM), or we were started by systemd at all (INVOCATION_ID)."""
    return bool(os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"))


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message`; under systemd without the time (the journal has it) and with the
    priority prefix on every line, a traceback's too, so `journalctl -p err` shows the whole fault."""

    def __init__(self, journal: bool):
        super().__init__(("" if journal else "%(asctime)s ") + "%(levelname)s %(name)s: %(message)s")
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if not self.journal:
            return text
        prefix = f"<{priority(record.levelno)}>"
        return "\n".join(prefix + line for line in text.split("\n"))


class JsonFormatter(logging.Formatter):
    """One JSON object a line (a traceback inside it), for a log shipper; prefixed under systemd as well."""

    def __init__(self, journal: bool):
        super().__init__()
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        t = record.created
        doc = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z",
               "level": record.levelname.lower(), "priority": priority(record.levelno), "logger": record.name,
               "message": record.getMessage()}
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        line = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
        return f"<{priority(record.levelno)}>{line}" if self.journal else line


class ToWire(logging.Handler):
    """A library's records, handed on as the wire logger's (`gatekeeper.wire.pymodbus...`)."""

    def emit(self, record: logging.LogRecord) -> None:
        wire = logging.getLogger(WIRE)
        if wire.isEnabledFor(record.levelno):
            record.name = f"{WIRE}.{record.name}"
            wire.handle(record)


_handler: logging.Handler | None = None
_settings: tuple[str, str, str] = ("info", "text", "off")
override: str | None = None  # the command line's --log-level: wins over the config's for the process's life


def settings() -> tuple[str, str, str]:
    """(level, format, wire) as last configured: what another process of the daemon's (the API's) takes on."""
    return _settings


def configure(level: str = "info", fmt: str = "text", wire: str = "off") -> None:
    """Set (or, on SIGHUP, change in place) the level, the format and the wire logger. The one handler stays,
    with the filters others put on it (lograte's)."""
    level = override or level
    global _handler, _settings
    _settings = (level, fmt, wire)
    root = logging.getLogger()
    if _handler is None:
        for h in list(root.handlers):  # whatever an earlier basicConfig left
            root.removeHandler(h)
        _handler = logging.StreamHandler(sys.stderr)
        root.addHandler(_handler)
        for name in THIRD_PARTY:
            lib = logging.getLogger(name)
            lib.handlers = [ToWire()]
            lib.propagate = False
    journal = under_systemd()
    _handler.setFormatter(JsonFormatter(journal) if fmt == "json" else TextFormatter(journal))
    root.setLevel(level.upper())
    wire_level = OFF if wire == "off" else getattr(logging, wire.upper())
    logging.getLogger(WIRE).setLevel(wire_level)
    for name in THIRD_PARTY:  # off, a library does not even format its lines (pymodbus keeps its last frames)
        logging.getLogger(name).setLevel(wire_level)

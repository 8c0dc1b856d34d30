"""A local mosquitto for the demo, the tests and the benchmarks: its own config on a free port, started,
stopped and restarted at will. Debian's package is installed by scripts/setup.sh; no service is used."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


class Broker:
    """One mosquitto process; `persistence` keeps sessions and queued messages across restarts."""

    def __init__(self, workdir: Path, port: int | None = None, persistence: bool = True, listener_extra: str = "",
                 anonymous: bool = True):
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            f"{listener_extra}"
            f"allow_anonymous {'true' if anonymous else 'false'}\n"
            f"persistence {'true' if persistence else 'false'}\n"
            f"persistence_location {self.dir}/\n"
            "autosave_interval 1\n"
            # a slow subscriber must not lose QoS 1 messages in the tests: mosquitto's default is 1000
            "max_queued_messages 0\n"
            "max_inflight_messages 100\n"
            "message_size_limit 0\n"
            "user root\n"
            f"log_dest file {self.dir}/mosquitto.log\n"
        )

    def start(self) -> "Broker":
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"mosquitto exited: see {self.dir}/mosquitto.log")
                time.sleep(0.02)
        raise RuntimeError("mosquitto did not start listening")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

"""A local mosquitto for the demo, the tests and the benchmarks: its own config and port, started, stopped
and restarted at will. Debian's package is installed by scripts/setup.sh; no service is used.

mosquitto cannot be told to bind port 0 and say which port it got, so the port is picked here: outside the
kernel's ephemeral range (/proc/sys/net/ipv4/ip_local_port_range), which is where every outgoing connection
on the machine takes its local port and where `bind(0)` picks, so no other process takes it by chance, not
even while the broker is stopped for an outage. Another listener picking the same port is still possible:
mosquitto then exits with "Address already in use" and another port is tried.
"""
from __future__ import annotations

import os
import random
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
START_TIMEOUT_S = 60.0  # a busy machine is slow to start a process; the wait ends as soon as it runs
TRIES = 8


def _candidate_port() -> int:
    """A port outside the ephemeral range, above the usual services; bound from 0 when the range leaves none."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = map(int, f.read().split())
    except (OSError, ValueError):
        lo, hi = 32768, 60999  # Linux's default
    ranges = [r for r in (range(max(1024, min(20000, lo - 1000)), lo), range(hi + 1, 65536)) if len(r)]
    if ranges:
        return random.choice(random.choices(ranges, weights=[len(r) for r in ranges])[0])
    with socket.socket() as s:  # every port is ephemeral here: take one the kernel says is free
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """One mosquitto process; `persistence` keeps sessions and queued messages across restarts. Its port is
    chosen by the first start (or given) and kept by every restart: the clients know it."""

    def __init__(self, workdir: Path, port: int | None = None, persistence: bool = True, listener_extra: str = "",
                 anonymous: bool = True, *, users: dict[str, str] | None = None, acl: str | None = None,
                 extra: str = "", include_dir: Path | None = None):
        """`users` (name -> password) and `acl` (an ACL file's text) turn on mosquitto's own authentication and
        access control; `extra` is more config (a bridge's `connection` block fits: it comes after every
        general line); `include_dir` is a folder of `*.conf` files (a rendered site broker's conf.d), loaded
        last as mosquitto wants it, which may set allow_anonymous, password_file and acl_file itself."""
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port
        self.persistence, self.listener_extra, self.anonymous = persistence, listener_extra, anonymous
        self.users, self.acl, self.extra, self.include_dir = users, acl, extra, include_dir
        self.proc: subprocess.Popen | None = None
        self.conf = self.dir / "mosquitto.conf"
        self.log = self.dir / "mosquitto.log"
        self.passwd = self.dir / "passwd"
        self.acl_path = self.dir / "acl"

    def _write_access(self) -> str:
        """The password file and the ACL, when given; the config lines that name them."""
        lines = ""
        if self.users is not None:
            # mosquitto_passwd -U hashes a plain `name:password` file in place: no password on a command line
            self.passwd.write_text("".join(f"{u}:{p}\n" for u, p in self.users.items()))
            self.passwd.chmod(0o600)
            subprocess.run([shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd", "-U", str(self.passwd)],
                           check=True, capture_output=True)
            lines += f"password_file {self.passwd}\n"
        if self.acl is not None:
            self.acl_path.write_text(self.acl)
            lines += f"acl_file {self.acl_path}\n"
        return lines

    def _write_conf(self, port: int) -> None:
        anonymous = "" if self.include_dir else f"allow_anonymous {'true' if self.anonymous else 'false'}\n"
        self.conf.write_text(
            f"listener {port} 127.0.0.1\n"
            f"{self.listener_extra}"
            f"{anonymous}"
            f"persistence {'true' if self.persistence else 'false'}\n"
            f"persistence_location {self.dir}/\n"
            "autosave_interval 1\n"
            # a slow subscriber must not lose QoS 1 messages in the tests (mosquitto's default is 1000); not 0
            # (unlimited): mosquitto 2.0.11 then disconnects a client whose publish the ACL denies
            "max_queued_messages 1000000\n"
            "max_inflight_messages 100\n"
            "message_size_limit 0\n"
            "user root\n"
            f"log_dest file {self.log}\n"
            # information carries "... running" once every listener is open
            "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
            f"{self._write_access()}"
            f"{self.extra}"
            + (f"include_dir {self.include_dir}\n" if self.include_dir else "")
        )

    def start(self) -> "Broker":
        if self.proc is not None and self.proc.poll() is None:
            return self
        fixed = self.port is not None  # given, or kept from an earlier start: it cannot move
        for _ in range(1 if fixed else TRIES):
            port = self.port if fixed else _candidate_port()
            self._write_conf(port)
            if self._run() == "running":
                self.port = port
                return self
            if not fixed and "Address already in use" in self._new_log:
                continue  # another listener has that port: try another
            break
        raise RuntimeError(f"mosquitto did not start on port {port}: {self._new_log.strip()[-500:]} "
                           f"(see {self.log})")

    def _run(self) -> str:
        """Start mosquitto and wait for its own word that it listens: "running" in its log (after the
        listeners are open), not a connection to the port, which another process could answer."""
        offset = self.log.stat().st_size if self.log.exists() else 0
        self._new_log = ""
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            exited = self.proc.poll() is not None  # read before the log, so an exit's last words are in it
            if self.log.exists():
                with open(self.log, errors="replace") as f:
                    f.seek(offset)
                    self._new_log = f.read()
            if re.search(r"(?m)^\d+: mosquitto version \S+ running$", self._new_log) and not exited:
                return "running"
            if exited:
                self.proc.wait()
                self.proc = None
                return "exited"
            time.sleep(0.02)  # polling the log: mosquitto has no other way to say it is ready
        self.stop(signal.SIGKILL)
        self._new_log += f"\n(no 'running' within {START_TIMEOUT_S:.0f} s)"
        return "timeout"

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        elif self.proc:
            self.proc.wait()
        self.proc = None

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

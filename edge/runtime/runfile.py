"""`<database>.run`: a running daemon says so beside its database, for `gatekeeper status`.

The daemon holds an exclusive lock on the file while it runs; the kernel drops the lock when the process
ends, however it ends (kill -9, a power cut), so a file left behind never reads as a running daemon. It
holds the daemon's pid and where its API listens (a config may ask for any free port).
"""
from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path


def api_url(scheme: str, bind: str, port: int) -> str:
    """Where a local command reaches the API: a wildcard bind address is reached on loopback."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(bind, bind)
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def path_for(db: Path) -> Path:
    return db.with_name(db.name + ".run")


class RunFile:
    """Held by the daemon from start to stop."""

    def __init__(self, db: Path):
        self.path = path_for(db)
        self.fd: int | None = None

    def hold(self, **info) -> bool:
        """Take the lock and write `info`; False when another daemon holds it (that daemon's file stays)."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self.fd = fd
        self.update(**info)
        return True

    def update(self, **info) -> None:
        if self.fd is None:
            return
        data = json.dumps({"pid": os.getpid(), **info}).encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the lock; the file may stay, unlocked, saying nothing
            self.fd = None


def running(db: Path) -> dict | None:
    """What the running daemon of this database wrote, or None when no daemon holds the file."""
    try:
        fd = os.open(path_for(db), os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:  # locked: a daemon runs
            try:
                return json.loads(os.pread(fd, 4096, 0) or b"{}")
            except ValueError:
                return {}  # caught between its truncate and its write
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)

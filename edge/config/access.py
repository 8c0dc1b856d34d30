"""Whether the service user can read (or write) a path. `--check` is often run as root, who reads
everything: the question is whether the daemon, running as `gatekeeper`, will. A forked child takes that
user's uid and groups and tries, so the kernel answers (modes, owners, ACLs, read-only mounts alike)."""
from __future__ import annotations

import grp
import json
import os
import pwd
from dataclasses import dataclass

SERVICE_USER = "gatekeeper"  # the unit's User=


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]

    @property
    def is_me(self) -> bool:
        return self.uid == os.geteuid()


def service_user(name: str | None = None) -> User:
    """The named user (KeyError if there is none); else, for root, `gatekeeper` when it exists; else the
    current user, who is then the one the daemon runs as."""
    if name is None and os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVICE_USER)
            name = SERVICE_USER
        except KeyError:
            pass
    if name is None:
        pw = pwd.getpwuid(os.geteuid())
        return User(pw.pw_name, pw.pw_uid, os.getegid(), tuple(os.getgroups()))
    pw = pwd.getpwnam(name)
    return User(pw.pw_name, pw.pw_uid, pw.pw_gid, tuple(os.getgrouplist(pw.pw_name, pw.pw_gid)))


def _try(path: str, mode: str) -> str | None:
    """None when `path` can be used so; else why not (the system's words)."""
    try:
        if mode == "r":
            with open(path, "rb"):
                return None
        want = os.R_OK | os.W_OK if os.path.isfile(path) else os.W_OK | os.X_OK
        if os.access(path, want):
            return None
        return "Permission denied"
    except OSError as e:
        return e.strerror or str(e)
    except ValueError:  # a NUL in the name: no file can have it
        return "not a file name"


def probe(user: User, checks: list[tuple[str, str]]) -> list[str | None]:
    """For each (path, "r" or "w"), None or the reason `user` cannot read it (a file) or write it (a file
    or the folder a new file goes in)."""
    if user.is_me or not checks:
        return [_try(p, m) for p, m in checks]
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: becomes the user, tries, reports, and never returns into the caller's code
        code = 1
        try:
            os.close(r)
            os.setgroups(list(user.groups))
            os.setgid(user.gid)
            os.setuid(user.uid)
            os.write(w, json.dumps([_try(p, m) for p, m in checks]).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    if status != 0 or not data:
        return [_try(p, m) for p, m in checks]  # could not become the user: the current user's view
    return json.loads(data)


def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def owner_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)

"""The shipped unit's system-call filter, as systemd would apply it, for a process a test starts.

    python tests/unitsandbox.py [--user NAME] COMMAND [ARG...]
    procs.start("daemon", *confined("-m", "edge.cli", "run", ...))   # a test's daemon, confined

reads SystemCallFilter= and LimitNOFILE= from systemd/gatekeeper.service, expands the groups with
`systemd-analyze syscall-filter` (the machine's own systemd, so the groups are the ones it would apply), loads
the same filter through libseccomp (a call outside it kills the process with SIGSYS, as systemd's default
action does; what ProtectClock= refuses fails with EPERM) and executes COMMAND. Children inherit the filter, so the API process runs under it too.
Run as root, it first becomes NAME, as the unit's User= does. Without --user it stays root and allows fchown
too: SQLite changes the owner of the files it makes (its journal) to the database's, and only as root, which
the service never is.
"""
from __future__ import annotations

import ctypes
import os
import pwd
import resource
import subprocess
import sys
from functools import cache
from pathlib import Path

UNIT = Path(__file__).resolve().parents[1] / "systemd" / "gatekeeper.service"

SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_ACT_EPERM = 0x00050000 | 1  # SCMP_ACT_ERRNO(EPERM)
PR_SET_NO_NEW_PRIVS = 38


def unit_settings(text: str) -> dict[tuple[str, str], list[str]]:
    """(section, key) -> every value given, in order (a unit may repeat a key)."""
    out: dict[tuple[str, str], list[str]] = {}
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.setdefault((section, key.strip()), []).append(value.strip())
    return out


def service_settings(key: str) -> list[str]:
    """Every value of `key` in the unit's [Service] section, in order."""
    return unit_settings(UNIT.read_text()).get(("Service", key), [])


@cache
def _group(name: str) -> frozenset[str]:
    text = subprocess.run(["systemd-analyze", "syscall-filter", "--no-pager", name], capture_output=True,
                          text=True, check=True).stdout
    members = [w.strip() for w in text.splitlines()[1:] if w.strip() and not w.strip().startswith("#")]
    return frozenset().union(*(expand(m) for m in members)) if members else frozenset()


def expand(name: str) -> frozenset[str]:
    return _group(name) if name.startswith("@") else frozenset({name})


def allowed() -> set[str]:
    """systemd.exec(5): the first SystemCallFilter= decides allow-list or deny-list; each later one adds to
    the allowed set (plain) or takes from it (`~`)."""
    lines = service_settings("SystemCallFilter")
    assert lines and not lines[0].startswith("~"), "the unit's filter is an allow-list"
    names: set[str] = set()
    for value in lines:
        deny = value.startswith("~")
        words = set().union(*(expand(w) for w in value.lstrip("~").split()))
        names = names - words if deny else names | words
    return names


def refused() -> set[str]:
    """What ProtectClock= answers EPERM (its own filter, beside SystemCallFilter=)."""
    return set(expand("@clock")) if service_settings("ProtectClock") == ["yes"] else set()


def load_filter(names: set[str], eperm: set[str]) -> None:
    lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    ctx = lib.seccomp_init(SCMP_ACT_KILL_PROCESS)
    if not ctx:
        raise SystemExit("unitsandbox: seccomp_init failed")
    for name in sorted(names):
        nr = lib.seccomp_syscall_resolve_name(name.encode())
        if nr < 0:  # a call this architecture does not have (systemd skips those too)
            continue
        # a pseudo-call libseccomp cannot place is skipped alike
        lib.seccomp_rule_add(ctx, SCMP_ACT_EPERM if name in eperm else SCMP_ACT_ALLOW, nr, 0)
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise SystemExit("unitsandbox: PR_SET_NO_NEW_PRIVS refused")
    if lib.seccomp_load(ctx) != 0:
        raise SystemExit("unitsandbox: seccomp_load failed")


def confined(*args: str, user: str | None = None) -> tuple[str, ...]:
    """The arguments for Procs.start (which runs them with this interpreter) that run `python *args` confined,
    as `user` when given."""
    return str(Path(__file__).resolve()), *(("--user", user) if user else ()), sys.executable, *args


def main(argv: list[str]) -> None:
    for value in service_settings("LimitNOFILE"):  # soft and hard, as systemd sets them
        n = int(value)
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
    if argv[0] == "--user":
        user, argv = pwd.getpwnam(argv[1]), argv[2:]
        if os.geteuid() == 0:
            os.setgroups([])
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
    names = allowed()
    if os.geteuid() == 0:
        names.add("fchown")  # SQLite's, as root only (see above)
    load_filter(names, refused())
    os.execv(argv[0], argv)


if __name__ == "__main__":
    main(sys.argv[1:])

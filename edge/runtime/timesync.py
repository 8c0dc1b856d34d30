"""Is this machine's clock synchronized, and how far off is it? (P3: a gate decides on its own clock.)

`timedatectl show` answers where systemd runs (systemd-timesyncd or chrony behind it); elsewhere the kernel's
own view, `adjtimex(2)` read without changing anything, which every NTP daemon keeps up to date. Both are
slow enough (a process, a system call) to be read now and then, never on a scan's path.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import subprocess
from dataclasses import dataclass

STA_UNSYNC = 0x0040  # the kernel's "clock not synchronized" status bit (adjtimex(2))
STA_NANO = 0x2000  # `offset` in nanoseconds rather than microseconds
TIME_ERROR = 5  # adjtimex's return value when the clock is not synchronized


@dataclass(frozen=True, slots=True)
class ClockSync:
    state: str  # synced | unsynced | unknown
    source: str | None  # timedatectl | adjtimex | None
    offset_s: float | None  # the correction still being applied (NTP's estimate of how far off we are)
    est_error_s: float | None  # the kernel's estimated error


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _Timex(ctypes.Structure):
    """struct timex of <sys/timex.h> (Linux); ctypes lays out its padding as the C compiler does."""
    _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
                ("constant", ctypes.c_long), ("precision", ctypes.c_long), ("tolerance", ctypes.c_long),
                ("time", _Timeval), ("tick", ctypes.c_long), ("ppsfreq", ctypes.c_long),
                ("jitter", ctypes.c_long), ("shift", ctypes.c_int), ("stabil", ctypes.c_long),
                ("jitcnt", ctypes.c_long), ("calcnt", ctypes.c_long), ("errcnt", ctypes.c_long),
                ("stbcnt", ctypes.c_long), ("tai", ctypes.c_int), ("_reserved", ctypes.c_int * 11)]


def kernel_status() -> tuple[int, int, int, int] | None:
    """(return value, status bits, offset, esterror) of adjtimex with modes 0 (a read), or None."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        tx = _Timex()
        rc = libc.adjtimex(ctypes.byref(tx))
    except (OSError, AttributeError):
        return None
    if rc < 0:
        return None
    return rc, tx.status, tx.offset, tx.esterror


def from_kernel(rc: int, status: int, offset: int, esterror: int) -> ClockSync:
    """adjtimex's answer read: unsynchronized when STA_UNSYNC is set or the call says TIME_ERROR."""
    synced = not (status & STA_UNSYNC) and rc != TIME_ERROR
    scale = 1e-9 if status & STA_NANO else 1e-6
    return ClockSync("synced" if synced else "unsynced", "adjtimex", offset * scale, esterror * 1e-6)


def from_timedatectl(text: str, kernel: ClockSync | None) -> ClockSync | None:
    """`timedatectl show` (KEY=value lines); None when it says nothing about synchronization."""
    props = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    synced = props.get("NTPSynchronized")
    if synced not in ("yes", "no"):
        return None
    # the offset is the kernel's either way: timedatectl reports only whether the clock is synchronized
    return ClockSync("synced" if synced == "yes" else "unsynced", "timedatectl",
                     kernel.offset_s if kernel else None, kernel.est_error_s if kernel else None)


def read(timeout_s: float = 2.0) -> ClockSync:
    """The clock's sync state now: timedatectl when it answers, else the kernel, else unknown."""
    k = kernel_status()
    kernel = from_kernel(*k) if k else None
    try:
        r = subprocess.run(["timedatectl", "show"], capture_output=True, text=True, timeout=timeout_s)
        if r.returncode == 0:
            got = from_timedatectl(r.stdout, kernel)
            if got is not None:
                return got
    except (OSError, subprocess.SubprocessError):
        pass  # not installed, or no systemd as PID 1 (a container): the kernel knows as well
    return kernel or ClockSync("unknown", None, None, None)

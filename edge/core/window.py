"""P3: is a credential inside its validity window (with clock skew)?"""
from __future__ import annotations

RELEASE_EPOCH = 1_793_491_200  # 2026-11-01T00:00:00Z: a clock before this cannot be right (P3).


def window_reason(valid_from: float | None, valid_until: float | None, now: float, skew_s: float) -> str | None:
    """Return None when `valid_from - skew <= now < valid_until + skew`, else the P3 reason code.

    Bounds and `now` are epoch seconds; a None bound is open.
    """
    if valid_from is not None and now < valid_from - skew_s:
        return "not_yet_valid"
    if valid_until is not None and now >= valid_until + skew_s:
        return "expired"
    return None


def clock_plausible(now: float) -> bool:
    """A clock earlier than the release date is wrong (no RTC battery, no NTP yet)."""
    return now >= RELEASE_EPOCH

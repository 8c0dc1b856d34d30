"""P24: a site calendar of dated exceptions to the weekdays, made once into a map the scan reads in one lookup.

A day is a public holiday (the schedule's `holiday` hours apply) or a swapped working day (调休: a listed
Saturday or Sunday counts as the weekday it replaces). Days come from the config and from the allow-list sync;
merged by date, the config wins. A date missing from the calendar is its own weekday.
"""
from __future__ import annotations

from datetime import date
from typing import Iterable, Mapping

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HOLIDAY = -1  # in a day map: the schedule's holiday hours apply; 0..6 = the weekday the day counts as


def real_date(v: str) -> str:
    """For a model's validator: `v` is a date that exists (`2026-02-30` is not), else ValueError naming it."""
    try:
        date.fromisoformat(v)
    except ValueError:
        raise ValueError(f"{v!r} is not a date") from None
    return v


def day_value(kind: str, as_day: str | None) -> int:
    """One calendar entry as a day-map value: HOLIDAY, or the weekday number (Monday 0) a workday counts as."""
    if kind == "holiday":
        return HOLIDAY
    if kind == "workday" and as_day in DAYS:
        return DAYS.index(as_day)
    raise ValueError(f"a calendar day is a holiday, or a workday with `as` one of {', '.join(DAYS)}")


def day_map(*layers: Iterable[tuple[str, str, str | None]]) -> dict[int, int]:
    """Date ordinal -> HOLIDAY or weekday, from (ISO date, kind, as) layers; a later layer wins a date (the
    config comes after the sync). Built when the calendar changes, never at a scan."""
    out: dict[int, int] = {}
    for layer in layers:
        for iso, kind, as_day in layer:
            out[date.fromisoformat(iso).toordinal()] = day_value(kind, as_day)
    return out


def schedule_days(calendars: Mapping[str, dict[int, int]],
                  names: Mapping[str, str | None]) -> dict[str, dict[int, int]]:
    """Each schedule's day map, by schedule name (only the schedules that name a calendar)."""
    return {sched: calendars.get(cal, {}) for sched, cal in names.items() if cal is not None}

"""P24: site calendars in the config: the files they name, read with the config, and the names schedules use.

A calendar file is TOML: `[[days]]` tables (or a `days` array) of `date`, `kind` ("holiday" | "workday"), `as`
(a workday's weekday) and an optional `name`, the same items the allow-list sync carries (SPEC §2). Its days
are read when the config is (start, `run --check`, SIGHUP), so a broken file is named with the config's other
problems and a running gate keeps its calendar until a good one replaces it.
"""
from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from edge.config.filecheck import resolve
from edge.config.problems import Problem
from edge.config.sections import SITE_CALENDAR, CalendarDay, CalendarSection, ConfigError, GateConfig

_DAYS = TypeAdapter(list[CalendarDay])


def read_days(path: Path) -> list[CalendarDay]:
    """A calendar file's days; ValueError naming the file, and the day and key, of the first problem."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read: {getattr(e, 'strerror', None) or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path}: not valid TOML: {e}") from None
    extra = sorted(set(raw) - {"days"})
    if extra:
        raise ValueError(f"{path}: unknown key {extra[0]!r} (a calendar file holds `days` only)")
    try:
        days = _DAYS.validate_python(raw.get("days", []))
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise ValueError(f"{path}: days[{where}: {err['msg'].removeprefix('Value error, ')}"
                         if where else f"{path}: days: {err['msg']}") from None
    seen: set[str] = set()
    for d in days:
        if d.date in seen:
            raise ValueError(f"{path}: {d.date} is listed twice")
        seen.add(d.date)
    return days


def merged(section: CalendarSection, base: Path) -> CalendarSection:
    """The file's days and the config's own, by date; the config's own win."""
    if section.file is None:
        return section
    by_date = {d.date: d for d in read_days(resolve(base, section.file))}
    by_date.update({d.date: d for d in section.days})
    return section.model_copy(update={"days": sorted(by_date.values(), key=lambda d: d.date)})


def with_calendar_files(cfg: GateConfig, base: Path) -> GateConfig:
    """The config with each calendar's file read into its days. ConfigError naming every bad file."""
    out, problems = {}, []
    for name, section in cfg.calendars.items():
        try:
            out[name] = merged(section, base)
        except ValueError as e:
            problems.append(f"calendars.{name}.file: {e}")
    if problems:
        raise ConfigError(problems)
    return cfg.model_copy(update={"calendars": out}) if out else cfg


def file_problems(raw: dict, base: Path) -> list[Problem]:
    """`run --check`: each calendar file that cannot be read or holds a bad day, at the key that names it."""
    out = []
    cals = raw.get("calendars")
    for name, section in (cals.items() if isinstance(cals, dict) else ()):
        f = section.get("file") if isinstance(section, dict) else None
        if isinstance(f, str):
            try:
                read_days(resolve(base, f))
            except ValueError as e:
                out.append(Problem(("calendars", name, "file"), str(e)))
    return out


def references(raw: dict) -> list[Problem]:
    """A schedule's `calendar` names a [calendars] table, or `site` (which the allow-list sync fills)."""
    cals = raw.get("calendars")
    known = set(cals) if isinstance(cals, dict) else set()
    out = []
    scheds = raw.get("schedules")
    for name, s in (scheds.items() if isinstance(scheds, dict) else ()):
        cal = s.get("calendar") if isinstance(s, dict) else None
        if isinstance(cal, str) and cal != SITE_CALENDAR and cal not in known:
            out.append((("schedules", name, "calendar"), f"{cal!r} is not a [calendars] table (nor `site`)"))
    return out

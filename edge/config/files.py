"""Reading the site configuration: parse and validate one TOML file, and name every problem with its line:
field errors, cross-references and wiring together, then the files it names."""
from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

from pydantic import ValidationError

from edge.config import calendars
from edge.config.access import User, probe
from edge.config.credentials import with_credentials
from edge.config.filecheck import current_user, file_problems, resolve
from edge.config.problems import Problem, render
from edge.config.sections import ConfigError, GateConfig
from edge.config.wiring import conflicts, references

__all__ = ["check", "check_files", "load_config", "resolve"]


def _read(p: Path) -> tuple[str, dict]:
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError([f"{p}: cannot read: {getattr(e, 'strerror', None) or e}"]) from None
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"\(at line (\d+), column \d+\)", str(e))
        line = int(m.group(1)) if m else 1
        raise ConfigError(render(p, text, [Problem((), f"not valid TOML: {e}", line=line)])) from None


def validate(raw: dict) -> tuple[GateConfig | None, list[Problem]]:
    """The model, or None; and every field error, broken reference and wiring conflict, all at once."""
    problems = [_field_problem(err) for err in _field_errors(raw)]
    problems += [Problem(loc, msg) for loc, msg in references(raw) + conflicts(raw)]
    if problems:
        return None, problems
    return GateConfig.model_validate(raw, context={"wiring_checked": True}), []


def _field_errors(raw: dict) -> list[dict]:
    try:
        GateConfig.model_validate(raw, context={"wiring_checked": True})
    except ValidationError as e:
        return e.errors()
    return []


def _field_problem(err: dict) -> Problem:
    loc = tuple(err.get("loc", ()))
    msg = err.get("msg", "invalid").removeprefix("Value error, ")
    kind = err.get("type")
    if kind == "extra_forbidden":
        msg = "unknown key (a typo?)"
    elif kind == "missing":
        msg = "required key is missing"
    elif not isinstance(err.get("input"), (dict, list)) and not kind.startswith("value_error"):
        msg += f", not {_shown(err.get('input'))}"
    return Problem(loc, msg)


def _shown(v) -> str:
    s = repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


def load_config(path: str | os.PathLike) -> tuple[GateConfig, Path]:
    """Parse and validate; returns the config and its folder (for relative paths), its secrets read from the
    service's systemd credentials when it has them (edge/config/credentials.py). Raises ConfigError listing
    every problem, each `FILE:LINE: key.path: message`."""
    p = Path(path)
    text, raw = _read(p)
    cfg, problems = validate(raw)
    if problems:
        raise ConfigError(render(p, text, problems))
    base = p.resolve().parent
    return calendars.with_calendar_files(with_credentials(cfg), base), base


def check(path: str | os.PathLike, user: User) -> list[str]:
    """`gatekeeper run --check`: every problem of the file, structure and files alike, as `user` (the
    service's user) will meet them; empty when the config is good."""
    p = Path(path)
    try:
        text, raw = _read(p)
    except ConfigError as e:
        return e.problems
    _, problems = validate(raw)
    if not user.is_me and (err := probe(user, [(str(p.resolve()), "r")])[0]):
        problems.append(Problem((), f"cannot read {p} as user {user.name}: {err}", line=1))
    problems += file_problems(raw, p.resolve().parent, user)
    problems += calendars.file_problems(raw, p.resolve().parent)  # P24: the calendar files' days
    return render(p, text, problems)


def check_files(cfg: GateConfig, base: Path, source: str = "config", parts_fatal: bool = True) -> list[str]:
    """The daemon's start: its files as this process meets them. ConfigError when one it cannot run without is
    wrong; the problems of a part that faults and retries instead (the broker's, the API's files, a secret
    readable by all) are returned, to be logged, while the doors work."""
    try:
        text = Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = None
    problems = file_problems(cfg.model_dump(), base, current_user())
    fatal = [p for p in problems if p.fatal or parts_fatal]
    if fatal:
        raise ConfigError(render(source, text, fatal))
    return render(source, text, problems)

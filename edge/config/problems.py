"""A problem of the config, and the one line that says it: `FILE:LINE: key.path: message`."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge.config.lines import KeyLines, key_path


@dataclass(frozen=True)
class Problem:
    loc: tuple  # the key path in the TOML, ("doors", 1, "lock_coil")
    message: str
    fatal: bool = True  # stops the daemon's start; a part's file (the broker's, the API's) only faults that part
    line: int | None = None  # where the TOML parser stopped, when it is not a key's


def render(path: Path | str, text: str | None, problems: list[Problem]) -> list[str]:
    """One line per problem, in the order of the file (then as found), so the output is stable. A key that is
    not written (a required one missing) is placed at its table; a whole section missing at line 1."""
    lines = KeyLines(text) if text is not None else None
    rows = []
    for n, p in enumerate(problems):
        line = p.line or (lines.line_of(p.loc) if lines else None) or 1
        rows.append((line, n, f"{path}:{line}: {key_path(p.loc)}: {p.message}"))
    return [r[2] for r in sorted(rows)]

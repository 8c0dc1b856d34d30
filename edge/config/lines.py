"""Where a key of a TOML file is written: tomllib gives values, not positions, so a small scan of the text
maps each key path (`("doors", 1, "lock_coil")`) to its line, for messages an installer can act on."""
from __future__ import annotations

import re

_BARE = r"[A-Za-z0-9_-]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"' + r"|'[^']*'"
_KEY = rf"(?:{_BARE}|{_QUOTED})"
_DOTTED = rf"{_KEY}(?:\s*\.\s*{_KEY})*"
_HEADER = re.compile(rf"^\s*(\[\[?)\s*({_DOTTED})\s*\]\]?\s*(#.*)?$")
_ASSIGN = re.compile(rf"^\s*({_DOTTED})\s*=")
_PART = re.compile(_KEY)

Path = tuple  # of str (keys) and int (array-of-tables entries)


def _parts(dotted: str) -> list[str]:
    out = []
    for m in _PART.finditer(dotted):
        k = m.group(0)
        out.append(k[1:-1] if k[0] in "\"'" else k)
    return out


class KeyLines:
    """Key path -> 1-based line, for every table header, array-of-tables entry and key of one TOML text.
    What a value spans (a multi-line array or string) is skipped, so a line inside it is never taken for a key."""

    def __init__(self, text: str):
        self.lines: dict[Path, int] = {}
        counts: dict[Path, int] = {}  # array of tables -> entries seen so far
        table: Path = ()
        depth = 0  # open brackets/braces of a multi-line value
        in_string: str | None = None  # the delimiter of an open multi-line string
        for no, line in enumerate(text.splitlines(), 1):
            if in_string is not None:
                if in_string in line:
                    in_string = None
                continue
            if depth > 0:
                depth = max(0, depth + _balance(line))
                continue
            h = _HEADER.match(line)
            if h:
                names = _parts(h.group(2))
                if h.group(1) == "[[":
                    base = self._resolve(names, counts)
                    i = counts.get(base, 0)
                    counts[base] = i + 1
                    table = base + (i,)
                else:
                    table = self._resolve(names, counts)
                self.lines.setdefault(table, no)
                continue
            a = _ASSIGN.match(line)
            if not a:
                continue
            path = table + tuple(_parts(a.group(1)))
            self.lines.setdefault(path, no)
            rest = line[a.end():]
            for delim in ('"""', "'''"):
                if rest.lstrip().startswith(delim) and rest.count(delim) == 1:
                    in_string = delim
            if in_string is None:
                depth = max(0, _balance(rest))

    @staticmethod
    def _resolve(names: list[str], counts: dict[Path, int]) -> Path:
        """A header's path with the current entry of each array of tables it passes through:
        `[doors.x]` after the second `[[doors]]` is ("doors", 1, "x")."""
        out: Path = ()
        for i, n in enumerate(names):
            out = out + (n,)
            if out in counts and i < len(names) - 1:
                out = out + (counts[out] - 1,)
        return out

    def line_of(self, loc: tuple) -> int | None:
        """The line of the longest prefix of `loc` that is written in the text (a missing key: its table)."""
        loc = tuple(loc)
        while loc:
            if loc in self.lines:
                return self.lines[loc]
            loc = loc[:-1]
        return None


def _balance(s: str) -> int:
    """Opening minus closing brackets and braces outside strings and comments."""
    n, quote, i = 0, None, 0
    while i < len(s):
        c = s[i]
        if quote:
            if c == "\\" and quote == '"':
                i += 1
            elif c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        elif c == "#":
            break
        elif c in "[{":
            n += 1
        elif c in "]}":
            n -= 1
        i += 1
    return n


def key_path(loc: tuple) -> str:
    """("doors", 1, "lock_coil") -> "doors[1].lock_coil"; the form every problem line names."""
    out = ""
    for x in loc:
        if isinstance(x, int):
            out += f"[{x}]"
        else:
            out += ("." if out else "") + str(x)
    return out or "(top level)"

"""P35: what `--check` says of occupancy limits. A limited area's count falls only when its exits are seen, so
every door on its boundary must see people leave: an `out` reader on it, or a turnstile (whose lane counts
passages both ways). The boundary is the doors whose `area` is the limited area itself: a door deeper inside
has the limited area on both sides, so crossing it never changes that count."""
from __future__ import annotations

from collections.abc import Callable, Iterator

Problem = tuple[tuple, str]


def occupancy_references(raw: dict, areas: set[str] | None,
                         entries: Callable[[dict, str], Iterator[tuple[int, dict]]]) -> list[Problem]:
    table = raw.get("areas")
    limits = table.get("max_occupancy") if isinstance(table, dict) else None
    if not isinstance(limits, dict) or not limits:
        return []
    out: list[Problem] = []
    exits: set[str] = set()  # doors with an out reader
    for _, r in entries(raw, "readers"):
        if r.get("direction") == "out" and not r.get("checkpoint") and isinstance(r.get("door"), str):
            exits.add(r["door"])
    for area in limits:
        if areas is not None and area not in areas:
            out.append((("areas", "max_occupancy", area), f"{area!r} is not in areas.tree"))
            continue
        for i, d in entries(raw, "doors"):
            if d.get("area") != area or d.get("kind") == "turnstile":
                continue
            name = d.get("name")
            if name not in exits:
                out.append((("doors", i), f"door {name!r} leads into {area!r}, which has a max_occupancy: it needs "
                                          "an `out` reader (or must be a turnstile), else its count only grows"))
    return out

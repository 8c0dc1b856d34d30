"""P32: what one door section cannot see alone about an interlock group (mantrap): its other doors.

A group is this gate's: the gate reads every door's contact and drives every lock of it, so the interlock is
decided in one place with nothing in between. A group whose other doors are not in this config cannot work."""
from __future__ import annotations


def interlock_references(raw: dict, entries) -> list:
    out = []
    groups: dict[str, list[int]] = {}
    for i, d in entries(raw, "doors"):
        g = d.get("interlock")
        if isinstance(g, str):
            groups.setdefault(g, []).append(i)
    for g, members in groups.items():
        if len(members) < 2:
            out.append((("doors", members[0], "interlock"),
                        f"interlock group {g!r} (P32) has one door: the other doors of a mantrap must be [[doors]]"
                        " of this gate, each with interlock = " + repr(g)))
    return out

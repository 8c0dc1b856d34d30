"""Areas form a tree of paths (`site/production/workshop-1`): P4, P7."""
from __future__ import annotations


def is_within(area: str, ancestor: str) -> bool:
    """True when `area` is `ancestor` or lies below it."""
    return area == ancestor or (area.startswith(ancestor) and area[len(ancestor):len(ancestor) + 1] == "/")


def parent_of(area: str) -> str | None:
    i = area.rfind("/")
    return area[:i] if i > 0 else None


def permits(granted: tuple[str, ...], area: str) -> bool:
    """P4: a credential listing `area` or one of its ancestors may enter it."""
    for g in granted:
        if is_within(area, g):
            return True
    return False

"""P21 guard tours in the config: `[[tours]]`, each a named route over this gate's checkpoint readers."""
from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from edge.core.tours import Route

NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
HHMM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


class TourSection(BaseModel):
    """One route; its rounds run every night from `start`, spread evenly until `end` (site time zone)."""
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=NAME)]
    checkpoints: list[Annotated[str, Field(pattern=NAME)]] = Field(
        min_length=1, description="checkpoint readers' names, in the order a round walks them")
    start: Annotated[str, Field(pattern=HHMM)] = Field("22:00", description="the first round's time, HH:MM local")
    end: Annotated[str, Field(pattern=HHMM)] = Field("06:00", description="the night's end, HH:MM local: rounds are spread evenly from start to end")
    rounds: int = Field(6, ge=1, le=48, description="rounds a night")
    window_min: float = Field(15, gt=0, le=120, description="minutes before or after its time a round may start; not started by then is tour_missed")
    limit_min: float = Field(45, gt=0, le=720, description="minutes a round may take from its first tap; over it is tour_late")

    @model_validator(mode="after")
    def _route(self) -> "TourSection":
        if len(set(self.checkpoints)) != len(self.checkpoints):
            raise ValueError("a checkpoint appears twice in the route")
        r = Route(self.name, tuple(self.checkpoints), self.start, self.end, self.rounds, self.window_min, self.limit_min)
        if self.window_min * 2 > r.interval_min:
            raise ValueError(f"rounds are {r.interval_min:g} min apart, under twice window_min: their start "
                             "windows would overlap")
        return self


def tour_references(raw: dict, entries) -> list:
    """Tours name checkpoint readers, and tours' names are unique."""
    out = []
    # a name of the wrong type is the field errors' to report: only strings are looked up here
    checkpoints = {r.get("name") for _, r in entries(raw, "readers")
                   if r.get("checkpoint") is True and isinstance(r.get("name"), str)}
    readers = {r.get("name") for _, r in entries(raw, "readers") if isinstance(r.get("name"), str)}
    seen: dict[str, int] = {}
    for i, t in entries(raw, "tours"):
        n = t.get("name")
        if isinstance(n, str):
            if n in seen:
                out.append((("tours", i, "name"), f"{n!r} is also the name of tours[{seen[n]}]"))
            seen.setdefault(n, i)
        cps = t.get("checkpoints")
        for c in cps if isinstance(cps, list) else []:
            if isinstance(c, str) and c not in checkpoints:
                what = "a reader without checkpoint = true" if c in readers else "not a readers name"
                out.append((("tours", i, "checkpoints"), f"{c!r} is {what}"))
    return out

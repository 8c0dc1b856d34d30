"""P21 guard tours, as pure logic: a night's rounds of one route, what a guard's tap does to them, and what
the passing of time does (a round not started in its window, a round over its limit).

No I/O: every call takes `now` and returns the events to journal as (type, data) pairs; the state is plain
data the caller keeps (edge/desks/tours.py persists it with the events). A route's checkpoints are the names
of this gate's checkpoint readers.
"""
from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time as dtime, timedelta
from zoneinfo import ZoneInfo

from edge.store.journal import rfc3339

Event = tuple[str, dict]


class RoundState(str, enum.Enum):
    PLANNED = "planned"  # its start window has not closed yet, nobody started it
    RUNNING = "running"  # started: taps count for it until every checkpoint is tapped
    COMPLETED = "completed"  # every checkpoint of it was tapped
    MISSED = "missed"  # not started in its window (P21 `tour_missed`)
    INCOMPLETE = "incomplete"  # a later round started before every checkpoint of this one was tapped
    UNTRACKED = "untracked"  # its window closed before this gate tracked the tour (first start, a new route)


OVER = frozenset({RoundState.COMPLETED, RoundState.MISSED, RoundState.INCOMPLETE, RoundState.UNTRACKED})


class Order(str, enum.Enum):
    IN_ORDER = "in_order"
    OUT_OF_ORDER = "out_of_order"  # a checkpoint before it was skipped, or it was skipped and tapped late
    REPEAT = "repeat"  # tapped again in the same round: harmless, no alarm


@dataclass(frozen=True)
class Route:
    """A named route: checkpoints in order, the night's first round at `start`, `rounds` rounds spread evenly
    until `end` (local time), each to be started within `window_min` of its time and done in `limit_min`."""
    name: str
    checkpoints: tuple[str, ...]
    start: str = "22:00"
    end: str = "06:00"
    rounds: int = 6
    window_min: float = 15
    limit_min: float = 45

    @property
    def interval_min(self) -> float:
        span = (_minutes(self.end) - _minutes(self.start)) % 1440 or 1440
        return span / self.rounds

    def times(self, night: date, tz: ZoneInfo) -> list[float]:
        """The epoch seconds each round of the night beginning on `night` (local date) is due."""
        h, m = divmod(_minutes(self.start), 60)
        first = datetime.combine(night, dtime(h, m), tz).timestamp()
        return [first + i * self.interval_min * 60 for i in range(self.rounds)]

    def night_of(self, now: float, tz: ZoneInfo) -> date:
        """Tonight for this route: the night under way at `now` (its last round can still end), else the
        next one to come."""
        today = datetime.fromtimestamp(now, tz).date()
        for night in (today - timedelta(days=1), today, today + timedelta(days=1)):
            if self.times(night, tz)[-1] + (self.window_min + self.limit_min) * 60 > now:
                return night
        return today + timedelta(days=1)


@dataclass
class Tap:
    checkpoint: str
    at: float
    holder: str
    order: str


@dataclass
class Round:
    index: int
    due: float  # epoch seconds
    checkpoints: tuple[str, ...]  # the route as it was when the round was planned or started
    state: RoundState = RoundState.PLANNED
    started: float | None = None
    ended: float | None = None
    holder: str | None = None  # the guard who started it
    next: int = 0  # the index of the checkpoint due next
    skipped: list[str] = field(default_factory=list)  # passed over and not tapped since
    late: bool = False  # over its limit (P21 `tour_late`, raised once)
    taps: list[Tap] = field(default_factory=list)

    def due_checkpoint(self) -> str:
        """Where the guard is awaited: the next on the route, else the first one passed over."""
        return self.checkpoints[self.next] if self.next < len(self.checkpoints) else self.skipped[0]

    def opens(self, now: float, window_min: float) -> bool:
        return self.state is RoundState.PLANNED and abs(now - self.due) <= window_min * 60


@dataclass
class Night:
    """One route's rounds for one night, and how far each got."""
    tour: str
    night: str  # the local date the night begins on, ISO
    rounds: list[Round]

    @classmethod
    def plan(cls, route: Route, night: date, tz: ZoneInfo, since: float | None = None) -> "Night":
        """The night's rounds; with `since` (tracking begins now, mid-night), rounds whose window closed
        before it are `untracked`, not missed: nobody could have been seen walking them."""
        rounds = [Round(i + 1, t, route.checkpoints) for i, t in enumerate(route.times(night, tz))]
        for r in rounds:
            if since is not None and r.due + route.window_min * 60 < since:
                r.state = RoundState.UNTRACKED
        return cls(route.name, night.isoformat(), rounds)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "Night":
        rounds = []
        for r in d["rounds"]:
            r = dict(r)
            r["state"] = RoundState(r["state"])
            r["checkpoints"] = tuple(r["checkpoints"])
            r["taps"] = [Tap(**t) for t in r["taps"]]
            rounds.append(Round(**r))
        return cls(d["tour"], d["night"], rounds)

    def running(self) -> Round | None:
        return next((r for r in self.rounds if r.state is RoundState.RUNNING), None)

    def replan(self, route: Route, tz: ZoneInfo, now: float) -> None:
        """A route change (P21): rounds not started yet follow the new route and times; rounds already under
        way or over keep what they were walked against. A new time already past adds no missed round."""
        kept = [r for r in self.rounds if r.state is not RoundState.PLANNED]
        fresh = [t for t in route.times(date.fromisoformat(self.night), tz) if t + route.window_min * 60 >= now]
        fresh = [t for t in fresh if all(abs(t - r.due) > 1 for r in kept)]
        self.rounds = sorted(kept + [Round(0, t, route.checkpoints) for t in fresh], key=lambda r: r.due)
        for i, r in enumerate(self.rounds):
            r.index = i + 1


def _base(night: Night, rnd: Round) -> dict:
    return {"tour": night.tour, "round": rnd.index, "night": night.night}


def tap(night: Night, route: Route, checkpoint: str, holder: str, credential_ref: str, now: float) -> list[Event]:
    """A guard tapped `checkpoint`: the events it makes for this route's night, or [] when it counts for no
    round of it (not on the route, or no round running or opening now)."""
    running = night.running()
    opening = next((r for r in night.rounds if r.opens(now, route.window_min)), None)
    events: list[Event] = []
    if opening is not None and checkpoint in opening.checkpoints and (
            running is None or checkpoint == opening.checkpoints[0] or checkpoint not in running.checkpoints):
        if running is not None:  # the next round begins: the one before is left as it stands
            running.state, running.ended = RoundState.INCOMPLETE, now
        opening.state, opening.started, opening.holder = RoundState.RUNNING, now, holder
        events.append(("tour.started", {**_base(night, opening), "checkpoint": checkpoint, "holder": holder,
                                        "credential_ref": credential_ref, "due": rfc3339(opening.due),
                                        "checkpoints": list(opening.checkpoints), "limit_min": route.limit_min}))
        return events + _step(night, opening, checkpoint, holder, credential_ref, now)
    if running is not None and checkpoint in running.checkpoints:
        return _step(night, running, checkpoint, holder, credential_ref, now)
    return []


def _step(night: Night, rnd: Round, checkpoint: str, holder: str, credential_ref: str, now: float) -> list[Event]:
    """One tap within a round, in the route's order or not."""
    cps = rnd.checkpoints
    j = cps.index(checkpoint)
    expected = cps[rnd.next] if rnd.next < len(cps) else None
    events: list[Event] = []
    alarm = None
    if j == rnd.next:
        order = Order.IN_ORDER
        rnd.next = j + 1
    elif j > rnd.next:  # P21: the ones between were skipped
        order = Order.OUT_OF_ORDER
        passed = list(cps[rnd.next:j])
        rnd.skipped += passed
        rnd.next = j + 1
        alarm = {"skipped": passed}
    elif checkpoint in rnd.skipped:  # P21: skipped earlier, tapped now, out of the route's order
        order = Order.OUT_OF_ORDER
        rnd.skipped.remove(checkpoint)
        alarm = {"skipped": []}
    else:
        order = Order.REPEAT
    rnd.taps.append(Tap(checkpoint, now, holder, order.value))
    events.append(("tour.checkpoint", {**_base(night, rnd), "checkpoint": checkpoint, "holder": holder,
                                       "credential_ref": credential_ref, "counted": True, "index": j + 1,
                                       "order": order.value}))
    if alarm is not None:
        events.append(("alarm.raised", {"alarm": "tour_out_of_order", "priority": "normal", **_base(night, rnd),
                                        "checkpoint": checkpoint, "expected_checkpoint": expected,
                                        "holder": holder, "credential_ref": credential_ref, **alarm}))
    if order is not Order.REPEAT and rnd.next == len(cps) and not rnd.skipped:  # every checkpoint tapped
        rnd.state, rnd.ended = RoundState.COMPLETED, now
        events.append(("tour.completed", {**_base(night, rnd), "checkpoint": checkpoint, "holder": holder,
                                          "credential_ref": credential_ref, "started": rfc3339(rnd.started),
                                          "duration_s": round(now - rnd.started, 1), "late": rnd.late,
                                          "out_of_order": sum(t.order == Order.OUT_OF_ORDER.value for t in rnd.taps)}))
    return events


def tick(night: Night, route: Route, now: float) -> list[Event]:
    """What time alone decides: a round whose start window closed unstarted is missed; a running round over
    its limit is late (once). Called every few seconds."""
    events: list[Event] = []
    for rnd in night.rounds:
        if rnd.state is RoundState.PLANNED and now > rnd.due + route.window_min * 60:
            rnd.state = RoundState.MISSED
            events.append(("alarm.raised", {"alarm": "tour_missed", "priority": "high", **_base(night, rnd),
                                            "checkpoint": rnd.checkpoints[0], "due": rfc3339(rnd.due),
                                            "window_min": route.window_min}))
        elif rnd.state is RoundState.RUNNING and not rnd.late and now > rnd.started + route.limit_min * 60:
            rnd.late = True
            events.append(("alarm.raised", {"alarm": "tour_late", "priority": "normal", **_base(night, rnd),
                                            "checkpoint": rnd.due_checkpoint(), "holder": rnd.holder,
                                            "started": rfc3339(rnd.started), "limit_min": route.limit_min}))
    return events


def view(night: Night, route: Route, now: float) -> dict:
    """A night as GET /tours shows it: each round with its state and its timeline of taps."""
    rounds = []
    for r in night.rounds:
        state = r.state.value
        if r.state is RoundState.PLANNED and r.opens(now, route.window_min):
            state = "open"
        rounds.append({
            "round": r.index, "due": rfc3339(r.due), "window_until": rfc3339(r.due + route.window_min * 60),
            "state": state, "late": r.late, "holder": r.holder, "checkpoints": list(r.checkpoints),
            "started": rfc3339(r.started) if r.started is not None else None,
            "ended": rfc3339(r.ended) if r.ended is not None else None,
            "skipped": list(r.skipped),
            "timeline": [{"checkpoint": t.checkpoint, "at": rfc3339(t.at), "holder": t.holder, "order": t.order}
                         for t in r.taps],
        })
    return {"tour": route.name, "night": night.night, "checkpoints": list(route.checkpoints),
            "start": route.start, "end": route.end, "window_min": route.window_min, "limit_min": route.limit_min,
            "rounds": rounds}


def _minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)

"""P21 guard tours at this gate: taps at its checkpoint readers, the nightly rounds' clock, GET /tours and a
supervisor's route change. The logic is edge/core/tours.py; this keeps its state in the database (each night's
progress and each changed route, in `meta`, written in the transaction of the events they go with), so a
restart resumes a round where it was.

A tap reaches this from the checkpoint reader's callback, never through the decision queue: an ordinary
reader's scan does no tour work at all.
"""
from __future__ import annotations

import json
import logging
from zoneinfo import ZoneInfo

from edge.core.model import Credential
from edge.core.tours import Night, Route, tap, tick, view
from edge.errors import Refused
from edge.store.journal import Entry

log = logging.getLogger(__name__)

GUARD_ROLE = "guard"  # P21: only staff with this role count


def routes_from(cfg) -> dict[str, Route]:
    return {t.name: Route(t.name, tuple(t.checkpoints), t.start, t.end, t.rounds, t.window_min, t.limit_min)
            for t in cfg.tours}


class Tours:
    def __init__(self, cfg, gate):
        self.gate, self.store = gate, gate.store
        self.tz = ZoneInfo(cfg.site.timezone)
        self.checkpoints = frozenset(r.name for r in cfg.readers if r.checkpoint)
        self.routes = routes_from(cfg)
        for name, route in list(self.routes.items()):
            # a supervisor's change outlives a restart, while the config's route is the one it replaced; once
            # the config's own route changes, the config is the route again
            saved = _json(self.store.meta(f"tour_route:{name}"))
            if not saved:
                continue
            if saved.get("config") != _route_json(route):
                log.warning("tour %s: the config's route changed since a supervisor's change: the config's is used", name)
            elif not set(saved["route"]["checkpoints"]) <= self.checkpoints:
                log.warning("tour %s: the changed route names readers that are no checkpoints now: the config's is used", name)
            else:
                self.routes[name] = _route(saved["route"])
        self.configured = routes_from(cfg)
        self.nights: dict[str, Night] = {}
        for name in self.routes:
            text = self.store.meta(f"tour_night:{name}")
            if text:
                try:
                    self.nights[name] = Night.from_json(json.loads(text))
                except (KeyError, TypeError, ValueError) as e:  # an older shape: tonight starts afresh
                    log.warning("tour %s: the saved night is unreadable (%s), planned again", name, e)

    # -- the nights --------------------------------------------------------------------------------
    def _night(self, name: str, now: float) -> Night:
        """This route's night under way or next, planned afresh when the saved one is over."""
        route = self.routes[name]
        night = route.night_of(now, self.tz)
        current = self.nights.get(name)
        if current is None or current.night != night.isoformat():
            # never tracked before (a first start, a new tour): the rounds already over were not seen, not missed
            current = self.nights[name] = Night.plan(route, night, self.tz, since=now if current is None else None)
        return current

    def _save(self, names) -> None:
        for name in names:
            self.store.set_meta(f"tour_night:{name}", json.dumps(self.nights[name].to_json()))

    def _journal(self, events: list[tuple[str, dict]], touched, now: float, extra=None) -> list[Entry]:
        """The events and the nights they changed, in one transaction (held back like any write, SPEC §6)."""
        def write():
            with self.store.tx():
                if extra:
                    extra()
                self._save(touched)
                return [self.gate.journal.append(t, d, now) for t, d in events]
        return self.gate.holdback.run(write) or []

    # -- a tap at a checkpoint reader ----------------------------------------------------------------
    def guard(self, cred) -> str | None:
        """Why a credential's tap counts for no tour, or None when it is a guard's (P21)."""
        if not isinstance(cred, Credential):
            return cred.reason
        s = self.store
        if cred.ref in s.revoked or cred.holder in s.blocked_holders:
            return "revoked" if cred.ref in s.revoked else "blocklisted"
        if cred.category != "staff" or GUARD_ROLE not in cred.roles:
            return "not_a_guard"
        return None

    def tap(self, reader: str, kind: str, value: str, now: float | None = None) -> tuple[bool, list[Entry]]:
        """P21: a patrol tap at a checkpoint reader, journaled as `tour.checkpoint` (never an entry: no door
        opens, no presence moves), with what it does to tonight's rounds: (whether it counted, the entries)."""
        now = self.gate.clock() if now is None else now
        self.store.refresh()
        cred = self.gate.credential(kind, value)
        why = self.guard(cred)
        holder = cred.holder if isinstance(cred, Credential) else None
        ref = cred.ref if isinstance(cred, Credential) else getattr(cred, "ref", None)
        events, touched = [], []
        if why is None:
            for name, route in self.routes.items():
                if reader not in route.checkpoints:
                    continue
                night = self._night(name, now)
                got = tap(night, route, reader, holder, ref, now)
                if got:
                    events += got
                    touched.append(name)
            why = None if events else "no_round"
        if why is not None:
            events.append(("tour.checkpoint", {"tour": None, "round": None, "checkpoint": reader, "holder": holder,
                                               "credential_ref": ref, "counted": False, "reason": why}))
        return why is None, self._journal(events, touched, now)

    # -- the clock ---------------------------------------------------------------------------------
    def tick(self, now: float | None = None) -> list[Entry]:
        """Rounds not started in their window, rounds over their limit (the daemon calls this every few s)."""
        now = self.gate.clock() if now is None else now
        events, touched = [], []
        for name, route in self.routes.items():
            got = tick(self._night(name, now), route, now)
            if got:
                events += got
                touched.append(name)
        return self._journal(events, touched, now) if events else []

    # -- the API -------------------------------------------------------------------------------------
    def tonight(self, now: float | None = None) -> list[dict]:
        """GET /tours: each route with tonight's rounds, their state and timeline."""
        now = self.gate.clock() if now is None else now
        return [view(self._night(name, now), route, now) for name, route in self.routes.items()]

    def change(self, name: str, checkpoints: list[str], start: str, limit_min: float, reason: str,
               person: str, role: str, now: float | None = None) -> dict:
        """PUT /tours/{name}: a supervisor's new route (P21), journaled as `tour.changed` with who and why;
        tonight's rounds not yet started follow it."""
        now = self.gate.clock() if now is None else now
        old = self.routes.get(name)
        if old is None:
            raise Refused(404, None, f"no tour named {name!r}", reason="no_such_tour")
        unknown = [c for c in checkpoints if c not in self.checkpoints]
        if unknown:
            raise Refused(422, "checkpoints", f"not checkpoint readers of this gate: {', '.join(unknown)}",
                          reason="invalid")
        if len(set(checkpoints)) != len(checkpoints):
            raise Refused(422, "checkpoints", "a checkpoint appears twice in the route", reason="invalid")
        new = Route(name, tuple(checkpoints), start, old.end, old.rounds, old.window_min, limit_min)
        if new.window_min * 2 > new.interval_min:
            raise Refused(422, "start", f"rounds would be {new.interval_min:.0f} min apart, under twice the "
                                        f"{new.window_min:g} min start window", reason="invalid")
        night = self._night(name, now)
        self.routes[name] = new
        night.replan(new, self.tz, now)
        data = {"tour": name, "checkpoints": list(checkpoints), "start": start, "limit_min": limit_min,
                "previous": {"checkpoints": list(old.checkpoints), "start": old.start, "limit_min": old.limit_min},
                "actor": person, "actor_role": role, "reason": reason}
        saved = {"route": _route_json(new), "config": _route_json(self.configured[name])}
        entries = self._journal([("tour.changed", data)], [name], now,
                                extra=lambda: self.store.set_meta(f"tour_route:{name}", json.dumps(saved)))
        out = view(night, new, now)
        out["event_seq"] = entries[0].seq if entries else None
        return out


def _route_json(r: Route) -> dict:
    return {"name": r.name, "checkpoints": list(r.checkpoints), "start": r.start, "end": r.end, "rounds": r.rounds,
            "window_min": r.window_min, "limit_min": r.limit_min}


def _route(d: dict) -> Route:
    return Route(**{**d, "checkpoints": tuple(d["checkpoints"])})


def _json(text: str | None) -> dict | None:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None

"""Device health as the gate reports it (P18): one `device.fault` per outage, one `device.recovered`."""
from __future__ import annotations

import logging
from enum import StrEnum
from typing import Callable

log = logging.getLogger(__name__)


class Health(StrEnum):
    UP = "up"
    DOWN = "down"
    UNSUPERVISED = "unsupervised"


class DeviceBoard:
    """Tracks each device's health and journals the transitions, never the repeats."""

    def __init__(self, record: Callable[[str, dict], object]):
        self._record = record
        self.health: dict[str, Health] = {}
        self._kind: dict[str, str] = {}
        self._faulted: set[str] = set()
        self.stopping = False  # the daemon is stopping: devices going away are not faults

    def register(self, name: str, kind: str) -> None:
        self.health[name] = Health.DOWN  # not connected yet; no fault until a connection fails
        self._kind[name] = kind

    def up(self, name: str) -> None:
        self.health[name] = Health.UP
        if name in self._faulted:
            self._faulted.discard(name)
            log.warning("device %s recovered", name)
            self._record("device.recovered", {"device": name, "kind": self._kind.get(name)})

    def unsupervised(self, name: str) -> None:
        """A device that never answers (a serial relay board): its liveness is unknown, say so."""
        self.health[name] = Health.UNSUPERVISED

    def down(self, name: str, error: str, extra: dict | None = None) -> None:
        self.health[name] = Health.DOWN
        if name in self._faulted or self.stopping:
            return
        self._faulted.add(name)
        log.error("device %s fault: %s", name, error)
        self._record("device.fault", {"device": name, "kind": self._kind.get(name), "error": error[:200],
                                      **(extra or {})})

    @property
    def degraded(self) -> bool:
        return any(h is Health.DOWN for h in self.health.values())

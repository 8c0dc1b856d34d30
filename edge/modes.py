"""The gate's mode (P15 lockdown, P16 fire) and the one rule that orders changes to it.

SPEC §2 orders site-mode changes by a `version` that needs no clock: whoever changes the mode uses one
more than the highest version it has seen, ties are broken by the larger `actor`, and a change whose
(version, actor) is not above the one in force changes nothing. Local changes (a guard's lockdown, the
key switch, the fire panel) take a version the same way, so a replayed or late site message can never
undo a newer change made here.
"""
from __future__ import annotations

from dataclasses import dataclass

from edge.model import Mode

META_KEYS = ("mode", "mode_by", "mode_scope", "mode_version", "mode_actor", "mode_seen")


@dataclass
class ModeState:
    mode: Mode = Mode.NORMAL
    by: str | None = None  # who made the change in force ("fire_input", "lockdown_input", a person)
    scope: str = "gate"
    version: int = 0  # of the change in force
    actor: str = ""
    seen: int = 0  # the highest version seen, applied or not

    def newer(self, version: int, actor: str) -> bool:
        return (version, actor) > (self.version, self.actor)

    def next_version(self) -> int:
        return max(self.seen, self.version) + 1

    def see(self, version: int) -> None:
        self.seen = max(self.seen, version)

    def adopt(self, mode: Mode, by: str, scope: str, version: int, actor: str) -> None:
        self.mode, self.by, self.scope, self.version, self.actor = mode, by, scope, version, actor
        self.see(version)

    def meta(self) -> dict[str, str]:
        return {"mode": self.mode.value, "mode_by": self.by or "", "mode_scope": self.scope,
                "mode_version": str(self.version), "mode_actor": self.actor, "mode_seen": str(self.seen)}

    @classmethod
    def from_meta(cls, get) -> "ModeState":
        return cls(mode=Mode(get("mode", Mode.NORMAL.value)), by=get("mode_by") or None,
                   scope=get("mode_scope", "gate"), version=int(get("mode_version", "0")),
                   actor=get("mode_actor", ""), seen=int(get("mode_seen", "0")))

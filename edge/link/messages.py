"""What the central system and peer gates send (SPEC §2), validated before anything is applied."""
from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edge.store.records import CREDENTIAL_REF, ISO_DATE, AllowRecord, BlockEntry, CalendarItem, RevokeRef, TrustedKey, problem

MAX_MESSAGE = 1 << 20  # 1 MiB (SPEC §2): anything larger is refused unread
BADGE = r"^badge:([0-9A-F]{2}){4,10}$"
KID = r"^[A-Za-z0-9._-]{1,32}$"


class BadMessage(ValueError):
    """Malformed, oversized or out of schema: changes nothing, raises an alarm."""


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChangeBatch(_Msg):
    from_version: int = Field(ge=0)
    to_version: int = Field(ge=1)
    upserts: list[AllowRecord] = Field(default_factory=list)
    deletes: list[Annotated[str, Field(pattern=CREDENTIAL_REF)]] = Field(default_factory=list)
    revoke: list[RevokeRef] = Field(default_factory=list)
    blocklist_add: list[BlockEntry] = Field(default_factory=list)
    blocklist_remove: list[BlockEntry] = Field(default_factory=list)
    keys_add: list[TrustedKey] = Field(default_factory=list)
    keys_remove: list[Annotated[str, Field(pattern=KID)]] = Field(default_factory=list)
    calendar_set: list[CalendarItem] = Field(default_factory=list)  # P24
    calendar_remove: list[Annotated[str, Field(pattern=ISO_DATE)]] = Field(default_factory=list)


class SnapshotChunk(_Msg):
    version: int = Field(ge=0)
    chunk: int = Field(ge=0)
    chunks: int = Field(ge=1, le=100_000)
    upserts: list[AllowRecord] = Field(default_factory=list)
    revoke: list[RevokeRef] = Field(default_factory=list)
    blocklist: list[BlockEntry] = Field(default_factory=list)
    keys: list[TrustedKey] = Field(default_factory=list)
    calendar: list[CalendarItem] = Field(default_factory=list)  # P24

    @model_validator(mode="after")
    def _index(self) -> "SnapshotChunk":
        if self.chunk >= self.chunks:
            raise ValueError(f"chunk {self.chunk} of {self.chunks}: index beyond chunks")
        return self


class Signoff(_Msg):
    """SPEC §2 `visits/signoff` (P9, P25): a visit id, or a badge holder's credential ref `badge:<HEX>`."""
    model_config = ConfigDict(extra="ignore", frozen=True)
    visit: Annotated[str, Field(min_length=1, max_length=64)]
    host: Annotated[str, Field(max_length=64)] | None = None
    time: str | None = None

    @field_validator("visit")
    @classmethod
    def _ref(cls, v: str) -> str:
        # a badge ref is keyed as a reader reads it: a malformed one would wait for a scan that never matches
        if v.startswith("badge:") and not re.match(BADGE, v):
            raise ValueError(f"{v[:40]!r} is not a credential ref badge:<UPPER HEX>")
        return v


class SiteMode(_Msg):
    """SPEC §2: every field required; `version` orders changes without trusting clocks."""
    model_config = ConfigDict(extra="ignore", frozen=True)
    mode: Literal["lockdown", "drill", "normal"]  # never fire: fire mode is not started from the network (P16)
    actor: Annotated[str, Field(min_length=1, max_length=64)]
    reason: Annotated[str, Field(max_length=200)]
    time: Annotated[str, Field(max_length=40)]
    version: int = Field(ge=0, le=2**53)

    @field_validator("time")
    @classmethod
    def _time(cls, v: str) -> str:
        return _rfc3339(v)


class Heartbeat(_Msg):
    """SPEC §2 `central/heartbeat`: `{"time":...}` (P23; the central system's clock)."""
    model_config = ConfigDict(extra="ignore", frozen=True)
    time: Annotated[str, Field(max_length=40)]

    @field_validator("time")
    @classmethod
    def _time(cls, v: str) -> str:
        return _rfc3339(v)

    def epoch(self) -> float:
        from datetime import datetime
        return datetime.fromisoformat(self.time.replace("Z", "+00:00")).timestamp()


class MusterRequest(_Msg):
    """SPEC §2 `muster/request`: `{}`."""


def _rfc3339(v: str) -> str:
    from datetime import datetime
    try:
        dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{v[:40]!r} is not an RFC 3339 time") from None
    if dt.tzinfo is None:
        raise ValueError(f"{v[:40]!r} has no UTC offset")
    return v


class GateKey(_Msg):
    """A peer gate's walk-in key (SPEC §2 `acs/{site}/{gate}/key`): it may sign visitor passes only."""
    model_config = ConfigDict(extra="ignore", frozen=True)
    kid: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,32}$")]
    public_key: Annotated[str, Field(max_length=4096)]
    scope: list[Literal["visitor"]] = Field(min_length=1, max_length=1)


# SPEC §2: the peers' event types that carry site state, and the only ones a gate subscribes to (one
# subscription `{root}/{site}/+/events/<type>` each, never `events/#`); also what the broker ACL lets a gate
# read. Presence follows grants and passages (P7), a pass is consumed by a checkout (P8), sign-offs (P9)
# and amendments (P4: the replaced pass is void) hold at every gate. `permit.changed` is not among them: a
# permit reaches the other gates as an allow-list record from the central system (P14), which alone writes
# the allow-list, so a gate (or whoever holds its broker credentials) cannot admit a card at another gate by
# announcing a permit; a returned card is back in the supervisor's hand, and the central's next batch
# removes it everywhere. A supervisor's correction of an area's count (P35) is site-wide, as the count is.
PEER_EVENT_TYPES = ("access.granted", "access.passage", "visit.checked_out", "visit.signed_off", "visit.amended",
                    "occupancy.corrected")


class PeerEvent(_Msg):
    model_config = ConfigDict(extra="ignore", frozen=True)
    id: str
    source: str
    type: str
    epoch: str
    seq: int = Field(ge=1)
    time: str
    data: dict[str, Any]


def parse(model: type[_Msg], payload: bytes) -> Any:
    """Size first, then JSON and schema in one pass (pydantic's own parser: a 1 MiB snapshot chunk of
    thousands of records validates in milliseconds)."""
    if len(payload) > MAX_MESSAGE:
        raise BadMessage(f"{len(payload)} bytes, over {MAX_MESSAGE}")
    try:
        return model.model_validate_json(payload)
    except ValidationError as e:
        first = e.errors()[0]
        if first["type"] == "json_invalid":
            raise BadMessage(f"not JSON: {first['msg']}") from None
        where = ".".join(str(x) for x in first["loc"]) or "(message)"
        raise BadMessage(f"{where}: {problem(first)} ({e.error_count()} problems)") from None


class ReplayRequest(_Msg):
    """SPEC §2 `replay`: `{"after_seq":N,"until_seq":M}`, `until_seq` optional; whole numbers only (strict:
    no "3", 3.0 or true)."""
    after_seq: int = Field(ge=0, le=2**53, strict=True)
    until_seq: int | None = Field(None, ge=0, le=2**53, strict=True)

    @model_validator(mode="after")
    def _order(self) -> "ReplayRequest":
        if self.until_seq is not None and self.until_seq < self.after_seq:
            raise ValueError(f"until_seq {self.until_seq} is below after_seq {self.after_seq}")
        return self

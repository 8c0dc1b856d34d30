"""SPEC §2 allow-list records, revocation refs, blocklist entries and trusted keys, validated."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from edge.core.calendar import real_date
from edge.config import AreaPath

HEX_ID = r"^[0-9a-f]{64}$"
BADGE_REF = r"^badge:([0-9A-F]{2}){4,10}$"
# P26: a licence plate as a plate camera's line is normalized (drivers/line_protocol.py normalize_plate): upper
# case, no whitespace, no control or bidirectional characters, up to 16 characters (京A12345 is a plate).
PLATE_REF = r"^plate:[^\sa-z:\x00-\x1F\x7F-\x9F\u2028\u2029\u202A-\u202E\u2066-\u2069\uFFFD]{1,16}$"
CREDENTIAL_REF = f"{BADGE_REF}|{PLATE_REF}"  # what an allow-list record or a revocation names
HolderId = Annotated[str, Field(min_length=1, max_length=64)]
# SPEC §2 `name`: a display name in any script. What would break or disguise a line on the guard's screen (C0 and
# C1 controls, line and paragraph separators, bidirectional overrides and isolates) is refused, not stripped, so
# the name a guard reads is the one the central system sent. A constraint, not a validator: checked in
# pydantic's own code, it costs a streamed import of millions of records nothing measurable.
DISPLAY_NAME = r"^[^\x00-\x1F\x7F-\x9F\u2028\u2029\u202A-\u202E\u2066-\u2069]+$"
DisplayName = Annotated[str, Field(min_length=1, max_length=100, pattern=DISPLAY_NAME)]
PATTERN_PROBLEMS = {"name": "control characters (or line separators, bidirectional overrides) are not allowed"}


def problem(err: dict) -> str:
    """A validation error's message, in words where a pattern would only be quoted back."""
    if err["type"] == "string_pattern_mismatch" and err["loc"] and err["loc"][-1] in PATTERN_PROBLEMS:
        return PATTERN_PROBLEMS[err["loc"][-1]]
    return err["msg"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _epoch(v: str | None) -> float | None:
    if v is None:
        return None
    if not isinstance(v, str):
        raise ValueError("must be an RFC 3339 time or null")
    try:
        dt = datetime.fromisoformat(v.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"{v!r} is not an RFC 3339 time") from None
    if dt.tzinfo is None:
        raise ValueError(f"{v!r} has no UTC offset")
    return dt.timestamp()


class AllowRecord(_Strict):
    credential: Annotated[str, Field(pattern=CREDENTIAL_REF)]
    holder: HolderId
    # P1: any other category or tier is stored as it came and refused at every scan as `malformed`
    category: Annotated[str, Field(min_length=1, max_length=32)]
    tier: Annotated[str, Field(min_length=1, max_length=32)] | None = None
    roles: list[Annotated[str, Field(pattern=r"^[a-z_]{1,32}$")]] = Field(default_factory=list, max_length=16)
    areas: list[AreaPath] = Field(max_length=64)
    valid_from: str | None = None
    valid_until: str | None = None
    schedule: Annotated[str, Field(max_length=64)] | None = None
    party: int = Field(1, ge=1, le=50)
    host: HolderId | None = None
    escort: bool = False
    id_hash: Annotated[str, Field(pattern=HEX_ID)] | None = None
    name: DisplayName | None = None
    private: bool = False  # P29: guards see "private guest", never the name or movements
    extended_access: bool = False  # P30: the door's extended unlock time and held-open limit
    temporary: bool = False  # P27: a visitor card: used up by the perimeter exit until issued again
    # P34: the PIN at every keypad reader; the PIN and the duress PIN as scrypt hashes (edge/core/pin.py), within
    # the caps: a record asking for costlier parameters is refused as `malformed`
    pin_required: bool = False
    pin_hash: Annotated[str, Field(max_length=300)] | None = None
    duress_hash: Annotated[str, Field(max_length=300)] | None = None

    @field_validator("pin_hash", "duress_hash")
    @classmethod
    def _pin_hash(cls, v):
        if v is not None:
            from edge.core.pin import parse
            parse(v)  # BadHash is a ValueError: the record is refused with its message
        return v

    @field_validator("valid_from", "valid_until")
    @classmethod
    def _time(cls, v):
        _epoch(v)
        return v

    def row(self) -> tuple:
        """The record as stored, in the order of edge/store/staging.py CREDENTIAL_COLUMNS."""
        return (
            self.credential, self.holder, self.category, self.tier, ",".join(self.roles), ",".join(self.areas),
            _epoch(self.valid_from), _epoch(self.valid_until), self.schedule, self.party, self.host,
            int(self.escort), self.id_hash, self.name, int(self.private), int(self.extended_access),
            int(self.temporary), int(self.pin_required), self.pin_hash, self.duress_hash,
        )


def unknown_kind_alarm(records, source: str) -> dict | None:
    """P1: one `alarm.raised` for the records of a batch, snapshot or import whose category or tier the
    rules do not know (they are stored, and refused at every scan). None when there are none."""
    from edge.core.model import known_kind
    odd = [r.credential for r in records if not known_kind(r.category, r.tier)]
    if not odd:
        return None
    return {"alarm": "unknown_category", "priority": "normal", "source": source, "count": len(odd),
            "credentials": odd[:20]}


class RevokeRef(_Strict):
    pass_: Annotated[str | None, Field(alias="pass", pattern=r"^[0-9a-f]{16,32}$")] = None
    credential: Annotated[str, Field(pattern=CREDENTIAL_REF)] | None = None

    def ref(self) -> str:
        if (self.pass_ is None) == (self.credential is None):
            raise ValueError("a revocation names exactly one of pass or credential")
        return f"pass:{self.pass_}" if self.pass_ is not None else self.credential


class BlockEntry(_Strict):
    holder: HolderId | None = None
    id_hash: Annotated[str, Field(pattern=HEX_ID)] | None = None
    reason: Annotated[str, Field(max_length=200)] | None = None
    action: Literal["deny", "alert"] = "deny"  # P6 refuses; P37 grants as usual and alerts the guards

    def row(self) -> tuple[str, str, str | None, str]:
        """The entry as stored: (kind, value, reason, action)."""
        return (*self.key(), self.reason, self.action)

    def key(self) -> tuple[str, str]:
        if (self.holder is None) == (self.id_hash is None):
            raise ValueError("a blocklist entry names exactly one of holder or id_hash")
        return ("holder", self.holder) if self.holder is not None else ("id_hash", self.id_hash)


class TrustedKey(_Strict):
    kid: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,32}$")]
    public_key: Annotated[str, Field(max_length=4096)]
    scope: list[Literal["staff", "vip", "visitor", "contractor"]] | None = None


ISO_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
WEEKDAY = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class CalendarItem(_Strict):
    """P24, SPEC §2 `calendar` item: a site local date that is a public holiday, or a swapped working day
    counted `as` the weekday it replaces."""
    date: Annotated[str, Field(pattern=ISO_DATE)]
    kind: Literal["holiday", "workday"]
    as_: Annotated[WEEKDAY | None, Field(alias="as")] = None

    @field_validator("date")
    @classmethod
    def _date(cls, v: str) -> str:
        return real_date(v)

    def entry(self) -> tuple[str, str, str | None]:
        """(date, kind, as) as stored; ValueError for a workday without `as` or a holiday with one."""
        if (self.kind == "workday") != (self.as_ is not None):
            raise ValueError(f"calendar {self.date}: a workday names `as`, the weekday it counts as; a holiday does not")
        return self.date, self.kind, self.as_

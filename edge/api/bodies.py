"""Request bodies of the local API: strict (unknown fields are refused) and bounded in every field."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from edge.config import AreaPath
from edge.store.records import BADGE_REF, DisplayName, HolderId

Reason = Annotated[str, Field(min_length=3, max_length=200, description="why: journaled with the person (P19)")]
Text = Annotated[str, Field(min_length=1, max_length=100)]
Areas = Annotated[list[AreaPath], Field(min_length=1, max_length=10)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SessionBody(Strict):
    token: Annotated[str, Field(min_length=1, max_length=200)]


class OpenBody(Strict):
    reason: Reason


class ReleaseBody(Strict):
    reason: Reason
    host_confirmed: Literal[True] = Field(description="the guard phoned the host, who confirmed")


class CardBody(Strict):
    reason: Reason


class VehicleBody(Strict):
    """P26: a plate to register to a visit; spaces and case do not matter (`京a 12345` is `京A12345`)."""
    plate: Annotated[str, Field(min_length=1, max_length=40, description="the licence plate as written")]


class AdmitBody(Strict):
    reason: Reason


class ModeBody(Strict):
    mode: Literal["normal", "lockdown", "fire", "drill"]
    scope: Literal["gate", "site"] = "gate"
    reason: Reason


class Visitor(Strict):
    name: DisplayName  # shown to guards as the allow-list's names are, so held to the same rule
    company: Text
    id_number: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9 -]{3,31}$",
                                    description="the ID document number: hashed at once, only its last 4 kept")]


class WalkinBody(Strict):
    visitor: Visitor
    purpose: Annotated[str, Field(min_length=1, max_length=200)]
    host: HolderId
    host_confirmation: Literal["phone", "in_person"]
    areas: Areas | None = Field(None, description="narrower than the host's areas; absent = all of them")
    party: int = Field(1, ge=1, le=50)
    repeat: bool = Field(False, description="the same ID document was registered here today already, and the "
                                            "guard registers it again on purpose")


class AmendBody(Strict):
    areas: Areas
    reason: Reason


class PermitBody(Strict):
    credential: Annotated[str, Field(pattern=BADGE_REF, description="the contractor's card")]
    holder: HolderId
    name: DisplayName  # travels in the permit's allow-list record to every gate, which refuses any other
    company: Text
    areas: Areas
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime
    deposit: float | None = Field(None, ge=0, le=100_000, description="default: permits.deposit of the config")


class RenewBody(Strict):
    valid_until: AwareDatetime
    reason: Reason


class ReturnBody(Strict):
    refunded: float | None = Field(None, ge=0, le=100_000, description="default: the whole deposit")


Note = Annotated[str, Field(max_length=200)]


class AckBody(Strict):
    note: Note | None = Field(None, description="what the guard found or did: journaled with the person (P19)")


class OccupancyBody(Strict):
    """P35: how many people the area holds now, by a supervisor's count."""
    count: int = Field(ge=0, le=1_000_000, description="people in the area and below it, parties counted in full")
    reason: Reason


class SafeBody(Strict):
    reason: Note | None = Field(None, description="how the person was accounted for: journaled with the guard")

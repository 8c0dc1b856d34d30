"""The values the decision is made of: credentials, doors, facts, decisions."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Mode(StrEnum):
    NORMAL = "normal"
    LOCKDOWN = "lockdown"
    FIRE = "fire"
    DRILL = "drill"  # P28: a muster as in fire mode, with every door and lane kept as in normal mode


class Direction(StrEnum):
    IN = "in"
    OUT = "out"


CATEGORIES = frozenset({"staff", "vip", "visitor", "contractor"})
TIERS = frozenset({"special", "first", "second"})  # P1: a VIP's tier


def known_kind(category: str | None, tier: str | None) -> bool:
    """P1: the categories and tiers the rules know. Anything else is `malformed` wherever it comes from,
    so an unknown category can never slip past the rules keyed on category (P8, P9, P23)."""
    return category in CATEGORIES and (tier is None or tier in TIERS)
# P8: single-visit passes; P23: categories refused on a stale allow-list. (Who needs an exit sign-off is
# a setting: P9, P25.)
SINGLE_VISIT = frozenset({"visitor", "vip"})
STALE_REFUSED = frozenset({"visitor", "contractor"})
# SPEC §5: an `out` reader refuses only for these reasons (or holds for P9).


@dataclass(frozen=True, slots=True)
class Credential:
    """A credential whose origin is verified: an allow-listed badge or a pass with a good signature."""

    kind: str  # "badge" | "pass" | "plate" (P26: allow-listed, or registered to a visit: then `visit` is set)
    ref: str  # "badge:<HEX>" | "pass:<cti hex>" | "plate:<TEXT>"
    holder: str
    category: str
    areas: tuple[str, ...]
    valid_from: float | None = None  # epoch seconds; None = open
    valid_until: float | None = None
    tier: str | None = None
    roles: frozenset[str] = frozenset()
    schedule: str | None = None  # None = the category default (P5)
    party: int = 1
    host: str | None = None
    escort: bool = False
    id_hash: str | None = None  # full hex, or the 16-character prefix a pass carries
    visit: str | None = None  # a pass's visit id (P8, P9)
    private: bool = False  # P29: shown to guards as "private guest"; decisions unchanged
    extended_access: bool = False  # P30: the door's extended unlock time and held-open limit
    temporary: bool = False  # P27: a visitor card, single-visit like a pass; taken back at the perimeter exit
    pin_required: bool = False  # P34: the holder gives the PIN at every keypad reader (the hashes stay in the store)

    @property
    def single_visit(self) -> bool:
        """P8, P27: used up by the perimeter exit: a visitor's or VIP's pass, a visitor card."""
        return (self.kind == "pass" and self.category in SINGLE_VISIT) or (self.kind == "badge" and self.temporary)

    @property
    def visit_key(self) -> str:
        """What P8 consumption and P9 sign-off attach to."""
        return self.visit if self.visit is not None else self.ref

    @property
    def time_bounded(self) -> bool:
        return self.valid_from is not None or self.valid_until is not None


@dataclass(frozen=True, slots=True)
class Rejected:
    """A presented credential that never became trustworthy (P2)."""

    reason: str  # unknown_credential | bad_signature | malformed
    ref: str | None = None  # badge ref when known; None when the signature failed
    kind: str | None = None  # "badge" | "pass" | "plate" | None when the input was neither


@dataclass(frozen=True, slots=True)
class DoorView:
    """What the policy needs of a door and of the reader on it."""

    name: str
    area: str
    direction: Direction
    perimeter: bool = False
    antipassback: str = "auto"  # auto | hard | soft | off | timed (P31)
    escort_required: bool = False
    passages: bool = False  # a turnstile lane: presence follows counted passages, not grants
    collector: bool = False  # P27: an exit lane that captures visitor cards itself
    barrier: bool = False  # P26: a vehicle barrier, read by a plate camera
    antipassback_s: float = 300.0  # P31: with antipassback "timed", no re-entry through this door within this
    two_person: bool = False  # P33: its area admits two different holders together, never one alone

    @property
    def tracks_presence(self) -> bool:
        """P31: a timed anti-passback door has no exit reader to follow people out: it records no presence."""
        return self.antipassback != "timed"
    pin_required: bool = False  # P34: the door admits a card only with its PIN (every `in` reader has a keypad)
    keypad: bool = False  # P34: this reader has a keypad: a holder with `pin_required` gives the PIN here


@dataclass(frozen=True, slots=True)
class EscortScan:
    """A recent staff grant at a door (P10)."""

    ref: str
    areas: tuple[str, ...]
    at: float
    used: int = 0


@dataclass(frozen=True, slots=True)
class Partner:
    """P33: someone refused a moment ago at this door for want of a second person (or an escort), who would be
    admitted together with the credential now presented (the gate checked it with every other rule)."""

    ref: str
    holder: str
    staff: bool
    areas: tuple[str, ...]
    at: float


@dataclass(frozen=True, slots=True)
class Facts:
    """What the gate knows about the credential and itself at the moment of the scan."""

    mode: Mode = Mode.NORMAL
    blocklisted: bool = False
    revoked: bool = False
    consumed: bool = False
    signed_off: bool = False
    presence: str | None = None  # deepest area the credential is in (P7)
    stale_allowlist: bool = False
    escorts: tuple[EscortScan, ...] = ()
    clock_far_off: bool = False  # P3: more than a day off the central system's time
    watchlisted: bool = False  # P37: a blocklist entry with action `alert` names the holder
    area_full: bool = False  # P35: this entry would take more places than a limited area has left
    last_entry: float | None = None  # P31: the credential's last entry through this door (a timed one)
    partners: tuple[Partner, ...] = ()  # P33: who would be admitted with this credential at a two-person door
    # P34: the PIN given after the card at this reader, as the gate checked it (edge/core/pin.py): "ok", "duress",
    # "incorrect", "locked" (too many wrong PINs lately), "missing" (none, or none can be given); None = not asked
    pin: str | None = None
    interlocked: bool = False  # P32: another door of this door's interlock group is open, unlocked or about to be


@dataclass(frozen=True, slots=True)
class Settings:
    """Policy settings from the config, in the form the decision reads."""

    skew_s: float = 60.0
    tz: object = None  # zoneinfo.ZoneInfo; None = UTC
    schedules: dict = field(default_factory=dict)  # name -> (weekdays, start_min, end_min)
    exit_signoff_required: bool = True
    exit_signoff: frozenset = frozenset({"visitor"})  # P25: categories and `vip:<tier>` whose exit needs it
    calendar_days: dict = field(default_factory=dict)  # P24: schedule name -> {date ordinal: HOLIDAY | weekday}
    holiday_hours: dict = field(default_factory=dict)  # P24: schedule name -> (start_min, end_min); absent = closed
    escort_window_s: float = 30.0
    escort_max: int = 5
    two_person_window_s: float = 30.0  # P33


@dataclass(frozen=True, slots=True)
class Decision:
    granted: bool
    reason: str
    flags: tuple[str, ...] = ()
    held: bool = False  # P9: not opened, `exit.held`
    escort_by: str | None = None  # P10: the staff credential used as escort
    consumes: bool = False  # P8: this grant consumes the pass
    arrival: bool = False  # P12: a VIP arrived at the perimeter
    watchlist: bool = False  # P37: the guards are alerted, whatever was decided
    partner: str | None = None  # P33: the credential admitted together with this one
    duress: bool = False  # P34: granted with the duress PIN: `alarm.duress`, nothing else differs

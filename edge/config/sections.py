"""The site configuration's sections: one pydantic model per concern, with units and cross-field rules."""
from __future__ import annotations

from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from edge.errors import GatekeeperError
from edge.core.areas import is_within, parent_of
from edge.core.calendar import real_date
from edge.config.tours import TourSection

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
AREA = r"^[a-z0-9][a-z0-9_-]*(/[a-z0-9][a-z0-9_-]*)*$"
HHMM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$|^24:00$"
SIGNOFF_KIND = r"^(staff|vip|visitor|contractor)$|^vip:(special|first|second)$"  # P25
SITE_CALENDAR = "site"  # P24: the calendar the allow-list sync fills, and visiting hours' default

Name = Annotated[str, Field(pattern=NAME)]
AreaPath = Annotated[str, Field(pattern=AREA, max_length=200)]


class ConfigError(GatekeeperError):
    """The config file is unusable; `problems` lists `file:line: key: what is wrong`."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SiteSection(Model):
    id: Name = Field(description="site id, the {site} of every MQTT topic")
    gate: Name = Field(description="this gate's id, the {gate} of its topics")
    timezone: str = Field("UTC", description="IANA zone for schedules (visiting hours are local time)")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (use an IANA name such as 'Asia/Shanghai')") from None
        return v


class PolicySection(Model):
    clock_skew_s: float = Field(60, ge=0, le=3600, description="P3 tolerance on validity bounds, seconds")
    exit_signoff_required: bool = Field(True, description="P9: a general visitor's perimeter exit needs the host's sign-off")
    exit_signoff: list[Annotated[str, Field(pattern=SIGNOFF_KIND)]] = Field(
        default_factory=lambda: ["visitor"],
        description="P25: whose perimeter exit needs the host's sign-off: categories, `vip:<tier>` (e.g. `vip:second`)")
    escort_window_s: float = Field(30, gt=0, le=600, description="P10: seconds between the staff scan and the escorted scan")
    escort_max: int = Field(5, ge=1, le=100, description="P10: people one staff credential escorts per window")
    two_person_window_s: float = Field(30, gt=0, le=600, description="P33: seconds within which the second of a pair"
                                       " must present at the same door of a two-person area")
    max_sync_age_s: float | None = Field(None, gt=0, description="P23: refuse visitors/contractors when central is silent longer (seconds); unset = off")
    lobby: AreaPath | None = Field(None, description="P13: area every walk-in pass admits")
    guard_room: AreaPath | None = Field(None, description="P13: the only area a frontline host's walk-in admits")
    extended_access_factor: float = Field(3.0, ge=1, le=20, description="P30: a door's unlock time and held-open limit"
                                          " for a holder marked extended_access, as a multiple of its own (doors may set"
                                          " extended_pulse_s, extended_held_open_s instead)")
    overstay_check_s: float = Field(10.0, gt=0, le=600, description="P36: seconds between looks for visitors and"
                                    " contractors still on site past the end of their pass or permit")


class AreasSection(Model):
    tree: list[AreaPath] = Field(min_length=1, description="every area as a path; a child's parent must be listed")
    escort_required: list[AreaPath] = Field(default_factory=list, description="P10: areas (and all below) needing a staff escort")
    max_occupancy: dict[AreaPath, Annotated[int, Field(ge=1, le=1_000_000)]] = Field(
        default_factory=dict, description="P35: area -> the most people (parties counted whole) it holds, the areas "
                                          "below it included; entries beyond are refused `area_full`. Every door "
                                          "into it needs an `out` reader or must be a turnstile (exits counted)")
    two_person: list[AreaPath] = Field(default_factory=list, description="P33: areas (and all below) entered only by"
                                       " two different holders together (policy.two_person_window_s)")
    # the tree's shape (one root, every parent listed) is checked with the other references: wiring.py


class HoursSection(Model):
    """P24: a schedule's hours on a public holiday."""
    start: str = Field(pattern=HHMM, description="local time HH:MM, inclusive")
    end: str = Field(pattern=HHMM, description="local time HH:MM, exclusive; may be 24:00")

    @model_validator(mode="after")
    def _order(self) -> "HoursSection":
        if _minutes(self.end) <= _minutes(self.start):
            raise ValueError(f"end {self.end} must be after start {self.start}")
        return self

    def window(self) -> tuple[int, int]:
        return _minutes(self.start), _minutes(self.end)


class ScheduleSection(Model):
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(default_factory=lambda: list(DAYS))
    start: str = Field("08:00", pattern=HHMM, description="local time HH:MM, inclusive")
    end: str = Field("21:30", pattern=HHMM, description="local time HH:MM, exclusive; may be 24:00")
    calendar: Name | None = Field(None, description="P24: the [calendars] table whose holidays and swapped working "
                                                    "days this schedule follows; visiting_hours: `site` when unset")
    holiday: HoursSection | None = Field(None, description="P24: hours on a holiday of the calendar; unset = closed")

    @model_validator(mode="after")
    def _order(self) -> "ScheduleSection":
        if _minutes(self.end) <= _minutes(self.start):
            raise ValueError(f"end {self.end} must be after start {self.start}")
        return self

    def window(self) -> tuple[frozenset[int], int, int]:
        """(weekday numbers Monday=0, start minute, end minute)."""
        return frozenset(DAYS.index(d) for d in self.days), _minutes(self.start), _minutes(self.end)


class CalendarDay(Model):
    """P24: one dated exception, as SPEC §2 `calendar` items: a holiday, or a workday counted `as` a weekday."""
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    date: str = Field(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", description="site local date YYYY-MM-DD")
    kind: Literal["holiday", "workday"]
    as_: Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"] | None = Field(
        None, alias="as", description="workday: the weekday it counts as (调休)")
    name: Annotated[str, Field(max_length=100)] | None = Field(None, description="a label for people; not used")

    @field_validator("date")
    @classmethod
    def _date(cls, v: str) -> str:
        return real_date(v)

    @model_validator(mode="after")
    def _as(self) -> "CalendarDay":
        if self.kind == "workday" and self.as_ is None:
            raise ValueError("a workday needs `as`, the weekday it counts as")
        if self.kind == "holiday" and self.as_ is not None:
            raise ValueError("a holiday takes no `as`")
        return self

    def entry(self) -> tuple[str, str, str | None]:
        return self.date, self.kind, self.as_


class CalendarSection(Model):
    """P24: a site calendar: days from a file (relative to the config's folder) and days written here, which
    win a date over the file's; both win over the allow-list sync's for the `site` calendar."""
    file: str | None = Field(None, description="a TOML file of [[days]] (config/calendars/ has examples)")
    days: list[CalendarDay] = Field(default_factory=list)

    @model_validator(mode="after")
    def _once(self) -> "CalendarSection":
        seen = [d.date for d in self.days]
        twice = sorted({d for d in seen if seen.count(d) > 1})
        if twice:
            raise ValueError(f"dates listed twice: {', '.join(twice)}")
        return self


class StorageSection(Model):
    path: str = Field("/var/lib/gatekeeper/gatekeeper.db", description="SQLite file; relative paths are from the config file")
    retention_days: int = Field(365, ge=1, description="P19: journal rows kept locally, days")


class IoModuleSection(Model):
    name: Name
    type: Literal["modbus_tcp", "modbus_rtu", "relay_serial"] = "modbus_tcp"
    host: str = Field("127.0.0.1", description="modbus_tcp")
    port: int = Field(502, ge=1, le=65535, description="modbus_tcp")
    device: str | None = Field(None, description="modbus_rtu, relay_serial: the serial device or pyserial URL")
    baudrate: int = Field(9600, ge=300, le=921600, description="modbus_rtu, relay_serial")
    parity: Literal["N", "E", "O"] = Field("N", description="modbus_rtu")
    stopbits: Literal[1, 2] = Field(1, description="modbus_rtu")
    unit: int = Field(1, ge=0, le=247)
    timeout_s: float = Field(1.0, gt=0, le=30, description="per request, seconds")

    @model_validator(mode="after")
    def _line(self) -> "IoModuleSection":
        if self.type in ("modbus_rtu", "relay_serial") and not self.device:
            raise ValueError(f"a {self.type} module needs device")
        return self


class SiteInputsSection(Model):
    io: Name = Field(description="the io_module that carries the site inputs")
    fire_input: int | None = Field(None, ge=0, le=65535, description="discrete input from the fire panel (P16)")
    lockdown_input: int | None = Field(None, ge=0, le=65535, description="discrete input of the lockdown key switch (P15)")
    fire_trouble_input: int | None = Field(None, ge=0, le=65535,
                                           description="discrete input from the fire panel's line-fault (trouble) output, 1 = fault (P28)")
    poll_ms: int = Field(100, ge=10, le=5000, description="how often the inputs are read, milliseconds")

    @model_validator(mode="after")
    def _trouble(self) -> "SiteInputsSection":
        if self.fire_trouble_input is not None and self.fire_input is None:
            raise ValueError("fire_trouble_input supervises the fire panel's line: set fire_input too")
        return self


class DoorSection(Model):
    name: Name
    area: AreaPath = Field(description="the area on the door's inner side, entered by an `in` reader")
    perimeter: bool = Field(False, description="on the site boundary (P8, P9, P12)")
    io: Name = Field(description="io_module driving the lock")
    kind: Literal["door", "turnstile", "barrier"] = Field(
        "door", description="a door with a lock, a turnstile lane, or a vehicle barrier read by a plate camera (P26)")
    lock_coil: int | None = Field(None, ge=0, le=65535, description="door: coil, 1 = unlocked; barrier: coil, 1 = raised")
    loop_input: int | None = Field(None, ge=0, le=65535, description="barrier: discrete input of the vehicle loop,"
                                   " 1 = a vehicle on it; the barrier never closes while it is (P26)")
    contact_input: int | None = Field(None, ge=0, le=65535, description="discrete input: 1 = open")
    rex_input: int | None = Field(None, ge=0, le=65535, description="discrete input: request to exit")
    pulse_s: float = Field(3.0, gt=0, le=60, description="unlock time after a grant, seconds")
    held_open_s: float = Field(30.0, gt=0, le=3600, description="P17 limit, seconds")
    extended_pulse_s: float | None = Field(None, gt=0, le=300, description="P30: unlock time for extended access,"
                                           " seconds; unset = pulse_s x policy.extended_access_factor")
    extended_held_open_s: float | None = Field(None, gt=0, le=14400, description="P30: held-open limit for extended"
                                               " access, seconds; unset = held_open_s x policy.extended_access_factor")
    fail_mode: Literal["fail_secure", "fail_safe"] = Field("fail_secure", description="what the hardware does on power or link loss (P18)")
    antipassback: Literal["auto", "hard", "soft", "off", "timed"] = Field(
        "auto", description="P7; auto = soft for staff, hard for others; timed (P31): no re-entry through this door"
        " within antipassback_s, and no presence recorded here (for a door without an exit reader)")
    antipassback_s: float | None = Field(None, gt=0, le=86400, description="P31: with antipassback = \"timed\", seconds"
                                         " before the same credential may enter here again; unset = 300")
    # turnstile lanes (SPEC §5): pass pulses out, one passage pulse in per person, free-wheel for fire mode
    pass_in_coil: int | None = Field(None, ge=0, le=65535)
    pass_out_coil: int | None = Field(None, ge=0, le=65535)
    passage_in_input: int | None = Field(None, ge=0, le=65535)
    passage_out_input: int | None = Field(None, ge=0, le=65535)
    free_coil: int | None = Field(None, ge=0, le=65535)
    passage_timeout_s: float = Field(10.0, gt=0, le=120, description="a grant nobody walks through is undone after this")
    # P27: a card collector on the exit side: a visitor card's exit opens once the collector has captured the card
    collector: bool = Field(False, description="P27: the exit side has a card collector (perimeter doors and lanes)")
    collector_input: int | None = Field(None, ge=0, le=65535, description="P27: discrete input, one pulse per card"
                                        " captured by the collector")
    pin_required: bool = Field(False, description="P34: an entry here needs the card, then its PIN within 10 s at the"
                               " same reader (every `in` reader of the door needs keypad = true)")
    interlock: Name | None = Field(None, description="P32: the interlock group (mantrap) of this door: it opens only"
                                   " while every other door of the group reads closed and is locked; each needs"
                                   " contact_input")

    @model_validator(mode="after")
    def _outputs(self) -> "DoorSection":
        if self.kind in ("door", "barrier") and self.lock_coil is None:
            raise ValueError(f"a {self.kind} needs lock_coil")
        if self.loop_input is not None and self.kind != "barrier":
            raise ValueError("loop_input is a barrier's vehicle loop: set kind = \"barrier\" or drop it")
        if self.kind == "turnstile":
            missing = [k for k in ("pass_in_coil", "pass_out_coil", "passage_in_input", "passage_out_input")
                       if getattr(self, k) is None]
            if missing:
                raise ValueError(f"a turnstile lane needs {', '.join(missing)}")
        if self.collector and (self.collector_input is None or not self.perimeter):
            raise ValueError("a card collector (P27) sits at a perimeter exit and reports on collector_input:"
                             " set perimeter = true and collector_input, or drop collector")
        if self.collector_input is not None and not self.collector:
            raise ValueError("collector_input is read only with collector = true (P27)")
        if self.antipassback_s is not None and self.antipassback != "timed":
            raise ValueError("antipassback_s is the time of a timed anti-passback (P31): set antipassback = \"timed\""
                             " or drop it")
        if self.interlock is not None and (self.kind != "door" or self.contact_input is None):
            raise ValueError(f"a door of interlock group {self.interlock!r} (P32) is a door with contact_input: the"
                             " interlock reads whether it is closed")
        return self

    @property
    def passages(self) -> bool:
        """Presence follows counted passages here, not grants (P7, P11)."""
        return self.kind == "turnstile"


class ReaderSection(Model):
    name: Name
    type: Literal["serial", "camera", "osdp"] = "serial"
    url: str | None = Field(None, description="serial, osdp: pyserial URL (/dev/ttyUSB0, socket://host:port, ...)")
    baudrate: int | None = Field(None, gt=0, description="serial: 9600 by default; osdp: 115200")
    source: str | None = Field(None, description="camera: device index, video file, or RTSP/HTTP URL")
    dedup_s: float = Field(3.0, gt=0, le=60, description="camera: one credential acted on once per this window")
    address: int = Field(101, ge=0, le=126, description="osdp: the reader's address")
    scbk_file: str | None = Field(None, description="osdp: file holding the 16-byte secure channel key as hex")
    door: Name | None = Field(None, description="the door this reader admits through; none on a checkpoint reader")
    direction: Literal["in", "out"] | None = Field(None, description="in: enters the door's area; out: leaves it")
    checkpoint: bool = Field(False, description="P21: a guard-tour checkpoint: what it reads is a patrol tap, never an entry (no door)")
    encoding: str = Field("utf-8", description="serial: the text encoding of its lines (a plate camera may send"
                                               " `gbk` for 京A12345, P26)")
    keypad: bool = Field(False, description="P34: the reader has a keypad (a serial reader sends `PIN:<digits>`"
                         " lines, an OSDP reader its key presses): a holder with pin_required gives the PIN here")

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, v: str) -> str:
        import codecs
        try:
            codecs.lookup(v)
        except LookupError:
            raise ValueError(f"unknown text encoding {v!r} (e.g. utf-8, gbk, gb18030, big5)") from None
        return v

    @model_validator(mode="after")
    def _kind(self) -> "ReaderSection":
        if self.checkpoint and (self.door is not None or self.direction is not None):
            raise ValueError("a checkpoint reader opens no door (P21): drop door and direction")
        if not self.checkpoint and (self.door is None or self.direction is None):
            raise ValueError("a reader needs door and direction (or checkpoint = true for a guard-tour checkpoint)")
        if self.type in ("serial", "osdp") and not self.url:
            raise ValueError(f"a {self.type} reader needs url")
        if self.type == "camera" and self.source is None:
            raise ValueError("a camera reader needs source")
        if self.type == "osdp" and not self.scbk_file:
            raise ValueError("an osdp reader needs scbk_file: the secure channel is always on")
        return self


class KeySection(Model):
    kid: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,32}$")]
    public_key_file: str | None = Field(None, description="PEM file; relative paths are from the config file")
    public_key: str | None = Field(None, description="PEM text, instead of public_key_file")
    scope: list[Literal["staff", "vip", "visitor", "contractor"]] | None = Field(None, description="categories this key may sign; unset = all")

    @model_validator(mode="after")
    def _one_source(self) -> "KeySection":
        if (self.public_key_file is None) == (self.public_key is None):
            raise ValueError("give exactly one of public_key_file or public_key")
        return self


class MqttSection(Model):
    """The central link (SPEC §2). Without this section the gate runs alone, journaling locally."""
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    topic_root: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")] = "acs"
    client_id: str | None = Field(None, description="default: gatekeeper-{site}-{gate}")
    protocol: Literal["5", "3.1.1"] = "5"
    keepalive_s: int = Field(30, ge=5, le=3600)
    session_expiry_s: int = Field(7 * 86400, ge=0, description="the broker keeps our subscriptions and queued messages this long while we are away")
    username: str | None = None
    password_file: str | None = Field(None, description="file holding the broker password (e.g. under $CREDENTIALS_DIRECTORY)")
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = Field(None, description="client certificate (PEM) for mutual TLS")
    key_file: str | None = None
    max_inflight: int = Field(1000, ge=1, le=65535, description="events handed to the broker and not yet acknowledged")
    resync_retry_s: float = Field(60, gt=0, description="an incomplete snapshot is asked for again after this long")
    replay_per_s: float = Field(200, gt=0, le=100_000, description="events per second at most when the central system asks for a range again (SPEC §2 replay), behind live traffic")

    @model_validator(mode="after")
    def _pairs(self) -> "MqttSection":
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        if (self.cert_file or self.ca_file) and not self.tls:
            raise ValueError("ca_file/cert_file need tls = true")
        if self.password_file and not self.username:
            raise ValueError("password_file needs a username")
        return self


class ApiSection(Model):
    """The local API and console (SPEC §4). Loopback by default; any other address needs TLS."""
    bind: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535, description="0: any free port, printed when the API listens")
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    max_connections: int = Field(100, ge=4, le=10_000, description="open connections at most; at the limit a new one pushes out the one waiting longest for its request")
    header_timeout_s: float = Field(10, gt=0, le=300, description="a request's headers must arrive within this, seconds")
    body_timeout_s: float = Field(10, gt=0, le=300, description="a request's body must arrive within this after its headers, seconds")

    @model_validator(mode="after")
    def _tls(self) -> "ApiSection":
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        if self.bind not in ("127.0.0.1", "::1", "localhost") and not self.tls_cert_file:
            raise ValueError(f"bind {self.bind!r} is beyond loopback: set tls_cert_file and tls_key_file")
        return self


class WalkinSection(Model):
    """P13 walk-in registration at this gate. Without this section the gate registers no walk-ins."""
    id_secret_file: str = Field(description="the site's secret for id_hash (HMAC-SHA256 of the ID number); the same on every gate and the central system")
    signing_key_file: str | None = Field(None, description="the gate's own Ed25519 private key (PEM); default walkin.key next to the database, made on first start")
    kid: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,16}$")] | None = Field(None, description="default {gate}-w; 16 characters at most (SPEC §3 QR budget)")
    max_party: int = Field(5, ge=1, le=50, description="people one walk-in pass admits at most")


class PinSection(Model):
    """P34 card and PIN: the site's PIN pepper, needed wherever a reader has a keypad."""
    pepper_file: str = Field(description="the site's PIN pepper (a secret file, at least 16 bytes): the key of the"
                             " HMAC-SHA256 of a PIN that scrypt hashes; the same on every gate and the central system")


class PermitSection(Model):
    """P14 contractor permits made at this gate (supervisor only)."""
    deposit: float = Field(10, ge=0, description="default deposit for a contractor's card")
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = Field("CNY", description="ISO 4217 code")


class LogSection(Model):
    """The daemon's log (stderr; under systemd, the journal with each line's priority). Reloaded on SIGHUP."""
    level: Literal["debug", "info", "warning", "error"] = Field("info", description="the gate's own lines at this level and above")
    format: Literal["text", "json"] = Field("text", description="text lines, or one JSON object a line")
    wire: Literal["off", "debug", "info", "warning", "error"] = Field("off", description="the libraries' talk about the wire (pymodbus, paho, uvicorn, libosdp), as logger gatekeeper.wire")


class GateConfig(Model):
    site: SiteSection
    policy: PolicySection = PolicySection()
    areas: AreasSection
    schedules: dict[Name, ScheduleSection] = Field(default_factory=dict)
    calendars: dict[Name, CalendarSection] = Field(default_factory=dict)
    storage: StorageSection = StorageSection()
    io_modules: list[IoModuleSection] = Field(default_factory=list)
    site_inputs: SiteInputsSection | None = None
    doors: list[DoorSection] = Field(default_factory=list)
    readers: list[ReaderSection] = Field(default_factory=list)
    keys: list[KeySection] = Field(default_factory=list)
    mqtt: MqttSection | None = None
    api: ApiSection | None = None
    walkin: WalkinSection | None = None
    pin: PinSection | None = None  # P34
    permits: PermitSection = PermitSection()
    log: LogSection = LogSection()
    tours: list[TourSection] = Field(default_factory=list, description="P21 guard tours over this gate's checkpoint readers")

    @model_validator(mode="after")
    def _references(self, info: ValidationInfo) -> "GateConfig":
        """Cross-references and wiring, for a model built in code; reading a file checks them on the raw
        TOML instead (edge/config/files.py), beside the field errors, each with its line."""
        if info.context and info.context.get("wiring_checked"):
            return self
        from edge.config.lines import key_path
        from edge.config.wiring import conflicts, references
        raw = self.model_dump()
        problems = references(raw) + conflicts(raw)
        if problems:
            raise ValueError("; ".join(f"{key_path(loc)}: {msg}" for loc, msg in problems))
        return self

    # Derived views, computed once: the hot path reads them.
    def schedule_windows(self) -> dict[str, tuple[frozenset[int], int, int]]:
        out = {"visiting_hours": ScheduleSection().window()}
        out.update({n: s.window() for n, s in self.schedules.items()})
        return out

    def schedule_calendars(self) -> dict[str, str | None]:
        """P24: the calendar each schedule follows; visiting hours follow the `site` calendar unless told."""
        out: dict[str, str | None] = {"visiting_hours": SITE_CALENDAR}
        out.update({n: s.calendar or (SITE_CALENDAR if n == "visiting_hours" else None)
                    for n, s in self.schedules.items()})
        return out

    def holiday_hours(self) -> dict[str, tuple[int, int]]:
        """P24: each schedule's holiday hours; a schedule without them is closed on a holiday."""
        return {n: s.holiday.window() for n, s in self.schedules.items() if s.holiday is not None}

    def escort_required(self, area: str) -> bool:
        return any(is_within(area, a) for a in self.areas.escort_required)

    def two_person(self, area: str) -> bool:
        """P33: the area, or one above it, is marked two-person."""
        return any(is_within(area, a) for a in self.areas.two_person)

    def event_source(self) -> str:
        """SPEC §2 `source` of this gate's events: its topic prefix, the same over MQTT, the API and the CLI."""
        root = self.mqtt.topic_root if self.mqtt else "acs"
        return f"{root}/{self.site.id}/{self.site.gate}"

    def root_area(self) -> str:
        return next(a for a in self.areas.tree if parent_of(a) is None)


def _minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)

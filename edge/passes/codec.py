"""Signed passes (SPEC §3): `GK1:` + base45(COSE_Sign1(CWT claims)).

verify_pass is the gate's front door for anything a QR scanner reads, so its order is the security
property: size first (before decoding anything), then the envelope, then the signature, and only then the
claims. Nothing inside the payload is trusted, or even parsed, before the signature checked out.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.core.model import known_kind
import edge.passes.base45 as base45
from edge.passes.cose import KID, loads_strict, parse_sign1, sig_structure, sign1
from edge.passes.keys import KeyRing

PREFIX = "GK1:"
MAX_PASS = 2048  # characters (or bytes) of pass text: SPEC §3, over 2 KB is malformed
CTI_MIN, CTI_MAX = 8, 16
# Times a pass may carry: RFC 3339 can write them (years 1970-9999), so `pass verify` can always print them
TIME_MIN, TIME_MAX = 0, 253_402_300_799

# CWT claim keys (RFC 8392); the private claims of SPEC §3 go by their text names
ISS, SUB, EXP, NBF, IAT, CTI = 1, 2, 4, 5, 6, 7
_NAMES = {ISS: "iss", SUB: "sub", EXP: "exp", NBF: "nbf", IAT: "iat", CTI: "cti"}
_IDH_RE = re.compile(r"[0-9a-f]{16}")


class PassRejected(Exception):
    """A pass that is not one: `reason` is the policy's code, `malformed` or `bad_signature`."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True, kw_only=True)
class PassClaims:
    """What a verified pass says. Short names as in SPEC §3; times are epoch seconds."""

    kid: str
    iss: str | None = None
    sub: str
    exp: int
    nbf: int
    iat: int | None = None
    cti: bytes
    vis: str = ""  # "" = not in the pass: becomes the cti in hex
    cat: str
    tier: str | None = None
    areas: tuple[str, ...]
    party: int = 1
    host: str | None = None
    esc: bool = False
    sch: str | None = None
    idh: str | None = None

    def __post_init__(self) -> None:
        if not self.vis:
            object.__setattr__(self, "vis", self.cti.hex())

    @property
    def cti_hex(self) -> str:
        return self.cti.hex()

    def to_json_dict(self) -> dict:
        """Claims by short name, as `gatekeeper pass verify` prints them: cti in hex, times RFC 3339."""
        out = {
            "kid": self.kid, "iss": self.iss, "sub": self.sub, "exp": rfc3339(self.exp), "nbf": rfc3339(self.nbf),
            "iat": rfc3339(self.iat) if self.iat is not None else None, "cti": self.cti_hex, "vis": self.vis,
            "cat": self.cat, "tier": self.tier, "areas": list(self.areas), "party": self.party, "host": self.host,
            "esc": self.esc, "sch": self.sch, "idh": self.idh,
        }
        return {k: v for k, v in out.items() if v is not None}


def rfc3339(t: int | float) -> str:
    return datetime.fromtimestamp(int(t), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def issue_pass(private_key: Ed25519PrivateKey, kid: str, *, holder: str, category: str, areas: Iterable[str],
               valid_from: int | float, valid_until: int | float, tier: str | None = None,
               party: int | None = None, host: str | None = None, escort: bool = False,
               schedule: str | None = None, idh: str | None = None, visit: str | None = None,
               issuer: str | None = "gatekeeper", issued_at: int | float | None = None,
               cti: bytes | None = None) -> str:
    """The pass text. Optional claims are left out when they hold their default, to keep the QR small.

    ValueError for anything verify_pass would refuse, so no pass is issued that no gate accepts.
    """
    cti = os.urandom(10) if cti is None else bytes(cti)
    if not CTI_MIN <= len(cti) <= CTI_MAX:
        raise ValueError(f"cti must be {CTI_MIN}-{CTI_MAX} bytes")
    areas = list(areas) if not isinstance(areas, str) else None  # a bare string would become its letters
    if not areas or not all(isinstance(a, str) and a for a in areas):
        raise ValueError("areas: a list of at least one area name")
    for name, value in (("holder", holder), ("category", category)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name}: text required")
    nbf, exp = _epoch(valid_from, "valid_from"), _epoch(valid_until, "valid_until")
    if exp <= nbf:
        raise ValueError("valid_until must be after valid_from")
    claims: dict = {SUB: holder, EXP: exp, NBF: nbf, CTI: cti, "cat": category, "areas": areas}
    if issuer:
        claims[ISS] = issuer
    if issued_at is not None:
        claims[IAT] = _epoch(issued_at, "issued_at")
    if idh is not None and not _IDH_RE.fullmatch(idh):
        raise ValueError("idh: the first 16 lowercase hex characters of the holder's id_hash")
    for key, value in (("tier", tier), ("host", host), ("sch", schedule), ("idh", idh), ("vis", visit)):
        if value is not None:
            if not isinstance(value, str) or not value:
                raise ValueError(f"{key}: text required")
            claims[key] = value
    if party is not None:
        if type(party) is not int or party < 1:
            raise ValueError("party must be an integer of at least 1")
        if party != 1:
            claims["party"] = party
    if escort:
        claims["esc"] = True
    return PREFIX + base45.encode(sign1(private_key, kid, cbor2.dumps(claims)))


def _epoch(t: int | float, name: str) -> int:
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not TIME_MIN <= t <= TIME_MAX:
        raise ValueError(f"{name}: epoch seconds between 1970 and 9999")
    return int(t)


def verify_pass(text: str | bytes, keyring: KeyRing) -> PassClaims:
    """The verified claims, or PassRejected. Does not look at the time: the policy does (P3)."""
    # (a) size, before anything else touches the text
    if not isinstance(text, (str, bytes, bytearray)):
        raise PassRejected("malformed", f"not text: {type(text).__name__}")
    if len(text) > MAX_PASS:
        raise PassRejected("malformed", f"{len(text)} characters, over {MAX_PASS}")
    if not isinstance(text, str):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            raise PassRejected("malformed", "not ASCII text") from None
    # (b) prefix, (c) envelope
    if not text.startswith(PREFIX):
        raise PassRejected("malformed", f"no {PREFIX} prefix")
    try:
        protected, header, _unprotected, payload, signature = parse_sign1(base45.decode(text[len(PREFIX):]))
    except ValueError as e:
        raise PassRejected("malformed", str(e)) from None
    # (d) signature, by a key we trust
    kid = header[KID].decode("ascii")
    trusted = keyring.get(kid)
    if trusted is None:
        raise PassRejected("bad_signature", f"unknown key {kid!r}")
    public_key, scope = trusted
    try:
        public_key.verify(signature, sig_structure(protected, payload))
    except InvalidSignature:
        raise PassRejected("bad_signature", "signature does not match") from None
    # (e) claims, now that someone we trust vouches for them, (f) and whether that key may vouch for this
    claims = _claims(kid, payload)
    if scope is not None and claims.cat not in scope:
        raise PassRejected("bad_signature", f"key {kid!r} may not sign {claims.cat!r} passes")
    return claims


def _claims(kid: str, payload: bytes) -> PassClaims:
    """Claims of a payload whose signature is good; the issuer may still have got the types wrong."""
    try:
        m = loads_strict(payload)
    except ValueError as e:
        raise PassRejected("malformed", f"claims: {e}") from None
    if not isinstance(m, Mapping):
        raise PassRejected("malformed", "claims are not a map")
    cti = _get(m, CTI, bytes, required=True)
    if not CTI_MIN <= len(cti) <= CTI_MAX:
        raise PassRejected("malformed", f"cti must be {CTI_MIN}-{CTI_MAX} bytes")
    areas = _get(m, "areas", (list, tuple), required=True)
    if not all(isinstance(a, str) for a in areas):
        raise PassRejected("malformed", "areas must be a list of text")
    party = _get(m, "party", int)
    if party is not None and party < 1:
        raise PassRejected("malformed", "party must be at least 1")
    esc = _get(m, "esc", bool)
    cat, tier = _get(m, "cat", str, required=True), _get(m, "tier", str)
    if not known_kind(cat, tier):
        raise PassRejected("malformed", f"category {cat!r} or tier {tier!r} is not one of SPEC §2's (P1)")
    return PassClaims(
        kid=kid, iss=_get(m, ISS, str), sub=_get(m, SUB, str, required=True), exp=_time(m, EXP, required=True),
        nbf=_time(m, NBF, required=True), iat=_time(m, IAT), cti=cti, vis=_get(m, "vis", str) or "",
        cat=cat, tier=tier, areas=tuple(areas),
        party=1 if party is None else party, host=_get(m, "host", str), esc=bool(esc), sch=_get(m, "sch", str),
        idh=_get(m, "idh", str),
    )


def _get(m: Mapping, key, kind, required: bool = False):
    if key not in m:
        if required:
            raise PassRejected("malformed", f"claim {_NAMES.get(key, key)} missing")
        return None
    v = m[key]
    # bool is an int in Python, and an int is no bool: check the exact kind the claim needs
    if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
        raise PassRejected("malformed", f"claim {_NAMES.get(key, key)} of the wrong type")
    return v


def _time(m: Mapping, key, required: bool = False) -> int | None:
    v = _get(m, key, int, required)
    if v is not None and not TIME_MIN <= v <= TIME_MAX:
        raise PassRejected("malformed", f"claim {_NAMES[key]} out of range")
    return v

"""Signed passes (SPEC §3): `GK1:` + base45(COSE_Sign1(CWT claims)).

verify_pass is the gate's front door for anything a QR scanner reads, so its order is the security
property: size first (before decoding anything), then structure, then the signature, and only then the
claims. Nothing inside the payload is trusted, or even parsed, before the signature checked out.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

import cbor2
from cryptography.exceptions import InvalidSignature

from edge.passes import base45
from edge.passes.cose import parse_sign1, sig_structure, sign1
from edge.passes.keys import KeyRing

PREFIX = "GK1:"
MAX_PASS = 2048  # characters of pass text (SPEC §3: over 2 KB is malformed)

# CWT claim keys (RFC 8392) and the private ones of SPEC §3
ISS, SUB, EXP, NBF, IAT, CTI = 1, 2, 4, 5, 6, 7


class PassRejected(Exception):
    """A pass that is not one: `reason` is the policy's code (`malformed` or `bad_signature`)."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class PassClaims:
    kid: str
    sub: str
    exp: int
    nbf: int
    cti: bytes
    cat: str
    areas: tuple[str, ...]
    vis: str
    iss: str | None = None
    iat: int | None = None
    tier: str | None = None
    party: int = 1
    host: str | None = None
    esc: bool = False
    sch: str | None = None
    idh: str | None = None

    @property
    def cti_hex(self) -> str:
        return self.cti.hex()

    def to_json_dict(self) -> dict:
        """Claims by short name, as `gatekeeper pass verify` prints them."""
        out = {
            "kid": self.kid, "iss": self.iss, "sub": self.sub, "exp": _rfc3339(self.exp), "nbf": _rfc3339(self.nbf),
            "iat": _rfc3339(self.iat) if self.iat is not None else None, "cti": self.cti_hex, "vis": self.vis,
            "cat": self.cat, "tier": self.tier, "areas": list(self.areas), "party": self.party, "host": self.host,
            "esc": self.esc, "sch": self.sch, "idh": self.idh,
        }
        return {k: v for k, v in out.items() if v is not None}


def _rfc3339(t: int) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def issue_pass(private_key, kid: str, *, holder: str, category: str, areas, valid_from: float, valid_until: float,
               tier: str | None = None, party: int | None = None, host: str | None = None, escort: bool = False,
               schedule: str | None = None, idh: str | None = None, visit: str | None = None,
               issuer: str | None = "gatekeeper", issued_at: float | None = None, cti: bytes | None = None) -> str:
    """The pass text. Optional claims are left out when they hold their default, to keep the QR small."""
    cti = os.urandom(10) if cti is None else cti
    if not 8 <= len(cti) <= 16:
        raise ValueError("cti must be 8-16 bytes")
    if int(valid_until) <= int(valid_from):
        raise ValueError("valid_until must be after valid_from")
    claims: dict = {SUB: holder, EXP: int(valid_until), NBF: int(valid_from), CTI: cti, "cat": category,
                    "areas": list(areas)}
    if issuer:
        claims[ISS] = issuer
    if issued_at is not None:
        claims[IAT] = int(issued_at)
    for key, value in (("tier", tier), ("host", host), ("sch", schedule), ("idh", idh), ("vis", visit)):
        if value is not None:
            claims[key] = value
    if party is not None and party != 1:
        if party < 1:
            raise ValueError("party must be at least 1")
        claims["party"] = int(party)
    if escort:
        claims["esc"] = True
    return PREFIX + base45.encode(sign1(private_key, kid, cbor2.dumps(claims)))


def verify_pass(text: str, keyring: KeyRing) -> PassClaims:
    """The verified claims, or PassRejected. Does not look at the time: the policy does (P3)."""
    if len(text) > MAX_PASS:
        raise PassRejected("malformed", f"{len(text)} characters, over {MAX_PASS}")
    if not text.startswith(PREFIX):
        raise PassRejected("malformed", "no GK1: prefix")
    try:
        protected, kid, payload, signature = parse_sign1(base45.decode(text[len(PREFIX):]))
    except ValueError as e:
        raise PassRejected("malformed", str(e)) from None
    trusted = keyring.get(kid)
    if trusted is None:
        raise PassRejected("bad_signature", f"unknown key {kid!r}")
    public_key, scope = trusted
    try:
        public_key.verify(signature, sig_structure(protected, payload))
    except InvalidSignature:
        raise PassRejected("bad_signature", "signature does not match") from None
    claims = _claims(kid, payload)
    if scope is not None and claims.cat not in scope:
        raise PassRejected("bad_signature", f"key {kid!r} may not sign {claims.cat!r} passes")
    return claims


def _claims(kid: str, payload: bytes) -> PassClaims:
    """Claims of a payload whose signature is good; the issuer may still have got the types wrong."""
    try:
        m = cbor2.loads(payload)
    except Exception as e:
        raise PassRejected("malformed", f"claims are not CBOR: {e.__class__.__name__}") from None
    if not isinstance(m, Mapping):
        raise PassRejected("malformed", "claims are not a map")
    try:
        cti = _get(m, CTI, bytes, required=True)
        if not 8 <= len(cti) <= 16:
            raise PassRejected("malformed", "cti must be 8-16 bytes")
        areas = _get(m, "areas", (list, tuple), required=True)
        if not areas or not all(isinstance(a, str) and a for a in areas):
            raise PassRejected("malformed", "areas must be a non-empty list of text")
        party = _get(m, "party", int)
        if party is not None and party < 1:
            raise PassRejected("malformed", "party must be at least 1")
        return PassClaims(
            kid=kid, sub=_get(m, SUB, str, required=True), exp=_get(m, EXP, int, required=True),
            nbf=_get(m, NBF, int, required=True), cti=cti, cat=_get(m, "cat", str, required=True),
            areas=tuple(areas), vis=_get(m, "vis", str) or cti.hex(), iss=_get(m, ISS, str), iat=_get(m, IAT, int),
            tier=_get(m, "tier", str), party=party or 1, host=_get(m, "host", str),
            esc=bool(_get(m, "esc", bool)), sch=_get(m, "sch", str), idh=_get(m, "idh", str),
        )
    except OverflowError:
        raise PassRejected("malformed", "a time out of range") from None


_NAMES = {ISS: "iss", SUB: "sub", EXP: "exp", NBF: "nbf", IAT: "iat", CTI: "cti"}


def _get(m: Mapping, key, kind, required: bool = False):
    if key not in m:
        if required:
            raise PassRejected("malformed", f"claim {_NAMES.get(key, key)} missing")
        return None
    v = m[key]
    # bool is an int in Python, and an int is no bool: check the exact kind the claim needs
    if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
        raise PassRejected("malformed", f"claim {_NAMES.get(key, key)} of the wrong type")
    if kind is int and not -(1 << 62) < v < (1 << 62):
        raise PassRejected("malformed", f"claim {_NAMES.get(key, key)} out of range")
    return v

"""P34 PINs at rest: scrypt hashes of the PIN keyed with the site's PIN pepper, and their check.

A hash is `scrypt$N$r$p$salt_b64$hash_b64` (SPEC §2). The password scrypt hashes is not the PIN itself but
HMAC-SHA256(pepper, PIN as ASCII digits): a stolen allow-list without the pepper (a secret file on the gates and
the central system, never in the records) cannot be searched through the 10^4..10^8 PINs. The salt is the
record's own. Parameters are capped (N <= 2^13, r = 8, p = 1: about 32 ms a check on a controller): a record
asking for more is refused as `malformed` where it arrives, so no record can make a door wait.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re

MAX_N = 1 << 13
R = 8
P = 1
SALT_BYTES = (8, 64)
HASH_BYTES = (16, 64)
PIN = re.compile(r"^[0-9]{4,8}$")  # SPEC §5: 4 to 8 digits
_FORMAT = re.compile(r"^scrypt\$([0-9]{1,7})\$([0-9]{1,3})\$([0-9]{1,3})\$([A-Za-z0-9+/=]{1,100})\$([A-Za-z0-9+/=]{1,100})$")


class BadHash(ValueError):
    """A stored PIN hash that is not `scrypt$N$r$p$salt$hash` within the caps."""


def parse(text: str) -> tuple[int, int, int, bytes, bytes]:
    """(N, r, p, salt, hash) of a stored hash; BadHash saying what is wrong (never quoting the hash)."""
    m = _FORMAT.match(text)
    if m is None:
        raise BadHash("a PIN hash is scrypt$N$r$p$salt_b64$hash_b64")
    n, r, p = (int(x) for x in m.group(1, 2, 3))
    if n < 2 or n & (n - 1) or n > MAX_N:
        raise BadHash(f"scrypt N must be a power of two up to 2^13 ({MAX_N}), not {n}")
    if r != R or p != P:
        raise BadHash(f"scrypt r and p must be {R} and {P}, not {r} and {p}")
    try:
        salt = base64.b64decode(m.group(4), validate=True)
        digest = base64.b64decode(m.group(5), validate=True)
    except binascii.Error:
        raise BadHash("the salt and hash of a PIN hash are base64") from None
    if not SALT_BYTES[0] <= len(salt) <= SALT_BYTES[1] or not HASH_BYTES[0] <= len(digest) <= HASH_BYTES[1]:
        raise BadHash(f"a PIN hash has a salt of {SALT_BYTES[0]}-{SALT_BYTES[1]} bytes and a hash of"
                      f" {HASH_BYTES[0]}-{HASH_BYTES[1]} bytes")
    return n, r, p, salt, digest


def password(pin: str, pepper: bytes) -> bytes:
    """What scrypt hashes: HMAC-SHA256 keyed with the pepper, of the PIN's ASCII digits (32 bytes)."""
    return hmac.new(pepper, pin.encode("ascii"), hashlib.sha256).digest()


def make(pin: str, pepper: bytes, n: int = MAX_N, salt: bytes | None = None) -> str:
    """A hash of `pin` as the central system stores it (the simulator, the tests, an operator's tool)."""
    if not PIN.match(pin):
        raise ValueError("a PIN is 4 to 8 digits")
    salt = os.urandom(16) if salt is None else salt
    digest = hashlib.scrypt(password(pin, pepper), salt=salt, n=n, r=R, p=P, dklen=32, maxmem=_maxmem(n))
    b64 = base64.b64encode
    return f"scrypt${n}${R}${P}${b64(salt).decode()}${b64(digest).decode()}"


def matches(pin: str, pepper: bytes, stored: str | None) -> bool:
    """Whether `pin` is the one `stored` hashes; False for no hash or one that does not parse (it was checked on
    arrival). The comparison takes the same time wherever the bytes differ."""
    if not stored:
        return False
    try:
        n, r, p, salt, digest = parse(stored)
    except BadHash:
        return False
    got = hashlib.scrypt(password(pin, pepper), salt=salt, n=n, r=r, p=p, dklen=len(digest), maxmem=_maxmem(n))
    return hmac.compare_digest(got, digest)


def check(pin: str, pepper: bytes, pin_hash: str | None, duress_hash: str | None) -> str:
    """P34: "ok", "duress" or "incorrect". Both hashes are always computed, so how long the check takes says
    nothing of which PIN was given (a watcher at the door must not learn the duress PIN is not the one)."""
    if not PIN.match(pin):
        return "incorrect"
    good = matches(pin, pepper, pin_hash)
    duress = matches(pin, pepper, duress_hash if duress_hash else pin_hash)  # same cost without a duress hash
    if duress and duress_hash:
        return "duress"
    return "ok" if good else "incorrect"


def _maxmem(n: int) -> int:
    return 128 * R * n * 2 + (1 << 20)

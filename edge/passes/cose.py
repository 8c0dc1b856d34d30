"""COSE_Sign1 (RFC 9052) with Ed25519, as SPEC §3 fixes it: tag 18, protected {1: -8, 4: kid}, no payload detachment."""
from __future__ import annotations

import re
from collections.abc import Mapping

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

TAG_SIGN1 = 18
ALG, KID = 1, 4
EDDSA = -8
KID_RE = re.compile(r"[A-Za-z0-9._-]{1,32}")


def sig_structure(protected: bytes, payload: bytes) -> bytes:
    """What is signed: the protected header bytes as sent, no external data, the payload bytes."""
    return cbor2.dumps(["Signature1", protected, b"", payload])


def sign1(private_key: Ed25519PrivateKey, kid: str, payload: bytes) -> bytes:
    if not KID_RE.fullmatch(kid):
        raise ValueError(f"kid {kid!r}: 1-32 characters of A-Z a-z 0-9 . _ -")
    protected = cbor2.dumps({ALG: EDDSA, KID: kid.encode()})
    signature = private_key.sign(sig_structure(protected, payload))
    return cbor2.dumps(cbor2.CBORTag(TAG_SIGN1, [protected, {}, payload, signature]))


def parse_sign1(data: bytes) -> tuple[bytes, str, bytes, bytes]:
    """(protected bytes, kid, payload, signature); ValueError for anything that is not such a message.

    Only structure is read here: nothing in the payload is looked at before the signature is checked.
    """
    try:
        msg = cbor2.loads(data)
    except Exception as e:  # cbor2 raises several types (and worse) on hostile input
        raise ValueError(f"not CBOR: {e.__class__.__name__}") from None
    if not isinstance(msg, cbor2.CBORTag) or msg.tag != TAG_SIGN1:
        raise ValueError("not a COSE_Sign1 (tag 18)")
    body = msg.value
    # cbor2 hands back the contents of a tag immutable: tuple for array, frozendict for map
    if not isinstance(body, (list, tuple)) or len(body) != 4:
        raise ValueError("COSE_Sign1 is not an array of 4")
    protected, unprotected, payload, signature = body
    if not (isinstance(protected, bytes) and isinstance(unprotected, Mapping) and isinstance(payload, bytes)
            and isinstance(signature, bytes)):
        raise ValueError("COSE_Sign1 members of the wrong type")
    try:
        header = cbor2.loads(protected)
    except Exception as e:
        raise ValueError(f"protected header is not CBOR: {e.__class__.__name__}") from None
    if not isinstance(header, Mapping) or header.get(ALG) != EDDSA:
        raise ValueError("protected header: algorithm is not EdDSA")
    kid = header.get(KID)
    if not isinstance(kid, bytes):
        raise ValueError("protected header: no kid")
    try:
        kid_text = kid.decode("ascii")
    except UnicodeDecodeError:
        raise ValueError("protected header: kid is not text") from None
    if not KID_RE.fullmatch(kid_text):
        raise ValueError("protected header: kid of the wrong form")
    if len(signature) != 64:
        raise ValueError("signature is not 64 bytes")
    return protected, kid_text, payload, signature

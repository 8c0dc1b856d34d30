"""COSE_Sign1 (RFC 9052) with Ed25519, as SPEC §3 fixes it: tag 18, protected {1: -8, 4: kid}, payload attached."""
from __future__ import annotations

import io
import re
from collections.abc import Mapping

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

TAG_SIGN1 = 18
ALG, CRIT, KID = 1, 2, 4  # header labels
EDDSA = -8
KID_RE = re.compile(r"[A-Za-z0-9._-]{1,32}")
SIGNATURE_LEN = 64  # Ed25519

# Tags cbor2 would otherwise turn into Python objects (dates, bignums, decimals, regexes, MIME messages,
# shared references...). None of them belongs in a pass, and decoding them runs code on bytes nobody has
# vouched for yet (the COSE envelope is read before its signature is checked), so each one is refused.
_BUILTIN_TAGS = (0, 1, 2, 3, 4, 5, 25, 28, 29, 30, 35, 36, 37, 52, 54, 100, 256, 258, 260, 261, 1004, 43000,
                 55799)


def _refuse_tag(*_args):
    raise ValueError("a CBOR tag where none belongs")


def _keep_sign1_tag(tag, _immutable):
    if tag.tag != TAG_SIGN1:
        _refuse_tag()
    return tag


_NO_SEMANTICS = {tag: _refuse_tag for tag in _BUILTIN_TAGS}


def loads_strict(data: bytes, *, allow_sign1_tag: bool = False):
    """Exactly one CBOR item filling `data`: no trailing bytes, no duplicate map keys, no tags (but the
    COSE_Sign1 tag when asked). ValueError for anything else, whatever cbor2 itself raised."""
    fp = io.BytesIO(data)
    try:
        item = cbor2.CBORDecoder(fp, tag_hook=_keep_sign1_tag if allow_sign1_tag else _refuse_tag,
                                 semantic_decoders=_NO_SEMANTICS,
                                 allow_duplicate_keys=False).decode()
    except Exception as e:  # cbor2 raises several types on hostile input; all of them mean "not this format"
        raise ValueError(f"not CBOR: {e.__class__.__name__}: {e}") from None
    if fp.tell() != len(data):
        raise ValueError("bytes after the CBOR item")  # unsigned bytes riding along: a second text for one pass
    return item


def sig_structure(protected: bytes, payload: bytes) -> bytes:
    """What is signed: the protected header bytes as sent, no external data, the payload bytes."""
    return cbor2.dumps(["Signature1", protected, b"", payload])


def check_kid(kid: str) -> str:
    if not isinstance(kid, str) or not KID_RE.fullmatch(kid):
        raise ValueError(f"kid {kid!r}: 1-32 characters of A-Z a-z 0-9 . _ -")
    return kid


def sign1(private_key: Ed25519PrivateKey, kid: str, payload: bytes) -> bytes:
    protected = cbor2.dumps({ALG: EDDSA, KID: check_kid(kid).encode()})
    signature = private_key.sign(sig_structure(protected, payload))
    return cbor2.dumps(cbor2.CBORTag(TAG_SIGN1, [protected, {}, payload, signature]))


def parse_sign1(data: bytes) -> tuple[bytes, Mapping, Mapping, bytes, bytes]:
    """(protected bytes, protected map, unprotected map, payload, signature), or ValueError for anything that
    is not a COSE_Sign1 of this profile. The kid is `protected_map[4]`, checked against KID_RE.

    Only the envelope is read here: the payload stays bytes until the signature over it has been checked.
    """
    msg = loads_strict(data, allow_sign1_tag=True)
    if not isinstance(msg, cbor2.CBORTag) or msg.tag != TAG_SIGN1:
        raise ValueError("not a COSE_Sign1 (tag 18)")
    body = msg.value
    # cbor2 hands back what is inside a tag immutable: a tuple for the array, a frozendict for a map
    if not isinstance(body, (list, tuple)) or len(body) != 4:
        raise ValueError("COSE_Sign1 is not an array of 4")
    protected, unprotected, payload, signature = body
    if not (isinstance(protected, bytes) and isinstance(unprotected, Mapping) and isinstance(payload, bytes)
            and isinstance(signature, bytes)):
        raise ValueError("COSE_Sign1 members of the wrong type")
    if len(signature) != SIGNATURE_LEN:
        raise ValueError("signature is not 64 bytes")
    header = loads_strict(protected)
    if not isinstance(header, Mapping):
        raise ValueError("protected header is not a map")
    alg = header.get(ALG)
    if type(alg) is not int or alg != EDDSA:  # type(): True/False must not pass for an algorithm number
        raise ValueError("protected header: algorithm is not EdDSA (-8)")
    if CRIT in header:
        raise ValueError("protected header: critical headers this profile does not know")
    if unprotected:
        raise ValueError("unprotected header: must be empty (SPEC §3)")
    kid = header.get(KID)
    if not isinstance(kid, bytes):
        raise ValueError("protected header: no kid")
    try:
        check_kid(kid.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise ValueError("protected header: kid of the wrong form") from None
    return protected, header, unprotected, payload, signature

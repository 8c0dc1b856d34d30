"""Passes (SPEC §3): RFC vectors, interoperability both ways with an independent encoder, and every refusal."""
from __future__ import annotations

import argparse
import io
import json
import os
import stat

import cbor2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings, strategies as st
from PIL import Image

from edge.passes import KeyRing, PassClaims, PassRejected, issue_pass, verify_pass
from edge.passes import base45, codec
from edge.passes.cli import add_commands
from edge.passes.keys import generate_keypair, load_private_pem, load_public_pem
from edge.passes.qr import qr_version, write_png

NBF, EXP = 1_795_000_000, 1_795_086_400  # 2026-11-18T11:06:40Z .. a day later
KID = "central-1"


# -- an independent encoder/decoder, from the RFCs, sharing no code with edge.passes --------------
REF_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"


def ref_b45_encode(b: bytes) -> str:
    s = ""
    for i in range(0, len(b), 2):
        if i + 1 < len(b):
            n = b[i] * 256 + b[i + 1]
            s += REF_ALPHABET[n % 45] + REF_ALPHABET[n // 45 % 45] + REF_ALPHABET[n // 2025]
        else:
            s += REF_ALPHABET[b[i] % 45] + REF_ALPHABET[b[i] // 45]
    return s


def ref_b45_decode(s: str) -> bytes:
    v = [REF_ALPHABET.index(c) for c in s]
    out = b""
    for i in range(0, len(v), 3):
        chunk = v[i:i + 3]
        n = sum(x * 45 ** k for k, x in enumerate(chunk))
        out += n.to_bytes(2 if len(chunk) == 3 else 1, "big")
    return out


def ref_sign1(key: Ed25519PrivateKey, kid: str, payload: bytes, *, unprotected=None, protected=None) -> bytes:
    protected = cbor2.dumps({1: -8, 4: kid.encode()}) if protected is None else protected
    sig = key.sign(cbor2.dumps(["Signature1", protected, b"", payload]))
    return cbor2.dumps(cbor2.CBORTag(18, [protected, unprotected or {}, payload, sig]))


def ref_issue(key: Ed25519PrivateKey, kid: str, claims, **kw) -> str:
    return "GK1:" + ref_b45_encode(ref_sign1(key, kid, cbor2.dumps(claims), **kw))


def ref_verify(text: str, public_key) -> tuple[dict, dict]:
    """(protected header, claims) of a pass, checked the long way round; raises if anything is off."""
    assert text.startswith("GK1:")
    msg = cbor2.loads(ref_b45_decode(text[4:]))
    assert isinstance(msg, cbor2.CBORTag) and msg.tag == 18
    protected, unprotected, payload, sig = msg.value
    assert unprotected == {}
    public_key.verify(sig, cbor2.dumps(["Signature1", protected, b"", payload]))
    return cbor2.loads(protected), cbor2.loads(payload)


def minimal(**extra):
    claims = {2: "h-1", 4: EXP, 5: NBF, 7: bytes(range(10)), "cat": "visitor", "areas": ["site/lobby"]}
    claims.update(extra)
    return claims


def without(claims: dict, key) -> dict:
    return {k: v for k, v in claims.items() if k != key}


@pytest.fixture
def keys(tmp_path):
    d = tmp_path / "trust"
    key = generate_keypair(KID, d)
    return key, KeyRing.load_dir(d), d


def reason(text, ring) -> str:
    with pytest.raises(PassRejected) as e:
        verify_pass(text, ring)
    return e.value.reason


# -- base45 -------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw, text", [(b"AB", "BB8"), (b"Hello!!", "%69 VD92EX0"), (b"base-45", "UJCLQE7W581"),
                                       (b"ietf!", "QED8WEX0"), (b"", ""), (b"\xff\xff", "FGW"), (b"\xff", "U5")])
def test_base45_rfc9285_vectors_both_ways(raw, text):
    assert base45.encode(raw) == text
    assert base45.decode(text) == raw


@pytest.mark.parametrize("bad", [
    "GGW",    # 65536: one above the largest group
    ":::",    # 91124: the largest three characters can write
    "BB8GGW",  # a bad group after a good one
    "V5",     # 256 in the two-character tail
    "::",
    "A",      # dangling character
    "BB8A",
    "abc",    # lower case is not in the alphabet
    "BB\n",
    "ÄBC",
    "BB8\x00",
])
def test_base45_refuses_invalid_text(bad):
    with pytest.raises(ValueError):
        base45.decode(bad)


@given(st.binary(max_size=700))
def test_base45_round_trips_and_agrees_with_the_reference(data):
    text = base45.encode(data)
    assert text == ref_b45_encode(data)
    assert base45.decode(text) == data


# -- interoperability ----------------------------------------------------------------------------
def test_p2_a_pass_from_an_independent_encoder_verifies(keys):
    key, ring, _ = keys
    text = ref_issue(key, KID, {**minimal(), 1: "central", 6: NBF - 60, "tier": "first", "party": 2, "host": "h-9",
                                "esc": True, "sch": "weekdays", "idh": "0123456789abcdef", "vis": "visit-7"})
    c = verify_pass(text, ring)
    assert c == PassClaims(kid=KID, iss="central", sub="h-1", exp=EXP, nbf=NBF, iat=NBF - 60, cti=bytes(range(10)),
                           vis="visit-7", cat="visitor", tier="first", areas=("site/lobby",), party=2, host="h-9",
                           esc=True, sch="weekdays", idh="0123456789abcdef")


def test_p2_our_pass_decodes_and_verifies_independently(keys):
    key, _, _ = keys
    text = issue_pass(key, KID, holder="h-1", category="vip", tier="special", areas=["site", "site/office"],
                      valid_from=NBF, valid_until=EXP, party=3, host="h-9", escort=True, schedule="office_hours",
                      idh="00ff00ff00ff00ff", visit="v-1", issued_at=NBF - 5, cti=b"\x01" * 12)
    header, claims = ref_verify(text, key.public_key())
    assert header == {1: -8, 4: KID.encode()}
    assert claims == {1: "gatekeeper", 2: "h-1", 4: EXP, 5: NBF, 6: NBF - 5, 7: b"\x01" * 12, "cat": "vip",
                      "tier": "special", "areas": ["site", "site/office"], "party": 3, "host": "h-9", "esc": True,
                      "sch": "office_hours", "idh": "00ff00ff00ff00ff", "vis": "v-1"}


def test_defaults_are_left_out_of_the_pass_to_keep_it_small(keys):
    key, _, _ = keys
    text = issue_pass(key, KID, holder="h-1", category="staff", areas=["site"], valid_from=NBF, valid_until=EXP,
                      party=1, escort=False)
    _, claims = ref_verify(text, key.public_key())
    assert set(claims) == {1, 2, 4, 5, 7, "cat", "areas"}
    assert 8 <= len(claims[7]) <= 16


def test_issue_then_verify_round_trips_every_claim(keys):
    key, ring, _ = keys
    cti = os.urandom(16)
    text = issue_pass(key, KID, holder="h-77", category="contractor", tier="second", areas=["site/yard", "site/shop"],
                      valid_from=NBF + 0.9, valid_until=EXP, party=4, host="h-5", escort=True, schedule="nights",
                      idh="aaaabbbbccccdddd", visit="visit-2", issuer="central-a", issued_at=NBF - 1, cti=cti)
    c = verify_pass(text, ring)
    assert (c.kid, c.iss, c.sub, c.exp, c.nbf, c.iat, c.cti, c.vis, c.cat, c.tier, c.areas, c.party, c.host, c.esc,
            c.sch, c.idh) == (KID, "central-a", "h-77", EXP, NBF, NBF - 1, cti, "visit-2", "contractor", "second",
                              ("site/yard", "site/shop"), 4, "h-5", True, "nights", "aaaabbbbccccdddd")
    assert c.to_json_dict() == {
        "kid": KID, "iss": "central-a", "sub": "h-77", "exp": "2026-11-19T11:06:40Z", "nbf": "2026-11-18T11:06:40Z",
        "iat": "2026-11-18T11:06:39Z", "cti": cti.hex(), "vis": "visit-2", "cat": "contractor", "tier": "second",
        "areas": ["site/yard", "site/shop"], "party": 4, "host": "h-5", "esc": True, "sch": "nights",
        "idh": "aaaabbbbccccdddd"}


def test_the_visit_defaults_to_the_pass_id_and_absent_claims_to_their_defaults(keys):
    key, ring, _ = keys
    c = verify_pass(ref_issue(key, KID, minimal()), ring)
    assert c.vis == c.cti_hex == bytes(range(10)).hex()
    assert (c.iss, c.iat, c.tier, c.party, c.host, c.esc, c.sch, c.idh) == (None, None, None, 1, None, False, None,
                                                                             None)
    assert set(c.to_json_dict()) == {"kid", "sub", "exp", "nbf", "cti", "vis", "cat", "areas", "party", "esc"}


def test_unknown_claims_are_ignored(keys):
    key, ring, _ = keys
    c = verify_pass(ref_issue(key, KID, minimal(future={"x": [1, 2]}, **{"99": "x"}) | {-70000: b"\0", 8: 1}), ring)
    assert c.sub == "h-1"


def test_an_empty_area_list_is_the_right_type(keys):
    # SPEC §3 asks for an array of text; an empty one opens nothing, which is the policy's to say
    key, ring, _ = keys
    assert verify_pass(ref_issue(key, KID, minimal(areas=[])), ring).areas == ()


def test_verify_takes_bytes_as_well_as_text(keys):
    key, ring, _ = keys
    assert verify_pass(ref_issue(key, KID, minimal()).encode(), ring).sub == "h-1"
    assert reason(b"GK1:\xff", ring) == reason(None, ring) == "malformed"


# -- refusals: signature, key, scope --------------------------------------------------------------
def test_p2_a_changed_payload_byte_that_keeps_the_cbor_valid_is_bad_signature(keys):
    key, ring, _ = keys
    raw = bytearray(base45.decode(ref_issue(key, KID, minimal())[4:]))
    i = raw.index(b"h-1")
    raw[i + 2] = ord("2")  # holder h-1 -> h-2: still well-formed CBOR, same length
    assert cbor2.loads(cbor2.loads(bytes(raw)).value[2])[2] == "h-2"
    assert reason("GK1:" + base45.encode(bytes(raw)), ring) == "bad_signature"


def test_p2_a_changed_signature_byte_is_bad_signature(keys):
    key, ring, _ = keys
    raw = bytearray(base45.decode(ref_issue(key, KID, minimal())[4:]))
    raw[-1] ^= 0x01
    assert reason("GK1:" + base45.encode(bytes(raw)), ring) == "bad_signature"


@settings(max_examples=300)
@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=1, max_value=255))
def test_p2_no_changed_byte_anywhere_is_ever_accepted(pos, flip):
    key = Ed25519PrivateKey.from_private_bytes(bytes(32))
    ring = KeyRing()
    ring.add("k", key.public_key())
    raw = bytearray(base45.decode(ref_issue(key, "k", minimal())[4:]))
    raw[pos % len(raw)] ^= flip
    assert reason("GK1:" + base45.encode(bytes(raw)), ring) in ("bad_signature", "malformed")


@settings(max_examples=300)
@given(st.text(max_size=300) | st.text(alphabet=REF_ALPHABET, max_size=600).map(lambda s: "GK1:" + s)
       | st.binary(max_size=400).map(lambda b: "GK1:" + ref_b45_encode(b)))
def test_p2_arbitrary_input_is_refused_never_raised_through(text):
    ring = KeyRing()
    ring.add("k", Ed25519PrivateKey.generate().public_key())
    assert reason(text, ring) in ("bad_signature", "malformed")


def test_p2_unknown_kid_is_bad_signature(keys):
    key, ring, _ = keys
    assert reason(ref_issue(key, "other-kid", minimal()), ring) == "bad_signature"


def test_p2_same_kid_another_key_is_bad_signature(keys):
    _, ring, _ = keys
    assert reason(ref_issue(Ed25519PrivateKey.generate(), KID, minimal()), ring) == "bad_signature"


def test_p2_the_signature_is_checked_before_any_claim_is_read(keys):
    key, ring, _ = keys
    forged = Ed25519PrivateKey.generate()
    # claims that are not even a map, under a signature that does not match: the signature is what fails
    assert reason("GK1:" + ref_b45_encode(ref_sign1(forged, KID, b"\xff\xff")), ring) == "bad_signature"
    assert reason(ref_issue(forged, KID, [1, 2]), ring) == "bad_signature"
    assert reason(ref_issue(forged, "nobody", {**minimal(), "areas": 5}), ring) == "bad_signature"


def test_p2_a_key_outside_its_scope_is_bad_signature(keys):
    key, _, d = keys
    (d / f"{KID}.scope").write_text(" visitor ,\n contractor\n")
    ring = KeyRing.load_dir(d)
    assert ring.get(KID)[1] == frozenset({"visitor", "contractor"})
    assert verify_pass(ref_issue(key, KID, minimal()), ring).cat == "visitor"
    assert reason(ref_issue(key, KID, minimal(cat="staff")), ring) == "bad_signature"


# -- refusals: undecodable, oversized, wrong types -------------------------------------------------
def _env(protected=None, unprotected=None, payload=None, signature=bytes(64), tag=18):
    protected = cbor2.dumps({1: -8, 4: KID.encode()}) if protected is None else protected
    body = [protected, {} if unprotected is None else unprotected,
            cbor2.dumps(minimal()) if payload is None else payload, signature]
    return "GK1:" + ref_b45_encode(cbor2.dumps(cbor2.CBORTag(tag, body) if tag is not None else body))


@pytest.mark.parametrize("text", [
    "", "hello", "GK1", "gk1:BB8", "GK1:", "GK1:abc", "GK1:GGW", "GK1:BB8A", "GK1:" + "BB8" * 700,
    "GK1:" + ref_b45_encode(b"\xff\xff\xff"),              # valid base45, not CBOR
    "GK1:" + ref_b45_encode(b"\x84\x40"),                  # CBOR cut short
    "GK1:" + ref_b45_encode(cbor2.dumps([1, 2, 3])),
    "GK1:" + ref_b45_encode(cbor2.dumps(cbor2.CBORTag(18, [b"", {}, b"", b""]))),
    _env(tag=None),                                        # untagged
    _env(tag=98),                                          # COSE_Sign, not COSE_Sign1
    _env(protected=cbor2.dumps({1: -7, 4: KID.encode()})),  # ES256
    _env(protected=cbor2.dumps({1: True, 4: KID.encode()})),
    _env(protected=cbor2.dumps({1: -8})),                  # no kid
    _env(protected=cbor2.dumps({1: -8, 4: KID})),          # kid as text, not bytes
    _env(protected=cbor2.dumps({1: -8, 4: b"bad kid!"})),
    _env(protected=cbor2.dumps({1: -8, 4: b"k" * 33})),
    _env(protected=cbor2.dumps({1: -8, 2: [99], 4: KID.encode()})),  # a critical header we do not know
    _env(protected=cbor2.dumps([1, -8])),
    _env(protected=b"\xa1\x01"),
    _env(unprotected=[]),
    _env(payload="text"),
    _env(signature=bytes(63)),
    _env(unprotected={99: cbor2.CBORTag(36, "MIME-Version: 1.0\n\nx")}),  # semantic tags are not decoded
    _env(unprotected={99: cbor2.CBORTag(1, 0)}),
    _env() + ref_b45_encode(b"\0"),                        # bytes after the message
])
def test_p2_undecodable_input_is_malformed(keys, text):
    assert reason(text, keys[1]) == "malformed"


def test_p2_over_2kb_is_malformed_before_anything_is_decoded(keys, monkeypatch):
    key, ring, _ = keys
    good = ref_issue(key, KID, minimal())
    assert len(good) < 2048 and verify_pass(good, ring)
    padded = ref_issue(key, KID, minimal(pad="x" * 2000))
    assert len(padded) > 2048

    def never(_text):
        raise AssertionError("decoded an oversized pass")

    monkeypatch.setattr(codec.base45, "decode", never)
    assert reason(padded, ring) == "malformed"
    assert reason(padded.encode(), ring) == "malformed"
    assert reason("GK1:" + "A" * 5000, ring) == "malformed"
    assert reason("x" * 2049, ring) == "malformed"


@pytest.mark.parametrize("claims", [
    minimal(areas=5),
    minimal(areas="site/lobby"),
    minimal(areas=["site", 5]),
    without(minimal(), "cat"),
    without(minimal(), "areas"),
    without(minimal(), 2),
    without(minimal(), 4),
    without(minimal(), 5),
    without(minimal(), 7),
    without(minimal(), 7) | {"7": b"1" * 10},  # cti under a text key is no cti
    minimal() | {7: b"1234"},     # cti of 4 bytes
    minimal() | {7: bytes(17)},
    minimal() | {7: "00112233445566778899"},
    minimal() | {2: 42},
    minimal() | {4: "tomorrow"},
    minimal() | {4: True},
    minimal() | {4: 1.795e9},
    minimal() | {4: 10 ** 30},
    minimal() | {5: -1},
    minimal() | {6: "now"},
    minimal() | {1: 7},
    minimal(cat=None),
    minimal(cat=["visitor"]),
    minimal(party=0),
    minimal(party=True),
    minimal(party="2"),
    minimal(esc="yes"),
    minimal(esc=1),
    minimal(tier=1),
    minimal(host=b"h-9"),
    minimal(sch=None),
    minimal(idh=123),
    minimal(vis=7),
])
def test_p2_validly_signed_claims_of_the_wrong_type_are_malformed(keys, claims):
    key, ring, _ = keys
    assert reason(ref_issue(key, KID, claims), ring) == "malformed"


@pytest.mark.parametrize("claims", [minimal(cat="salesman"), minimal(cat="Visitor"), minimal(cat="vip", tier="gold")])
def test_p1_validly_signed_pass_of_an_unknown_category_or_tier_is_malformed(keys, claims):
    """P1: a key trusted for every category signs a salesman's pass: refused, never decided as a visitor."""
    key, ring, _ = keys
    assert reason(ref_issue(key, KID, claims), ring) == "malformed"


def test_a_non_empty_unprotected_header_is_malformed(keys):
    """SPEC §3: the unprotected header is `{}`; anything in it (unsigned) is refused."""
    key, ring, _ = keys
    assert reason(ref_issue(key, KID, minimal(), unprotected={4: KID.encode()}), ring) == "malformed"
    assert verify_pass(ref_issue(key, KID, minimal(), unprotected={}), ring).sub


@pytest.mark.parametrize("payload", [
    cbor2.dumps([1, 2]),
    b"\xff",
    cbor2.dumps(minimal()) + b"\x00",                          # trailing bytes inside the signed payload
    cbor2.dumps(minimal(when=cbor2.CBORTag(1, 0))),            # a tag in the claims
    bytes.fromhex("a20102") + b"\x01\x03",                     # duplicate key in the claims map
])
def test_p2_validly_signed_payload_that_is_not_a_claims_map_is_malformed(keys, payload):
    key, ring, _ = keys
    assert reason("GK1:" + ref_b45_encode(ref_sign1(key, KID, payload)), ring) == "malformed"


@pytest.mark.parametrize("kw, match", [
    ({"cti": b"1234"}, "cti"),
    ({"valid_until": NBF}, "after"),
    ({"idh": "XYZ"}, "idh"),
    ({"idh": "00FF00FF00FF00FF"}, "idh"),
    ({"party": 0}, "party"),
    ({"areas": "site"}, "areas"),
    ({"areas": []}, "areas"),
    ({"holder": ""}, "holder"),
    ({"host": 5}, "host"),
    ({"valid_from": -5}, "valid_from"),
])
def test_issue_refuses_what_no_gate_would_accept(keys, kw, match):
    key, _, _ = keys
    args = dict(holder="h-1", category="visitor", areas=["site"], valid_from=NBF, valid_until=EXP) | kw
    with pytest.raises(ValueError, match=match):
        issue_pass(key, KID, **args)
    with pytest.raises(ValueError, match="kid"):
        issue_pass(key, "no spaces", holder="h-1", category="visitor", areas=["site"], valid_from=NBF,
                   valid_until=EXP)


# -- QR ---------------------------------------------------------------------------------------------
def test_qr_uses_alphanumeric_mode():
    # 480 characters fit version 13 at level M only in alphanumeric mode (483 there, 331 in byte mode)
    assert qr_version("GK1:" + "A1 $%*+-./:" * 43 + "ABC") <= 13  # 480 characters
    assert qr_version("GK1:" + "A" * 479) == 13
    assert qr_version("GK1:" + "A" * 480) == 14


def test_qr_budget_fits_version_13_at_level_m():
    signer = Ed25519PrivateKey.generate()
    text = issue_pass(signer, "k" * 16, holder="h-" + "9" * 14, category="visitor", tier="second",
                      areas=["site/" + "a" * 15, "site/" + "b" * 15, "site/" + "c" * 15], valid_from=NBF,
                      valid_until=EXP, party=5, host="h-" + "8" * 14, cti=os.urandom(12), issued_at=NBF,
                      escort=True)
    assert len(text) <= 483
    assert qr_version(text) <= 13


def test_qr_png_is_a_valid_image(tmp_path):
    text = issue_pass(Ed25519PrivateKey.generate(), KID, holder="h-1", category="visitor", areas=["site"],
                      valid_from=NBF, valid_until=EXP)
    version = write_png(text, tmp_path / "p.png")
    with Image.open(tmp_path / "p.png") as im:
        assert im.format == "PNG"
        im.load()
        assert im.size[0] == im.size[1] == (17 + 4 * version + 2 * 4) * 6


# -- keys -------------------------------------------------------------------------------------------
def test_keys_are_written_private_0600_even_under_a_loose_umask(tmp_path):
    old = os.umask(0)
    try:
        private = generate_keypair("gate-7", tmp_path / "new")
    finally:
        os.umask(old)
    key_file, pub_file = tmp_path / "new" / "gate-7.key", tmp_path / "new" / "gate-7.pub"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert pub_file.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    assert load_private_pem(key_file.read_bytes()).public_key() == private.public_key()
    assert load_public_pem(pub_file.read_bytes()) == private.public_key()
    with pytest.raises(FileExistsError):
        generate_keypair("gate-7", tmp_path / "new")
    with pytest.raises(ValueError):
        generate_keypair("../escape", tmp_path)


def test_only_ed25519_keys_are_loaded(tmp_path):
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(ValueError):
        load_public_pem(other.public_key().public_bytes(serialization.Encoding.PEM,
                                                        serialization.PublicFormat.SubjectPublicKeyInfo))
    with pytest.raises(ValueError):
        load_private_pem(other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
    with pytest.raises(ValueError):
        load_public_pem(b"not a key")
    encrypted = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw"))
    with pytest.raises(ValueError, match="encrypted"):
        load_private_pem(encrypted)


def test_keyring_loads_a_folder_and_names_a_bad_file(tmp_path):
    for kid in ("a", "b.2"):
        generate_keypair(kid, tmp_path)
    (tmp_path / "a.scope").write_text("visitor")
    ring = KeyRing.load_dir(tmp_path)
    assert ring.kids() == ["a", "b.2"] and len(ring) == 2 and "a" in ring and "c" not in ring
    assert ring.get("a")[1] == frozenset({"visitor"}) and ring.get("b.2")[1] is None and ring.get("c") is None
    (tmp_path / "c.pub").write_text("ssh-ed25519 AAAA...")
    with pytest.raises(ValueError, match="c.pub"):
        KeyRing.load_dir(tmp_path)
    with pytest.raises(ValueError, match="not a folder"):
        KeyRing.load_dir(tmp_path / "missing")


# -- the commands ---------------------------------------------------------------------------------
def cli(*argv: str) -> int:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    add_commands(sub)
    args = p.parse_args(list(argv))
    return args.func(args)


def issue_args(d, *extra):
    return ("pass", "issue", "--key", str(d / f"{KID}.key"), "--kid", KID, "--holder", "h-5", "--category",
            "visitor", "--areas", "site/lobby, site/office", "--from", "2026-11-25T08:00:00+08:00", "--until",
            "2026-11-25T21:30:00+08:00", *extra)


def test_cli_keys_new_writes_a_private_key_only_its_owner_reads(tmp_path, capsys):
    assert cli("keys", "new", "--kid", "gate-7", "--out", str(tmp_path)) == 0
    assert stat.S_IMODE((tmp_path / "gate-7.key").stat().st_mode) == 0o600
    assert (tmp_path / "gate-7.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    key_pem = (tmp_path / "gate-7.key").read_text()
    out = capsys.readouterr()
    assert "PRIVATE" not in out.out + out.err and key_pem.splitlines()[1] not in out.out + out.err
    assert cli("keys", "new", "--kid", "gate-7", "--out", str(tmp_path)) == 2  # never overwritten
    assert (tmp_path / "gate-7.key").read_text() == key_pem
    assert "exists" in capsys.readouterr().err
    assert cli("keys", "new", "--kid", "bad kid", "--out", str(tmp_path)) == 2
    assert "--kid" in capsys.readouterr().err


def test_cli_pass_issue_then_verify(keys, tmp_path, capsys):
    _, _, d = keys
    png = tmp_path / "pass.png"
    assert cli(*issue_args(d, "--party", "2", "--host", "h-1", "--escort", "--idh", "00FF00FF00FF00FF",
                           "--png", str(png))) == 0
    out = capsys.readouterr()
    text = out.out.strip().splitlines()[-1]
    assert text.startswith("GK1:") and "QR version" in out.err
    assert "PRIVATE" not in out.out + out.err
    with Image.open(png) as im:
        assert im.format == "PNG"

    assert cli("pass", "verify", "--trust", str(d), "--at", "2026-11-25T12:00:00+08:00", text) == 0
    printed = capsys.readouterr().out
    claims = json.loads(printed)
    assert list(claims) == sorted(claims)
    assert claims["sub"] == "h-5" and claims["areas"] == ["site/lobby", "site/office"] and claims["party"] == 2
    assert claims["host"] == "h-1" and claims["esc"] is True and claims["idh"] == "00ff00ff00ff00ff"
    assert claims["kid"] == KID and claims["cat"] == "visitor" and claims["iss"] == "gatekeeper"
    assert claims["nbf"] == "2026-11-25T00:00:00Z" and claims["exp"] == "2026-11-25T13:30:00Z"
    assert claims["iat"].endswith("Z")
    assert len(claims["cti"]) == 20 and claims["cti"] == claims["cti"].lower() and claims["vis"] == claims["cti"]


def test_cli_pass_verify_time_window(keys, capsys):
    _, _, d = keys
    assert cli(*issue_args(d)) == 0
    text = capsys.readouterr().out.strip().splitlines()[-1]

    def verify(*extra):
        rc = cli("pass", "verify", "--trust", str(d), *extra, text)
        return rc, capsys.readouterr().out.strip()

    assert verify("--at", "2026-11-26T12:00:00Z") == (1, "expired")
    assert verify("--at", "2026-11-25T13:30:00Z") == (1, "expired")  # exp itself is past the end (RFC 8392)
    assert verify("--at", "2026-11-25T13:29:59Z")[0] == 0
    assert verify("--at", "2026-11-25T00:00:00Z")[0] == 0
    assert verify("--at", "2026-11-24T23:59:59Z") == (1, "not_yet_valid")
    assert verify("--at", "2026-11-24T23:59:00Z", "--skew", "60")[0] == 0
    assert verify("--at", "2026-11-25T13:30:59Z", "--skew", "60")[0] == 0
    assert verify("--at", "2026-11-25T13:31:00Z", "--skew", "60") == (1, "expired")
    rc, out = verify()  # no --at: now, whatever today is
    assert (rc, out) in ((1, "expired"), (1, "not_yet_valid")) or (rc == 0 and json.loads(out)["sub"] == "h-5")


def test_cli_pass_verify_refusals(keys, tmp_path, capsys, monkeypatch):
    _, _, d = keys
    assert cli(*issue_args(d)) == 0
    text = capsys.readouterr().out.strip().splitlines()[-1]
    at = ("--at", "2026-11-25T12:00:00Z")

    raw = bytearray(base45.decode(text[4:]))
    raw[raw.index(b"h-5") + 2] = ord("6")
    tampered = "GK1:" + base45.encode(bytes(raw))
    assert cli("pass", "verify", "--trust", str(d), *at, tampered) == 1
    assert capsys.readouterr().out == "bad_signature\n"

    assert cli("pass", "verify", "--trust", str(d), *at, "GK1:nonsense") == 1
    assert capsys.readouterr().out == "malformed\n"

    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli("pass", "verify", "--trust", str(empty), *at, text) == 1
    assert capsys.readouterr().out == "bad_signature\n"

    monkeypatch.setattr("sys.stdin", io.StringIO(text + "\n"))
    assert cli("pass", "verify", "--trust", str(d), *at, "-") == 0
    assert json.loads(capsys.readouterr().out)["sub"] == "h-5"

    (d / f"{KID}.scope").write_text("contractor\n")
    assert cli("pass", "verify", "--trust", str(d), *at, text) == 1
    assert capsys.readouterr().out == "bad_signature\n"


@pytest.mark.parametrize("argv, needle", [
    (("--from", "tomorrow"), "--from"),
    (("--until", "2026-11-25T21:30:00"), "--until"),        # no offset
    (("--until", "2026-13-25T21:30:00Z"), "--until"),       # no such month
    (("--until", "2026-11-25T07:00:00+08:00"), "after"),    # ends before it starts
    (("--party", "0"), "party"),
    (("--idh", "xyz"), "idh"),
    (("--areas", " , "), "--areas"),
    (("--kid", "no spaces"), "kid"),
])
def test_cli_pass_issue_names_bad_input_in_one_line(keys, capsys, argv, needle):
    _, _, d = keys
    base = list(issue_args(d))
    for option, value in zip(argv[::2], argv[1::2]):
        if option in base:
            base[base.index(option) + 1] = value
        else:
            base += [option, value]
    assert cli(*base) == 2
    out = capsys.readouterr()
    assert out.out == "" and needle in out.err and len(out.err.strip().splitlines()) == 1


def test_cli_pass_issue_without_a_usable_key(keys, tmp_path, capsys):
    _, _, d = keys
    args = list(issue_args(d))
    args[args.index("--key") + 1] = str(tmp_path / "missing.key")
    assert cli(*args) == 2
    assert "missing.key" in capsys.readouterr().err
    args[args.index("--key") + 1] = str(d / f"{KID}.pub")  # the public half by mistake
    assert cli(*args) == 2
    err = capsys.readouterr().err
    assert f"{KID}.pub" in err and len(err.strip().splitlines()) == 1


def test_cli_pass_verify_bad_input_is_exit_2(keys, tmp_path, capsys):
    _, _, d = keys
    assert cli("pass", "verify", "--trust", str(tmp_path / "nowhere"), "GK1:") == 2
    assert "not a folder" in capsys.readouterr().err
    assert cli("pass", "verify", "--trust", str(d), "--at", "noon", "GK1:") == 2
    assert "--at" in capsys.readouterr().err

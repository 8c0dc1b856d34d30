"""Passes (SPEC §3): RFC vectors, interoperability both ways with an independent encoder, and every refusal."""
from __future__ import annotations

import argparse
import json
import os
import stat

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, strategies as st
from PIL import Image

from edge.passes import KeyRing, PassRejected, issue_pass, verify_pass
from edge.passes import base45
from edge.passes.cli import add_commands
from edge.passes.keys import generate_keypair
from edge.passes.qr import qr_version

NBF, EXP = 1_795_000_000, 1_795_086_400


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


def ref_issue(key: Ed25519PrivateKey, kid: str, claims: dict) -> str:
    protected = cbor2.dumps({1: -8, 4: kid.encode()})
    payload = cbor2.dumps(claims)
    sig = key.sign(cbor2.dumps(["Signature1", protected, b"", payload]))
    return "GK1:" + ref_b45_encode(cbor2.dumps(cbor2.CBORTag(18, [protected, {}, payload, sig])))


def ref_verify(text: str, public_key) -> dict:
    msg = cbor2.loads(ref_b45_decode(text[4:]))
    assert msg.tag == 18
    protected, _unprotected, payload, sig = msg.value
    public_key.verify(sig, cbor2.dumps(["Signature1", protected, b"", payload]))
    return cbor2.loads(payload)


@pytest.fixture
def keys(tmp_path):
    key = generate_keypair("central-1", tmp_path)
    return key, KeyRing.load_dir(tmp_path), tmp_path


def minimal(**extra):
    claims = {2: "h-1", 4: EXP, 5: NBF, 7: bytes(range(10)), "cat": "visitor", "areas": ["site/lobby"]}
    claims.update(extra)
    return claims


# -- base45 -------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw, text", [(b"AB", "BB8"), (b"Hello!!", "%69 VD92EX0"), (b"base-45", "UJCLQE7W581"),
                                       (b"ietf!", "QED8WEX0")])
def test_base45_rfc9285_vectors(raw, text):
    assert base45.encode(raw) == text and base45.decode(text) == raw


@pytest.mark.parametrize("bad", ["GGW", "A", "abc", "ÄBC", ":::", "BB8A"])
def test_base45_refuses_invalid_text(bad):
    with pytest.raises(ValueError):
        base45.decode(bad)


@given(st.binary(max_size=600))
def test_base45_round_trips_and_agrees_with_the_reference(data):
    assert base45.decode(base45.encode(data)) == data
    assert base45.encode(data) == ref_b45_encode(data)


# -- interoperability ----------------------------------------------------------------------------
def test_p2_a_pass_from_an_independent_encoder_verifies(keys):
    key, ring, _ = keys
    text = ref_issue(key, "central-1", {**minimal(), 1: "central", 6: NBF, "tier": "first", "party": 2, "host": "h-9",
                                        "esc": True, "sch": "weekdays", "idh": "0123456789abcdef",
                                        "vis": "visit-7", "future": {"x": 1}})
    c = verify_pass(text, ring)
    assert (c.sub, c.exp, c.nbf, c.cat, c.areas, c.tier, c.party, c.host, c.esc, c.sch, c.idh, c.vis, c.iss) == (
        "h-1", EXP, NBF, "visitor", ("site/lobby",), "first", 2, "h-9", True, "weekdays", "0123456789abcdef",
        "visit-7", "central")
    assert c.cti_hex == bytes(range(10)).hex()


def test_p2_our_pass_verifies_with_an_independent_decoder(keys):
    key, _, _ = keys
    text = issue_pass(key, "central-1", holder="h-1", category="vip", tier="special", areas=["site", "site/office"],
                      valid_from=NBF, valid_until=EXP, party=3, host="h-9", escort=True, idh="00ff00ff00ff00ff")
    claims = ref_verify(text, key.public_key())
    assert claims[2] == "h-1" and claims[4] == EXP and claims[5] == NBF and 8 <= len(claims[7]) <= 16
    assert (claims["cat"], claims["tier"], claims["areas"], claims["party"], claims["esc"]) == (
        "vip", "special", ["site", "site/office"], 3, True)
    msg = cbor2.loads(base45.decode(text[4:]))
    assert cbor2.loads(msg.value[0]) == {1: -8, 4: b"central-1"} and msg.value[1] == {}


def test_visit_defaults_to_the_pass_id(keys):
    key, ring, _ = keys
    c = verify_pass(ref_issue(key, "central-1", minimal()), ring)
    assert c.vis == c.cti_hex and c.party == 1 and c.esc is False


# -- refusals -------------------------------------------------------------------------------------
def _reason(text, ring):
    with pytest.raises(PassRejected) as e:
        verify_pass(text, ring)
    return e.value.reason


def test_p2_a_changed_payload_byte_is_bad_signature(keys):
    key, ring, _ = keys
    text = ref_issue(key, "central-1", minimal())
    raw = bytearray(base45.decode(text[4:]))
    i = raw.index(b"h-1")
    raw[i + 2] = ord("2")  # holder h-1 -> h-2: still well-formed CBOR
    assert _reason("GK1:" + base45.encode(bytes(raw)), ring) == "bad_signature"


@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=1, max_value=255))
def test_p2_no_changed_byte_is_ever_accepted(pos, flip):
    key = Ed25519PrivateKey.from_private_bytes(bytes(32))
    ring = KeyRing()
    ring.add("k", key.public_key())
    raw = bytearray(base45.decode(ref_issue(key, "k", minimal())[4:]))
    raw[pos % len(raw)] ^= flip
    with pytest.raises(PassRejected) as e:
        verify_pass("GK1:" + base45.encode(bytes(raw)), ring)
    assert e.value.reason in ("bad_signature", "malformed")


def test_p2_unknown_kid_is_bad_signature(keys):
    key, ring, _ = keys
    assert _reason(ref_issue(key, "other-kid", minimal()), ring) == "bad_signature"


def test_p2_a_key_outside_its_scope_is_bad_signature(keys):
    key, _, d = keys
    (d / "central-1.scope").write_text("visitor, contractor\n")
    ring = KeyRing.load_dir(d)
    assert verify_pass(ref_issue(key, "central-1", minimal()), ring).cat == "visitor"
    assert _reason(ref_issue(key, "central-1", minimal(cat="staff")), ring) == "bad_signature"


@pytest.mark.parametrize("text", [
    "GK1:" + "A" * 2100,  # over 2 KB: refused before decoding
    "hello", "GK1:", "GK1:abc", "GK1:" + base45.encode(b"\xff\xff\xff"),
    "GK1:" + base45.encode(cbor2.dumps([1, 2, 3])),
    "GK1:" + base45.encode(cbor2.dumps(cbor2.CBORTag(18, [b"", {}, b"", b""]))),
    "GK1:" + base45.encode(cbor2.dumps(cbor2.CBORTag(18, [cbor2.dumps({1: -7, 4: b"k"}), {}, b"", bytes(64)]))),
])
def test_p2_undecodable_or_oversized_is_malformed(keys, text):
    assert _reason(text, keys[1]) == "malformed"


@pytest.mark.parametrize("claims", [
    {**minimal(), "areas": 5},
    {k: v for k, v in minimal().items() if k != "cat"},
    {**minimal(), 7: b"1234"},
    {**minimal(), 4: "tomorrow"},
    {**minimal(), 4: True},
    {**minimal(), 4: 10**30},
    {**minimal(), "party": 0},
    {**minimal(), "esc": "yes"},
    {**minimal(), "areas": []},
])
def test_p2_validly_signed_claims_of_the_wrong_type_are_malformed(keys, claims):
    key, ring, _ = keys
    assert _reason(ref_issue(key, "central-1", claims), ring) == "malformed"


def test_signed_payload_that_is_not_a_map_is_malformed(keys):
    key, ring, _ = keys
    protected = cbor2.dumps({1: -8, 4: b"central-1"})
    payload = cbor2.dumps([1, 2])
    sig = key.sign(cbor2.dumps(["Signature1", protected, b"", payload]))
    text = "GK1:" + base45.encode(cbor2.dumps(cbor2.CBORTag(18, [protected, {}, payload, sig])))
    assert _reason(text, ring) == "malformed"


def test_qr_budget_fits_version_13_at_level_m(keys):
    key, _, _ = keys
    kid = "k" * 16
    ring_key = Ed25519PrivateKey.generate()
    text = issue_pass(ring_key, kid, holder="h-" + "9" * 14, category="visitor", tier="second",
                      areas=["site/" + "a" * 15, "site/" + "b" * 15, "site/" + "c" * 15], valid_from=NBF,
                      valid_until=EXP, party=5, host="h-" + "8" * 14, cti=os.urandom(12), issued_at=NBF)
    assert len(text) <= 483
    assert qr_version(text) <= 13


# -- the commands ---------------------------------------------------------------------------------
def cli(*argv):
    p = argparse.ArgumentParser()
    sub = p.add_subparsers()
    add_commands(sub)
    args = p.parse_args(list(argv))
    return args.func(args)


def test_keys_new_writes_a_private_key_only_its_owner_reads(tmp_path, capsys):
    assert cli("keys", "new", "--kid", "gate-7", "--out", str(tmp_path)) == 0
    assert stat.S_IMODE((tmp_path / "gate-7.key").stat().st_mode) == 0o600
    assert (tmp_path / "gate-7.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert "PRIVATE" not in capsys.readouterr().out
    assert cli("keys", "new", "--kid", "gate-7", "--out", str(tmp_path)) == 2  # never overwritten


def test_pass_issue_then_verify_from_the_command_line(keys, tmp_path, capsys):
    _, _, d = keys
    png = tmp_path / "pass.png"
    assert cli("pass", "issue", "--key", str(d / "central-1.key"), "--kid", "central-1", "--holder", "h-5",
               "--category", "visitor", "--areas", "site/lobby,site/office", "--from", "2026-11-25T08:00:00+08:00",
               "--until", "2026-11-25T21:30:00+08:00", "--party", "2", "--host", "h-1", "--png", str(png)) == 0
    text = capsys.readouterr().out.strip().splitlines()[-1]
    assert text.startswith("GK1:")
    assert Image.open(png).format == "PNG"

    assert cli("pass", "verify", "--trust", str(d), "--at", "2026-11-25T12:00:00+08:00", text) == 0
    claims = json.loads(capsys.readouterr().out)
    assert claims["sub"] == "h-5" and claims["areas"] == ["site/lobby", "site/office"] and claims["party"] == 2
    assert claims["nbf"] == "2026-11-25T00:00:00Z" and claims["exp"] == "2026-11-25T13:30:00Z"
    assert len(claims["cti"]) == 20 and claims["cti"] == claims["cti"].lower()

    assert cli("pass", "verify", "--trust", str(d), "--at", "2026-11-26T12:00:00Z", text) == 1
    assert capsys.readouterr().out.strip() == "expired"
    assert cli("pass", "verify", "--trust", str(d), "--at", "2026-11-24T12:00:00Z", text) == 1
    assert capsys.readouterr().out.strip() == "not_yet_valid"
    tampered = text[:-3] + ("AAA" if text[-3:] != "AAA" else "BBB")
    assert cli("pass", "verify", "--trust", str(d), "--at", "2026-11-25T12:00:00Z", tampered) == 1
    assert capsys.readouterr().out.strip() in ("bad_signature", "malformed")
    (d / "central-1.scope").write_text("contractor")
    assert cli("pass", "verify", "--trust", str(d), "--at", "2026-11-25T12:00:00Z", text) == 1
    assert capsys.readouterr().out.strip() == "bad_signature"


def test_pass_issue_names_a_bad_time(keys, capsys):
    _, _, d = keys
    assert cli("pass", "issue", "--key", str(d / "central-1.key"), "--kid", "central-1", "--holder", "h-5",
               "--category", "visitor", "--areas", "site", "--from", "tomorrow", "--until", "2026-11-25T21:30:00Z") == 2
    assert "--from" in capsys.readouterr().err

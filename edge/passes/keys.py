"""Pass-signing keys: Ed25519 key pairs on disk, and the ring of public keys a gate trusts, each with its scope."""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edge.passes.cose import check_kid

Scope = frozenset[str] | None  # the categories a key may sign; None = all


class KeyRing:
    """kid -> (public key, scope)."""

    def __init__(self) -> None:
        self._keys: dict[str, tuple[Ed25519PublicKey, Scope]] = {}

    def add(self, kid: str, public_key: Ed25519PublicKey, scope: Iterable[str] | None = None) -> None:
        if not isinstance(public_key, Ed25519PublicKey):
            raise ValueError(f"key {kid!r}: not an Ed25519 public key")
        self._keys[check_kid(kid)] = (public_key, frozenset(scope) if scope is not None else None)

    def remove(self, kid: str) -> None:
        self._keys.pop(kid, None)

    def get(self, kid: str) -> tuple[Ed25519PublicKey, Scope] | None:
        return self._keys.get(kid)

    def kids(self) -> list[str]:
        return sorted(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, kid: object) -> bool:
        return kid in self._keys

    @classmethod
    def load_dir(cls, path: Path | str) -> KeyRing:
        """Every `KID.pub` in a folder, each with its optional `KID.scope` (categories, comma-separated).

        ValueError naming the file for anything unusable: a trust folder that half loads would turn good
        passes into `bad_signature` with no hint why.
        """
        folder = Path(path)
        if not folder.is_dir():
            raise ValueError(f"{folder}: not a folder")
        ring = cls()
        for pub in sorted(folder.glob("*.pub")):
            kid = pub.name[:-len(".pub")]
            try:
                check_kid(kid)
                key = load_public_pem(pub.read_bytes())
            except ValueError as e:
                raise ValueError(f"{pub}: {e}") from None
            scope_file = folder / f"{kid}.scope"
            scope = parse_scope(scope_file.read_text()) if scope_file.exists() else None
            ring.add(kid, key, scope)
        return ring


def parse_scope(text: str) -> frozenset[str]:
    """`visitor, contractor` -> {"visitor", "contractor"}; whitespace and newlines around names are ignored."""
    return frozenset(c.strip() for c in text.split(",") if c.strip())


def load_public_pem(pem: bytes) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ValueError("not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def load_private_pem(pem: bytes) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError:
        raise ValueError("the private key is encrypted; pass-signing keys are stored unencrypted") from None
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError("not a PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("not an Ed25519 private key")
    return key


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def generate_keypair(kid: str, out_dir: Path | str) -> Ed25519PrivateKey:
    """Write `KID.key` (PKCS#8 PEM) and `KID.pub` (SubjectPublicKeyInfo PEM).

    The private key file is created with mode 0600 in the same call that creates it, so there is no moment
    in which others could open it, and O_EXCL means an existing key (or a symlink planted in its place) is
    never overwritten: FileExistsError.
    """
    check_kid(kid)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    private = new_private_key(out / f"{kid}.key")
    (out / f"{kid}.pub").write_bytes(public_pem(private.public_key()))
    return private


def new_private_key(path: Path) -> Ed25519PrivateKey:
    """A new key written to `path` (PKCS#8 PEM): 0600 from its first moment, never over an existing file."""
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
        f.flush()
        os.fsync(f.fileno())
    return private

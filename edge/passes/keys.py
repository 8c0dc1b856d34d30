"""Pass-signing keys: Ed25519 key pairs on disk, and the ring of public keys a gate trusts, each with its scope."""
from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edge.passes.cose import KID_RE


class KeyRing:
    """kid -> (public key, categories it may sign or None for all)."""

    def __init__(self) -> None:
        self._keys: dict[str, tuple[Ed25519PublicKey, frozenset[str] | None]] = {}

    def add(self, kid: str, public_key: Ed25519PublicKey, scope: frozenset[str] | None = None) -> None:
        self._keys[kid] = (public_key, frozenset(scope) if scope is not None else None)

    def remove(self, kid: str) -> None:
        self._keys.pop(kid, None)

    def get(self, kid: str) -> tuple[Ed25519PublicKey, frozenset[str] | None] | None:
        return self._keys.get(kid)

    def kids(self) -> list[str]:
        return sorted(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, kid: object) -> bool:
        return kid in self._keys

    @classmethod
    def load_dir(cls, path: Path | str) -> "KeyRing":
        """Every `KID.pub` in a folder, each with its optional `KID.scope` (categories, comma-separated)."""
        ring = cls()
        for pub in sorted(Path(path).glob("*.pub")):
            kid = pub.stem
            scope_file = pub.with_suffix(".scope")
            scope = None
            if scope_file.exists():
                scope = frozenset(c.strip() for c in scope_file.read_text().split(",") if c.strip())
            ring.add(kid, load_public_pem(pub.read_bytes()), scope)
        return ring


def load_public_pem(pem: bytes) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def load_private_pem(pem: bytes) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("not an Ed25519 private key")
    return key


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def generate_keypair(kid: str, out_dir: Path | str) -> Ed25519PrivateKey:
    """Write `KID.key` (private, mode 0600 from the first byte) and `KID.pub`; refuse to overwrite a key."""
    if not KID_RE.fullmatch(kid):
        raise ValueError(f"kid {kid!r}: 1-32 characters of A-Z a-z 0-9 . _ -")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    fd = os.open(out / f"{kid}.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    (out / f"{kid}.pub").write_bytes(public_pem(private.public_key()))
    return private

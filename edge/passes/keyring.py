"""Trusted pass keys: from the config (never removed by sync) and from the allow-list (`keys_add`)."""
from __future__ import annotations

from pathlib import Path

from edge.config import ConfigError, GateConfig, resolve
from edge.passes.keys import KeyRing
from edge.passes.keys import load_public_pem
from edge.store import Store


VISITOR_ONLY = frozenset({"visitor"})  # SPEC §3: a gate's own walk-in key signs visitor passes, nothing else


def build_keyring(cfg: GateConfig, base: Path, store: Store | None = None, own=None) -> KeyRing:
    """`own` is this gate's walk-in key, (kid, public key), when it registers walk-ins."""
    ring = KeyRing()
    if store is not None:
        # other gates' walk-in keys first: a key of the central system's with the same kid wins over them
        for kid, pem in store.conn.execute("SELECT kid, public_key FROM gate_keys"):
            ring.add(kid, load_public_pem(pem.encode()), VISITOR_ONLY)
        for kid, pem, scope in store.conn.execute("SELECT kid, public_key, scope FROM keys"):
            ring.add(kid, load_public_pem(pem.encode()), frozenset(scope.split(",")) if scope else None)
    if own is not None:
        ring.add(own[0], own[1], VISITOR_ONLY)
    for i, k in enumerate(cfg.keys):  # config last: it wins over a synced key of the same kid
        try:
            pem = k.public_key.encode() if k.public_key else resolve(base, k.public_key_file).read_bytes()
            ring.add(k.kid, load_public_pem(pem), frozenset(k.scope) if k.scope is not None else None)
        except (OSError, ValueError) as e:
            raise ConfigError([f"keys[{i}] ({k.kid}): cannot load the public key: {e}"]) from None
    return ring

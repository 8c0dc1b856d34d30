"""What a changed config file means for a running daemon (SIGHUP): which changes take effect at once, and
which wait for a restart (the running config keeps the old values for those until then)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from edge.config.sections import GateConfig

log = logging.getLogger(__name__)

# Sections read on every use, never built into a running part: trusted keys (passes are checked against the
# keyring rebuilt from them), schedules (visiting hours, P5) and calendars (P24), the log. Everything else
# (doors, modules, readers, the broker, the API, storage, policy) is wired into a part at start and needs a
# restart.
LIVE = ("keys", "schedules", "calendars", "log")


def changed_keys(old, new, path: str = "") -> list[str]:
    """Key paths whose values differ, `doors[0].pulse_s`; a list of tables that grew or shrank is named whole."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in list(old) + [k for k in new if k not in old]:
            out += changed_keys(old.get(k), new.get(k), f"{path}.{k}" if path else str(k))
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new) \
            and all(isinstance(x, dict) for x in old + new):
        return [p for i, (a, b) in enumerate(zip(old, new)) for p in changed_keys(a, b, f"{path}[{i}]")]
    return [] if old == new else [path]


def merge(running: GateConfig, new: GateConfig) -> tuple[GateConfig, list[str], list[str]]:
    """(the config to run with now, the changed keys it takes, the changed keys that need a restart)."""
    changes = changed_keys(running.model_dump(), new.model_dump())
    live = [c for c in changes if c.split(".")[0].split("[")[0] in LIVE]
    restart = [c for c in changes if c not in live]
    merged = running.model_copy(update={k: getattr(new, k) for k in LIVE})
    return merged, live, restart


def key_changes(old, new) -> list[str]:
    """What a rebuilt keyring changed, by kid: `+central-2`, `-old`, `~central-1` (its key or scope)."""
    def table(ring):
        out = {}
        for kid in ring.kids():
            key, scope = ring.get(kid)
            out[kid] = (key.public_bytes_raw(), scope)
        return out
    a, b = table(old), table(new)
    return ([f"+{k}" for k in sorted(set(b) - set(a))] + [f"-{k}" for k in sorted(set(a) - set(b))]
            + [f"~{k}" for k in sorted(set(a) & set(b)) if a[k] != b[k]])


@dataclass(frozen=True)
class Reloaded:
    cfg: GateConfig  # the running config with what a reload takes
    keyring: object  # rebuilt from it (config keys and their files, synced keys, the gate's own)
    live: list[str]  # changed keys taken now
    restart: list[str]  # changed keys that wait for a restart
    keys: list[str]  # what the keyring gained, lost or changed


def read_again(path: Path, running: GateConfig, current_keyring, store, own) -> Reloaded:
    """The config file read again and merged into the running one, everything that can fail done before
    anything changes; ConfigError (naming each problem) leaves the running config as it is."""
    from edge.config.files import check_files, load_config
    from edge.passes.keyring import build_keyring
    new, base = load_config(path)
    for p in check_files(new, base, str(path), parts_fatal=False):
        log.error("%s", p)
    cfg, live, restart = merge(running, new)
    ring = build_keyring(cfg, base, store, own)
    return Reloaded(cfg, ring, live, restart, key_changes(current_keyring, ring))

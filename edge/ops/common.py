"""What the operator's commands share: the site's database, opened without ever making a new one."""
from __future__ import annotations

from pathlib import Path

from edge.config import GateConfig, load_config, resolve
from edge.errors import GatekeeperError


def database(config: str) -> tuple[GateConfig, Path]:
    """The config and its database's path; an error when the gate has never made it: reading must never
    make a new database (with a new epoch) where the gate keeps its own."""
    cfg, base = load_config(config)
    path = resolve(base, cfg.storage.path)
    if not path.exists():
        raise GatekeeperError(f"no database at {path}: has the gate run with this config?")
    return cfg, path

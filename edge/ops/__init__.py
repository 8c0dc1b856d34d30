"""The operator's commands (SPEC §1): status, backup, the journal's export, shell completion, the site broker's
config (SPEC §7)."""
from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    from edge.ops import backup, completion, events, site_broker, status
    for module in (status, backup, events, site_broker, completion):
        module.add_command(sub)

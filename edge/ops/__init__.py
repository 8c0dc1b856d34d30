"""The operator's commands (SPEC §1): status, backup, the journal's export, shell completion."""
from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    from edge.ops import backup, completion, events, status
    for module in (status, backup, events, completion):
        module.add_command(sub)

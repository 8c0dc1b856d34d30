"""P29: what a guard sees of a private guest: "private guest", never the name, the company or the movements.
Supervisors and the central system see everything; decisions are unchanged. Applied on the gate's side of the
API, to every reply that names people: the muster, the held exits, people, alarms, overstays and the journal.

In a muster a guard must still check a private guest off at the assembly point: the list names them by an alias
that this daemon alone maps back to the holder (keyed per start, so it links nothing across restarts and appears
in no event), which POST /muster/{holder}/safe accepts.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import replace

from edge.store.journal import Entry

ALIAS_PREFIX = "private-"
FULL_VIEW = frozenset({"supervisor", "central"})
# what names or follows a person in an event's or alarm's data: gone from a guard's view of a private guest
IDENTIFYING = ("holder", "credential_ref", "visit", "host", "name", "company", "tier", "escort_by", "id_hash",
               "entered", "to_area")


def hidden(role: str | None) -> bool:
    """Whether this caller's replies hide private guests (a guard's; an unknown role's too)."""
    return role not in FULL_VIEW


class Aliases:
    def __init__(self):
        self._key = os.urandom(16)

    def of(self, holder: str) -> str:
        return ALIAS_PREFIX + hmac.new(self._key, holder.encode(), hashlib.sha256).hexdigest()[:12]

    def resolve(self, alias: str, holders) -> str | None:
        """The holder among `holders` (the private guests on site) this alias stands for."""
        return next((h for h in holders if hmac.compare_digest(self.of(h), alias)), None)


def redact_data(data: dict) -> dict:
    """An event's or alarm's data about a private guest, as a guard sees it."""
    out = {k: v for k, v in data.items() if k not in IDENTIFYING}
    out["holder"] = None
    out["private"] = True
    return out


def redact_entries(entries: list[Entry], private: set[str]) -> list[Entry]:
    """The journal as a guard sees it: the same events, those about a private guest without who it was."""
    out = []
    for e in entries:
        if private and '"holder":' in e.data:
            data = json.loads(e.data)
            if data.get("holder") in private:
                e = replace(e, data=json.dumps(redact_data(data), separators=(",", ":"), ensure_ascii=False))
        out.append(e)
    return out


def entry_holders(entries: list[Entry]) -> list[str]:
    return [h for e in entries if '"holder":' in e.data for h in [json.loads(e.data).get("holder")] if h]

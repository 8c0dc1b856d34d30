"""`gatekeeper events`: the journal as SPEC §2 envelopes (JSON lines) or as CSV for a spreadsheet (P19).

CSV: a header row, then one event a line, UTF-8. Columns: `seq`, `time` (UTC, as journaled), `type`, then the
`data` fields most events share (CSV_FIELDS), then `other`: the rest of `data` as one compact JSON object
(empty when nothing is left). A list is joined with `;`, true and false are written so, null is empty. A text
that a spreadsheet would run as a formula (starting `=`, `+`, `-`, `@`, a tab or a carriage return, and not
a number) gets a leading `'`. An `alarm.duress` (P34) is never exported: the central system and a supervisor's
GET /events read it, nothing else.
"""
from __future__ import annotations

import csv
import json
import sys
import time
from datetime import datetime, timezone

from edge.errors import GatekeeperError
from edge.ops.common import database

PAGE = 500
CSV_FIELDS = ("door", "direction", "reason", "holder", "category", "tier", "credential_ref", "area", "party",
              "host", "visit", "actor", "actor_role", "alarm", "device", "mode", "flags")
NEVER_EXPORTED = frozenset({"alarm.duress"})
CSV_HEADER = ("seq", "time", "type", *CSV_FIELDS, "other")


def add_command(sub) -> None:
    ev = sub.add_parser("events", help="print the journal: SPEC §2 event envelopes, one a line, or CSV")
    ev.add_argument("--config", required=True, help="site TOML file")
    ev.add_argument("--after-seq", type=int, default=0, help="only events after this seq")
    ev.add_argument("--since", type=rfc3339_arg, metavar="T", help="only events at or after T (RFC 3339, any offset)")
    ev.add_argument("--until", type=rfc3339_arg, metavar="T", help="only events before T (RFC 3339, any offset)")
    ev.add_argument("--format", choices=("jsonl", "csv"), default="jsonl", help="JSON lines (default) or CSV")
    ev.add_argument("--follow", action="store_true", help="keep printing new events")
    ev.add_argument("--verify", action="store_true", help="check seq and the hash chain instead of printing")
    ev.set_defaults(func=cmd_events)


def rfc3339_arg(text: str) -> str:
    """A time with its offset (`Z`, `+08:00`...) as the journal writes times: UTC, milliseconds, `Z`, so that
    comparing the texts compares the times."""
    from edge.store.journal import rfc3339
    try:
        dt = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(text) from None
    if dt.tzinfo is None:
        raise ValueError(text)  # a time without an offset is ambiguous on a gate in another zone
    return rfc3339(dt.astimezone(timezone.utc).timestamp())


rfc3339_arg.__name__ = "RFC 3339 time with an offset"  # argparse names the type in its error message


def cmd_events(args) -> int:
    from edge.store import Store
    from edge.store.journal import Journal
    cfg, path = database(args.config)
    if args.follow and args.until:
        raise GatekeeperError("--follow waits for new events, --until ends the range: give one of them")
    store = Store(path)
    journal = Journal(store)
    if args.verify:
        ok, what = journal.verify()
        print(what)
        return 0 if ok else 1
    source, epoch = cfg.event_source(), store.epoch
    if args.format == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(CSV_HEADER)
        emit = lambda e: writer.writerow(csv_row(e))  # noqa: E731
    else:
        emit = lambda e: sys.stdout.write(  # noqa: E731
            json.dumps(e.envelope(source, epoch), ensure_ascii=False, separators=(",", ":")) + "\n")
    after = args.after_seq
    while True:
        # a page at a time, each read short: a reader that stays open would keep the daemon's write-ahead
        # log from being checkpointed, and let it grow until the disk is full
        page = list(journal.entries(after, PAGE))
        for e in page:
            after = e.seq
            # by time, not by seq: a row written under a wrong clock sits among others (P3), so every row is looked at
            if (args.since and e.time < args.since) or (args.until and e.time >= args.until):
                continue
            if e.type in NEVER_EXPORTED:  # P34: read by the central system and supervisors only, never a file
                continue
            emit(e)
        sys.stdout.flush()
        if len(page) == PAGE:
            continue
        if not args.follow:
            return 0
        time.sleep(0.2)


def csv_row(e) -> list[str]:
    data = json.loads(e.data)
    row = [str(e.seq), e.time, e.type] + [_cell(data.pop(k, None)) for k in CSV_FIELDS]
    row.append(json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":")) if data else "")
    return row


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return ";".join(_cell(x) for x in v)
    if isinstance(v, dict):
        return json.dumps(v, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    s = str(v)
    if s[:1] in ("=", "+", "-", "@", "\t", "\r") and not _number(s):
        return "'" + s  # a holder's name from outside must not run as a formula in the guard's spreadsheet
    return s


def _number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False

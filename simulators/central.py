"""The central system's side of the MQTT contract (SPEC §2), for tests, the demo and benchmarks.

    python -m simulators.central --broker 127.0.0.1:1883 --site s1 --generate 20000
    python -m simulators.central --broker 127.0.0.1:1883 --site s1 --data people.jsonl --events-out ev.jsonl

Holds an allow-list (records, revocations, blocklist, trusted keys, calendar days, one version), answers every
gate's `resync` with a chunked snapshot (at most `--max-snapshots` in flight: a resync storm waits its turn, and a gate
asking again while queued is answered once), sends change batches, sign-offs, modes and heartbeats, and checks the
events the gates send (duplicates, gaps, order) against the envelope rules; a gap (or a status whose `last_seq`
is beyond the events received) is asked for again with `replay`, one request per gate at a time, and the
`central replay GATE after A until B` line says so. A contractor's permit made at a
gate (`permit.changed`) joins its allow-list and goes out to every gate in a batch (P14). It imports nothing from `edge`:
it is an independent peer, so it checks the gate against the spec, not against shared code. Every message it
receives is also checked against the contract document (docs/asyncapi.yaml, through simulators/contract.py);
`--no-contract` skips that where only speed counts.

Prints `central ready` once connected and subscribed. Stdin commands, one a line, each answered by one
line starting `central ` (`central error: ...` for bad input); a publishing command answers only once the
broker acknowledged (PUBACK), so whoever waits for the line knows the broker has the message:

    upsert {record} | delete CREDENTIAL | revoke {ref} | block {entry} | unblock {entry} | key {key} | unkey KID
    calendar {day} | uncalendar DATE   (P24: {"date":"2027-01-01","kind":"holiday"|"workday","as":"mon"})
        -> one change batch each on {root}/{site}/allowlist/changes: `central batch V->V+1`
    batch FILE.jsonl      one batch of every line (a record, {"delete"|"revoke"|"blocklist"|"unblock"|"key"|"unkey"
                          |"calendar"|"uncalendar": x})
    pin CREDENTIAL PIN [DURESS_PIN]   (P34) the record asks for its PIN at every keypad reader, with the hashes of
                          PIN (and the duress PIN) under the site's pepper (`--pin-pepper-file`): one change batch
    drop-next             the next batch changes the state and uses its version but is never sent (a lost message)
    signoff VISIT HOST    mode lockdown|drill|normal REASON...    heartbeat    snapshot GATE    muster GATE
    raw TOPIC PAYLOAD...  raw-retained TOPIC PAYLOAD...  big TOPIC NBYTES   (anything, for garbage tests)
    report                `central report {json}`: version, per-gate event counters, latest status and muster,
                          `contract`: messages checked against docs/asyncapi.yaml and what broke it, and
                          `snapshots`: sent, in flight, queued, the queue's peak and resyncs asked again
    wait-events GATE N    answers once GATE sent N event messages in all
    wait-complete GATE N  answers `central complete GATE N` once GATE's current epoch has every seq 1..N
    replay GATE AFTER [UNTIL]   asks GATE to send (AFTER, UNTIL] again (SPEC §2 replay)
    disconnect | connect  leave the broker cleanly (our session stays there) and come back (`central reconnected`)
    wait-published        answers once every QoS 1 publish so far is acknowledged
    help

Stdin closing does not stop it (tests may close it); SIGTERM or SIGINT does, after a clean disconnect.
"""
from __future__ import annotations

import argparse
import collections
import json
import queue
import signal
import sys
import threading
import time
from datetime import datetime, timezone
from typing import Callable

import paho.mqtt.client as mqtt

MIB = 1024 * 1024  # SPEC §2: no snapshot chunk larger than this
RECORD_DEFAULTS = {"tier": None, "roles": [], "valid_from": None, "valid_until": None, "schedule": None,
                   "party": 1, "host": None, "escort": False, "id_hash": None}
# what a batch line or a stdin command names -> the change-batch list it lands in (SPEC §2)
BATCH_LISTS = {"upsert": "upserts", "delete": "deletes", "revoke": "revoke", "block": "blocklist_add",
               "unblock": "blocklist_remove", "key": "keys_add", "unkey": "keys_remove",
               "calendar": "calendar_set", "uncalendar": "calendar_remove"}
# the key of a one-key line in a JSONL file -> the kind above (a record line has "credential" instead)
LINE_KINDS = {"delete": "delete", "revoke": "revoke", "blocklist": "block", "unblock": "unblock",
              "key": "key", "unkey": "unkey", "calendar": "calendar", "uncalendar": "uncalendar"}

_print_lock = threading.Lock()


def say(text: str) -> None:
    """One output line; the network thread and the command thread both print, lines must not interleave."""
    with _print_lock:
        try:
            print(f"central {text}", flush=True)
        except (BrokenPipeError, ValueError):
            pass  # whoever read our output is gone; keep serving the broker


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def compact(obj) -> str:
    # ASCII-only, so len() of the text is its size in bytes on the wire
    return json.dumps(obj, separators=(",", ":"))


class BadInput(Exception):
    """A command, a file line or a message that does not fit; reported, never fatal."""


# ---------------------------------------------------------------- the allow-list

def generated_record(i: int) -> dict:
    # multiplying by an odd constant is a bijection mod 2**40: distinct, spread-out, reproducible UIDs
    uid = (i * 2654435761) % 2**40
    return {"credential": "badge:%010X" % uid, "holder": "h-%d" % i, "category": "staff", "areas": ["site"],
            **{k: (list(v) if isinstance(v, list) else v) for k, v in RECORD_DEFAULTS.items()}}


def parse_item(obj, allowed: set[str]) -> tuple[str, object]:
    """One JSONL line as (kind, value): a record is an upsert, else a one-key object such as {"revoke": ref}."""
    if not isinstance(obj, dict):
        raise BadInput(f"not a JSON object: {compact(obj)[:80]}")
    if "credential" in obj:
        kind, value = "upsert", obj
    elif len(obj) == 1 and next(iter(obj)) in LINE_KINDS:
        key = next(iter(obj))
        kind, value = LINE_KINDS[key], obj[key]
    else:
        raise BadInput(f"neither a record nor one of {sorted(LINE_KINDS)}: {compact(obj)[:80]}")
    if kind not in allowed:
        raise BadInput(f"{kind!r} lines are not allowed here")
    check_value(kind, value)
    return kind, value


def pin_hash(pin: str, pepper: bytes, n: int = 1 << 13) -> str:
    """SPEC §2 (P34): `scrypt$N$r$p$salt_b64$hash_b64` of HMAC-SHA256(pepper, the PIN's ASCII digits), r = 8, p = 1,
    a 16-byte random salt and a 32-byte hash: what the central system stores, computed here on its own."""
    import base64
    import hashlib
    import hmac
    import os
    salt = os.urandom(16)
    digest = hashlib.scrypt(hmac.new(pepper, pin.encode("ascii"), hashlib.sha256).digest(), salt=salt, n=n, r=8, p=1,
                            dklen=32, maxmem=64 * 1024 * 1024)
    return f"scrypt${n}$8$1${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def check_value(kind: str, value) -> None:
    """Only what the central state needs to key things; anything else passes so tests can send odd data."""
    if kind == "upsert" and not (isinstance(value, dict) and isinstance(value.get("credential"), str)):
        raise BadInput("a record needs a text \"credential\"")
    if kind == "calendar" and not (isinstance(value, dict) and isinstance(value.get("date"), str)):
        raise BadInput("a calendar day needs a text \"date\"")
    if kind in ("delete", "unkey", "uncalendar") and not isinstance(value, str):
        raise BadInput(f"{kind} takes a text")
    if kind in ("revoke", "block", "unblock") and not isinstance(value, dict):
        raise BadInput(f"{kind} takes a JSON object")
    if kind == "key" and not (isinstance(value, dict) and isinstance(value.get("kid"), str)):
        raise BadInput("a key needs a text \"kid\"")


def read_jsonl(path: str, allowed: set[str]) -> list[tuple[str, object]]:
    items = []
    try:
        with open(path, encoding="utf-8") as f:
            for n, raw in enumerate(f, 1):
                if not raw.strip():
                    continue
                try:
                    items.append(parse_item(json.loads(raw), allowed))
                except (ValueError, BadInput) as e:
                    raise BadInput(f"{path} line {n}: {e}") from None
    except OSError as e:
        raise BadInput(f"cannot read {path}: {e.strerror}") from None
    return items


class AllowList:
    """The central copy: what a snapshot carries, and what every batch moves forward by one version."""

    def __init__(self, version: int = 0):
        self.version = version
        self.records: dict[str, dict] = {}
        self._encoded: dict[str, str] = {}  # credential -> its JSON, so a snapshot of 1M records is quick
        self.revoked: dict[str, dict] = {}  # canonical JSON -> ref
        self.blocked: dict[str, dict] = {}  # identity (the entry without "reason") -> entry
        self.keys: dict[str, dict] = {}  # kid -> key
        self.calendar: dict[str, dict] = {}  # date -> calendar day (P24)

    @staticmethod
    def _canon(obj: dict) -> str:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"))

    def _block_id(self, entry: dict) -> str:
        # unblock {"holder": "h-1"} must find the entry whatever reason it was blocked with
        return self._canon({k: v for k, v in entry.items() if k != "reason"})

    def apply(self, kind: str, value) -> None:
        if kind == "upsert":
            self.records[value["credential"]] = value
            self._encoded.pop(value["credential"], None)
        elif kind == "delete":
            self.records.pop(value, None)
            self._encoded.pop(value, None)
        elif kind == "revoke":
            self.revoked[self._canon(value)] = value
        elif kind == "block":
            self.blocked[self._block_id(value)] = value
        elif kind == "unblock":
            self.blocked.pop(self._block_id(value), None)
        elif kind == "key":
            self.keys[value["kid"]] = value
        elif kind == "unkey":
            self.keys.pop(value, None)
        elif kind == "calendar":
            self.calendar[value["date"]] = value
        elif kind == "uncalendar":
            self.calendar.pop(value, None)

    def batch(self, items: list[tuple[str, object]]) -> dict:
        """A change batch from the current version to the next; the state moves with it."""
        # the calendar lists (P24) only when used: a batch is what it was for a gate without calendars
        b = {"from_version": self.version, "to_version": self.version + 1,
             **{name: [] for name in BATCH_LISTS.values() if not name.startswith("calendar")}}
        for kind, value in items:
            b.setdefault(BATCH_LISTS[kind], []).append(value)
            self.apply(kind, value)
        self.version += 1
        return b

    def snapshot_chunks(self, limit: int) -> list[str]:
        """The whole state as snapshot payloads, each at most `limit` bytes (SPEC §2: ≤ 1 MiB)."""
        items: list[tuple[str, str]] = []
        # the small lists first, so they normally travel in chunk 0 with the first records
        items += [("revoke", compact(r)) for r in self.revoked.values()]
        items += [("blocklist", compact(b)) for b in self.blocked.values()]
        items += [("keys", compact(k)) for k in self.keys.values()]
        items += [("calendar", compact(c)) for c in self.calendar.values()]
        for cred, rec in self.records.items():
            enc = self._encoded.get(cred)
            if enc is None:
                enc = self._encoded[cred] = compact(rec)
            items.append(("upserts", enc))
        # the envelope with the widest chunk numbers this snapshot can need: packing stays a safe estimate
        wide = 10 ** len(str(len(items) + 1)) - 1
        overhead = len(self._payload(wide, wide, {"calendar": []} if self.calendar else {}))
        groups: list[dict[str, list[str]]] = [{}]
        size = overhead
        for name, enc in items:
            cost = len(enc) + 1  # the comma before it, at most
            if overhead + cost > limit:
                raise BadInput(f"one {name} entry is {len(enc)} bytes: it cannot fit a {limit}-byte chunk")
            if size + cost > limit:
                groups.append({})
                size = overhead
            groups[-1].setdefault(name, []).append(enc)
            size += cost
        payloads = [self._payload(i, len(groups), g) for i, g in enumerate(groups)]
        if any(len(p) > limit for p in payloads):  # the estimate above is meant to make this impossible
            raise BadInput(f"a snapshot chunk came out over {limit} bytes: not sent")
        return payloads

    def _payload(self, i: int, k: int, lists: dict[str, list[str]]) -> str:
        body = ",".join(f'"{name}":[{",".join(lists.get(name, []))}]'
                        for name in ("upserts", "revoke", "blocklist", "keys", "calendar")
                        if name != "calendar" or name in lists)
        return f'{{"version":{self.version},"chunk":{i},"chunks":{k},{body}}}'


# ---------------------------------------------------------------- what the gates send

class EpochSeen:
    def __init__(self) -> None:
        self.ids: dict[int, str] = {}  # seq -> event id, to tell a re-send (same id) from a reused seq
        self.max_seq = 0
        self.missing: list[list[int]] = []  # [first, last] seq spans below max_seq not received yet, in order
        self.filled = 0  # seqs that were missing and came after all (a replay, a late retransmission)
        self.lost = 0  # seqs the gate said it no longer has (replay_unavailable)

    def arrived(self, seq: int) -> None:
        if seq > self.max_seq + 1:
            self.missing.append([self.max_seq + 1, seq - 1])
        elif seq <= self.max_seq and self._drop(seq, seq):
            self.filled += 1
        self.max_seq = max(self.max_seq, seq)

    def gone_before(self, first_seq: int) -> None:
        """The gate's journal starts at first_seq: what is missing below it never comes."""
        self.lost += self._drop(1, first_seq - 1)

    def _drop(self, lo: int, hi: int) -> int:
        """Take lo..hi out of the missing spans; returns how many seqs were in them."""
        out, n = [], 0
        for a, b in self.missing:
            if b < lo or a > hi:
                out.append([a, b])
                continue
            n += min(b, hi) - max(a, lo) + 1
            if a < lo:
                out.append([a, lo - 1])
            if b > hi:
                out.append([hi + 1, b])
        self.missing = out
        return n

    def open(self) -> int:
        return sum(b - a + 1 for a, b in self.missing)

    def complete(self, upto: int) -> bool:
        return self.max_seq >= upto and not (self.missing and self.missing[0][0] <= upto)


class GateEvents:
    """SPEC §2 envelope rules as counters: seq rises by exactly 1 within an epoch, a re-send keeps its id."""

    def __init__(self) -> None:
        self.received = self.duplicates = self.conflicts = self.out_of_order = self.malformed = 0
        self.epochs: dict[str, EpochSeen] = {}
        self.epoch: str | None = None  # the newest epoch seen: a recreated journal starts a new count
        self.last_at = time.monotonic()  # of the last event (or of our first word of this gate)
        self.gap_at = 0.0  # since when the current epoch has had a seq missing
        self.replays = 0  # replay requests sent to this gate
        self.asked: tuple[int, int, float] | None = None  # the outstanding replay: after, until, sent at

    def add(self, payload: bytes) -> dict | None:
        self.received += 1
        self.last_at = time.monotonic()
        try:
            ev = json.loads(payload)
            ok = (isinstance(ev, dict) and isinstance(ev.get("id"), str) and isinstance(ev.get("epoch"), str)
                  and ev["epoch"] and type(ev.get("seq")) is int and ev["seq"] >= 1)
        except (ValueError, UnicodeDecodeError):
            ok = False
        if not ok:
            self.malformed += 1
            return None
        seen = self.epochs.get(ev["epoch"])
        if seen is None:
            seen = self.epochs[ev["epoch"]] = EpochSeen()
            self.epoch = ev["epoch"]
        seq, eid = ev["seq"], ev["id"]
        if seq in seen.ids:
            if seen.ids[seq] == eid:
                self.duplicates += 1  # at-least-once delivery: allowed, and must carry the same id
            else:
                self.conflicts += 1  # a seq reused within an epoch: SPEC §2 forbids it
            return ev
        if seq < seen.max_seq:
            self.out_of_order += 1
        seen.ids[seq] = eid
        had_gap = bool(seen.missing)
        seen.arrived(seq)
        if seen.missing and not had_gap:
            self.gap_at = self.last_at
        if ev.get("type") == "alarm.raised" and isinstance(ev.get("data"), dict) \
                and ev["data"].get("alarm") == "replay_unavailable" and type(ev["data"].get("first_seq")) is int:
            seen.gone_before(ev["data"]["first_seq"])  # SPEC §2: asking again would not bring them
        return ev

    def replay_wanted(self, status, now: float, after_s: float, timeout_s: float) -> tuple[int, int] | None:
        """SPEC §2 replay: the range to ask this gate for now, if any. A gap open for `after_s`, or a status
        whose `last_seq` is beyond what arrived while nothing came for `after_s`; one request at a time,
        asked again after `timeout_s` if what it asked for has not all come."""
        epoch = self.epoch
        last = None
        if isinstance(status, dict) and type(status.get("last_seq")) is int and isinstance(status.get("epoch"), str):
            if epoch is None or status["epoch"] == epoch:
                epoch, last = status["epoch"], status["last_seq"]
        if epoch is None:
            return None
        seen = self.epochs.setdefault(epoch, EpochSeen())
        if self.epoch is None:
            self.epoch = epoch
        if self.asked:
            after, until, at = self.asked
            if not seen.complete(until) and now - at < timeout_s:
                return None
            self.asked = None
        want = None
        if seen.missing and now - self.gap_at >= after_s:
            want = (seen.missing[0][0] - 1, seen.missing[-1][1])
        if last is not None and last > seen.max_seq and now - self.last_at >= after_s:
            # the status vouches for seqs that never came: a gap like one seen between two events
            want = (want[0] if want else seen.max_seq, last)
            seen.missing.append([seen.max_seq + 1, last])
            seen.max_seq = last
        if want:
            self.asked = (*want, now)
            self.replays += 1
        return want

    def report(self) -> dict:
        cur = self.epochs.get(self.epoch) if self.epoch is not None else None
        max_seq = cur.max_seq if cur else 0
        return {"received": self.received, "duplicates": self.duplicates, "conflicts": self.conflicts,
                "gaps": max_seq - len(cur.ids) if cur else 0, "max_seq": max_seq, "epoch": self.epoch,
                "gaps_filled": cur.filled if cur else 0, "gaps_open": cur.open() if cur else 0,
                "lost": cur.lost if cur else 0, "replays": self.replays,
                "out_of_order": self.out_of_order, "malformed": self.malformed, "epochs": len(self.epochs)}


class ContractCheck:
    """Everything received, checked against the contract document: counted, and the latest violations kept
    for the report. Without the document or its libraries it says why and checks nothing."""

    KEEP = 50

    def __init__(self, root: str, enabled: bool = True) -> None:
        self.checked = self.violations = 0
        self.last: collections.deque[str] = collections.deque(maxlen=self.KEEP)
        self.by_topic: collections.Counter[str] = collections.Counter()
        self.error: str | None = None
        self.contract = None
        if not enabled:
            self.error = "disabled (--no-contract)"
            return
        try:
            from simulators.contract import Contract, ContractError
            self.contract, self._unknown = Contract(root=root), ContractError
        except ImportError as e:
            self.error = f"not checked: {e}"
        except ValueError as e:  # ContractError: the document is missing or broken
            self.error = f"not checked: {e}"

    def check(self, topic: str, payload: bytes) -> None:
        """Called with the stats lock held."""
        if self.contract is None or not payload:
            return  # an empty payload clears a retained message: nothing to check
        try:
            problems = self.contract.check(topic, payload)
        except self._unknown as e:
            problems = [str(e)]
        self.checked += 1
        if problems:
            self.violations += 1
            self.by_topic[topic] += 1
            self.last.extend(f"{topic}: {p}" for p in problems)

    def report(self) -> dict:
        out = {"checked": self.checked, "violations": self.violations, "by_topic": dict(self.by_topic),
               "last": list(self.last)}
        if self.error:
            out["error"] = self.error
        return out


# ---------------------------------------------------------------- broker acknowledgements

class Acks:
    """Which publishes the broker has acknowledged, and what to do once a set of them is.

    paho calls on_publish holding its own lock, which publish() also takes: never call paho while holding
    ours. A PUBACK can therefore arrive before we learned the mid: such early acks wait in `early`."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.early: set[int] = set()
        self.outstanding: set[int] = set()
        self.waiters: list[tuple[set[int], Callable[[], None]]] = []

    def track(self, mids: list[int], then: Callable[[], None] | None = None) -> None:
        with self.lock:
            left = set()
            for m in mids:
                if m in self.early:
                    self.early.discard(m)
                else:
                    left.add(m)
                    self.outstanding.add(m)
            if left and then:
                self.waiters.append((left, then))
        if not left and then:
            then()

    def when_all_acked(self, then: Callable[[], None]) -> None:
        with self.lock:
            left = set(self.outstanding)
            if left:
                self.waiters.append((left, then))
        if not left:
            then()

    def acked(self, mid: int) -> None:
        done = []
        with self.lock:
            if mid not in self.outstanding:
                self.early.add(mid)
                return
            self.outstanding.discard(mid)
            keep = []
            for left, then in self.waiters:
                left.discard(mid)
                (keep if left else done).append((left, then))
            self.waiters = keep
        for _, then in done:
            then()

    def pending(self) -> int:
        with self.lock:
            return len(self.outstanding)


# ---------------------------------------------------------------- the simulator

class Central:
    def __init__(self, args: argparse.Namespace, state: AllowList):
        self.args = args
        self.state = state  # touched only by the command thread (main), so batches and snapshots never mix
        self.base = f"{args.root}/{args.site}"
        self.acks = Acks()
        self.jobs: queue.Queue[tuple] = queue.Queue()
        self.stats_lock = threading.Lock()  # the network thread counts, the command thread reports
        self.gates: dict[str, GateEvents] = {}
        self.status: dict[str, object] = {}
        self.muster: dict[str, object] = {}
        self.event_waiters: list[tuple[str, int]] = []
        self.complete_waiters: list[tuple[str, int]] = []
        self.drop_next = False
        self.mode_version = 0  # the highest site-mode version seen (SPEC §2)
        self.connected = False
        self.ready = False
        self.sub_mid: int | None = None
        self.stopping = False
        self.paused = False  # disconnected by the `disconnect` command, until `connect`
        self.events_out = open(args.events_out, "a", encoding="utf-8") if args.events_out else None
        self.contract = ContractCheck(args.root, enabled=not args.no_contract)
        # resync storm: snapshots being sent (not all chunks acknowledged) and the gates waiting for one
        self.snap_lock = threading.Lock()
        self.snap_active: set[str] = set()
        self.snap_queue: dict[str, None] = {}  # insertion-ordered: first asked, first answered
        self.snap_stats = {"sent": 0, "queued_peak": 0, "in_flight_peak": 0, "asked_again": 0}

        host, _, port = args.broker.rpartition(":")
        self.host, self.port = host or "127.0.0.1", int(port)
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=args.client_id,
                        protocol=mqtt.MQTTv311, clean_session=False)  # events queued while we were away arrive
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_subscribe = self._on_subscribe
        c.on_publish = lambda client, userdata, mid, rc, props: self.acks.acked(mid)
        c.on_message = self._on_message
        c.reconnect_delay_set(0.2, 5)
        c.max_inflight_messages_set(100)  # a 1M-record snapshot is many chunks; 20 in flight is slow
        if args.username:
            c.username_pw_set(args.username, args.password)
        if args.cafile or args.certfile:
            c.tls_set(ca_certs=args.cafile, certfile=args.certfile, keyfile=args.keyfile)
        self.client = c

    # -- network thread (paho's loop): never block here, never let an exception out (it ends the loop)

    def _on_connect(self, client, userdata, flags, reason, props) -> None:
        if reason.is_failure:
            say(f"error: broker refused the connection: {reason}")
            return
        self.connected = True
        qos = 1
        _, self.sub_mid = client.subscribe([(f"{self.base}/+/events/#", qos), (f"{self.base}/+/allowlist/resync", qos),
                                            (f"{self.base}/+/status", qos), (f"{self.base}/+/muster", qos),
                                            (f"{self.base}/mode", qos)])

    def _on_subscribe(self, client, userdata, mid, reason_codes, props) -> None:
        if mid != self.sub_mid:
            return
        refused = [str(r) for r in reason_codes if r.is_failure]
        if refused:
            say(f"error: subscriptions refused: {', '.join(refused)}")
            return
        if not self.ready:
            self.ready = True
            say("ready")
        else:
            say("reconnected")

    def _on_disconnect(self, client, userdata, flags, reason, props) -> None:
        self.connected = False
        if not (self.stopping or self.paused):
            say(f"disconnected ({reason}); reconnecting")

    def _on_message(self, client, userdata, msg) -> None:
        try:
            self._dispatch(msg.topic, msg.payload)
        except Exception as e:  # a message we did not foresee must not end paho's loop
            say(f"error: message on {msg.topic!r}: {type(e).__name__}: {e}")

    def _dispatch(self, topic: str, payload: bytes) -> None:
        if not topic.startswith(self.base + "/"):
            return
        with self.stats_lock:
            self.contract.check(topic, payload)
        parts = topic[len(self.base) + 1:].split("/")
        gate, rest = parts[0], parts[1:]
        if parts == ["mode"]:  # SPEC §2: the next site mode change takes one more than the highest seen
            try:
                self.mode_version = max(self.mode_version, int(json.loads(payload)["version"]))
            except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                pass  # an empty (cleared) or old-form retained message sets no version
            return
        if rest[:1] == ["events"]:
            self._event(gate, payload)
        elif rest == ["allowlist", "resync"]:
            self.jobs.put(("resync", gate, payload))  # a snapshot is built on the command thread
        elif rest in (["status"], ["muster"]):
            table = self.status if rest == ["status"] else self.muster
            try:
                value = json.loads(payload) if payload else None
            except (ValueError, UnicodeDecodeError):
                value = payload.decode("utf-8", "replace")  # kept as text: the report shows what came
            with self.stats_lock:
                if value is None:
                    table.pop(gate, None)  # an empty retained message clears it
                else:
                    table[gate] = value
            if rest == ["status"]:
                state = value.get("state") if isinstance(value, dict) else "malformed"
                say(f"status {gate} {state}")

    def _event(self, gate: str, payload: bytes) -> None:
        with self.stats_lock:
            g = self.gates.setdefault(gate, GateEvents())
            before = g.duplicates + g.conflicts
            ev = g.add(payload)
            if ev is not None and ev.get("type") == "permit.changed" and g.duplicates + g.conflicts == before:
                self.jobs.put(("permit", gate, ev.get("data")))  # adopted on the command thread, like a resync
            if ev is not None and self.events_out:
                self.events_out.write(compact(ev) + "\n")
                self.events_out.flush()  # tests read the file while we run
            due = [w for w in self.event_waiters if w[0] == gate and g.received >= w[1]]
            self.event_waiters = [w for w in self.event_waiters if w not in due]
            complete = [w for w in self.complete_waiters if w[0] == gate and self._complete(gate, w[1])]
            self.complete_waiters = [w for w in self.complete_waiters if w not in complete]
        for gate_, n in due:
            say(f"events {gate_} {n}")
        for gate_, n in complete:
            say(f"complete {gate_} {n}")
        if ev is not None and ev.get("type") == "alarm.raised" and isinstance(ev.get("data"), dict) \
                and ev["data"].get("alarm") == "replay_unavailable":
            say(f"replay unavailable {gate} first_seq {ev['data'].get('first_seq')}")

    def _complete(self, gate: str, n: int) -> bool:
        """Every seq 1..n of the gate's current epoch arrived (or the gate said it no longer has it)."""
        g = self.gates.get(gate)
        seen = g.epochs.get(g.epoch) if g and g.epoch else None
        return seen is not None and seen.complete(n)

    def ask_replays(self) -> None:
        """SPEC §2: a gap in a gate's events, or a status saying there is more than came, is asked for
        again with `replay`, one request per gate at a time (command thread)."""
        now_ = time.monotonic()
        asks = []
        with self.stats_lock:
            for gate in set(self.gates) | set(self.status):
                g = self.gates.get(gate)
                if g is None:  # only a status so far: a gate whose events never came, or not yet
                    st = self.status.get(gate)
                    if not (isinstance(st, dict) and type(st.get("last_seq")) is int and st["last_seq"] > 0):
                        continue
                    g = self.gates[gate] = GateEvents()
                want = g.replay_wanted(self.status.get(gate), now_, self.args.replay_after, self.args.replay_timeout)
                if want:
                    asks.append((gate, want))
        for gate, (after, until) in asks:
            say(f"replay {gate} after {after} until {until}")
            self.publish(f"{self.base}/{gate}/replay", compact({"after_seq": after, "until_seq": until}))

    # -- command thread

    def publish(self, topic: str, payload: str | bytes, *, qos: int = 1, retain: bool = False,
                then: Callable[[], None] | None = None) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if qos == 0 and info.rc != mqtt.MQTT_ERR_SUCCESS:
            # paho drops QoS 0 while offline and never calls on_publish for it
            raise BadInput(f"not connected: the QoS 0 message on {topic} was dropped")
        # QoS 1 while offline is queued in paho's memory and sent on reconnect: it still gets its PUBACK
        self.acks.track([info.mid], then)

    def send_batch(self, items: list[tuple[str, object]]) -> None:
        b = self.state.batch(items)
        span = f"{b['from_version']}->{b['to_version']}"
        if self.drop_next:
            self.drop_next = False
            say(f"dropped batch {span}")
            return
        self.publish(f"{self.base}/allowlist/changes", compact(b), then=lambda: say(f"batch {span}"))

    def adopt_permit(self, gate: str, data) -> None:
        """P14: a permit a supervisor made at a gate joins the central allow-list, so every gate of the site
        learns the contractor's card with the next batch; a returned card leaves it."""
        record = data.get("record") if isinstance(data, dict) else None
        if not (isinstance(record, dict) and isinstance(record.get("credential"), str)):
            raise BadInput(f"permit.changed from {gate} without an allow-list record")
        item = ("delete", record["credential"]) if data.get("action") == "returned" else ("upsert", record)
        say(f"permit {data.get('permit')} {data.get('action')} at {gate}")
        self.send_batch([item])

    def send_snapshot(self, gate: str, then: Callable[[], None] | None = None) -> None:
        chunks = self.state.snapshot_chunks(self.args.chunk_bytes)
        topic = f"{self.base}/{gate}/allowlist/snapshot"
        mids = [self.client.publish(topic, p, qos=1).mid for p in chunks]
        line = f"snapshot {gate} version {self.state.version} chunks {len(chunks)}"

        def done() -> None:
            say(line)
            if then:
                then()
        self.acks.track(mids, done)

    def want_snapshot(self, gate: str) -> None:
        """A gate's resync: its snapshot now if fewer than `--max-snapshots` are in flight, else it waits in
        line. A gate already waiting is not queued twice: the snapshot it gets is the state when it is sent."""
        with self.snap_lock:
            if gate in self.snap_queue:
                self.snap_stats["asked_again"] += 1
                return
            if len(self.snap_active) >= self.args.max_snapshots or gate in self.snap_active:
                self.snap_queue[gate] = None  # one in flight for it already: answered again after it
                self.snap_stats["queued_peak"] = max(self.snap_stats["queued_peak"], len(self.snap_queue))
                return
            self.snap_active.add(gate)
            self.snap_stats["in_flight_peak"] = max(self.snap_stats["in_flight_peak"], len(self.snap_active))
        self.snapshot_turn(gate)

    def snapshot_turn(self, gate: str) -> None:
        try:
            self.send_snapshot(gate, lambda: self._snapshot_done(gate))
        except Exception:
            self._snapshot_done(gate)  # not sent: the next in line must not wait for it
            raise

    def _snapshot_done(self, gate: str) -> None:
        """Every chunk acknowledged (network thread): the next gate in line gets its turn (command thread)."""
        with self.snap_lock:
            self.snap_active.discard(gate)
            self.snap_stats["sent"] += 1
            nxt = next((g for g in self.snap_queue if g not in self.snap_active), None)
            if nxt is not None:
                del self.snap_queue[nxt]
                self.snap_active.add(nxt)
        if nxt is not None:
            self.jobs.put(("snapshot", nxt))

    def heartbeat(self, then: Callable[[], None] | None = None) -> None:
        self.publish(f"{self.base}/central/heartbeat", compact({"time": now()}), qos=0, then=then)

    def resync(self, gate: str, payload: bytes) -> None:
        try:
            req = json.loads(payload)
            have = req.get("have_version") if isinstance(req, dict) else None
            if type(have) is not int or have < 0:
                raise ValueError("no whole-number have_version")
        except (ValueError, UnicodeDecodeError) as e:
            # the contract is {"have_version": N}: a gate that sends anything else is wrong, and should see it
            raise BadInput(f"malformed resync from {gate}: {e}: {payload[:80]!r}") from None
        say(f"resync {gate} have_version {have}")
        self.want_snapshot(gate)

    def report(self) -> dict:
        with self.stats_lock:
            return {"version": self.state.version, "gates": {g: s.report() for g, s in self.gates.items()},
                    "status": dict(self.status), "muster": dict(self.muster), "contract": self.contract.report(),
                    "snapshots": self._snapshot_report()}

    def _snapshot_report(self) -> dict:
        with self.snap_lock:
            return {**self.snap_stats, "in_flight": len(self.snap_active), "queued": len(self.snap_queue),
                    "max_in_flight": self.args.max_snapshots}

    def command(self, line: str) -> None:
        cmd, _, rest = line.strip().partition(" ")
        rest = rest.strip()
        if cmd in ("upsert", "revoke", "block", "unblock", "key", "calendar"):
            try:
                value = json.loads(rest)
            except ValueError as e:
                raise BadInput(f"{cmd} takes JSON: {e}") from None
            check_value(cmd, value)
            self.send_batch([(cmd, value)])
        elif cmd in ("delete", "unkey", "uncalendar"):
            if not rest or " " in rest:
                raise BadInput(f"usage: {cmd} {({'delete': 'CREDENTIAL', 'unkey': 'KID'}).get(cmd, 'DATE')}")
            self.send_batch([(cmd, rest)])
        elif cmd == "batch":
            if not rest:
                raise BadInput("usage: batch FILE.jsonl")
            self.send_batch(read_jsonl(rest, set(BATCH_LISTS)))
        elif cmd == "pin":
            args = rest.split()
            if len(args) not in (2, 3) or not all(a.isdigit() and 4 <= len(a) <= 8 for a in args[1:]):
                raise BadInput("usage: pin CREDENTIAL PIN [DURESS_PIN] (4 to 8 digits each)")
            if self.args.pin_pepper is None:
                raise BadInput("pin needs --pin-pepper-file")
            record = self.state.records.get(args[0])
            if record is None:
                raise BadInput(f"no record {args[0]}")
            record = {**record, "pin_required": True, "pin_hash": pin_hash(args[1], self.args.pin_pepper),
                      "duress_hash": pin_hash(args[2], self.args.pin_pepper) if len(args) == 3 else None}
            self.send_batch([("upsert", record)])
        elif cmd == "drop-next":
            self.drop_next = True
            say("will drop the next batch")
        elif cmd == "signoff":
            args = rest.split()
            if len(args) != 2:
                raise BadInput("usage: signoff VISIT HOST")
            visit, host = args
            self.publish(f"{self.base}/visits/signoff", compact({"visit": visit, "host": host, "time": now()}),
                         then=lambda: say(f"signoff {visit} {host}"))
        elif cmd == "mode":
            mode, _, reason = rest.partition(" ")
            if mode not in ("lockdown", "drill", "normal"):
                raise BadInput("usage: mode lockdown|drill|normal REASON...")  # never fire: SPEC §2, P16
            self.mode_version += 1
            body = {"mode": mode, "actor": "central", "reason": reason.strip() or "set by central", "time": now(),
                    "version": self.mode_version}
            self.publish(f"{self.base}/mode", compact(body), retain=True, then=lambda: say(f"mode {mode}"))
        elif cmd == "heartbeat":
            self.heartbeat(then=lambda: say("heartbeat"))
        elif cmd == "snapshot":
            if not rest or " " in rest:
                raise BadInput("usage: snapshot GATE")
            self.send_snapshot(rest)
        elif cmd == "muster":
            if not rest or " " in rest:
                raise BadInput("usage: muster GATE")
            self.publish(f"{self.base}/{rest}/muster/request", "{}", then=lambda: say(f"muster request {rest}"))
        elif cmd in ("raw", "raw-retained"):
            topic, _, text = rest.partition(" ")
            if not topic:
                raise BadInput(f"usage: {cmd} TOPIC PAYLOAD...")
            data = text.encode("utf-8")  # an empty payload on raw-retained clears a retained message
            self.publish(topic, data, retain=cmd == "raw-retained",
                         then=lambda: say(f"{cmd} {topic} {len(data)} bytes"))
        elif cmd == "big":
            args = rest.split()
            if len(args) != 2 or not args[1].isdigit():
                raise BadInput("usage: big TOPIC NBYTES")
            topic, n = args[0], int(args[1])
            self.publish(topic, b"x" * n, then=lambda: say(f"big {topic} {n} bytes"))
        elif cmd == "report":
            say("report " + compact(self.report()))
        elif cmd == "wait-events":
            args = rest.split()
            if len(args) != 2 or not args[1].isdigit():
                raise BadInput("usage: wait-events GATE N")
            gate, n = args[0], int(args[1])
            with self.stats_lock:
                g = self.gates.get(gate)
                reached = g is not None and g.received >= n
                if not reached:
                    self.event_waiters.append((gate, n))
            if reached:
                say(f"events {gate} {n}")
        elif cmd == "wait-complete":
            args = rest.split()
            if len(args) != 2 or not args[1].isdigit():
                raise BadInput("usage: wait-complete GATE N")
            gate, n = args[0], int(args[1])
            with self.stats_lock:
                reached = self._complete(gate, n)
                if not reached:
                    self.complete_waiters.append((gate, n))
            if reached:
                say(f"complete {gate} {n}")
        elif cmd == "replay":
            args = rest.split()
            if len(args) not in (2, 3) or not all(a.isdigit() for a in args[1:]):
                raise BadInput("usage: replay GATE AFTER_SEQ [UNTIL_SEQ]")
            body = {"after_seq": int(args[1])}
            if len(args) == 3:
                body["until_seq"] = int(args[2])
            self.publish(f"{self.base}/{args[0]}/replay", compact(body), then=lambda: say(f"replay asked {args[0]}"))
        elif cmd == "disconnect":
            self.paused = True  # a clean goodbye: the broker keeps our session and queues for it
            self.client.disconnect()
            self.client.loop_stop()
            self.connected = False
            say("disconnected by command")
        elif cmd == "connect":
            if self.paused:
                self.paused = False
                self.client.connect_async(self.host, self.port, keepalive=15)
                self.client.loop_start()  # answered by `central reconnected` once subscribed again
        elif cmd == "wait-published":
            self.acks.when_all_acked(lambda: say("published"))
        elif cmd == "help":
            say("commands: upsert delete revoke block unblock key unkey batch drop-next signoff mode heartbeat "
                "snapshot muster raw raw-retained big report wait-events wait-complete replay disconnect connect "
                "wait-published")
        else:
            raise BadInput(f"unknown command {cmd!r} (try help)")

    def read_stdin(self) -> None:
        if sys.stdin is None:
            return
        for raw in sys.stdin:
            if raw.strip():
                self.jobs.put(("line", raw.strip()))
        # EOF: tests may close stdin; the central keeps serving the gates until SIGTERM

    def run(self) -> None:
        self.client.connect_async(self.host, self.port, keepalive=15)
        self.client.loop_start()  # retries the first connection too, so we may start before the broker
        threading.Thread(target=self.read_stdin, daemon=True, name="stdin").start()
        hb = self.args.heartbeat
        next_hb = time.monotonic()  # the first as soon as we are subscribed: P23 counts any word from central
        while not self.stopping:
            wait = 0.2
            if hb > 0:
                wait = max(0.0, min(wait, next_hb - time.monotonic()))
            try:
                job = self.jobs.get(timeout=wait)
            except queue.Empty:
                job = None
            if hb > 0 and self.ready and time.monotonic() >= next_hb:
                next_hb = time.monotonic() + hb
                if self.connected:
                    try:
                        self.heartbeat()
                    except BadInput:
                        pass  # lost the connection meanwhile; QoS 0 is best effort by contract
            if self.ready and self.connected and self.args.replay_after >= 0:
                try:
                    self.ask_replays()
                except BadInput:
                    pass
            if job is None:
                continue
            try:
                if job[0] == "line":
                    self.command(job[1])
                elif job[0] == "permit":
                    self.adopt_permit(job[1], job[2])
                elif job[0] == "snapshot":  # a queued resync's turn came
                    self.snapshot_turn(job[1])
                else:
                    self.resync(job[1], job[2])
            except BadInput as e:
                say(f"error: {e}")
            except Exception as e:  # paho refuses a bad topic or an oversized payload with ValueError
                say(f"error: {type(e).__name__}: {e}")
        self.shutdown()

    def shutdown(self) -> None:
        # what the broker has not acknowledged lives only in paho's memory: give it a moment, then go
        if self.connected:
            deadline = time.monotonic() + 2.0
            while self.acks.pending() and time.monotonic() < deadline:
                time.sleep(0.02)
        self.client.disconnect()
        self.client.loop_stop()
        if self.events_out:
            self.events_out.close()
        say("stopped")


def load_state(args: argparse.Namespace) -> AllowList:
    items: list[tuple[str, object]] = []
    if args.data:
        items += read_jsonl(args.data, {"upsert", "revoke", "block", "key"})
    items += [("upsert", generated_record(i)) for i in range(1, args.generate + 1)]
    version = args.version if args.version is not None else (1 if args.data or args.generate else 0)
    state = AllowList(version)
    for kind, value in items:
        state.apply(kind, value)
    return state


def chunk_bytes(text: str) -> int:
    n = int(text)
    if not 1024 <= n <= MIB:
        raise argparse.ArgumentTypeError(f"{n} is not between 1024 and {MIB} (SPEC §2: chunks ≤ 1 MiB)")
    return n


def positive_int(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n} is not a whole number of at least 1")
    return n


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m simulators.central", description=__doc__.split("\n\n")[0])
    p.add_argument("--broker", required=True, metavar="HOST:PORT")
    p.add_argument("--site", required=True)
    p.add_argument("--root", default="acs", help="topic root (SPEC §2)")
    p.add_argument("--client-id", default="central-sim", help="fixed, with a persistent session")
    p.add_argument("--data", metavar="FILE.jsonl", help="records, {\"revoke\"}, {\"blocklist\"}, {\"key\"} lines")
    p.add_argument("--generate", type=int, default=0, metavar="N", help="N generated staff records as well")
    p.add_argument("--version", type=int, default=None,
                   help="the allow-list version of the loaded state (default 1 with data, else 0)")
    p.add_argument("--heartbeat", type=float, default=60.0, metavar="SECONDS", help="0 = never")
    p.add_argument("--chunk-bytes", type=chunk_bytes, default=900_000, help="largest snapshot chunk payload")
    p.add_argument("--max-snapshots", type=positive_int, default=8, metavar="N",
                   help="snapshots in flight at most; more resyncs wait in line (a resync storm)")
    p.add_argument("--replay-after", type=float, default=2.0, metavar="SECONDS",
                   help="ask a gate for a replay once a gap in its events (or a status last_seq beyond them) "
                        "is this old; negative = never")
    p.add_argument("--replay-timeout", type=float, default=15.0, metavar="SECONDS",
                   help="a replay whose events have not all come by then is asked again")
    p.add_argument("--events-out", metavar="FILE", help="append every well-formed event received, one a line")
    p.add_argument("--no-contract", action="store_true",
                   help="do not check received messages against docs/asyncapi.yaml (for speed)")
    p.add_argument("--pin-pepper-file", metavar="FILE", help="P34: the site's PIN pepper, for the `pin` command")
    p.add_argument("--username")
    p.add_argument("--password-file")
    p.add_argument("--cafile")
    p.add_argument("--certfile")
    p.add_argument("--keyfile")
    args = p.parse_args(argv)
    if args.generate < 0:
        p.error("--generate must be 0 or more")
    if args.password_file and not args.username:
        p.error("--password-file needs --username")
    if bool(args.certfile) != bool(args.keyfile):
        p.error("--certfile and --keyfile go together")
    args.password = None
    if args.password_file:
        try:
            with open(args.password_file, encoding="utf-8") as f:
                args.password = f.read().rstrip("\r\n")
        except OSError as e:
            p.error(f"cannot read {args.password_file}: {e.strerror}")
    args.pin_pepper = None
    if args.pin_pepper_file:
        try:
            with open(args.pin_pepper_file, "rb") as f:
                args.pin_pepper = f.read().strip()
        except OSError as e:
            p.error(f"cannot read {args.pin_pepper_file}: {e.strerror}")
    try:
        int(args.broker.rpartition(":")[2])
    except ValueError:
        p.error(f"--broker {args.broker!r} is not HOST:PORT")
    try:
        state = load_state(args)
    except BadInput as e:
        raise SystemExit(f"central: {e}") from None
    say(f"loaded {len(state.records)} records, {len(state.revoked)} revocations, {len(state.blocked)} blocked, "
        f"{len(state.keys)} keys at version {state.version}")

    sim = Central(args, state)

    def stop(signum, frame) -> None:
        sim.stopping = True  # the command loop notices within 0.2 s and disconnects cleanly

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sim.run()


if __name__ == "__main__":
    main()

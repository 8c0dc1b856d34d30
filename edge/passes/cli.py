"""`gatekeeper keys new`, `gatekeeper pass issue`, `gatekeeper pass verify` (SPEC §1).

Each handler returns the exit code: 0 done, 1 the pass was refused (verify), 2 bad input, said in one line on
stderr. Private key material is never printed.
"""
from __future__ import annotations

import json
import re
import sys
import time
from datetime import datetime
from pathlib import Path

from edge.core.model import CATEGORIES
from edge.passes.codec import MAX_PASS, PassRejected, issue_pass, verify_pass
from edge.passes.keys import KeyRing, generate_keypair, load_private_pem

TIERS = ["special", "first", "second"]
# RFC 3339 date-time (its note allows a space for the T); datetime.fromisoformat alone takes far more
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def add_commands(sub) -> None:
    keys = sub.add_parser("keys", help="pass-signing keys")
    keys_sub = keys.add_subparsers(dest="keys_action", metavar="ACTION", required=True)
    new = keys_sub.add_parser("new", help="an Ed25519 key pair: KID.key (private, mode 0600) and KID.pub")
    new.add_argument("--kid", required=True, help="key id: 1-32 characters of A-Z a-z 0-9 . _ -")
    new.add_argument("--out", required=True, help="folder (created if missing)")
    new.set_defaults(func=cmd_keys_new)

    passes = sub.add_parser("pass", help="signed QR passes")
    passes_sub = passes.add_subparsers(dest="pass_action", metavar="ACTION", required=True)
    issue = passes_sub.add_parser("issue", help="sign a pass; its text is the last line printed")
    issue.add_argument("--key", required=True, help="private key file (PEM)")
    issue.add_argument("--kid", required=True)
    issue.add_argument("--holder", required=True)
    issue.add_argument("--category", required=True, choices=sorted(CATEGORIES))
    issue.add_argument("--tier", choices=TIERS)
    issue.add_argument("--areas", required=True, help="comma-separated, e.g. site/lobby,site/office")
    issue.add_argument("--from", dest="valid_from", required=True, help="RFC 3339, any offset")
    issue.add_argument("--until", dest="valid_until", required=True, help="RFC 3339, any offset")
    issue.add_argument("--party", type=int, help="the holder plus companions (P11)")
    issue.add_argument("--host", help="the host's holder id")
    issue.add_argument("--escort", action="store_true", help="needs a staff escort (P10)")
    issue.add_argument("--schedule", help="schedule name, instead of the category's default")
    issue.add_argument("--idh", help="first 16 hex characters of the holder's id_hash")
    issue.add_argument("--visit", help="visit id (default: the pass id); a re-issued pass keeps its visit's")
    issue.add_argument("--png", help="also write the QR code to this PNG file")
    issue.set_defaults(func=cmd_pass_issue)

    verify = passes_sub.add_parser("verify", help="check signature, scope and time; print the claims or the reason")
    verify.add_argument("--trust", required=True, help="folder of KID.pub (and optional KID.scope) files")
    verify.add_argument("--at", help="RFC 3339 time to check against (default: now)")
    verify.add_argument("--skew", type=int, default=0, help="clock skew allowed either side, seconds (default 0)")
    verify.add_argument("text", help="the pass text, or - to read it from stdin")
    verify.set_defaults(func=cmd_pass_verify)


def parse_time(value: str, option: str) -> float:
    """Epoch seconds of an RFC 3339 time with any offset; ValueError naming the option otherwise."""
    if not _RFC3339.fullmatch(value):
        raise ValueError(f"{option}: {value!r} is not an RFC 3339 time such as 2026-11-25T08:00:00+08:00")
    try:
        dt = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:  # right shape, impossible value: month 13, 25 o'clock
        raise ValueError(f"{option}: {value!r} is not a valid time") from None
    return dt.timestamp()


def _fail(message: str) -> int:
    print(f"gatekeeper: {message}", file=sys.stderr)
    return 2


def cmd_keys_new(args) -> int:
    out = Path(args.out)
    try:
        generate_keypair(args.kid, out)
    except FileExistsError:
        return _fail(f"{out / (args.kid + '.key')} exists; a signing key is never overwritten")
    except OSError as e:
        return _fail(f"{e.filename or out}: {e.strerror}")
    except ValueError as e:
        return _fail(f"--kid: {e}")
    print(f"wrote {out / (args.kid + '.key')} (private, mode 0600) and {out / (args.kid + '.pub')}")
    return 0


def cmd_pass_issue(args) -> int:
    try:
        pem = Path(args.key).read_bytes()
    except OSError as e:
        return _fail(f"--key {args.key}: {e.strerror}")
    try:
        private = load_private_pem(pem)
    except ValueError as e:
        return _fail(f"--key {args.key}: {e}")
    try:
        valid_from = parse_time(args.valid_from, "--from")
        valid_until = parse_time(args.valid_until, "--until")
        areas = [a.strip() for a in args.areas.split(",") if a.strip()]
        if not areas:
            raise ValueError("--areas: at least one area")
        idh = args.idh.lower() if args.idh is not None else None
        text = issue_pass(private, args.kid, holder=args.holder, category=args.category, areas=areas,
                          valid_from=valid_from, valid_until=valid_until, tier=args.tier, party=args.party,
                          host=args.host, escort=args.escort, schedule=args.schedule, idh=idh, visit=args.visit,
                          issued_at=time.time())
    except (ValueError, TypeError) as e:
        return _fail(str(e))
    if args.png:
        from edge.passes.qr import write_png  # qrcode and pillow load only when a PNG is asked for
        try:
            version = write_png(text, args.png)
        except OSError as e:
            return _fail(f"--png {args.png}: {e.strerror or e}")
        print(f"wrote {args.png} (QR version {version}, error correction M, {len(text)} characters)",
              file=sys.stderr)
    print(text)
    return 0


def cmd_pass_verify(args) -> int:
    try:
        ring = KeyRing.load_dir(args.trust)
        at = parse_time(args.at, "--at") if args.at else time.time()
    except ValueError as e:
        return _fail(str(e))
    except OSError as e:
        return _fail(f"--trust {args.trust}: {e.strerror}")
    if args.skew < 0:
        return _fail("--skew: seconds, 0 or more")
    # a bounded read: more than a pass can hold is malformed either way
    text = sys.stdin.read(MAX_PASS * 2) if args.text == "-" else args.text
    try:
        claims = verify_pass(text.strip(), ring)
    except PassRejected as e:
        print(e.reason)
        return 1
    # the window of RFC 8392 and of the gate's policy: valid from nbf on, expired at exp itself
    if at < claims.nbf - args.skew:
        print("not_yet_valid")
        return 1
    if at >= claims.exp + args.skew:
        print("expired")
        return 1
    print(json.dumps(claims.to_json_dict(), sort_keys=True, ensure_ascii=False))
    return 0

"""`gatekeeper keys new`, `gatekeeper pass issue`, `gatekeeper pass verify` (SPEC §1)."""
from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from pathlib import Path

from edge.passes.codec import PassRejected, issue_pass, verify_pass
from edge.passes.keys import KeyRing, generate_keypair, load_private_pem


def add_commands(sub) -> None:
    keys = sub.add_parser("keys", help="pass-signing keys").add_subparsers(metavar="ACTION")
    new = keys.add_parser("new", help="an Ed25519 key pair: KID.key (private) and KID.pub")
    new.add_argument("--kid", required=True)
    new.add_argument("--out", required=True, help="folder")
    new.set_defaults(func=cmd_keys_new)

    passes = sub.add_parser("pass", help="signed QR passes").add_subparsers(metavar="ACTION")
    issue = passes.add_parser("issue", help="sign a pass; its text is the last line printed")
    issue.add_argument("--key", required=True, help="private key file (PEM)")
    issue.add_argument("--kid", required=True)
    issue.add_argument("--holder", required=True)
    issue.add_argument("--category", required=True, choices=["staff", "vip", "visitor", "contractor"])
    issue.add_argument("--tier", choices=["special", "first", "second"])
    issue.add_argument("--areas", required=True, help="comma-separated, e.g. site/lobby,site/office")
    issue.add_argument("--from", dest="valid_from", required=True, help="RFC 3339, any offset")
    issue.add_argument("--until", dest="valid_until", required=True, help="RFC 3339, any offset")
    issue.add_argument("--party", type=int, help="the holder plus companions (P11)")
    issue.add_argument("--host", help="the host's holder id")
    issue.add_argument("--escort", action="store_true", help="needs a staff escort (P10)")
    issue.add_argument("--schedule", help="schedule name, instead of the category's default")
    issue.add_argument("--idh", help="first 16 hex characters of the holder's id_hash")
    issue.add_argument("--visit", help="visit id (default: the pass id)")
    issue.add_argument("--png", help="also write the QR code to this PNG file")
    issue.set_defaults(func=cmd_pass_issue)

    verify = passes.add_parser("verify", help="check signature, scope and time; print the claims or the reason")
    verify.add_argument("--trust", required=True, help="folder of KID.pub (and optional KID.scope) files")
    verify.add_argument("--at", help="RFC 3339 time to check against (default: now)")
    verify.add_argument("--skew", type=int, default=0, help="clock skew allowed, seconds")
    verify.add_argument("text", help="the pass text, or - to read it from stdin")
    verify.set_defaults(func=cmd_pass_verify)


def parse_time(value: str, what: str) -> int:
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"{what}: {value!r} is not an RFC 3339 time") from None
    if dt.tzinfo is None:
        raise ValueError(f"{what}: {value!r} has no offset (add Z or +08:00)")
    return int(dt.timestamp())


def _fail(message: str) -> int:
    print(f"gatekeeper: {message}", file=sys.stderr)
    return 2


def cmd_keys_new(args) -> int:
    try:
        generate_keypair(args.kid, Path(args.out))
    except FileExistsError:
        return _fail(f"{Path(args.out) / (args.kid + '.key')} exists; a signing key is never overwritten")
    except (ValueError, OSError) as e:
        return _fail(str(e))
    print(f"wrote {Path(args.out) / (args.kid + '.key')} (private, mode 0600) and {Path(args.out) / (args.kid + '.pub')}")
    return 0


def cmd_pass_issue(args) -> int:
    try:
        private = load_private_pem(Path(args.key).read_bytes())
        valid_from = parse_time(args.valid_from, "--from")
        valid_until = parse_time(args.valid_until, "--until")
        areas = [a.strip() for a in args.areas.split(",") if a.strip()]
        if not areas:
            raise ValueError("--areas: at least one area")
        text = issue_pass(private, args.kid, holder=args.holder, category=args.category, areas=areas,
                          valid_from=valid_from, valid_until=valid_until, tier=args.tier, party=args.party,
                          host=args.host, escort=args.escort, schedule=args.schedule, idh=args.idh, visit=args.visit,
                          issued_at=time.time())
    except OSError as e:
        return _fail(f"{args.key}: {e.strerror}")
    except (ValueError, TypeError) as e:
        return _fail(str(e))
    if args.png:
        from edge.passes.qr import write_png
        version = write_png(text, args.png)
        print(f"wrote {args.png} (QR version {version}, error correction M)", file=sys.stderr)
    print(text)
    return 0


def cmd_pass_verify(args) -> int:
    try:
        ring = KeyRing.load_dir(args.trust)
        at = parse_time(args.at, "--at") if args.at else int(time.time())
    except (OSError, ValueError) as e:
        return _fail(str(e))
    text = sys.stdin.read().strip() if args.text == "-" else args.text.strip()
    try:
        claims = verify_pass(text, ring)
    except PassRejected as e:
        print(e.reason)
        return 1
    if at < claims.nbf - args.skew:
        print("not_yet_valid")
        return 1
    if at >= claims.exp + args.skew:
        print("expired")
        return 1
    print(json.dumps(claims.to_json_dict(), sort_keys=True, ensure_ascii=False))
    return 0

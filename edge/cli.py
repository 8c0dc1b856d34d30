"""The `gatekeeper` command (SPEC §1)."""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from edge.config import ConfigError, check_files, load_config, resolve
from edge.errors import GatekeeperError
from edge.runtime import logsetup


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    # --log-level (or its variable) wins over the config's [log] level, for as long as the process runs
    logsetup.override = args.log_level or os.environ.get("GATEKEEPER_LOG_LEVEL")
    if not logging.getLogger().handlers:  # a program that calls main() in-process (the demo) keeps its own
        logsetup.configure()
    try:
        return args.func(args)
    except ConfigError as e:
        for p in e.problems:
            print(p, file=sys.stderr)
        return 2
    except GatekeeperError as e:
        print(f"gatekeeper: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gatekeeper", description="Access-control edge service for doors and gates.")
    p.add_argument("--version", action="version", version=f"gatekeeper {_version()}")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"],
                   help="overrides the config's [log] level (default: $GATEKEEPER_LOG_LEVEL, else the config's)")
    sub = p.add_subparsers(metavar="COMMAND")

    run = sub.add_parser("run", help="the daemon")
    run.add_argument("--config", required=True, help="site TOML file")
    run.add_argument("--check", action="store_true", help="validate the config and the files it names, and exit: "
                     "every problem, one a line (FILE:LINE: key: what is wrong), exit 0 when there is none")
    run.add_argument("--user", help="--check: the user whose access to the files counts (default: gatekeeper "
                     "when run as root and it exists, else the current user)")
    run.set_defaults(func=cmd_run)

    demo = sub.add_parser("demo", help="simulators + daemon + a short story, on this machine")
    demo.add_argument("--state", default="var/demo", help="folder for the demo's database, keys and config")
    demo.add_argument("--story-only", action="store_true", help="play the story, then stop everything")
    demo.set_defaults(func=cmd_demo)

    from edge.passes.cli import add_commands
    add_commands(sub)

    al = sub.add_parser("allowlist", help="the allow-list cache").add_subparsers(metavar="ACTION")
    imp = al.add_parser("import", help="apply a JSON Lines file, all or nothing")
    imp.add_argument("--config", required=True)
    imp.add_argument("file")
    imp.set_defaults(func=cmd_allowlist_import)

    tk = sub.add_parser("tokens", help="API tokens (printed once, stored hashed)").add_subparsers(metavar="ACTION")
    t_add = tk.add_parser("add", help="a new token for a person and a role; printed once")
    t_add.add_argument("--config", required=True)
    t_add.add_argument("--person", required=True)
    t_add.add_argument("--role", required=True, choices=["guard", "supervisor", "central"])
    t_add.set_defaults(func=cmd_tokens_add)
    t_rev = tk.add_parser("revoke", help="revoke a token by its id")
    t_rev.add_argument("--config", required=True)
    t_rev.add_argument("id")
    t_rev.set_defaults(func=cmd_tokens_revoke)
    t_list = tk.add_parser("list", help="the tokens: id, person, role, made, revoked (never the tokens)")
    t_list.add_argument("--config", required=True)
    t_list.set_defaults(func=cmd_tokens_list)

    from edge.ops import add_commands as add_operator_commands  # status, backup, events, completion
    add_operator_commands(sub)
    return p


def _version() -> str:
    """The installed distribution's version (the package's, on a gate), so it always matches what runs."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("gatekeeper")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def cmd_run(args) -> int:
    if args.check:
        return cmd_check(args)
    import signal
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a reload asked for before the daemon listens is no stop
    cfg, base = load_config(args.config)
    logsetup.configure(cfg.log.level, cfg.log.format, cfg.log.wire)
    part_problems = check_files(cfg, base, args.config, parts_fatal=False)
    for p in part_problems:  # the API or the central link will fault and retry; the doors work meanwhile
        logging.getLogger("gatekeeper").error("%s", p)
    from edge.daemon import run
    return run(cfg, base, Path(args.config))


def cmd_check(args) -> int:
    from edge.config import check
    from edge.config.access import service_user
    try:
        user = service_user(args.user)
    except KeyError:
        print(f"gatekeeper: --user {args.user}: no such user", file=sys.stderr)
        return 2
    problems = check(args.config, user)
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        return 2
    print(f"{args.config}: OK")
    return 0


def cmd_demo(args) -> int:
    # The demo lives beside the core, not in it (it starts simulators): this process becomes it.
    argv = [sys.executable, "-m", "demo", "--state", args.state, "--log-level", args.log_level or "info"]
    argv += ["--story-only"] if args.story_only else []
    sys.stdout.flush()
    os.execv(sys.executable, argv)


def _open_store(config: str, must_exist: bool = False):
    from edge.errors import GatekeeperError
    from edge.store import Store
    cfg, base = load_config(config)
    path = resolve(base, cfg.storage.path)
    if must_exist and not path.exists():
        # reading a journal must never make a new database (with a new epoch) where the gate keeps its own
        raise GatekeeperError(f"no database at {path}: has the gate run with this config?")
    return cfg, Store(path)


def cmd_allowlist_import(args) -> int:
    from edge.runtime.progress import terminal_bar
    from edge.store.allowlist import ImportError_
    from edge.store.importing import import_file
    cfg, store = _open_store(args.config)
    try:
        with terminal_bar() as bar:
            done = import_file(store, args.file, bar)
    except OSError as e:
        print(f"{args.file}: cannot read: {e.strerror}", file=sys.stderr)
        return 2
    except ImportError_ as e:
        for p in e.problems:
            print(p, file=sys.stderr)
        print(f"{args.file}: nothing imported", file=sys.stderr)
        return 1
    if done.unknown_count:
        print(f"{args.file}: {done.unknown_count} records of an unknown category or tier were stored; they are "
              "refused at every scan", file=sys.stderr)
    print(f"imported {done.records} records, {done.revokes} revocations, "
          f"{done.blocklists} blocklist entries, {done.keys} keys")
    return 0


def cmd_tokens_add(args) -> int:
    from edge.api import tokens
    _, store = _open_store(args.config)
    try:
        tid, token = tokens.add(store, args.person, args.role)
    except ValueError as e:
        print(f"gatekeeper: {e}", file=sys.stderr)
        return 2
    print(f"token {tid} for {args.person} ({args.role}); shown once, keep it safe:", file=sys.stderr)
    print(token)
    return 0


def cmd_tokens_revoke(args) -> int:
    from edge.api import tokens
    _, store = _open_store(args.config)
    if not tokens.revoke(store, args.id):
        print(f"gatekeeper: no live token {args.id}", file=sys.stderr)
        return 1
    print(f"revoked {args.id}")
    return 0


def cmd_tokens_list(args) -> int:
    from edge.api import tokens
    from edge.store.journal import rfc3339
    _, store = _open_store(args.config)
    for tid, person, role, created, revoked in tokens.listing(store):
        print(f"{tid}  {person:<20} {role:<10} made {rfc3339(created)}"
              + (f"  revoked {rfc3339(revoked)}" if revoked else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m demo` (what `gatekeeper demo` runs): the demo site on this machine."""
import argparse
import logging
import sys

from demo.story import run_demo


def main() -> int:
    ap = argparse.ArgumentParser(prog="gatekeeper demo", description="simulators + daemon + a short story, on this machine")
    ap.add_argument("--state", default="var/demo", help="folder for the demo's database, keys and config")
    ap.add_argument("--story-only", action="store_true", help="play the story, then stop everything")
    ap.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = ap.parse_args()
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_demo(args.state, story_only=args.story_only)


if __name__ == "__main__":
    sys.exit(main())

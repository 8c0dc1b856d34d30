"""Handing work from a helper thread (a reader, paho's network loop, the sync results) to the event loop."""
from __future__ import annotations

import asyncio


def post(loop: asyncio.AbstractEventLoop, fn, *args) -> None:
    """fn(*args) on the loop's thread, soon; nothing once the loop has closed (the daemon is stopping, and
    what was not done then, an unacknowledged message say, comes again after the restart)."""
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:
        pass

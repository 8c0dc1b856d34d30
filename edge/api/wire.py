"""What the gate and its API process say to each other over their socket pair.

One frame is a 4-byte length and a pickle. The gate sends `hello` (what the API needs to serve: the site,
its settings), `reply`, `appended` (the journal grew) and `stop`; the API process sends `up`, `fault` and
`call`s, each naming one of the calls below. The gate reads the API's frames with an unpickler that builds
plain data only (no class, no callable): the process that faces the network cannot make the gate run anything but these calls.
"""
from __future__ import annotations

import asyncio
import io
import pickle
import struct

HEADER = struct.Struct("!I")
MAX_FRAME = 32 * 1024 * 1024  # an answer of 1,000 events with large data is far below

# What the API may ask of the gate, by the object the call goes to (see GateServices).
CALLS: dict[str, frozenset[str]] = {
    "svc": frozenset({"health", "status", "occupancy", "held_exits", "recent_visit_ids", "metrics", "events",
                      "last_seq", "override", "request_mode", "sign_off", "release", "people", "alarms",
                      "acknowledge_alarm", "mark_safe", "overstays",
                      "card_returned",  # P27
                      "correct_occupancy",  # P35
                      "held_vehicles", "admit_vehicle", "register_vehicle"}),  # P26
    "desk": frozenset({"register", "visit", "amend"}),
    "permits": frozenset({"listing", "create", "renew", "take_back"}),
    "tokens": frozenset({"check", "live"}),
    "tours": frozenset({"tonight", "change"}),  # P21
}


class WireError(Exception):
    """A frame the other side should never have sent."""


class _PlainData(pickle.Unpickler):
    """Builtin data only (str, int, float, bool, None, lists, tuples, dicts): no class is ever looked up."""

    def find_class(self, module: str, name: str):
        raise WireError(f"{module}.{name} is not accepted from the API process")


def send(writer: asyncio.StreamWriter, message: tuple) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    if len(data) > MAX_FRAME:
        raise WireError(f"a frame of {len(data)} bytes is over {MAX_FRAME}")
    writer.write(HEADER.pack(len(data)) + data)


async def receive(reader: asyncio.StreamReader, *, plain: bool = False) -> tuple:
    """The next message; asyncio.IncompleteReadError when the other side is gone."""
    (size,) = HEADER.unpack(await reader.readexactly(HEADER.size))
    if size > MAX_FRAME:
        raise WireError(f"a frame of {size} bytes is over {MAX_FRAME}")
    data = await reader.readexactly(size)
    try:
        message = _PlainData(io.BytesIO(data)).load() if plain else pickle.loads(data)
    except WireError:
        raise
    except Exception as e:  # a truncated or foreign pickle
        raise WireError(f"an unreadable frame: {e.__class__.__name__}: {e}") from None
    if not isinstance(message, tuple) or not message or not isinstance(message[0], str):
        raise WireError("a frame that is not a message")
    return message


def portable(exc: BaseException) -> BaseException:
    """The exception as it can cross: itself when it pickles, else a RuntimeError naming it."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{exc.__class__.__name__}: {exc}")

"""What the core sees of the hardware: one interface per role, whatever the device behind it.

A credential source (a serial reader, a camera, an OSDP reader) hands over finished `Presentation`s,
already classified, and says when its link comes and goes. A door I/O module (Modbus over TCP or RTU, a
serial relay board) drives coils and, when it can be asked anything, reads inputs back.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Callable, ClassVar, Literal, Protocol

Kind = Literal["badge", "pass", "plate", "malformed", "pin"]


class LinkState(StrEnum):
    UP = "up"
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class Presentation:
    """One credential shown to a reader. `value` is `badge:<HEX>`, the pass text, `plate:<TEXT>` (P26), the 4–8
    digits of a PIN typed on the reader's keypad (P34: a secret, never logged), or why it is malformed;
    `t_ns` is time.monotonic_ns() when its last byte (the line terminator, the frame) arrived."""

    reader: str
    kind: Kind
    value: str
    t_ns: int


PresentationCallback = Callable[[Presentation], None]
StateCallback = Callable[[str, LinkState, "str | None"], None]  # reader name, state, why it is down


class CredentialSource(Protocol):
    """Calls `on_presentation` and `on_state`: on the event loop when the class says `on_loop` (it is
    given the loop), else from a thread of its own, and the caller hands them over to its loop."""

    name: str
    on_loop: ClassVar[bool]

    @classmethod
    def from_section(cls, section: Any, *, on_presentation: PresentationCallback, on_state: StateCallback,
                     loop: Any = None, scbk: bytes | None = None) -> "CredentialSource":
        """Built from a `[[readers]]` section, read by attribute."""

    def start(self) -> None: ...

    def stop(self, timeout: float = ...) -> None: ...

    def feedback(self, granted: bool) -> None:
        """Show the decision on the reader (LED, buzzer); nothing where the reader has no way to."""

    # P34: a source that can show "enter PIN" (an OSDP reader's LED) has `prompt_pin(self) -> None`; the core calls
    # it, when the source has it, as a card starts waiting for its PIN at that reader. A serial keypad has no way to.


class DoorIO(Protocol):
    """Coils out, discrete inputs in. `supervised` is False for a device that never answers (its liveness
    is unknown, and it cannot be read: the core never asks it to)."""

    name: str
    supervised: bool

    @classmethod
    def from_section(cls, section: Any) -> "DoorIO":
        """Built from an `[[io_modules]]` section, read by attribute."""

    @property
    def connected(self) -> bool: ...

    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    async def write_coil(self, address: int, value: bool, *, undo_on_timeout: bool = False) -> None: ...

    async def read_coils(self, address: int, *, count: int = 1) -> list[bool]: ...

    async def read_discrete_inputs(self, address: int, *, count: int = 1) -> list[bool]: ...

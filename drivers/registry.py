"""The drivers there are, by the config's `type`: a closed list, so a type no driver serves is an error here,
not a silent default. Each driver builds itself from its config section (`from_section`), read by attribute:
the drivers never import the config's models.

Drivers are named, not imported, here: a driver's module is loaded when a section asks for it, so a gate
without a camera never loads OpenCV and zbar (a tenth of a second, and a library it need not have), nor
libosdp without an OSDP reader.
"""
from __future__ import annotations

import asyncio
import importlib

from drivers.errors import UnknownDriver
from drivers.interfaces import CredentialSource, DoorIO, PresentationCallback, StateCallback

SOURCES: dict[str, str] = {
    "serial": "drivers.serial_reader.SerialLineReader",
    "camera": "drivers.camera.CameraReader",
    "osdp": "drivers.osdp_reader.OsdpReader",
}

DOOR_IO: dict[str, str] = {
    "modbus_tcp": "drivers.modbus_io.ModbusIO",  # one client, its transport taken from the type
    "modbus_rtu": "drivers.modbus_io.ModbusIO",
    "relay_serial": "drivers.relay_board.RelayBoardIO",
}


def _driver(table: dict[str, str], role: str, section) -> type:
    try:
        where = table[section.type]
    except KeyError:
        raise UnknownDriver(section.name, f"{role} type {section.type!r} is not one of "
                                          f"{', '.join(sorted(table))}: fix its `type` in the config") from None
    module, _, cls = where.rpartition(".")
    return getattr(importlib.import_module(module), cls)


def source_class(section) -> type[CredentialSource]:
    """The driver class of a reader section: its `on_loop` tells on which thread its callbacks come."""
    return _driver(SOURCES, "reader", section)


def door_io_class(section) -> type[DoorIO]:
    return _driver(DOOR_IO, "io module", section)


def make_source(section, *, on_presentation: PresentationCallback, on_state: StateCallback,
                loop: asyncio.AbstractEventLoop | None = None, scbk: bytes | None = None) -> CredentialSource:
    """The reader a `[[readers]]` section names. `scbk`: the OSDP secure channel key, as bytes."""
    return source_class(section).from_section(section, on_presentation=on_presentation, on_state=on_state,
                                              loop=loop, scbk=scbk)


def make_door_io(section) -> DoorIO:
    """The module an `[[io_modules]]` section names."""
    return door_io_class(section).from_section(section)

"""The driver registry: each configured type gets its driver, an unknown one a clear error."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from drivers.camera import CameraReader
from drivers.errors import DriverError, UnknownDriver
from drivers.interfaces import LinkState
from drivers.line_protocol import card, presentation
from drivers.modbus_io import ModbusIO, SerialTransport, TcpTransport
from drivers.osdp_reader import OsdpReader
from drivers.registry import DOOR_IO, SOURCES, make_door_io, make_source
from drivers.relay_board import RelayBoardIO
from drivers.serial_reader import SerialLineReader
from edge.config import IoModuleSection, ReaderSection


def reader(**kw):
    return ReaderSection(name="r1", door="main", direction="in", **kw)


def module(**kw):
    return IoModuleSection(name="io1", **kw)


def source(section, scbk=None):
    return make_source(section, on_presentation=lambda p: None, on_state=lambda *a: None, scbk=scbk)


@pytest.mark.parametrize("section, cls, on_loop", [
    (reader(type="serial", url="socket://127.0.0.1:9"), SerialLineReader, True),
    (reader(type="camera", source="0"), CameraReader, False),
    (reader(type="osdp", url="/dev/null", scbk_file="k"), OsdpReader, False),
])
def test_each_reader_type_gets_its_driver(section, cls, on_loop):
    rd = source(section, scbk=bytes(16))
    assert type(rd) is cls and rd.name == "r1" and cls.on_loop is on_loop
    rd.feedback(True)  # every source takes the decision; the ones that show nothing ignore it


def test_each_module_type_gets_its_driver_and_says_whether_it_is_supervised():
    tcp = make_door_io(module(type="modbus_tcp", host="10.0.0.5", port=1502, unit=3))
    rtu = make_door_io(module(type="modbus_rtu", device="/dev/ttyRS485", baudrate=19200, parity="E"))
    relay = make_door_io(module(type="relay_serial", device="/dev/ttyUSB1"))
    assert type(tcp) is type(rtu) is ModbusIO and type(relay) is RelayBoardIO
    assert tcp.transport == TcpTransport("10.0.0.5", 1502) and tcp.unit == 3
    assert rtu.transport == SerialTransport("/dev/ttyRS485", 19200, "E", 1)
    assert (tcp.supervised, rtu.supervised, relay.supervised) == (True, True, False)


def test_the_registry_is_closed_over_the_config_types():
    assert set(SOURCES) == set(ReaderSection.model_fields["type"].annotation.__args__)
    assert set(DOOR_IO) == set(IoModuleSection.model_fields["type"].annotation.__args__)


def test_an_unknown_type_is_named_with_the_ones_there_are():
    with pytest.raises(UnknownDriver, match=r"r9: reader type 'nfc' is not one of camera, osdp, serial"):
        source(SimpleNamespace(name="r9", type="nfc"))
    with pytest.raises(UnknownDriver, match=r"io9: io module type 'bacnet' is not one of modbus_rtu, "):
        make_door_io(SimpleNamespace(name="io9", type="bacnet"))


def test_an_osdp_reader_without_its_key_is_refused():
    with pytest.raises(DriverError, match="secure channel key"):
        source(reader(type="osdp", url="/dev/null", scbk_file="k"))


def test_a_relay_board_cannot_be_read():
    relay = make_door_io(module(type="relay_serial", device="/dev/ttyUSB1"))
    with pytest.raises(DriverError, match="cannot be read"):
        asyncio.run(relay.read_coils(1))


def test_presentations_are_classified_in_the_driver():
    assert presentation("r1", "04a1b2c3\r", 7) == presentation("r1", "04A1B2C3", 7)
    assert (presentation("r1", "04a1b2c3", 7).kind, presentation("r1", "GK1:X", 7).kind) == ("badge", "pass")
    assert card("r1", bytes.fromhex("04a1b2c3"), 7) == presentation("r1", "04A1B2C3", 7)
    assert card("r1", b"\x01\x02", 7).kind == "malformed"  # too short for a UID, as its hex on a line would be
    assert LinkState.UP == "up" and LinkState("down") is LinkState.DOWN

"""Drivers against real peers: the line protocol, a serial line over a pty and over socket://, and Modbus
TCP against the door I/O simulator in its own process."""
from __future__ import annotations

import asyncio
import threading

import pytest
from hypothesis import given, strategies as st

from drivers.errors import ModbusUnavailable
from drivers.line_protocol import MAX_LINE, LineBuffer, classify
from drivers.modbus_io import ModbusIO, TcpTransport
from drivers.serial_reader import SerialLineReader
from demo.procs import HeldPort, listen_port
from sitekit import Collector


@pytest.mark.parametrize("line, expected", [
    ("04a1b2c3", ("badge", "badge:04A1B2C3")),
    ("  04A1B2C3D4E5F60718293A  ", ("malformed", "neither a badge UID nor a pass")),  # 22 digits: too long
    ("04A1B2C3D4E5F6071829", ("badge", "badge:04A1B2C3D4E5F6071829")),  # 20 digits: the longest UID
    ("04A1B2C", ("malformed", "neither a badge UID nor a pass")),  # odd count
    ("04A1B2", ("malformed", "neither a badge UID nor a pass")),  # 6 digits: too short
    ("GK1:ABC", ("pass", "GK1:ABC")),
    ("gk1:ABC", ("malformed", "neither a badge UID nor a pass")),
    ("", ("malformed", "empty line")),
])
def test_p2_line_protocol_names_badges_passes_and_garbage(line, expected):
    assert classify(line) == expected


def test_line_buffer_joins_partial_reads_and_accepts_any_terminator():
    buf = LineBuffer()
    assert buf.feed(b"04A1") == []
    assert buf.feed(b"B2C3\r") == ["04A1B2C3"]
    assert buf.feed(b"\nGK1:X\n0102030405\r\n") == ["GK1:X", "0102030405"]


def test_line_buffer_drops_an_overlong_line_whole_and_recovers():
    buf = LineBuffer(max_line=16)
    out = buf.feed(b"A" * 40) + buf.feed(b"B" * 40 + b"\r\n04A1B2C3\n")
    assert [classify(x)[0] for x in out] == ["malformed", "badge"]
    assert classify(out[0])[1] == f"line longer than {MAX_LINE} bytes"


@given(st.binary(max_size=300))
def test_line_buffer_never_fails_on_garbage(data):
    for line in LineBuffer().feed(data):
        assert classify(line)[0] in ("badge", "pass", "malformed")


def test_serial_reader_reads_lines_from_a_pty(procs):
    sim = procs.start("pty-reader", "-m", "simulators.badge_reader", "--pty", stdin=True)
    path = sim.wait_for("badge_reader pty").split()[-1]
    c = Collector()
    r = SerialLineReader("r1", path, on_presentation=c.on_presentation, on_state=c.on_state)
    r.start()
    try:
        c.wait(lambda: "up" in c.states)
        sim.send("04a1b2c3")
        sim.send("!garbage 3")
        sim.send("GK1:ABC")
        c.wait(lambda: len(c.presented) >= 2)
        first, second = c.presented[:2]
        assert (first.reader, first.kind, first.value) == ("r1", "badge", "badge:04A1B2C3")
        assert second.kind == "malformed"  # garbage without terminator spoils the next line
    finally:
        r.stop()


def test_serial_reader_over_socket_reconnects_after_the_device_returns(procs):
    sim = procs.start("tcp-reader", "-m", "simulators.badge_reader", "--listen", "127.0.0.1:0", "--reuse-port",
                      stdin=True)
    port = listen_port(sim.wait_for("badge_reader listening"))
    procs.hold(port)  # the port stays ours while the device is gone: it comes back on the same one
    c = Collector()
    r = SerialLineReader("r1", f"socket://127.0.0.1:{port}", on_presentation=c.on_presentation,
                         on_state=c.on_state, max_backoff_s=0.5)
    r.start()
    try:
        sim.send("0102030405")
        c.wait(lambda: c.values == ["badge:0102030405"])
        sim.kill()
        c.wait(lambda: c.states[-1] == "down")
        sim = procs.start("tcp-reader", "-m", "simulators.badge_reader", "--listen", f"127.0.0.1:{port}",
                          "--reuse-port", stdin=True)
        sim.wait_for("badge_reader connected")
        sim.send("0A0B0C0D")
        c.wait(lambda: c.values[-1:] == ["badge:0A0B0C0D"])
        assert c.states.count("up") == 2
    finally:
        r.stop()


def test_a_port_without_a_descriptor_is_read_by_the_thread_and_calls_back_on_the_loop():
    """pyserial's `loop://`, like `rfc2217://`, has no descriptor for the loop to watch."""
    async def scenario():
        got: asyncio.Queue = asyncio.Queue()
        states: asyncio.Queue = asyncio.Queue()
        on_loop = []

        def on_presentation(p):
            on_loop.append(threading.current_thread() is threading.main_thread())
            got.put_nowait(p)

        r = SerialLineReader("r1", "loop://", on_presentation=on_presentation,
                             on_state=lambda name, state, err: states.put_nowait(state),
                             loop=asyncio.get_running_loop())
        r.start()
        try:
            assert await asyncio.wait_for(states.get(), 5) == "up"
            r._port.write(b"04a1b2c3\n")
            assert (await asyncio.wait_for(got.get(), 5)).value == "badge:04A1B2C3"
            assert on_loop == [True]
        finally:
            await asyncio.to_thread(r.stop)

    asyncio.run(scenario())


def test_modbus_io_drives_coils_and_reads_inputs_of_the_simulator(procs):
    sim = procs.start("door_io", "-m", "simulators.door_io", "--port", "0", "--door", "main:lock=0,contact=0",
                      "--fire-input", "100", stdin=True)
    port = int(sim.wait_for("door_io listening").rsplit(":", 1)[1])

    async def scenario():
        io = ModbusIO("io1", TcpTransport("127.0.0.1", port), timeout_s=1)
        await io.connect()
        await io.write_coil(0, True)
        assert await io.read_coils(0, count=1) == [True]
        assert await io.read_holding_registers(0, count=1) == [1]  # the simulator counts unlocks
        await io.write_coil(0, False)
        assert await io.read_coils(0, count=1) == [False]
        assert await io.read_discrete_inputs(100, count=1) == [False]
        await io.write_coil(1100, True)  # the simulator's back door to its inputs
        assert await io.read_discrete_inputs(100, count=1) == [True]
        await io.close()

    asyncio.run(scenario())


def test_modbus_io_names_a_module_that_does_not_answer():
    nobody = HeldPort()  # bound, never listening: a connection is refused, and no other process can listen there

    async def scenario():
        io = ModbusIO("io9", TcpTransport("127.0.0.1", nobody.port), timeout_s=0.3)
        with pytest.raises(ModbusUnavailable, match="io9"):
            await io.connect()
        with pytest.raises(ModbusUnavailable, match="not connected"):
            await io.write_coil(0, True)

    try:
        asyncio.run(scenario())
    finally:
        nobody.close()

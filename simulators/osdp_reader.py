"""An OSDP card reader (the peripheral device), through libosdp, secure channel on.

    python -m simulators.osdp_reader --device /dev/pts/5 --scbk 00112233445566778899aabbccddeeff

Use one end of `python -m simulators.ptybridge` here and the other at the gate. Prints
`osdp_reader ready on PATH`, `osdp_reader online` once the gate's secure channel is up, and a line per
command from the gate: `osdp_reader led COLOUR`, `osdp_reader buzzer N`. The gate shows green for a grant,
red for a refusal and amber while it waits for a PIN (P34: `osdp_reader led amber`).

Stdin: `card HEX` presents a card (prints `osdp_reader card HEX sent at=NS`); `keys KEYS` types on the keypad:
digits, `*` (clear) and `#` (enter), sent in one KeyPress event in OSDP encoding (`*` = 0x7F, `#` = 0x0D), e.g.
`keys 12` then `keys 34#` for a PIN split over two polls. It prints `osdp_reader keys sent N at=NS`, then
`osdp_reader keys delivered` once the gate has taken them (a test waits for that before typing on, so the parts
are sure to be separate polls); the keys themselves are never printed. `quit` ends it.
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
import time

import serial
from osdp import (Capability, CardFormat, Channel, CommandLEDColor, Event, LogLevel, PDCapabilities, PDInfo,
                  PeripheralDevice)

COLOURS = {v: k.lower() for k, v in vars(CommandLEDColor).items() if not k.startswith("_")}
KEYPAD = {"*": 0x7F, "#": 0x0D, **{d: ord(d) for d in "0123456789"}}  # OSDP keypad encoding


class SerialChannel(Channel):
    def __init__(self, port):
        super().__init__()
        self.port = port

    def read(self, max_bytes: int) -> bytes:
        try:
            return self.port.read(max_bytes)
        except (serial.SerialException, OSError):
            return b""

    def write(self, buf: bytes) -> int:
        try:
            return self.port.write(buf)
        except (serial.SerialException, OSError):
            return 0

    def flush(self) -> None:
        pass


def on_command(cmd: dict):
    if "on_color" in cmd:
        print(f"osdp_reader led {COLOURS.get(cmd['on_color'], cmd['on_color'])}", flush=True)
    elif "rep_count" in cmd:
        print(f"osdp_reader buzzer {cmd['rep_count']}", flush=True)
    else:
        print(f"osdp_reader command {cmd.get('command')}", flush=True)
    return 0, None


def on_event_done(event: dict, status: int) -> None:
    if event.get("event") == Event.KeyPress:
        print("osdp_reader keys delivered" if status == 0 else f"osdp_reader keys failed {status}", flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m simulators.osdp_reader", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", required=True)
    p.add_argument("--address", type=int, default=101)
    p.add_argument("--scbk", required=True, help="secure channel base key, 32 hex characters")
    p.add_argument("--baudrate", type=int, default=115200)
    args = p.parse_args(argv)
    port = serial.Serial(args.device, args.baudrate, timeout=0)
    caps = PDCapabilities([(Capability.LEDControl, 1, 1), (Capability.AudibleControl, 1, 1),
                           (Capability.CardDataFormat, 1, 1), (Capability.CommunicationSecurity, 1, 1)])
    pd = PeripheralDevice(PDInfo(args.address, SerialChannel(port), scbk=bytes.fromhex(args.scbk)), caps,
                          log_level=LogLevel.Error, command_handler=on_command, event_completion_handler=on_event_done)
    pd.start()
    print(f"osdp_reader ready on {args.device}", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: done.set())

    def watch():
        online = False
        while not done.is_set():
            now = pd.is_sc_active()
            if now and not online:
                print("osdp_reader online", flush=True)
            online = now
            time.sleep(0.1)

    def commands():
        for raw in sys.stdin:
            words = raw.split()
            if words[:1] == ["card"] and len(words) == 2:
                data = bytes.fromhex(words[1])
                t = time.monotonic_ns()
                pd.submit_event({"event": Event.CardRead, "reader_no": 0, "format": CardFormat.Unspecified,
                                 "direction": 0, "length": len(data) * 8, "data": data})
                print(f"osdp_reader card {words[1].upper()} sent at={t}", flush=True)
            elif words[:1] == ["keys"] and len(words) == 2 and all(k in KEYPAD for k in words[1]):
                t = time.monotonic_ns()
                # said before it is submitted: `delivered` (from libosdp's thread) always comes after it
                print(f"osdp_reader keys sent {len(words[1])} at={t}", flush=True)
                pd.submit_event({"event": Event.KeyPress, "reader_no": 0,
                                 "data": bytes(KEYPAD[k] for k in words[1])})
            elif words == ["quit"]:
                done.set()
            elif words:  # the first word only: a mistyped `keys` line stays unprinted
                print(f"osdp_reader unknown command {words[0]!r} (card HEX, keys KEYS, quit)", flush=True)

    threading.Thread(target=watch, daemon=True).start()
    threading.Thread(target=commands, daemon=True).start()
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    pd.stop()
    port.close()


if __name__ == "__main__":
    main()

"""Hardware paths end to end (issue: inputs and outputs).

    .venv/bin/python bench/hardware.py            # 300 scans, 200 frames per size
    .venv/bin/python bench/hardware.py --scans 50 --frames 20

Prints one table: QR decode time per frame (640x480 and 1280x720, clean and noisy), camera frame to lock
coil (from the frame that first shows the pass leaving the camera simulator), and serial badge line
to lock coil latency over Modbus TCP and RTU, from the line's terminator to the coil write arriving at the I/O
module, journal commit included. The daemon, the reader and the I/O module are separate processes;
times come from CLOCK_MONOTONIC, which all processes on the machine share.
"""
from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import ROOT, add_staff_badge, pct, print_table, site_toml  # noqa: E402  (puts the project on sys.path)

from demo.procs import HeldPort, listen_port  # noqa: E402


def start_io(io_args: list[str]) -> tuple[subprocess.Popen, int]:
    """The door I/O simulator (its stdout carries the unlock times), and the port it listens on (over TCP it
    binds port 0 and says which port it got)."""
    io = subprocess.Popen([sys.executable, "-m", "simulators.door_io", *io_args, "--door", "main:lock=0"],
                          cwd=ROOT, stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True)
    line = io.stdout.readline()
    if "listening" not in line:
        io.kill()
        io.wait()
        raise SystemExit(f"door_io did not start: {line!r}")
    return io, (listen_port(line) if "--rtu" not in io_args else 0)


def start_daemon(d: Path) -> subprocess.Popen:
    """`gatekeeper run`, once ready: the I/O module's first attempt made (the locks driven to locked) and each
    reader opened (its line emptied, so what is sent from now on arrives)."""
    daemon = subprocess.Popen([sys.executable, "-m", "edge.cli", "--log-level", "error", "run", "--config",
                               str(d / "site.toml")], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True)
    for line in daemon.stdout:
        if line.startswith("gatekeeper ready"):
            threading.Thread(target=lambda: [None for _ in daemon.stdout], daemon=True).start()  # keep the pipe read
            return daemon
    raise SystemExit(f"the daemon exited before it was ready ({daemon.wait()})")


def unlock_at(io: subprocess.Popen) -> int:
    while "unlocked" not in (line := io.stdout.readline()):
        pass
    return int(line.rsplit("at=", 1)[1])


RTU = """
[[io_modules]]
name = "io1"
type = "modbus_rtu"
device = "{device}"
baudrate = 9600
"""


def serial_to_coil(scans: int, rtu: bool = False) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="gk-bench-") as tmp:
        d = Path(tmp)
        # the bench is the serial reader: it owns the socket, so it knows when the terminator left
        srv = socket.create_server(("127.0.0.1", 0))
        bridge = None
        io_args = ["--port", "0"]
        if rtu:  # the module on a 9600 baud line: two bridged ptys that pace bytes like the wire
            bridge = subprocess.Popen([sys.executable, "-m", "simulators.ptybridge", "--baudrate", "9600"], cwd=ROOT,
                                      stdout=subprocess.PIPE, text=True)
            module_end, gate_end = bridge.stdout.readline().split()[1:3]
            io_args = ["--rtu", module_end]
        io, io_port = start_io(io_args)
        text = site_toml(io_port, srv.getsockname()[1], pulse_s=0.05)
        if rtu:
            text = text.replace(f'[[io_modules]]\nname = "io1"\nport = {io_port}\n', RTU.format(device=gate_end))
        (d / "site.toml").write_text(text)
        add_staff_badge(d / "gatekeeper.db")
        daemon = None
        lat = []
        try:
            daemon = start_daemon(d)  # the line is open and the locks locked
            conn, _ = srv.accept()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for _ in range(scans):
                conn.sendall(b"04A1B2C3")
                t0 = time.monotonic_ns()
                conn.sendall(b"\r\n")
                lat.append((unlock_at(io) - t0) / 1e6)
                while "locked" not in (line := io.stdout.readline()) or "unlocked" in line:
                    pass  # the 50 ms pulse ends: the next scan starts from a locked door
        finally:
            for p in (daemon, io):
                if p:
                    p.terminate()
                    p.wait(10)
            srv.close()
            if bridge:
                bridge.terminate()
                bridge.wait(10)
        return lat


def camera_to_coil(shows: int) -> list[float]:
    """A pass appears in the camera simulator's stream; the I/O module sees the unlock."""
    from edge.passes import issue_pass
    from edge.passes.keys import generate_keypair
    with tempfile.TemporaryDirectory(prefix="gk-bench-") as tmp:
        d = Path(tmp)
        key = generate_keypair("bench-1", d)
        cam = subprocess.Popen([sys.executable, "-m", "simulators.camera", "--listen", "127.0.0.1:0",
                                "--fps", "30", "--hold", "0.4"], cwd=ROOT, stdout=subprocess.PIPE,
                               stdin=subprocess.PIPE, text=True)
        url = cam.stdout.readline().split()[-1]
        extra = (f'[[readers]]\nname = "cam"\ntype = "camera"\nsource = "{url}"\ndoor = "main"\ndirection = "in"\n'
                 '[[keys]]\nkid = "bench-1"\npublic_key_file = "bench-1.pub"\n')
        nobody = HeldPort()  # the site's serial reader is not there: refused, never another program's port
        io, io_port = start_io(["--port", "0"])
        daemon = None
        (d / "site.toml").write_text(site_toml(io_port, nobody.port, pulse_s=0.05, extra=extra))
        lat = []
        try:
            daemon = start_daemon(d)  # the stream is open and the locks locked
            now = time.time()
            for i in range(shows):
                text = issue_pass(key, "bench-1", holder=f"h-{i}", category="staff", areas=["site"],
                                  valid_from=now - 60, valid_until=now + 3600)
                cam.stdin.write(text + "\n")
                cam.stdin.flush()
                while "showing" not in (line := cam.stdout.readline()):
                    pass
                shown = int(line.rsplit("at=", 1)[1])
                lat.append((unlock_at(io) - shown) / 1e6)
                time.sleep(0.5)  # the next pass comes after this one left the picture
        finally:
            for p in (daemon, io, cam):
                if p:
                    p.terminate()
                    p.wait(10)
            nobody.close()
        return lat


def osdp_to_coil(cards: int) -> list[float]:
    """A card at an OSDP reader (libosdp peripheral simulator, secure channel on) to the unlock."""
    key = "00112233445566778899aabbccddeeff"
    with tempfile.TemporaryDirectory(prefix="gk-bench-") as tmp:
        d = Path(tmp)
        bridge = subprocess.Popen([sys.executable, "-m", "simulators.ptybridge"], cwd=ROOT, stdout=subprocess.PIPE,
                                  text=True)
        pd_end, cp_end = bridge.stdout.readline().split()[1:3]
        sim = subprocess.Popen([sys.executable, "-m", "simulators.osdp_reader", "--device", pd_end, "--scbk", key],
                               cwd=ROOT, stdout=subprocess.PIPE, stdin=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True)
        (d / "osdp.scbk").write_text(key)
        extra = (f'[[readers]]\nname = "osdp"\ntype = "osdp"\nurl = "{cp_end}"\nscbk_file = "osdp.scbk"\n'
                 'door = "main"\ndirection = "in"\n')
        nobody = HeldPort()  # the site's serial reader is not there: refused, never another program's port
        io, io_port = start_io(["--port", "0"])
        daemon = None
        (d / "site.toml").write_text(site_toml(io_port, nobody.port, pulse_s=0.05, extra=extra))
        add_staff_badge(d / "gatekeeper.db")
        lat = []
        try:
            daemon = start_daemon(d)
            while "online" not in sim.stdout.readline():
                pass
            for _ in range(cards):
                sim.stdin.write("card 04A1B2C3\n")
                sim.stdin.flush()
                while "sent at=" not in (line := sim.stdout.readline()):
                    pass
                sent = int(line.rsplit("at=", 1)[1])
                lat.append((unlock_at(io) - sent) / 1e6)
                time.sleep(0.3)
        finally:
            for p in (daemon, io, sim, bridge):
                if p:
                    p.terminate()
                    p.wait(10)
            nobody.close()
        return lat


def qr_decode(frames: int) -> list[tuple[str, str, float, float]]:
    try:
        from drivers.camera import decode_frame
        from simulators.camera import render
    except ImportError:
        return []
    rows = []
    text = "GK1:" + "6BFOXN*TS0BI$ZDYSHV3" * 20
    for size in ((640, 480), (1280, 720)):
        for label, effects in (("clean", {}), ("noisy", {"noise": 12.0, "blur": 3})):
            frame = render(text, size=size, **effects)
            times = []
            for _ in range(frames):
                t0 = time.perf_counter()
                assert decode_frame(frame) == [text]
                times.append((time.perf_counter() - t0) * 1000)
            rows.append((f"{size[0]}x{size[1]}", label, pct(times, .5), pct(times, .99)))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scans", type=int, default=300)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--shows", type=int, default=50, help="passes shown to the camera")
    ap.add_argument("--cards", type=int, default=50, help="cards presented at the OSDP reader")
    args = ap.parse_args()
    rows = []
    for size, label, p50, p99 in qr_decode(args.frames):
        rows.append((f"QR decode {size}", label, f"{p50:.1f} / {p99:.1f} ms",
                     "p99 ≤ 20 ms" if size == "640x480" else "-"))
    lat = camera_to_coil(args.shows)
    rows.append(("camera frame to coil, Modbus TCP", f"p50 / p99 of {len(lat)}",
                 f"{pct(lat, .5):.1f} / {pct(lat, .99):.1f} ms", "p99 ≤ 50 ms"))
    lat = osdp_to_coil(args.cards)
    rows.append(("OSDP card to decision and coil", f"p50 / p99 of {len(lat)}",
                 f"{pct(lat, .5):.1f} / {pct(lat, .99):.1f} ms", "-"))
    lat = serial_to_coil(args.scans)
    rows.append(("serial badge to coil, Modbus TCP", f"p50 / p99 of {len(lat)}",
                 f"{pct(lat, .5):.2f} / {pct(lat, .99):.2f} ms", "p99 ≤ 10 ms"))
    lat = serial_to_coil(args.scans, rtu=True)
    rows.append(("serial badge to coil, RTU 9600 baud", f"p50 / p99 of {len(lat)}",
                 f"{pct(lat, .5):.2f} / {pct(lat, .99):.2f} ms", "-"))
    print_table(rows)

if __name__ == "__main__":
    main()

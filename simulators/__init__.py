"""Hardware simulators, each its own process (`python -m simulators.<name> --help`).

They speak the real protocols (Modbus TCP through pymodbus, serial lines through sockets or ptys), so the
daemon runs against them exactly as against hardware. They import nothing from `edge`.
"""

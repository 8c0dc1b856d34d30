"""Failures a driver reports to the core: the device is named, the cause is one line."""
from __future__ import annotations


class DriverError(Exception):
    """A device could not be reached or answered wrongly; the caller retries with backoff."""

    def __init__(self, device: str, message: str):
        super().__init__(f"{device}: {message}")
        self.device = device
        self.message = message


class ModbusUnavailable(DriverError):
    """The Modbus peer did not answer, refused the request or the connection dropped."""

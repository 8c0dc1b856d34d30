"""Failures a driver reports to the core: the device is named, the cause is one line."""
from __future__ import annotations


class DriverError(Exception):
    """The base of the drivers' errors. As itself: a device could not be reached or answered wrongly, and
    the caller retries with backoff."""

    def __init__(self, device: str, message: str):
        super().__init__(f"{device}: {message}")
        self.device = device
        self.message = message


class ModbusUnavailable(DriverError):
    """The Modbus peer did not answer, refused the request or the connection dropped."""


class UnknownDriver(DriverError):
    """The config names a device type no driver serves."""

"""The edge package's own exceptions: a base, and the front desk's refusals."""


class GatekeeperError(Exception):
    """Base of every error the edge raises on purpose; the message says what to do."""


class Refused(GatekeeperError):
    """A request the desk will not carry out: HTTP status, the field at fault, and why."""

    def __init__(self, status: int, field: str | None, message: str, reason: str | None = None):
        super().__init__(message)
        self.status = status
        self.field = field
        self.message = message
        self.reason = reason

    def __reduce__(self):  # crosses from the gate to the API process whole
        return self.__class__, (self.status, self.field, self.message, self.reason)

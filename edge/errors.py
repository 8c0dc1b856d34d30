"""One base exception for the edge package."""


class GatekeeperError(Exception):
    """Base of every error the edge raises on purpose; the message says what to do."""

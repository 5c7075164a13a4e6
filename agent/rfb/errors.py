"""Errors of the sans-IO RFB server and client (the h11 split).

``LocalProtocolError`` means our own code misused the connection (called a
method in the wrong state); ``RemoteProtocolError`` means the peer sent bytes
that break RFC 6143 or one of our bounds. After either, the connection object
is in its ERROR state and refuses further input and output: the owner closes
the transport, after flushing ``data_to_send()`` (which may hold a final
SecurityResult with a reason the peer can show).
"""
from __future__ import annotations


class ProtocolError(Exception):
    """The RFB conversation cannot go on; ``reason`` is a one-line text safe to log.

    Reasons never include passwords, challenges or responses.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class LocalProtocolError(ProtocolError):
    """We called the connection in a state where that is not allowed: a bug in our caller."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something malformed, out of bounds or out of order: close the connection."""

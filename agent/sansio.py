"""What every sans-IO protocol here shares: the NEED_DATA answer, the receive buffer, the error family.

RFB (rfb/), the record layer and handshake (secure/), the control socket
(control/) and the relay hello (relay/) are each a state machine fed bytes
that returns events and bytes to send (the h11 style). They answer "not
enough bytes yet" with the same ``NEED_DATA`` and fail with the same family:

- ``LocalProtocolError``: our own code misused the connection (called a method
  in the wrong state), a bug in our caller;
- ``RemoteProtocolError``: the peer sent bytes that break the protocol or one
  of our bounds. The fuzzing invariant follows: a parser either produces
  events or raises RemoteProtocolError, nothing else.

After either, the connection object refuses further input and output: the
owner closes the transport. ``reason`` is one line safe to log and to show;
it never carries a password, key, challenge or response.
"""
from __future__ import annotations

from agent.errors import RejnetError


class NeedData:
    """Sentinel type: ``next_event()`` needs more bytes."""

    _instance: "NeedData | None" = None

    def __new__(cls) -> "NeedData":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = NeedData()


class ProtocolError(RejnetError):
    """The conversation cannot go on; ``reason`` is a one-line text safe to log."""

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
        self.reason = reason


class LocalProtocolError(ProtocolError):
    """We called the connection in a state where that is not allowed: a bug in our caller."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something malformed, out of bounds or out of order: close the connection."""


class ReceiveBuffer:
    """A growable byte buffer consumed from the front without quadratic copies."""

    def __init__(self) -> None:
        self._data = bytearray()
        self._start = 0

    def __len__(self) -> int:
        return len(self._data) - self._start

    def append(self, data: bytes) -> None:
        try:
            if self._start and self._start * 2 >= len(self._data):
                del self._data[:self._start]
                self._start = 0
            self._data += data
        except BufferError:
            # A view of the old buffer is still alive somewhere: start a new one.
            self._data = self._data[self._start:] + data
            self._start = 0

    def view(self) -> memoryview:
        return memoryview(self._data)[self._start:]

    def consume(self, n: int) -> None:
        self._start += n
        if self._start == len(self._data):
            try:
                self._data.clear()
                self._start = 0
            except BufferError:
                pass

"""End-to-end secure channel between agent and viewer (DESIGN §4.2).

SPAKE2 on the session password plus an ephemeral X25519 exchange, HKDF-SHA256
over both secrets salted with the transcript hash, key confirmation viewer
first, then AES-256-GCM records with implicit nonces. ``handshake`` and
``records`` are sans-IO state machines; ``stream`` runs them over asyncio
streams. AES-GCM nonces are built in ``_aead`` and nowhere else.
"""
from __future__ import annotations

from agent.secure.errors import (
    AuthFailedError,
    ChannelClosedError,
    ChannelError,
    CounterExhaustedError,
    HandshakeError,
    ProtocolViolationError,
    RecordAuthenticationError,
    RecordTooLargeError,
    TruncatedError,
    WrongPasswordError,
)
from agent.secure.handshake import (
    AgentHandshake,
    AuthFailed,
    Established,
    ViewerHandshake,
)
from agent.secure.records import NEED_DATA, Ack, Channel, Closed, Data, Ping, Pong, Role
from agent.secure.stream import (
    ChannelReader,
    ChannelWriter,
    SecureStream,
    accept_agent,
    connect_viewer,
)

__all__ = [
    "NEED_DATA",
    "Ack",
    "AgentHandshake",
    "AuthFailed",
    "AuthFailedError",
    "Channel",
    "ChannelClosedError",
    "ChannelError",
    "ChannelReader",
    "ChannelWriter",
    "Closed",
    "CounterExhaustedError",
    "Data",
    "Established",
    "HandshakeError",
    "Ping",
    "Pong",
    "ProtocolViolationError",
    "RecordAuthenticationError",
    "RecordTooLargeError",
    "Role",
    "SecureStream",
    "TruncatedError",
    "ViewerHandshake",
    "WrongPasswordError",
    "accept_agent",
    "connect_viewer",
]

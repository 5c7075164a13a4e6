"""Failures of the end-to-end secure channel (DESIGN §4.2).

Every failure closes the connection: there is no retry inside the channel and
no weaker mode to fall back to. Messages never contain a password, a key or
any bytes derived from them.
"""
from __future__ import annotations

from agent.errors import AuthenticationError, RejnetError
from agent.sansio import RemoteProtocolError


class ChannelError(RejnetError):
    """The secure channel failed and was closed; reconnect to start a fresh one."""


class HandshakeError(ChannelError, RemoteProtocolError):
    """The peer sent a handshake message we cannot use (malformed, wrong version, out of order).

    Nothing about the password can be learnt from this: the connection is
    simply broken or speaks another protocol. Check both ends run the same
    rejnet version.
    """


class RecordAuthenticationError(ChannelError, RemoteProtocolError):
    """A record failed its integrity check: it was altered, replayed, reordered,
    dropped or reflected somewhere between the two ends. The channel is closed;
    an intermittent cause is a faulty network path, a persistent one is an attack."""


class RecordTooLargeError(ChannelError, RemoteProtocolError):
    """A record header announced more than the protocol allows; refused before buffering."""


class TruncatedError(ChannelError):
    """The connection ended without the peer's authenticated CLOSE: someone cut it,
    or the peer crashed. Data received before the cut is genuine but may be incomplete."""


class PeerSilentError(TruncatedError):
    """Nothing at all arrived for longer than the peer's keepalives allow: the path died
    silently (a NAT dropped it, a link went away without a reset). Treated as a cut."""


class ProtocolViolationError(ChannelError, RemoteProtocolError):
    """An authentic record carried content the protocol forbids (unknown type, bad
    payload size, impossible acknowledgement). The peer is buggy; the channel is closed."""


class ChannelClosedError(ChannelError):
    """This end already closed or failed the channel, so it cannot send any more.
    Open a new connection to continue."""


class CounterExhaustedError(ChannelError):
    """The channel sent so many records that continuing would risk nonce reuse.

    It is closed on purpose long before a counter could wrap; reconnect for
    fresh keys (in practice this takes petabytes of traffic).
    """


class WrongPasswordError(AuthenticationError):
    """The agent did not accept the session password, or could not prove it knows it.

    Ask the customer to read the session ID and password again; the agent
    issues a new password after three failed attempts.
    """


class AuthFailedError(AuthenticationError):
    """A viewer tried a wrong session password (agent side).

    The session layer counts these and rotates the password after three, which
    keeps online guessing bounded.
    """

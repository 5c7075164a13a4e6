"""Sans-IO resume handshake: a cut connection continues the same session channel, without the password.

Every established channel holds a *resumption secret* R, derived by HKDF from
the same secrets as its keys under its own label (keyschedule.LABEL_RESUME);
it never leaves memory. When the TCP path dies without an authenticated
CLOSE, the viewer opens a new connection (through the relay, same session ID)
and sends, in the handshake framing of agent.secure.handshake::

    RESUME   resume_id(R) (16) | fresh X25519 public key (32) | inner bytes it has received (8)
    RESUMED  fresh X25519 public key (32) | inner bytes the agent has received (8) | MAC_agent (32)
    CONFIRM  MAC_viewer (32)                       (FAILED if the agent does not know the id)

Both derive new channel keys with derive_session_keys(R, X25519 shared,
transcript("resume", RESUME, RESUMED minus its MAC)): fresh ephemeral keys,
so the new connection's keys are independent of the old ones' traffic, and
the new channel carries a new R (the old one is replaced on success). The
agent proves first here, but nothing is accepted until the viewer's MAC
verifies (constant time). Someone who only knows the password (or recorded
the traffic) has neither R nor anything to check a guess of R against.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Union

import nacl.bindings
import nacl.exceptions
import nacl.public

from agent.sansio import NEED_DATA, NeedData
from agent.secure.errors import ChannelError, HandshakeError, WrongPasswordError
from agent.secure.handshake import _BODY_SIZE, _PREFIX, MAX_MESSAGE, VERSION, Kind, encode_message
from agent.secure.keyschedule import (
    confirmation_mac,
    derive_session_keys,
    mac_matches,
    resume_id,
    transcript_hash,
)
from agent.secure.records import Channel, Role

_RESUME_LABEL = b"resume"
_MAX_COUNT = (1 << 63) - 1


class ResumeRefusedError(WrongPasswordError):
    """The agent does not know this resumption secret (or could not prove it does): the session is gone."""


@dataclass(frozen=True)
class Resumed:
    """The resumed channel, and how many inner bytes the peer had received (replay from there)."""

    channel: Channel
    peer_received: int


@dataclass(frozen=True)
class Refused:
    """Agent side: not a resume of this session (unknown id, or a bad confirmation)."""


ResumeEvent = Union[Resumed, Refused, NeedData]


def _shared(private: nacl.public.PrivateKey, public: bytes) -> bytes:
    try:
        shared = nacl.bindings.crypto_scalarmult(bytes(private), public)
    except nacl.exceptions.RuntimeError:
        raise HandshakeError("the peer's X25519 key is invalid") from None
    if shared == bytes(len(shared)):
        raise HandshakeError("the peer's X25519 key is invalid")
    return shared


class _Resume:
    role: Role

    def __init__(self, session_id: str, secret: bytes, *, entropy: Callable[[int], bytes] = os.urandom,
                 compression: bool = False) -> None:
        # compression: what the session's first handshake agreed (ZDATA or not); a resume keeps it.
        self._compression = bool(compression)
        self._session_id = session_id
        self._secret = secret
        self._x25519 = nacl.public.PrivateKey(entropy(32))
        self._buf = bytearray()
        self._out = bytearray()
        self._eof = False
        self._outcome: Resumed | Refused | None = None
        self._error: ChannelError | None = None
        self._keys = None
        self._peer_received = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def receive_data(self, data: bytes) -> None:
        if not data:
            self._eof = True
        elif self._outcome is None and self._error is None:
            self._buf += data

    def _message(self) -> tuple[Kind, bytes] | None:
        buf = self._buf
        if len(buf) < _PREFIX.size:
            if self._eof:
                raise self._broken("the connection closed during the resume handshake")
            return None
        length, version, kind_value = _PREFIX.unpack_from(buf)
        if version != VERSION or length > MAX_MESSAGE - 2:
            raise self._broken("the peer sent a malformed resume message")
        try:
            kind = Kind(kind_value)
        except ValueError:
            raise self._broken("the peer sent an unknown resume message") from None
        if length != 2 + _BODY_SIZE[kind]:
            raise self._broken(f"the peer sent a {kind.name} message of the wrong size")
        if len(buf) < 2 + length:
            if self._eof:
                raise self._broken("the connection closed during the resume handshake")
            return None
        body = bytes(buf[_PREFIX.size:2 + length])
        del buf[:2 + length]
        return kind, body

    def _broken(self, reason: str) -> HandshakeError:
        self._error = HandshakeError(f"resume failed: {reason}")
        self._secret = b""
        return self._error

    def next_event(self) -> ResumeEvent:
        if self._error is not None:
            raise self._error
        while self._outcome is None:
            message = self._message()
            if message is None:
                return NEED_DATA
            self._outcome = self._handle(*message)
        return self._outcome

    def _handle(self, kind: Kind, body: bytes) -> Resumed | Refused | None:
        raise NotImplementedError

    def _resumed(self, keys: Any, peer_received: int) -> Resumed:
        """The outcome, with the channel fed what arrived behind the last handshake message: the peer's
        first records can share a read with it, and the connection's reader starts after them."""
        self._secret = b""
        channel = Channel(self.role, keys, compression=self._compression)
        if self._buf:
            channel.receive_data(bytes(self._buf))
        if self._eof:
            channel.receive_data(b"")
        self._buf = bytearray()
        return Resumed(channel, peer_received)

    def _transcript(self, resume: bytes, resumed_head: bytes) -> bytes:
        return transcript_hash(self._session_id, (_RESUME_LABEL, resume, resumed_head))


class ViewerResume(_Resume):
    """Viewer side: sends RESUME at once; ``next_event()`` gives Resumed or raises ResumeRefusedError."""

    role = Role.VIEWER

    def __init__(self, session_id: str, secret: bytes, received: int, **kw: Any) -> None:
        super().__init__(session_id, secret, **kw)
        body = resume_id(secret) + bytes(self._x25519.public_key) + min(received, _MAX_COUNT).to_bytes(8, "big")
        self._resume = encode_message(Kind.RESUME, body)
        self._out += self._resume

    def _handle(self, kind: Kind, body: bytes) -> Resumed | None:
        if kind is Kind.FAILED:
            self._error = ResumeRefusedError("the customer's agent no longer knows this session")
            raise self._error
        if kind is not Kind.RESUMED:
            raise self._broken(f"expected RESUMED, got {kind.name}")
        peer_public, count, mac = body[:32], body[32:40], body[40:]
        transcript = self._transcript(self._resume, body[:40])
        keys = derive_session_keys(self._secret, _shared(self._x25519, peer_public), transcript)
        if not mac_matches(confirmation_mac(keys.confirm_agent, transcript), mac):
            self._error = ResumeRefusedError("the agent could not prove it holds this session's resumption secret")
            raise self._error
        self._out += encode_message(Kind.CONFIRM, confirmation_mac(keys.confirm_viewer, transcript))
        return self._resumed(keys, int.from_bytes(count, "big"))


class AgentResume(_Resume):
    """Agent side: answers one RESUME. ``received()`` is asked (once, after the id matched) for the inner
    bytes the agent has received; the caller stops its old connection's reader there."""

    role = Role.AGENT

    def __init__(self, session_id: str, secret: bytes, received: Callable[[], int],
                 **kw: Any) -> None:
        super().__init__(session_id, secret, **kw)
        self._received = received
        self._resume: bytes | None = None
        self._head = b""
        self._viewer_received = 0

    def _handle(self, kind: Kind, body: bytes) -> Resumed | Refused | None:
        if self._resume is None:
            if kind is not Kind.RESUME:
                raise self._broken(f"expected RESUME, got {kind.name}")
            if not mac_matches(resume_id(self._secret), body[:16]):
                self._out += encode_message(Kind.FAILED, b"")
                return Refused()
            self._resume = encode_message(Kind.RESUME, body)
            peer_public = body[16:48]
            self._viewer_received = int.from_bytes(body[48:56], "big")
            self._head = bytes(self._x25519.public_key) + min(self._received(), _MAX_COUNT).to_bytes(8, "big")
            transcript = self._transcript(self._resume, self._head)
            self._keys = derive_session_keys(self._secret, _shared(self._x25519, peer_public), transcript)
            self._transcript_hash = transcript
            self._out += encode_message(Kind.RESUMED,
                                        self._head + confirmation_mac(self._keys.confirm_agent, transcript))
            return None
        if kind is not Kind.CONFIRM:
            raise self._broken(f"expected CONFIRM, got {kind.name}")
        keys = self._keys
        if not mac_matches(confirmation_mac(keys.confirm_viewer, self._transcript_hash), body):
            return Refused()
        return self._resumed(keys, self._viewer_received)


__all__ = ["AgentResume", "Refused", "ResumeRefusedError", "Resumed", "ViewerResume"]

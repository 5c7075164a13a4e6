"""Sans-IO PAKE handshake for both roles (DESIGN §4.2, points 1, 2 and 4).

This file owns the handshake state machine. Both ends send a HELLO at once
(version, SPAKE2 message, ephemeral X25519 public key); each then derives the
keys from SPAKE2 key || X25519 shared secret, salted with the transcript hash
(label, session ID, viewer HELLO, agent HELLO). The viewer confirms first; the
agent checks that MAC in constant time before it sends anything derived from
the keys, then confirms in turn.

Why a wrong password leaks nothing offline: the HELLOs carry only SPAKE2
messages (blinded by the password) and random X25519 keys, and the first
key-dependent byte, the viewer's MAC, can only be checked by someone who ran
SPAKE2 with a password guess of their own, which is one online guess per
attempt, counted by the agent.

Wire: every message is ``len:u16 | version:u8 | kind:u8 | body``, at most
MAX_MESSAGE bytes, with a fixed body size per kind::

    HELLO    spake2 message (33 bytes, side byte included) | X25519 public key (32) [| options:u8]
             options (optional, in the transcript like the rest): bit 0 = this end offers ZDATA
             compression; both ends must offer it or neither may send a ZDATA record. A HELLO
             without the byte offers nothing (as from a peer that predates the option).
    CONFIRM  HMAC-SHA256 over the transcript hash (32)
    FAILED   (empty) the agent rejected the viewer's confirmation

States are named for what the machine knows: WANT_HELLO (nothing from the
peer yet), WANT_CONFIRM (keys derived, not yet proven), ESTABLISHED, and the
absorbing SCARED (proof failed) and BROKEN (malformed input).
"""
from __future__ import annotations

import enum
import os
import struct
import time
from dataclasses import dataclass
from typing import Callable, Union

import nacl.bindings
import nacl.exceptions
import nacl.public
from spake2 import SPAKE2_A, SPAKE2_B
from spake2.ed25519_basic import NotOnCurve
from spake2.spake2 import SPAKEError

from agent.sansio import NEED_DATA, NeedData
from agent.secure.errors import ChannelError, HandshakeError, WrongPasswordError
from agent.secure.keyschedule import (
    SessionKeys,
    canonical_session_id,
    confirmation_mac,
    derive_session_keys,
    mac_matches,
    spake2_identities,
    transcript_hash,
)
from agent.secure.records import Channel, Role

VERSION = 1
_PREFIX = struct.Struct(">HBB")  # length of version+kind+body, version, kind
_SPAKE2_MESSAGE_SIZE = 33
_X25519_SIZE = 32
_MAC_SIZE = 32
MAX_MESSAGE = 128
OPTION_COMPRESS = 0x01  # HELLO option bit: ZDATA records are welcome (and may be sent) on this channel
_OPTIONS_SIZE = 1       # the optional HELLO options byte


class Kind(enum.IntEnum):
    HELLO = 1
    CONFIRM = 2
    FAILED = 3
    RESUME = 4   # agent.secure.resume: resume id (16) | X25519 public key (32) | inner bytes received (8)
    RESUMED = 5  # agent.secure.resume: X25519 public key (32) | inner bytes received (8) | agent's MAC (32)


_RESUME_ID_SIZE = 16
_BODY_SIZE = {Kind.HELLO: _SPAKE2_MESSAGE_SIZE + _X25519_SIZE, Kind.CONFIRM: _MAC_SIZE, Kind.FAILED: 0,
              Kind.RESUME: _RESUME_ID_SIZE + _X25519_SIZE + 8, Kind.RESUMED: _X25519_SIZE + 8 + _MAC_SIZE}


def peek_kind(data: bytes) -> Kind | None:
    """The kind of the first handshake message in ``data`` (at least 4 bytes), None if it is no known kind."""
    if len(data) < _PREFIX.size:
        raise ValueError("need the 4-byte message prefix")
    _, version, kind = _PREFIX.unpack_from(data)
    if version != VERSION:
        return None
    try:
        return Kind(kind)
    except ValueError:
        return None


class State(enum.Enum):
    WANT_HELLO = "want-hello"
    WANT_CONFIRM = "want-confirm"
    ESTABLISHED = "established"
    SCARED = "scared"
    BROKEN = "broken"


@dataclass(frozen=True)
class Established:
    """Both ends proved knowledge of the password. ``channel`` already holds any bytes that followed."""

    channel: Channel

    @property
    def safety_code(self) -> str:
        return self.channel.safety_code


@dataclass(frozen=True)
class AuthFailed:
    """Agent side: the viewer's key confirmation did not verify, i.e. a wrong password. Count it."""


HandshakeEvent = Union[Established, AuthFailed, NeedData]


def _body_size_ok(kind: Kind, size: int) -> bool:
    return size == _BODY_SIZE[kind] or (kind is Kind.HELLO and size == _BODY_SIZE[kind] + _OPTIONS_SIZE)


def encode_message(kind: Kind, body: bytes) -> bytes:
    """One framed handshake message."""
    if not _body_size_ok(kind, len(body)):
        raise ValueError(f"a {kind.name} body is {_BODY_SIZE[kind]} bytes")
    return _PREFIX.pack(2 + len(body), VERSION, kind) + body


class _Handshake:
    role: Role

    def __init__(self, session_id: str, password: str, *, entropy: Callable[[int], bytes] = os.urandom,
                 clock: Callable[[], float] = time.monotonic, compression: bool = False) -> None:
        """``compression``: offer ZDATA (the HELLO options byte); the channel gets it only if the peer
        offers it too. ``entropy`` is a test hook for known-answer vectors: it supplies the X25519
        private key (first 32 bytes drawn) and then SPAKE2's randomness. Leave it alone in real use."""
        self._session_id = canonical_session_id(session_id)
        self._clock = clock
        id_viewer, id_agent = spake2_identities(self._session_id)
        spake_class = SPAKE2_A if self.role is Role.VIEWER else SPAKE2_B
        self._x25519: nacl.public.PrivateKey | None = nacl.public.PrivateKey(entropy(32))
        self._spake: SPAKE2_A | SPAKE2_B | None = spake_class(
            password.encode("utf-8"), idA=id_viewer, idB=id_agent, entropy_f=entropy)
        hello = self._spake.start() + bytes(self._x25519.public_key)
        self._offer_compression = bool(compression)
        self._compression_agreed = False
        self._hello = encode_message(Kind.HELLO, hello + (bytes([OPTION_COMPRESS]) if compression else b""))
        self._out = bytearray(self._hello)
        self._buf = bytearray()
        self._eof = False
        self._state = State.WANT_HELLO
        self._keys: SessionKeys | None = None
        self._outcome: Established | AuthFailed | None = None
        self._error: ChannelError | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(state={self._state.value})"

    @property
    def state(self) -> State:
        return self._state

    def data_to_send(self) -> bytes:
        """Bytes the machine wants written to the connection since the last call."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the connection; ``b""`` means EOF."""
        if self._eof:
            raise RuntimeError("receive_data() after EOF")
        if not data:
            self._eof = True
        elif self._state in (State.WANT_HELLO, State.WANT_CONFIRM):
            self._buf += data
        elif self._state is State.ESTABLISHED and self._outcome is not None:
            raise RuntimeError("the handshake is over: feed the channel instead")
        # SCARED and BROKEN absorb everything

    def next_event(self) -> HandshakeEvent:
        """NEED_DATA, Established or (agent) AuthFailed; raises HandshakeError or (viewer) WrongPasswordError."""
        if self._error is not None:
            raise self._error
        if self._outcome is not None:
            return self._outcome
        while True:
            message = self._next_message()
            if message is None:
                return NEED_DATA
            kind, body = message
            handler = _TRANSITIONS.get((self.role, self._state, kind))
            if handler is None:
                raise self._broken(f"{self.role.value} got {kind.name} in state {self._state.value}")
            try:
                outcome = handler(self, body)
            except HandshakeError as exc:
                raise self._broken(str(exc)) from None
            except WrongPasswordError as exc:
                self._state = State.SCARED
                self._error = exc
                self._forget_secrets()
                raise
            if outcome is not None:
                self._outcome = outcome
                return outcome

    # -- parsing ------------------------------------------------------------------------------

    def _next_message(self) -> tuple[Kind, bytes] | None:
        buf = self._buf
        if len(buf) < _PREFIX.size:
            if self._eof:
                raise self._broken("the connection closed during the handshake")
            return None
        length, version, kind_value = _PREFIX.unpack_from(buf)
        if version != VERSION:
            raise self._broken(f"the peer speaks handshake version {version}; this end speaks only {VERSION}")
        if length > MAX_MESSAGE - 2:
            raise self._broken("the peer sent an oversized handshake message")
        try:
            kind = Kind(kind_value)
        except ValueError:
            raise self._broken(f"the peer sent an unknown handshake message kind {kind_value}") from None
        if not _body_size_ok(kind, length - 2):
            raise self._broken(f"the peer sent a {kind.name} message of the wrong size")
        end = 2 + length
        if len(buf) < end:
            if self._eof:
                raise self._broken("the connection closed during the handshake")
            return None
        body = bytes(buf[_PREFIX.size:end])
        del buf[:end]
        return kind, body

    def _broken(self, reason: str) -> HandshakeError:
        self._state = State.BROKEN
        self._error = HandshakeError(f"secure handshake failed: {reason}")
        self._forget_secrets()
        return self._error

    def _forget_secrets(self) -> None:
        self._spake = None
        self._x25519 = None
        self._keys = None
        self._buf = bytearray()

    # -- key derivation and confirmation --------------------------------------------------------

    def _derive(self, peer_hello_body: bytes, peer_hello: bytes) -> SessionKeys:
        assert self._spake is not None and self._x25519 is not None
        spake_message = peer_hello_body[:_SPAKE2_MESSAGE_SIZE]
        peer_public = peer_hello_body[_SPAKE2_MESSAGE_SIZE:_SPAKE2_MESSAGE_SIZE + _X25519_SIZE]
        options = peer_hello_body[_SPAKE2_MESSAGE_SIZE + _X25519_SIZE:]  # unknown bits: ignored, not refused
        self._compression_agreed = self._offer_compression and bool(options and options[0] & OPTION_COMPRESS)
        try:
            spake_key = self._spake.finish(spake_message)
        except (SPAKEError, NotOnCurve, ValueError):  # what spake2 raises for a bad group element
            raise HandshakeError("the peer's PAKE message is invalid (or is our own, reflected)") from None
        try:
            shared = nacl.bindings.crypto_scalarmult(bytes(self._x25519), peer_public)
        except nacl.exceptions.RuntimeError:
            raise HandshakeError("the peer's X25519 key is invalid") from None
        if shared == bytes(len(shared)):
            raise HandshakeError("the peer's X25519 key is invalid")
        if self.role is Role.VIEWER:
            messages = (self._hello, peer_hello)
        else:
            messages = (peer_hello, self._hello)
        self._spake = None
        self._x25519 = None
        return derive_session_keys(spake_key, shared, transcript_hash(self._session_id, messages))

    def _establish(self, keys: SessionKeys) -> Established:
        self._state = State.ESTABLISHED
        self._keys = None
        channel = Channel(self.role, keys, clock=self._clock, compression=self._compression_agreed)
        if self._buf:
            channel.receive_data(bytes(self._buf))
        if self._eof:
            channel.receive_data(b"")
        self._buf = bytearray()
        return Established(channel)


class ViewerHandshake(_Handshake):
    """Viewer side (SPAKE2 side A). Raises WrongPasswordError if the agent rejects or cannot prove the password."""

    role = Role.VIEWER

    def _on_hello(self, body: bytes) -> None:
        keys = self._derive(body, encode_message(Kind.HELLO, body))
        self._keys = keys
        self._out += encode_message(Kind.CONFIRM, confirmation_mac(keys.confirm_viewer, keys.transcript))
        self._state = State.WANT_CONFIRM

    def _on_confirm(self, body: bytes) -> Established:
        keys = self._keys
        assert keys is not None
        if not mac_matches(confirmation_mac(keys.confirm_agent, keys.transcript), body):
            raise WrongPasswordError("the agent could not prove it knows the session password; check the "
                                     "session ID and password and try again")
        return self._establish(keys)

    def _on_failed(self, body: bytes) -> None:
        raise WrongPasswordError("wrong session password; ask the customer to read it again "
                                 "(the agent issues a new one after three failed attempts)")


class AgentHandshake(_Handshake):
    """Agent side (SPAKE2 side B). A wrong password is the AuthFailed outcome, not an exception."""

    role = Role.AGENT

    def _on_hello(self, body: bytes) -> None:
        self._keys = self._derive(body, encode_message(Kind.HELLO, body))
        self._state = State.WANT_CONFIRM

    def _on_confirm(self, body: bytes) -> Established | AuthFailed:
        keys = self._keys
        assert keys is not None
        if not mac_matches(confirmation_mac(keys.confirm_viewer, keys.transcript), body):
            self._state = State.SCARED
            self._forget_secrets()
            self._out += encode_message(Kind.FAILED, b"")
            return AuthFailed()
        self._out += encode_message(Kind.CONFIRM, confirmation_mac(keys.confirm_agent, keys.transcript))
        return self._establish(keys)


# (role, state, message kind) -> handler; anything else is a HandshakeError naming all three.
_TRANSITIONS: dict[tuple[Role, State, Kind], Callable[..., Established | AuthFailed | None]] = {
    (Role.VIEWER, State.WANT_HELLO, Kind.HELLO): ViewerHandshake._on_hello,
    (Role.VIEWER, State.WANT_CONFIRM, Kind.CONFIRM): ViewerHandshake._on_confirm,
    (Role.VIEWER, State.WANT_CONFIRM, Kind.FAILED): ViewerHandshake._on_failed,
    (Role.AGENT, State.WANT_HELLO, Kind.HELLO): AgentHandshake._on_hello,
    (Role.AGENT, State.WANT_CONFIRM, Kind.CONFIRM): AgentHandshake._on_confirm,
}

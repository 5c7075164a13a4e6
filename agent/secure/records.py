"""Sans-IO record layer of the secure channel (DESIGN §4.2, point 3).

Wire format of a record: ``len:u32 | type:u8 | ciphertext+tag``, where ``len``
is the length of ciphertext+tag (big endian) and the 5-byte header is the AEAD
associated data. Nonces are implicit (see ``_aead``), so nothing here can pick
one. The receive side reads a header, refuses an impossible length at once,
waits for the whole record, verifies its tag, and only then looks at the
plaintext. The first failure puts the channel in a failed state that refuses
everything after it.

Usage::

    wire = channel.send_data(b"...")       # bytes to write to the socket
    channel.receive_data(chunk)            # b"" means the socket hit EOF
    event = channel.next_event()           # Data | Ack | Ping | Pong | Closed | NEED_DATA
"""
from __future__ import annotations

import enum
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Union

from agent.sansio import NEED_DATA, NeedData
from agent.secure._aead import (
    HEADER,
    LABEL_AGENT_TO_VIEWER,
    LABEL_VIEWER_TO_AGENT,
    TAG_SIZE,
    Opener,
    Sealer,
)
from agent.secure.compress import LEVEL as COMPRESSION_LEVEL
from agent.secure.compress import Deflater, Inflater
from agent.secure.errors import (
    ChannelClosedError,
    ChannelError,
    ProtocolViolationError,
    RecordAuthenticationError,
    RecordTooLargeError,
    TruncatedError,
)
from agent.secure.keyschedule import SessionKeys

HEADER_SIZE = HEADER.size
MAX_PLAINTEXT = 64 * 1024
MAX_RECORD_LENGTH = MAX_PLAINTEXT + TAG_SIZE
MAX_CLOSE_REASON = 1024  # bytes of UTF-8 we send; longer reasons are cut at a character boundary
_unpack_header = HEADER.unpack_from
_PING_SIZE = 8
_ACK_SIZE = 8
_MAX_OUTSTANDING_PINGS = 16


class RecordType(enum.IntEnum):
    DATA = 1
    ACK = 2
    PING = 3
    PONG = 4
    CLOSE = 5
    ZDATA = 6  # inner bytes, compressed (agent.secure.compress); accepted only if the handshake agreed to it


_DATA = int(RecordType.DATA)  # a plain int for the hot path
_ZDATA = int(RecordType.ZDATA)


class Role(enum.Enum):
    VIEWER = "viewer"
    AGENT = "agent"


@dataclass(slots=True)
class Data:
    """Inner (RFB) bytes from the peer, authentic and in order."""

    data: bytes


@dataclass(slots=True)
class Ack:
    """The peer has received ``total`` bytes of our DATA so far."""

    total: int


@dataclass(slots=True)
class Ping:
    """The peer asks for ``send_pong(payload)`` to measure the round trip."""

    payload: bytes


@dataclass(slots=True)
class Pong:
    """Answer to one of our pings; ``rtt`` in seconds, None if it matches no ping still remembered."""

    rtt: float | None


@dataclass(slots=True)
class Closed:
    """The peer ended the channel on purpose (authenticated); it sends nothing more."""

    reason: str


class _Nothing:
    pass


_NOTHING = _Nothing()



Event = Union[Data, Ack, Ping, Pong, Closed, NeedData]


class Channel:
    """One end of an established channel: seals what it sends, opens what it receives.

    Created by the handshake (``Established.channel``). Not thread-safe; the
    bytes returned by the ``send_*`` methods must be written in the order they
    were returned, since each record's counter is implicit.
    """

    def __init__(self, role: Role, keys: SessionKeys, *, clock: Callable[[], float] = time.monotonic,
                 compression: bool = False, _counters: tuple[int, int] = (0, 0)) -> None:
        # compression: both ends agreed to ZDATA in the handshake (HELLO option); without it a ZDATA
        # record fails the channel, so no peer can make this end inflate anything it did not ask for.
        # _counters = (send, receive) start counters: a test hook for the ratchet and exhaustion limits.
        if role is Role.VIEWER:
            self._sealer = Sealer(keys.viewer_to_agent, LABEL_VIEWER_TO_AGENT, _counter=_counters[0])
            self._opener = Opener(keys.agent_to_viewer, LABEL_AGENT_TO_VIEWER, _counter=_counters[1])
        else:
            self._sealer = Sealer(keys.agent_to_viewer, LABEL_AGENT_TO_VIEWER, _counter=_counters[0])
            self._opener = Opener(keys.viewer_to_agent, LABEL_VIEWER_TO_AGENT, _counter=_counters[1])
        self._seal = self._sealer.seal  # bound once: these run per record
        self._open = self._opener.open
        self.role = role
        self.safety_code = keys.safety_code
        self.resumption_secret = keys.resumption  # for agent.secure.resume; never logged (not in repr)
        self._clock = clock
        self._buf: bytes | bytearray = b""
        self._pos = 0
        self._eof = False
        self._receiving = True  # False once the peer's CLOSE arrived or the channel failed
        self._accepting = True  # False after EOF too: receive_data() buffers nothing more
        self._closed: Closed | None = None
        self._error: ChannelError | None = None
        self._sending = True  # False once we sent CLOSE, a seal failed, or the channel failed
        self._send_closed = False
        self._bytes_sent = 0
        self._bytes_received = 0
        self._peer_acked = 0
        self._ack_sent = 0
        self._ping_seq = 0
        self._pings: OrderedDict[bytes, float] = OrderedDict()
        self._deflater: Deflater | None = None
        self._inflater: Inflater | None = None
        self._compression_agreed = bool(compression)

    def __repr__(self) -> str:
        return (f"Channel(role={self.role.value}, sent={self._bytes_sent}, received={self._bytes_received}, "
                f"closed={self._closed is not None}, failed={self._error is not None})")

    # -- counters ----------------------------------------------------------------------------

    @property
    def bytes_sent(self) -> int:
        """DATA plaintext bytes sent so far."""
        return self._bytes_sent

    @property
    def bytes_received(self) -> int:
        """DATA plaintext bytes received (and authenticated) so far."""
        return self._bytes_received

    @property
    def peer_acked(self) -> int:
        """The peer's latest acknowledgement of our DATA bytes."""
        return self._peer_acked

    @property
    def in_flight(self) -> int:
        """DATA bytes sent that the peer has not acknowledged yet."""
        return self._bytes_sent - self._peer_acked

    @property
    def unacked_received(self) -> int:
        """DATA bytes received since our last ACK: what the next ``send_ack`` would cover."""
        return self._bytes_received - self._ack_sent

    @property
    def can_send(self) -> bool:
        return self._sending

    @property
    def peer_closed(self) -> Closed | None:
        return self._closed

    # -- sending -----------------------------------------------------------------------------

    def _check_can_send(self) -> None:
        if self._sending:
            return
        if self._error is not None:
            raise ChannelClosedError("the channel failed; it cannot send any more") from self._error
        if self._send_closed:
            raise ChannelClosedError("this end already closed the channel; it cannot send any more")
        raise ChannelClosedError("this end stopped sending after a record could not be sealed")

    def _record(self, rtype: int, payload: bytes | memoryview) -> bytes:
        try:
            return self._seal(rtype, payload)
        except ChannelError:
            self._sending = False  # never send past a sealing failure
            raise

    @property
    def compressing(self) -> bool:
        return self._deflater is not None

    @property
    def compression_agreed(self) -> bool:
        """Both ends agreed to ZDATA in the handshake: only then may either send it."""
        return self._compression_agreed

    def restrict_compression(self, allowed: bool) -> None:
        """Withdraw the agreement (never grant it): a resumed channel keeps the session's original terms."""
        if not allowed:
            self._compression_agreed = False
            self._deflater = None

    def enable_compression(self, level: int = COMPRESSION_LEVEL) -> None:
        """From now on send_data() sends ZDATA: inner bytes through one long-window zstd stream.

        Only if the handshake agreed to compression (``compression_agreed``); raises ChannelError
        otherwise, since the peer would fail the channel on the first ZDATA. The byte counters (and
        so ACKs and bytes in flight) count record payloads, the compressed size: what the link carries.
        """
        if not self._compression_agreed:
            raise ChannelError("compression was not agreed in the handshake; this channel sends DATA only")
        if self._deflater is None:
            self._deflater = Deflater(level, max_piece=MAX_PLAINTEXT)

    def send_data(self, data: bytes | bytearray | memoryview) -> bytes:
        """DATA (or ZDATA) records carrying ``data`` (split at 64 KiB), as one buffer to write."""
        if not self._sending:
            self._check_can_send()
        if self._deflater is not None:
            if not data:
                return b""
            pieces = self._deflater.compress(data)
            record = b"".join([self._record(_ZDATA, piece) for piece in pieces])
            self._bytes_sent += sum(map(len, pieces))
            return record
        if type(data) is not bytes:
            data = memoryview(data).cast("B")
        size = len(data)
        if 0 < size <= MAX_PLAINTEXT:
            try:
                record = self._seal(_DATA, data)
            except ChannelError:
                self._sending = False
                raise
            self._bytes_sent += size
            return record
        if not size:
            return b""
        view = memoryview(data)
        record = b"".join([self._record(_DATA, view[offset:offset + MAX_PLAINTEXT])
                           for offset in range(0, size, MAX_PLAINTEXT)])
        self._bytes_sent += size
        return record

    def send_ack(self) -> bytes:
        """An ACK telling the peer how many DATA bytes we have received in total."""
        self._check_can_send()
        total = self._bytes_received
        out = self._record(RecordType.ACK, total.to_bytes(_ACK_SIZE, "big"))
        self._ack_sent = total
        return out

    def send_ping(self) -> bytes:
        """A PING; the matching PONG comes back as ``Pong(rtt)``."""
        self._check_can_send()
        self._ping_seq += 1
        payload = self._ping_seq.to_bytes(_PING_SIZE, "big")
        out = self._record(RecordType.PING, payload)
        self._pings[payload] = self._clock()
        while len(self._pings) > _MAX_OUTSTANDING_PINGS:
            self._pings.popitem(last=False)
        return out

    def send_pong(self, payload: bytes) -> bytes:
        """The answer to a ``Ping`` event: its payload echoed."""
        self._check_can_send()
        if len(payload) != _PING_SIZE:
            raise ValueError("a pong echoes the 8-byte payload of a ping")
        return self._record(RecordType.PONG, payload)

    def send_close(self, reason: str = "bye") -> bytes:
        """The authenticated CLOSE; after it this end sends nothing more (it may still receive)."""
        self._check_can_send()
        encoded = reason.encode("utf-8")[:MAX_CLOSE_REASON].decode("utf-8", "ignore").encode("utf-8")
        out = self._record(RecordType.CLOSE, encoded)
        self._send_closed = True
        self._sending = False
        return out

    # -- receiving ---------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes read from the connection; ``b""`` means the connection reached EOF."""
        if not self._accepting:
            if self._eof:
                raise RuntimeError("receive_data() after EOF")
            if not data:
                self._eof = True
            return  # nothing after a CLOSE or a failure is ever used; do not buffer it
        if not data:
            self._eof = True
            self._accepting = False
            return
        if self._pos == len(self._buf):
            # Nothing pending: keep the caller's bytes as they are, so whole records are opened without a copy.
            self._buf = data if type(data) is bytes else bytes(data)
            self._pos = 0
            return
        if isinstance(self._buf, bytearray):
            if self._pos:
                del self._buf[:self._pos]
        else:
            self._buf = bytearray(memoryview(self._buf)[self._pos:])
        self._pos = 0
        self._buf += data

    def _fail(self, error: ChannelError) -> ChannelError:
        self._error = error
        self._receiving = self._accepting = False
        self._sending = False
        self._buf = b""
        self._pos = 0
        return error

    def next_event(self) -> Event:
        """The next event from the received bytes, NEED_DATA if a record is incomplete.

        Raises RecordAuthenticationError, RecordTooLargeError, TruncatedError or
        ProtocolViolationError; after that the channel stays failed.
        """
        while True:
            event = self._next_record()
            if event is not _NOTHING:
                return event

    def _next_record(self) -> Event | _Nothing:
        """One record's event; _NOTHING for a compressed piece that completes no inner bytes yet."""
        if not self._receiving:
            if self._error is not None:
                raise self._error
            assert self._closed is not None
            return self._closed
        buf = self._buf
        pos = self._pos
        size = len(buf)
        body = pos + HEADER_SIZE
        if size < body:
            return self._short(size > pos)
        length, rtype = _unpack_header(buf, pos)
        if not TAG_SIZE <= length <= MAX_RECORD_LENGTH:
            raise self._fail(self._bad_length(length))  # refused before any of the body is buffered
        end = body + length
        if size < end:
            return self._short(True)
        try:
            # The view is a temporary, gone when open() returns, so a bytearray buffer stays resizable.
            plaintext = self._open(buf[pos:body], memoryview(buf)[body:end])
        except ChannelError as exc:
            raise self._fail(exc) from None
        if end == size:
            self._buf = b""  # let the consumed input go now rather than at the next receive_data()
            self._pos = 0
        else:
            self._pos = end
        if rtype == _DATA and plaintext:
            self._bytes_received += len(plaintext)
            return Data(plaintext)
        try:
            if rtype == _ZDATA and plaintext:
                if not self._compression_agreed:
                    raise ProtocolViolationError("the peer sent a compressed (ZDATA) record, but compression "
                                                 "was not agreed in the handshake")
                self._bytes_received += len(plaintext)
                if self._inflater is None:
                    self._inflater = Inflater()
                inner = self._inflater.inflate(plaintext)
                # a piece of a chunk may complete nothing yet: go on to the next record
                return Data(inner) if inner else _NOTHING
            return self._dispatch(rtype, plaintext)
        except ChannelError as exc:
            raise self._fail(exc) from None

    @staticmethod
    def _bad_length(length: int) -> ChannelError:
        if length > MAX_RECORD_LENGTH:
            return RecordTooLargeError(
                f"a record header announced {length} bytes, more than the {MAX_RECORD_LENGTH} allowed")
        return RecordAuthenticationError("a record is too short to carry an authentication tag")

    def _short(self, partial: bool) -> NeedData:
        if self._eof:
            raise self._fail(TruncatedError("the connection ended without the peer's CLOSE: it was cut or the "
                                            "peer crashed" + (" in the middle of a record" if partial else "")))
        return NEED_DATA

    def _dispatch(self, rtype: int, payload: bytes) -> Event:
        # The tag has verified: from here on the content is the peer's own.
        if rtype in (RecordType.DATA, RecordType.ZDATA):
            raise ProtocolViolationError("the peer sent an empty DATA record")
        if rtype == RecordType.ACK:
            if len(payload) != _ACK_SIZE:
                raise ProtocolViolationError("the peer sent an ACK of the wrong size")
            total = int.from_bytes(payload, "big")
            if not self._peer_acked <= total <= self._bytes_sent:
                raise ProtocolViolationError("the peer acknowledged bytes that were never sent, or went backwards")
            self._peer_acked = total
            return Ack(total)
        if rtype == RecordType.PING:
            if len(payload) != _PING_SIZE:
                raise ProtocolViolationError("the peer sent a PING of the wrong size")
            return Ping(payload)
        if rtype == RecordType.PONG:
            if len(payload) != _PING_SIZE:
                raise ProtocolViolationError("the peer sent a PONG of the wrong size")
            sent_at = self._pings.pop(payload, None)
            return Pong(None if sent_at is None else max(0.0, self._clock() - sent_at))
        if rtype == RecordType.CLOSE:
            try:
                reason = payload.decode("utf-8")
            except UnicodeDecodeError:
                raise ProtocolViolationError("the peer's CLOSE reason is not UTF-8") from None
            self._closed = Closed(reason)
            self._receiving = self._accepting = False
            self._buf = b""  # nothing after an authenticated CLOSE is ever used
            self._pos = 0
            return self._closed
        raise ProtocolViolationError(f"the peer sent a record of unknown type {rtype}")

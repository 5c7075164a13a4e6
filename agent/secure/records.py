"""Sans-IO record layer of the secure channel (DESIGN §4.2, point 3).

Wire format of a record: ``header | ciphertext+tag``, header = varint(len << 4 |
type) (2 bytes up to 1,023 bytes of ciphertext+tag, 3 above; see ``_aead``), the
AEAD associated data.

Acknowledgements are ``total:varint | delay:varint``: the DATA bytes received so
far and how long ago (in ACK_DELAY_UNIT) the record that completed them arrived,
so the sender can take an RTT sample from any ACK, however lazily it was sent.
They travel in ACK records, or in front of the payload of a DATA or ZDATA record
whose type has the ACK_ATTACHED bit (9, 14): an ACK due when data goes out anyway
costs a few bytes instead of a record (18 bytes of header and tag). Nonces are implicit (see ``_aead``), so nothing here can pick
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
from collections import OrderedDict, deque
from typing import Callable

from agent.sansio import NEED_DATA, NeedData  # noqa: F401  (NEED_DATA re-exported)
from agent.secure._aead import (LABEL_AGENT_TO_VIEWER, LABEL_VIEWER_TO_AGENT, MAX_HEADER, TAG_SIZE, TYPE_BITS, Opener,
                                Sealer)
from agent.secure.compress import LEVEL as COMPRESSION_LEVEL
from agent.secure.compress import Deflater, Inflater
from agent.secure.errors import (ChannelClosedError, ChannelError, ProtocolViolationError, RecordAuthenticationError,
                                 RecordTooLargeError, TruncatedError)
from agent.secure.keyschedule import SessionKeys
from agent.secure.record_events import ACK_DELAY_UNIT, MAX_ACK_PREFIX, Ack, Closed, Data, Event, Ping, Pong
from agent.secure.record_events import ack_field, read_ack_field
from agent.secure.varint import decode as _read_varint

HEADER_SIZE = MAX_HEADER  # at most; a record of up to 1,023 bytes has a 2-byte header
MAX_PLAINTEXT = 64 * 1024
MAX_RECORD_LENGTH = MAX_PLAINTEXT + TAG_SIZE
MAX_CLOSE_REASON = 1024  # bytes of UTF-8 we send; longer reasons are cut at a character boundary
_TYPE_MASK = (1 << TYPE_BITS) - 1
_PING_SIZE = 8
_MAX_OUTSTANDING_PINGS = 16
_SEND_MARKS = 64  # (bytes sent, when) of our latest sends, matched against ACKs for RTT samples


class RecordType(enum.IntEnum):
    DATA = 1
    ACK = 2
    PING = 3
    PONG = 4
    CLOSE = 5
    ZDATA = 6  # inner bytes, compressed (agent.secure.compress); accepted only if the handshake agreed to it
    DATA_ACK = 9  # ACK_ATTACHED | DATA: an acknowledgement, then the DATA payload
    ZDATA_ACK = 14  # ACK_ATTACHED | ZDATA


ACK_ATTACHED = 8  # type bit: the plaintext starts with an acknowledgement (DATA and ZDATA only)
_DATA = int(RecordType.DATA)  # a plain int for the hot path
_ZDATA = int(RecordType.ZDATA)


class Role(enum.Enum):
    VIEWER = "viewer"
    AGENT = "agent"


class _Nothing:
    pass


_NOTHING = _Nothing()


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
        self._last_data_at = 0.0  # when the latest DATA record arrived (for the delay an ACK reports)
        self._marks: deque[tuple[int, float]] = deque(maxlen=_SEND_MARKS)
        self._queued: Event | None = None  # the Data behind an ACK that came in the same record
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
            self._deflater = Deflater(level, max_piece=MAX_PLAINTEXT - MAX_ACK_PREFIX)

    def send_data(self, data: bytes | bytearray | memoryview, *, ack: bool = False) -> bytes:
        """DATA (or ZDATA) records carrying ``data`` (split at 64 KiB), as one buffer to write.

        ``ack``: the first record also carries our acknowledgement (as ``send_ack`` would, for
        a few bytes instead of a record of its own); ignored if ``data`` is empty."""
        if not self._sending:
            self._check_can_send()
        if not data:
            return b""
        if self._deflater is not None:
            return self.send_deflated(self._deflater.compress(data), ack=ack)
        if type(data) is not bytes:
            data = memoryview(data).cast("B")
        size = len(data)
        if size <= MAX_PLAINTEXT and not ack:
            try:
                record = self._seal(_DATA, data)
            except ChannelError:
                self._sending = False
                raise
        else:
            view = memoryview(data)
            head = MAX_PLAINTEXT - MAX_ACK_PREFIX if ack else MAX_PLAINTEXT
            parts = [self._record(_DATA | ACK_ATTACHED, self._ack_payload() + view[:head])] if ack else \
                [self._record(_DATA, view[:head])]
            parts += [self._record(_DATA, view[offset:offset + MAX_PLAINTEXT])
                      for offset in range(head, size, MAX_PLAINTEXT)]
            record = b"".join(parts)
        self._bytes_sent += size
        self._marks.append((self._bytes_sent, self._clock()))
        return record

    def deflate(self, data: bytes | memoryview) -> list[bytes]:
        """The compression half of a compressed ``send_data`` (ZDATA payloads for ``send_deflated``). It
        touches only the compressor, so it may run in another thread (agent.secure.sendqueue does, for big
        writes) if calls come one at a time, in inner-stream order: the zstd stream has history."""
        assert self._deflater is not None, "compression is not enabled on this channel"
        return self._deflater.compress(data)

    def send_deflated(self, pieces: list[bytes], *, ack: bool = False) -> bytes:
        """ZDATA records carrying what ``deflate`` returned; ``ack`` as for ``send_data``."""
        if not self._sending:
            self._check_can_send()
        self._bytes_sent += sum(map(len, pieces))
        first = [self._record(_ZDATA | ACK_ATTACHED, self._ack_payload() + pieces[0])] if ack else []
        record = b"".join(first + [self._record(_ZDATA, piece) for piece in pieces[len(first):]])
        self._marks.append((self._bytes_sent, self._clock()))
        return record

    def send_paced(self, data: bytes | bytearray | memoryview, *, ack: bool = True) -> bytes:
        """A DATA record of ``data`` whose ACK field has its full width whatever it says: paced input keeps one
        type and size (agent.secure.pacing), and the ACK an update earned rides it, not a record of its own.
        ``ack`` False: the field repeats our last ACK, which the peer takes as nothing new (no event)."""
        if not self._sending:
            self._check_can_send()
        if not 0 < len(data) <= MAX_PLAINTEXT - MAX_ACK_PREFIX:
            raise ValueError(f"a paced record carries 1 to {MAX_PLAINTEXT - MAX_ACK_PREFIX} bytes")
        record = self._record(_DATA | ACK_ATTACHED, self._ack_payload(wide=True, repeat=not ack) + bytes(data))
        self._bytes_sent += len(data)
        self._marks.append((self._bytes_sent, self._clock()))
        return record

    def _ack_payload(self, wide: bool = False, repeat: bool = False) -> bytes:
        """The ACK field for what we have received, counted as sent; ``repeat``: our last one again."""
        if repeat:
            return ack_field(self._ack_sent, 0, wide)
        self._ack_sent = self._bytes_received
        delay = min((1 << 21) - 1, max(0, round((self._clock() - self._last_data_at) / ACK_DELAY_UNIT)))
        return ack_field(self._ack_sent, delay, wide)

    def send_ack(self) -> bytes:
        """An ACK telling the peer how many DATA bytes we have received in total."""
        self._check_can_send()
        return self._record(RecordType.ACK, self._ack_payload())

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
        queued = self._queued
        if queued is not None:
            self._queued = None
            return queued
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
        if pos + 1 < size and buf[pos] & 0x80 and not buf[pos + 1] & 0x80:  # 2 bytes: up to 1,023, most records
            value, body = buf[pos] & 0x7F | buf[pos + 1] << 7, pos + 2
        else:
            try:
                header = _read_varint(buf, pos, HEADER_SIZE, "a record header")
            except ChannelError:  # more than 3 bytes: a length of 2^17 or more
                raise self._fail(RecordTooLargeError(f"a record header announced more than the "
                                                     f"{MAX_RECORD_LENGTH} bytes allowed")) from None
            if header is None:
                return self._short(size > pos)
            value, body = header
        length, rtype = value >> TYPE_BITS, value & _TYPE_MASK
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
            self._last_data_at = self._clock()
            return Data(plaintext)
        try:
            if not rtype & ACK_ATTACHED or rtype & ~ACK_ATTACHED not in (_DATA, _ZDATA):
                return self._data_event(rtype, plaintext)
            before = self._peer_acked
            ack, plaintext = self._read_ack(plaintext, trailing=True)
            if not plaintext:
                raise ProtocolViolationError("the peer sent an ACK-carrying DATA record without data")
            event = self._data_event(rtype & ~ACK_ATTACHED, plaintext)
            if ack.total == before:  # paced input acknowledges nothing new most of the time: no event
                return event
            if event is not _NOTHING:
                self._queued = event
            return ack
        except ChannelError as exc:
            raise self._fail(exc) from None

    def _data_event(self, rtype: int, plaintext: bytes) -> Event | _Nothing:
        """The event of an authentic record of ``rtype`` (an attached ACK already taken off)."""
        if rtype == _DATA and plaintext:
            self._bytes_received += len(plaintext)
            self._last_data_at = self._clock()
            return Data(plaintext)
        if rtype == _ZDATA and plaintext:
            if not self._compression_agreed:
                raise ProtocolViolationError("the peer sent a compressed (ZDATA) record, but compression "
                                             "was not agreed in the handshake")
            self._bytes_received += len(plaintext)
            self._last_data_at = self._clock()
            if self._inflater is None:
                self._inflater = Inflater()
            inner = self._inflater.inflate(plaintext)
            # a piece of a chunk may complete nothing yet: go on to the next record
            return Data(inner) if inner else _NOTHING
        return self._dispatch(rtype, plaintext)

    def _read_ack(self, payload: bytes, *, trailing: bool) -> tuple[Ack, bytes]:
        """The acknowledgement at the start of ``payload`` (checked and applied) and what follows it."""
        total, delay, end = read_ack_field(payload, trailing)
        if not self._peer_acked <= total <= self._bytes_sent:
            raise ProtocolViolationError("the peer acknowledged bytes that were never sent, or went backwards")
        self._peer_acked = total
        marks = self._marks
        while marks and marks[0][0] < total:
            marks.popleft()
        rtt = None
        if marks and marks[0][0] == total:
            rtt = max(0.0, self._clock() - marks.popleft()[1] - delay * ACK_DELAY_UNIT)
        return Ack(total, rtt), payload[end:]

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
            return self._read_ack(payload, trailing=False)[0]
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

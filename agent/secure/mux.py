"""Sans-IO stream multiplexing inside one secure channel (DESIGN §4.2, point 5).

One authenticated channel lives for the whole session; inside its inner byte
stream (the plaintext of DATA/ZDATA records, in order) ride several streams,
each a sequence of frames::

    tag:u8 | [stream:u16] | len:varint | payload (len bytes, at most MAX_FRAME)

``tag`` = kind << 4 | s: ``s`` is the stream id when it is below 15 (no
``stream`` field follows), 15 when a big-endian u16 ``stream`` follows. ``len``
is a LEB128 varint (agent.secure.varint) of at most 3 bytes. A DATA frame on
stream 1 of up to 127 bytes thus has a 2-byte header, of up to 16 KiB a 3-byte
one (7 bytes each before): the header rides inside every record, and inside
zstd it compressed to about its own size.

Frame kinds:

- OPEN  (1): the viewer opens ``stream`` (ids strictly increasing from 1);
  payload = the stream's kind in ASCII (``rfb``; ``chat``, ``clipboard`` and
  ``files`` are reserved for later). The agent refuses a kind it does not know
  with a CLOSE of that stream.
- DATA  (2): stream bytes. Stream 0, the *session stream*, is open from the
  start on both ends and carries one JSON object per DATA frame (at most
  MAX_MESSAGE bytes): session events both ways (``{"type": "state", ...}``,
  ``{"type": "end", "reason": ...}``, ``{"type": "link", "state": ...}``; the
  agent's ``{"type": "rfb", "accepts": ["standing_request"]}``, see
  agent.viewer.input_filter).
  A receiver ignores a session message whose ``type`` it does not know, so
  later versions can add chat, clipboard and file-transfer control there.
- CLOSE (3): the sender ends ``stream``; payload = a UTF-8 reason (at most
  MAX_REASON bytes). The session stream is never closed: the session's end is
  the channel's authenticated CLOSE record.
- PAD   (4): padding the viewer adds so its input goes out as fixed-size
  records (agent.secure.pacing); any stream id, payload (at most MAX_FRAME)
  dropped unread.
- STRIPED (5): stream bytes that are a byte matrix, sent in vertical stripes
  so the channel's zstd finds a column of text whole (agent.secure.stripes);
  payload = width:varint | stripe:u8 | first:u8 | the matrix's bytes in
  stripe order (the first stripe ``first`` columns wide, 0: a whole one).
  The receiver restores the rows and delivers the bytes as DATA's; a width
  or stripe of 0, a first stripe not narrower than the others, or bytes that
  are not whole rows, is a violation. Sent only by the agent, only to a
  viewer that accepts it: the viewer's channel says so in a session message
  ``{"type": "mux", "accepts": ["striped"]}`` before it opens a stream
  (agent.secure.session_channel); a receiver that predates the kind ignores
  that message and never gets one.

Frames are parsed from the inner byte stream, not from record boundaries
(ZDATA chunks need not align with them). Every length is bounded before a
byte of the payload is buffered; an unknown frame kind, a stream id that
was never opened or that goes backwards, or an oversized frame is a
ProtocolViolationError and the channel fails closed.

Flow control stays where it was: the channel's ACKs count DATA bytes, and
only one RFB stream is open at a time, so the window the agent keeps for the
channel is the RFB stream's window (the session stream's few bytes ride along).

The multiplexer also counts the inner bytes it has sent and received
(``sent_total``, ``received_total``): a resumed channel (agent.secure.resume)
tells the peer where to restart from.
"""
from __future__ import annotations

import enum
import json
import struct
from dataclasses import dataclass
from typing import Any, Sequence, Union

from agent.models import Matrix
from agent.sansio import NEED_DATA, NeedData
from agent.secure.errors import ProtocolViolationError
from agent.secure.stripes import from_stripes, to_stripes
from agent.secure.varint import decode as _read_varint
from agent.secure.varint import encode as _varint

_STREAM = struct.Struct(">H")
_WIDE = 15  # the tag's low nibble when the stream id follows as a u16
_MAX_LEN_BYTES = 3  # varint bytes of a frame length: 21 bits, above MAX_FRAME
MIN_HEADER = 2  # tag and a 1-byte length
HEADER_SIZE = 1 + _STREAM.size + _MAX_LEN_BYTES  # at most
MAX_FRAME = 256 * 1024       # payload bytes in one frame; bigger writes are split
MAX_MESSAGE = 16 * 1024      # one session-stream JSON message
MAX_REASON = 1024
MAX_KIND = 64             # an OPEN's stream kind name
MAX_STREAM_ID = 0xFFFF
SESSION_STREAM = 0
STREAM_KINDS = frozenset({"rfb"})  # chat, clipboard and files will join


class FrameKind(enum.IntEnum):
    OPEN = 1
    DATA = 2
    CLOSE = 3
    PAD = 4  # padding (agent.secure.pacing): any stream id, payload ignored by the receiver
    STRIPED = 5  # stream bytes of a byte matrix in stripes (agent.secure.stripes)


class Role(enum.Enum):
    VIEWER = "viewer"  # opens streams
    AGENT = "agent"


_KINDS = frozenset(int(kind) for kind in FrameKind)
_PAD = int(FrameKind.PAD)  # a plain int for the hot path
# The most payload bytes a frame of each kind may announce (a session-stream DATA frame: MAX_MESSAGE).
_LIMITS = {int(FrameKind.OPEN): MAX_KIND, int(FrameKind.DATA): MAX_FRAME, int(FrameKind.CLOSE): MAX_REASON,
           _PAD: MAX_FRAME, int(FrameKind.STRIPED): MAX_FRAME}
STRIPED_FEATURE = "striped"  # the name a viewer's ``mux`` session message accepts STRIPED frames by


@dataclass(slots=True)
class StreamOpened:
    stream: int
    kind: str


@dataclass(slots=True)
class StreamData:
    stream: int
    data: bytes


@dataclass(slots=True)
class StreamClosed:
    stream: int
    reason: str


@dataclass(slots=True)
class SessionMessage:
    """One JSON object from the peer's session stream (a dict, its ``type`` a string)."""

    message: dict[str, Any]


MuxEvent = Union[StreamOpened, StreamData, StreamClosed, SessionMessage, NeedData]


def _header(kind: int, stream: int, length: int, width: int = 0) -> bytes:
    tag = bytes((kind << 4 | stream,)) if stream < _WIDE else bytes((kind << 4 | _WIDE,)) + _STREAM.pack(stream)
    return tag + _varint(length, width)


def _frame(kind: int, stream: int, payload: bytes | memoryview = b"") -> bytes:
    return _header(kind, stream, len(payload)) + payload


def _data_frames(stream: int, data: bytes | bytearray | memoryview) -> bytes:
    size = len(data)
    if size <= MAX_FRAME:
        return _header(FrameKind.DATA, stream, size) + data
    view = memoryview(data).cast("B")
    return b"".join(_frame(FrameKind.DATA, stream, view[off:off + MAX_FRAME]) for off in range(0, size, MAX_FRAME))


def _unstriped(payload: bytes) -> bytes:
    """A STRIPED frame's matrix, rows restored (ProtocolViolationError if it is not a matrix)."""
    field = _read_varint(payload, 0, _MAX_LEN_BYTES, "a striped matrix's width")
    if field is None or field[1] + 2 > len(payload):
        raise ProtocolViolationError("a striped frame ends inside its header")
    width, start = field
    stripe, first = payload[start], payload[start + 1]
    try:
        return from_stripes(memoryview(payload)[start + 2:], width, stripe, first)
    except ValueError:
        raise ProtocolViolationError(f"a striped frame's {len(payload) - start - 2} bytes are not a matrix "
                                     f"{width} wide in stripes of {stripe} (the first {first})") from None


class Mux:
    """Frames out, events in, for one end of the channel; see the module docstring."""

    def __init__(self, role: Role) -> None:
        self.role = role
        self._buf: bytes | bytearray = b""  # received bytes from _pos on are not parsed yet
        self._pos = 0
        self._open: set[int] = {SESSION_STREAM}
        self._last_opened = 0  # highest stream id opened (by the viewer) so far
        self.sent_total = 0
        self.received_total = 0
        self._error: ProtocolViolationError | None = None  # after a violation every call raises it again
        self.peer_accepts_striped = False  # the peer said it reads STRIPED frames (see the module docstring)

    def __repr__(self) -> str:
        return f"Mux(role={self.role.value}, open={sorted(self._open)})"

    def is_open(self, stream: int) -> bool:
        return stream in self._open

    @property
    def pending(self) -> bool:
        """Whether received bytes wait unparsed (a frame not complete yet, or not asked for yet)."""
        return self._pos < len(self._buf)

    @property
    def buffered(self) -> bytes:
        """Received bytes not parsed into a frame yet (the start of an incomplete one)."""
        return bytes(self._buf[self._pos:])

    # -- sending ---------------------------------------------------------------------------------

    def _count(self, data: bytes) -> bytes:
        self.sent_total += len(data)
        return data

    def open_stream(self, kind: str) -> tuple[int, bytes]:
        """Viewer: open a new stream of ``kind``; returns (stream id, bytes to send)."""
        if self.role is not Role.VIEWER:
            raise ValueError("only the viewer opens streams")
        if kind not in STREAM_KINDS:
            raise ValueError(f"unknown stream kind {kind!r}")
        if self._last_opened >= MAX_STREAM_ID:
            raise ProtocolViolationError("no stream ids left in this channel")
        self._last_opened += 1
        self._open.add(self._last_opened)
        return self._last_opened, self._count(_frame(FrameKind.OPEN, self._last_opened, kind.encode("ascii")))

    def send(self, stream: int, data: bytes | bytearray | memoryview, matrices: Sequence[Matrix] = ()) -> bytes:
        """Frames carrying ``data`` on an open stream (b"" if the stream is closed).

        ``matrices``, in order and apart: byte matrices in ``data`` that go as STRIPED frames when the peer
        accepts them (else, like the rest, as DATA)."""
        if stream not in self._open or not data:
            return b""
        if not matrices or not self.peer_accepts_striped:
            return self._count(_data_frames(stream, data))
        view = memoryview(data).cast("B")
        frames: list[bytes] = []
        done = 0
        for offset, width, rows, stripe, first in matrices:
            end = offset + width * rows
            if offset < done or end > len(view) or width < 1 or rows < 1 or not 0 <= first < stripe <= 0xFF:
                raise ValueError(f"matrix {(offset, width, rows, stripe, first)} is not a matrix in order inside "
                                 f"{len(view)} bytes")
            head = _varint(width) + bytes((stripe, first))
            if len(head) + end - offset > MAX_FRAME:
                continue  # goes as DATA with the bytes around it
            if offset > done:
                frames.append(_data_frames(stream, view[done:offset]))
            frames.append(_frame(FrameKind.STRIPED, stream, head + to_stripes(view[offset:end], width, stripe, first)))
            done = end
        if done < len(view):
            frames.append(_data_frames(stream, view[done:]))
        return self._count(b"".join(frames))

    def send_message(self, message: dict[str, Any]) -> bytes:
        """One session-stream message (a JSON object with a string ``type``)."""
        body = json.dumps(message, separators=(",", ":")).encode("utf-8")
        if len(body) > MAX_MESSAGE:
            raise ValueError("a session message is larger than MAX_MESSAGE")
        return self._count(_frame(FrameKind.DATA, SESSION_STREAM, body))

    def pad(self, size: int) -> bytes:
        """One PAD frame of exactly ``size`` bytes, header included (MIN_HEADER <= size <= 4 + MAX_FRAME).

        The length field takes as many bytes as that exact size needs (a non-minimal varint where
        the payload would fit a shorter one, as for 130 bytes: a 3-byte header and 127 bytes)."""
        if not MIN_HEADER <= size <= 1 + _MAX_LEN_BYTES + MAX_FRAME:
            raise ValueError("a PAD frame is between its header and MAX_FRAME bytes")
        width = next(w for w in range(1, _MAX_LEN_BYTES + 1) if size - 1 - w < 1 << 7 * w)
        payload = min(size - 1 - width, MAX_FRAME)
        return self._count(_header(FrameKind.PAD, SESSION_STREAM, payload, width) + bytes(payload))

    def close_stream(self, stream: int, reason: str = "closed") -> bytes:
        """CLOSE for ``stream`` (b"" if it is not open); the session stream cannot be closed."""
        if stream == SESSION_STREAM or stream not in self._open:
            return b""
        self._open.discard(stream)
        encoded = reason.encode("utf-8")[:MAX_REASON].decode("utf-8", "ignore").encode("utf-8")
        return self._count(_frame(FrameKind.CLOSE, stream, encoded))

    # -- receiving -------------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        if self._error is not None:
            raise self._error
        self.received_total += len(data)
        buf, pos = self._buf, self._pos
        if pos == len(buf):
            # Nothing pending (the usual case: records carry whole frames): parse the caller's bytes in place.
            self._buf = data if type(data) is bytes else bytes(data)
            self._pos = 0
            return
        if type(buf) is bytearray:
            del buf[:pos]
        else:
            buf = self._buf = bytearray(memoryview(buf)[pos:])
        self._pos = 0
        buf += data

    def next_event(self) -> MuxEvent:
        """The next event, NEED_DATA, or ProtocolViolationError (then this end is in error for good)."""
        if self._error is not None:
            raise self._error
        try:
            return self._next_event()
        except ProtocolViolationError as exc:
            self._error = exc
            self._buf = b""
            self._pos = 0
            raise

    def _next_event(self) -> MuxEvent:
        buf, pos = self._buf, self._pos
        size = len(buf)
        while pos < size:
            tag = buf[pos]
            kind, stream = tag >> 4, tag & 0x0F
            if kind not in _KINDS:
                raise ProtocolViolationError(f"the peer sent a stream frame of unknown kind {kind}")
            start = pos + 1
            if stream == _WIDE:
                if size < start + _STREAM.size:
                    break
                (stream,) = _STREAM.unpack_from(buf, start)
                start += _STREAM.size
            if start < size and buf[start] < 0x80:  # a length below 128: one byte, most frames
                length = buf[start]
                start += 1
            else:
                field = _read_varint(buf, start, _MAX_LEN_BYTES, "a stream frame length")
                if field is None:
                    break
                length, start = field
            limit = _LIMITS[kind] if stream != SESSION_STREAM or kind != FrameKind.DATA else MAX_MESSAGE
            if length > limit:
                raise ProtocolViolationError(f"the peer sent a stream frame of {length} bytes, more than {limit}")
            end = start + length
            if size < end:
                break
            pos = end
            if kind == _PAD:
                continue  # padding (bounded by MAX_FRAME above) is dropped unread: no copy, no event
            self._pos = pos
            event = self._event(kind, stream, buf[start:end] if type(buf) is bytes else bytes(buf[start:end]))
            if event is not None:
                return event
        if pos == size:
            self._buf = b""  # all parsed: let the caller's bytes go now
            self._pos = 0
        else:
            self._pos = pos
        return NEED_DATA

    def _event(self, kind: int, stream: int, payload: bytes) -> MuxEvent | None:
        if kind == FrameKind.OPEN:
            if self.role is not Role.AGENT:
                raise ProtocolViolationError("the agent may not open streams")
            if stream <= self._last_opened:
                raise ProtocolViolationError("the peer reused a stream id or opened stream 0")
            try:
                stream_kind = payload.decode("ascii")
            except UnicodeDecodeError:
                raise ProtocolViolationError("a stream kind is not ASCII") from None
            self._last_opened = stream
            self._open.add(stream)
            return StreamOpened(stream, stream_kind)
        if stream > self._last_opened and stream != SESSION_STREAM:
            raise ProtocolViolationError(f"the peer used stream {stream}, which was never opened")
        if kind == FrameKind.STRIPED:
            if stream == SESSION_STREAM or self.role is not Role.VIEWER:
                raise ProtocolViolationError("striped frames go from the agent to the viewer, on a stream")
            data = _unstriped(payload)  # checked even on a stream we closed: a malformed frame is malformed
            if stream not in self._open or not data:
                return None
            return StreamData(stream, data)
        if kind == FrameKind.DATA:
            if stream == SESSION_STREAM:
                try:
                    message = json.loads(payload)
                except ValueError:
                    raise ProtocolViolationError("a session message is not JSON") from None
                if not isinstance(message, dict) or not isinstance(message.get("type"), str):
                    raise ProtocolViolationError("a session message is not an object with a string type")
                return SessionMessage(message)
            if stream not in self._open or not payload:
                return None  # late bytes of a stream we already closed
            return StreamData(stream, payload)
        # CLOSE
        if stream == SESSION_STREAM:
            raise ProtocolViolationError("the peer tried to close the session stream")
        if stream not in self._open:
            return None  # both ends closed it at once
        self._open.discard(stream)
        return StreamClosed(stream, payload.decode("utf-8", "replace"))

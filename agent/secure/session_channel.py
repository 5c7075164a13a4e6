"""asyncio: one session's channel, multiplexed (agent.secure.mux) and resumable over a new connection.

``SessionChannel`` outlives the TCP connection it currently runs on (its
*transport*, a SecureStream). Everything it sends is framed by the Mux and
kept in a replay log until the peer's channel ACKs cover it; when the
transport dies without an authenticated CLOSE (a cut, a reset, a relay
restart), the owner reconnects, runs the resume handshake
(agent.secure.resume) and calls ``resume(new_transport, peer_received)``:
the log is replayed from the inner byte the peer says it has, so every
stream continues byte for byte (RFB included) as if the cut never happened.

Received bytes are handled inside the transport's read callback (``SecureStream.set_receiver``):
the Mux parses them and a stream's bytes are queued for its ``recv``, or handed to its receiver
(agent.secure.mux_stream); a chaff record (only a PAD frame) ends there without an event. A stream holding STREAM_BUFFER unread bytes stops the
transport's reading until it is read below that.

The owner hears of the end of a transport through ``on_transport_end(cut)``:
``cut`` True means resumable (no CLOSE arrived), False an authenticated end
(``close_reason``). Session messages arrive at ``on_message(dict)``; a stream
the peer opens at ``on_open(MuxStream)`` (agent side). The channel's own
``mux`` message (the viewer's, first thing: it reads STRIPED frames) is kept
here and not passed on.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any, Callable

from agent.secure.errors import ChannelClosedError, ChannelError, ProtocolViolationError
from agent.secure.mux import (
    NEED_DATA,
    STRIPED_FEATURE,
    Mux,
    Role,
    SessionMessage,
    StreamClosed,
    StreamData,
    StreamOpened,
)
from agent.secure.mux_stream import STREAM_BUFFER, MuxStream, MuxWriter  # noqa: F401 (re-exported)
from agent.secure.pacing import INPUT_FRAMES_SIZE, InputPacer

log = logging.getLogger(__name__)

REPLAY_LIMIT = 64 * 1024 * 1024  # unacknowledged inner bytes kept for a resume; more fails the session
_UNSENT = float("inf")
MUX_MESSAGE = "mux"  # session message type: the frame kinds the sender's mux reads beyond the first four


class SessionChannel:
    """See the module docstring. ``role`` is "viewer" or "agent"."""

    def __init__(self, transport: Any, role: str, *, on_message: Callable[[dict[str, Any]], None],
                 on_open: Callable[[MuxStream], None] | None = None,
                 on_transport_end: Callable[[bool], None] | None = None, pace_input: bool = False) -> None:
        self._mux = Mux(Role(role))
        self.role = role
        self._on_message = on_message
        self._on_open = on_open
        self._on_transport_end = on_transport_end
        self._streams: dict[int, MuxStream] = {}
        self._log: deque[list[Any]] = deque()  # [inner end, channel bytes_sent end (set once sealed), frames]
        self._log_size = 0
        self._acked_base = 0  # channel bytes of earlier transports, so acked totals never go backwards
        self.safety_code: str = transport.safety_code
        self.resumption_secret: bytes = transport.resumption_secret
        # ZDATA as the session's first handshake agreed; every resumed connection keeps exactly that
        self.compression_agreed: bool = bool(getattr(transport, "compression_agreed", False))
        self.close_reason: str | None = None
        self.peer_closed = False  # the peer's authenticated CLOSE ended the session
        self.error: ChannelError | None = None
        self.closed = False  # for good: authenticated CLOSE either way, or a failure we cannot resume from
        self._watch: dict[str, Any] = {}
        self._transport: Any = None
        self._full: MuxStream | None = None  # the stream whose buffer stopped the reading, until it has room
        self._attach(transport)
        pace = pace_input and not transport.compressing  # fixed-size DATA records on a tick, never ZDATA
        self._pacer = InputPacer(lambda data: self._emit(data, INPUT_FRAMES_SIZE), self._mux.pad) if pace else None
        if self._mux.role is Role.VIEWER:  # before any stream opens, so the agent knows before it writes one
            message = {"type": MUX_MESSAGE, "accepts": [STRIPED_FEATURE]}
            self._send_frames(self._mux.send_message(message), user_input=False)  # no person's input: no chaff

    def __repr__(self) -> str:
        return f"SessionChannel(role={self.role}, connected={self.connected}, streams={sorted(self._streams)})"

    # -- the transport -----------------------------------------------------------------------

    @property
    def transport(self) -> Any:
        return self._transport

    @property
    def connected(self) -> bool:
        return self._transport is not None

    @property
    def compressing(self) -> bool:
        return bool(self._transport is not None and self._transport.compressing)

    @property
    def in_flight(self) -> int:
        return self._transport.in_flight if self._transport is not None else 0

    @property
    def rtt(self) -> float | None:
        return self._transport.rtt if self._transport is not None else None

    @property
    def bytes_sent(self) -> int:
        return self._acked_base + (self._transport.bytes_sent if self._transport is not None else 0)

    @property
    def bytes_received(self) -> int:
        return self._mux.received_total

    @property
    def inner_received(self) -> int:
        """Inner bytes received so far: what the peer resends from after a resume."""
        return self._mux.received_total

    def watch(self, *, on_ack: Callable[[int], None] | None = None,
              on_rtt: Callable[[float], None] | None = None, on_end: Callable[[], None] | None = None) -> None:
        """Flow-control notifications of whichever transport is current (acked totals are monotonic).

        ``on_end`` is accepted for SecureStream compatibility and unused: ends go to on_transport_end."""
        self._watch = {"on_ack": on_ack, "on_rtt": on_rtt}

    def _attach(self, transport: Any) -> None:
        self._transport = transport
        transport.watch(on_ack=lambda acked, t=transport: self._acked(t, acked),
                        on_rtt=lambda rtt: self._call("on_rtt", rtt),
                        on_end=lambda t=transport: self._ended(t))
        transport.set_receiver(lambda data, t=transport: self._received(t, data))
        if self._full is None and self._mux.pending:  # frames the last connection brought, held for room
            asyncio.get_running_loop().call_soon(self._unblock, transport)

    def _call(self, name: str, *args: Any) -> None:
        callback = self._watch.get(name)
        if callback is not None:
            callback(*args)

    def _acked(self, transport: Any, acked: int) -> None:
        log_ = self._log
        while log_ and log_[0][1] <= acked:
            self._log_size -= len(log_.popleft()[2])
        if transport is self._transport:
            self._call("on_ack", self._acked_base + acked)

    def _ended(self, transport: Any) -> None:
        if transport is not self._transport:
            return
        self._transport = None
        self._acked_base += transport.bytes_sent
        self._stop_reader(transport)
        if transport.peer_closed and not self.closed:
            self.peer_closed = True
        if transport.peer_closed or self.closed:
            self.closed = True
            if self.close_reason is None:
                self.close_reason = transport.close_reason
            self._end_streams(self.close_reason or "the session ended")
            cut = False
        else:
            self.error = transport.error
            cut = not isinstance(transport.error, ProtocolViolationError)
            if not cut:
                self.closed = True
                self._end_streams("the channel failed")
        if self._on_transport_end is not None:
            self._on_transport_end(cut)

    def _stop_reader(self, transport: Any) -> None:
        # What the mux holds was received (it counts in inner_received): it goes on once there is room,
        # through whichever connection is current then.
        transport.set_receiver(None)

    def detach(self) -> None:
        """Stop using the current connection now (a resume is replacing it): nothing more is read from it,
        so ``inner_received`` is final for the resume handshake."""
        transport, self._transport = self._transport, None
        if transport is not None:
            self._stop_reader(transport)
            self._acked_base += transport.bytes_sent
            transport.abort()

    def resume(self, transport: Any, peer_received: int) -> None:
        """Continue on ``transport`` (a resumed SecureStream): replay what ``peer_received`` lacks.

        Raises ChannelError if the peer asks for bytes no longer kept (it claims less than it ACKed)."""
        if self.closed:
            raise ChannelClosedError("the session channel is closed")
        if self._transport is not None:  # the old one is dead anyway: the peer moved on
            self.detach()
        start = self._log[0][0] - len(self._log[0][2]) if self._log else self._mux.sent_total
        if not start <= peer_received <= self._mux.sent_total:
            raise ProtocolViolationError("the peer asked to resume from a point this end no longer has")
        self.resumption_secret = transport.resumption_secret
        if hasattr(transport, "restrict_compression"):  # before its reader opens a record
            transport.restrict_compression(self.compression_agreed)
        self.error = None
        entries = list(self._log)
        self._log.clear()
        self._log_size = 0
        self._attach(transport)
        for end, _, frames in entries:
            begin = end - len(frames)
            if end <= peer_received:
                continue
            piece = frames[max(0, peer_received - begin):]
            self._log_entry(end, piece)

    def _log_entry(self, end: int, frames: bytes, record: int = 0) -> None:
        """Log ``frames`` and send them; the entry's mark (``bytes_sent`` an ACK must reach to drop it) is set
        once they are sealed, which for a big compressed write is after the worker (agent.secure.sendqueue)."""
        transport = self._transport
        entry: list[Any] = [end, _UNSENT, frames]
        self._log.append(entry)
        self._log_size += len(frames)
        if transport is not None:

            def sealed() -> None:
                entry[1] = transport.bytes_sent

            try:  # (not contextlib.suppress: this runs for every write)
                if not record:
                    transport._send_nowait(frames, on_sent=sealed)
                    return
                last = len(frames) - record
                for off in range(0, len(frames), record):  # fixed-size input records, each with our ACK
                    transport._send_nowait(frames[off:off + record], fixed_size=True,
                                           on_sent=sealed if off >= last else None)
            except ChannelError:
                pass

    def _send_frames(self, frames: bytes, user_input: bool = True) -> None:
        if frames and not self.closed:  # the viewer's input waits for its tick (agent.secure.pacing)
            if self._pacer is not None:
                self._pacer.submit(frames, user_input=user_input)
            else:
                self._emit(frames)

    def _emit(self, frames: bytes, record: int = 0) -> None:
        if self._log_size + len(frames) > REPLAY_LIMIT:
            self.fail("the peer stopped acknowledging; too much data is waiting")
            return
        self._log_entry(self._mux.sent_total, frames, record)

    def drain_needed(self) -> bool:
        """Whether ``drain()`` would wait or raise: a sender that can go on without it saves a task wake-up."""
        return self.closed or self._transport is not None and self._transport._drain_needed()

    async def drain(self) -> None:
        transport = self._transport
        if self.closed:
            raise ConnectionResetError("the session channel is closed")
        if transport is not None:
            with contextlib.suppress(ChannelError):
                await transport._drain()

    # -- streams and messages ------------------------------------------------------------------

    def send_message(self, message: dict[str, Any]) -> None:
        """One session-stream message to the peer (kept for a resume like everything else)."""
        self._send_frames(self._mux.send_message(message))

    def open_stream(self, kind: str) -> MuxStream:
        stream_id, frames = self._mux.open_stream(kind)
        stream = MuxStream(self, stream_id, kind)
        self._streams[stream_id] = stream
        self._send_frames(frames)
        return stream

    def refuse_stream(self, stream_id: int, reason: str) -> None:
        self._send_frames(self._mux.close_stream(stream_id, reason))

    def _received(self, transport: Any, data: bytes) -> bool:
        """The SecureStream's receiver: inner bytes, handled in its read callback (no task of our own).

        False when a stream's buffer is full: the SecureStream then opens no further record until
        ``_room_made`` (what the mux already holds waits in it). Errors: as ``_dispatch``."""
        if transport is not self._transport:
            return True  # a connection being replaced: nothing more of it counts
        self._mux.receive_data(data)
        if self._full is not None:
            return False
        return self._dispatch()

    def _dispatch(self) -> bool:
        """Act on every complete frame the mux holds; False if a stream filled up (the rest waits).

        A ProtocolViolationError fails the channel for good; any other exception here is our bug and
        does the same (as a ProtocolViolationError, logged)."""
        try:
            return self._dispatch_frames(self._mux)
        except ChannelError:
            raise
        except Exception as exc:
            log.exception("session channel reader failed")
            raise ProtocolViolationError(f"internal error: {type(exc).__name__}") from None

    def _dispatch_frames(self, mux: Mux) -> bool:
        while True:
            event = mux.next_event()
            kind = type(event)
            if kind is StreamData:
                stream = self._streams.get(event.stream)
                if stream is not None and not stream._feed(event.data):
                    self._full = stream
                    return False
            elif event is NEED_DATA:
                return True
            elif kind is SessionMessage:
                if event.message["type"] == MUX_MESSAGE:  # the channel's own: what the peer's mux reads
                    accepts = event.message.get("accepts")
                    mux.peer_accepts_striped = isinstance(accepts, list) and STRIPED_FEATURE in accepts
                else:
                    self._on_message(event.message)
            elif kind is StreamOpened:
                if self._on_open is None:
                    self.refuse_stream(event.stream, "streams are not accepted here")
                    continue
                stream = MuxStream(self, event.stream, event.kind)
                self._streams[event.stream] = stream
                self._on_open(stream)
            elif kind is StreamClosed:
                stream = self._streams.pop(event.stream, None)
                if stream is not None:
                    stream._end(event.reason)

    def _room_made(self, stream: MuxStream) -> None:
        """``stream`` was read below STREAM_BUFFER (or ended): go on with what the mux holds, then read
        the connection again. Runs as a loop callback, never inside the reader that made the room."""
        if self._full is stream:
            self._full = None
            asyncio.get_running_loop().call_soon(self._unblock, self._transport)

    def _unblock(self, transport: Any) -> None:
        if transport is not self._transport or self._full is not None or transport is None:
            return
        try:
            if self._dispatch():
                transport.resume_receiving()
        except ChannelError as exc:
            transport._fail(exc)

    def _end_streams(self, reason: str) -> None:
        for stream in list(self._streams.values()):
            stream._end(reason)
        self._streams.clear()

    # -- the end ---------------------------------------------------------------------------------

    def fail(self, reason: str) -> None:
        """End for good without a resume (e.g. the resume window ran out)."""
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        self._end_streams(reason)
        if self._pacer is not None:
            self._pacer.stop()
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.abort()

    async def close(self, reason: str = "bye") -> None:
        """The authenticated CLOSE on the current transport: the session is over for both ends."""
        already = self.closed
        self.closed = True
        if self.close_reason is None:
            self.close_reason = reason
        self._end_streams(reason)
        if self._pacer is not None:  # queued input goes before the CLOSE record
            self._pacer.flush()
            self._pacer.stop()
        transport = self._transport
        if transport is not None and not already:
            with contextlib.suppress(Exception):
                await transport.close(reason)

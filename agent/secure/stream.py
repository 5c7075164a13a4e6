"""asyncio adapter of the secure channel: the handshake and the record layer over a (reader, writer) pair.

All protocol decisions live in ``handshake`` and ``records``; this module only moves bytes, runs the
timers the protocol asks for and closes the connection on any failure. Timers: an ACK after ~16 KiB
or ``ack_delay`` of received DATA, folded into the next DATA record we send if one goes out within a
second ``ack_delay`` (a record of its own otherwise; with ``lazy_ack``, later while only a few bytes wait
for it); a PING every second while data moves, unless an
ACK gave an RTT sample within that second (every ACK does, see ``records``), and every 10 s when idle. ``as_streams()`` gives duck-typed asyncio streams for RFB code;
the owner learns of ACKs, RTT samples and the end from the callbacks it gives ``watch()``.

Receiving costs one loop callback per socket read: once established, the stream reads the connection
through its own protocol (``ReceiverProtocol``, in agent.secure.stream_receiving with the rest of the
receiving half), which feeds the record layer and acts on every complete record at once, with no
StreamReader and no reader task in between; a consumer that registers
``set_receiver`` gets each payload there too, instead of being woken through ``recv()``. That is the
cost that counts while a technician types: the viewer's paced input (agent.secure.pacing) is 50
records a second, most of them chaff, each its own read. A full consumer stops the opening of records
and the reading of the socket (``pause_reading``) until it makes room.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from typing import Any, Callable

from agent.secure.errors import (AuthFailedError, ChannelClosedError, ChannelError, PeerSilentError,
                                 TruncatedError)
from agent.secure.handshake import AgentHandshake, AuthFailed, Established, ViewerHandshake
from agent.secure.handshake_io import _HANDSHAKE_READ_SIZE, _handshake, run_bounded  # noqa: F401  (re-exported)
from agent.secure.sendqueue import OFFLOAD_THRESHOLD, PendingSend, SendQueue
from agent.secure.stream_receiving import ReceivingHalf
from agent.secure.streamio import ChannelReader, ChannelWriter  # re-exported: their home was here
from agent.secure.records import Channel
from agent.net import close_stream

log = logging.getLogger(__name__)

PING_INTERVAL = 1.0
IDLE_PING_INTERVAL = 10.0  # keepalive PINGs when no DATA moved in either direction
SILENCE_LIMIT = 3 * IDLE_PING_INTERVAL  # nothing received for this long (three missed keepalives): the path
# died without a reset (NAT timeout, no route); fail as a cut so the session resumes instead of waiting for TCP.
SAMPLED_PAUSE = 4  # the ping loop's ticks this many intervals apart while ACKs give RTT samples
ACK_BYTES = 16 * 1024
ACK_DELAY = 0.05
RECV_BUFFER_LIMIT = 1024 * 1024  # authenticated plaintext waiting for recv() before we stop reading the socket
# That limit is checked before every record, not only before every socket read: a read of 64 KiB can
# hold ~1,200 ZDATA records of ~53 bytes that each inflate to 1 MiB. So the inner bytes held for
# recv() stay below RECV_BUFFER_LIMIT + compress.MAX_INFLATED (one record past the limit), whatever
# the peer packs into a read; the rest waits, still compressed, until the consumer drains.
PONG_HIGH_WATER = 64 * 1024  # bytes queued in our transport above which a PONG waits (the latest one only):
# a peer that sends PINGs and never reads cannot grow our write buffer by one PONG per PING.
CLOSE_LINGER = 2.0  # after our CLOSE, how long to wait for the peer's before closing the socket
FAILURE_DELAY = 1.0  # a wrong password is answered after this pause
_RTT_GAIN = 0.125  # smoothing of RTT samples, as TCP's SRTT


async def connect_viewer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, session_id: str,
                         password: str, *, timeout: float = 30, compression: bool = True,
                         **options: Any) -> SecureStream:
    """Viewer side: authenticate with the session password and return the open channel.

    ``compression``: offer ZDATA in the HELLO (the agent compresses only if it offers it too).
    Raises WrongPasswordError, ChannelError or asyncio.TimeoutError; on any of
    them the connection has been closed. ``options`` go to SecureStream.
    """
    handshake = ViewerHandshake(session_id, password, compression=compression)
    outcome = await _handshake(handshake, reader, writer, timeout, failure_delay=0.0)
    assert isinstance(outcome, Established)
    return SecureStream(reader, writer, outcome.channel, **options)


async def accept_agent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, session_id: str,
                       password: str, *, timeout: float = 30, failure_delay: float = FAILURE_DELAY,
                       first: bytes = b"", on_failure: Callable[[], None] | None = None,
                       **options: Any) -> SecureStream:
    """Agent side: check the viewer knows the session password and return the open channel.

    Raises AuthFailedError for a wrong password, ChannelError or asyncio.TimeoutError for
    anything else; the connection is closed on every failure. ``on_failure()`` is called the
    moment a wrong password is known, before the failure delay and before FAILED is written, so a
    viewer that resets the connection then cannot keep its guess from being counted. The
    ``compress`` option (ZDATA) is offered in the HELLO and used only if the viewer offers it too.
    """
    handshake = AgentHandshake(session_id, password, compression=bool(options.get("compress")))
    if first:  # the prefix the caller read to tell a HELLO from a RESUME
        handshake.receive_data(first)
    outcome = await _handshake(handshake, reader, writer, timeout, failure_delay=failure_delay,
                               on_failure=on_failure)
    if isinstance(outcome, AuthFailed):
        raise AuthFailedError("a viewer tried a wrong session password")
    return SecureStream(reader, writer, outcome.channel, **options)


class SecureStream(ReceivingHalf):
    """An established channel over one connection; see the module docstring."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, channel: Channel, *,
                 ping_interval: float = PING_INTERVAL, idle_ping_interval: float = IDLE_PING_INTERVAL, ack_bytes: int = ACK_BYTES, ack_delay: float = ACK_DELAY,
                 recv_buffer_limit: int = RECV_BUFFER_LIMIT, close_linger: float = CLOSE_LINGER,
                 silence_limit: float = SILENCE_LIMIT, compress: bool = False,
                 offload_threshold: int = OFFLOAD_THRESHOLD, lazy_ack: tuple[int, float] | None = None) -> None:
        if compress and channel.compression_agreed:
            channel.enable_compression()
        self._writer = writer
        # Records go straight to the StreamWriter's transport (its write() and is_closing() are one call more
        # each per record); a writer without one is used as it is. Its protocol says whether drain() waits.
        self._out = getattr(writer, "transport", writer)
        self._flow = getattr(writer, "_protocol", None)
        self._channel = channel
        self._ping_interval = ping_interval
        self._idle_ping_interval = idle_ping_interval
        self._ack_bytes = ack_bytes
        self._ack_delay = ack_delay
        # (bytes, seconds): while fewer bytes than that wait for our ACK, it goes alone only after the longer
        # delay (the peer's flow control has room; each ACK alone wakes its loop). None: never lazy.
        self._lazy_bytes, self._lazy_delay = lazy_ack if lazy_ack is not None else (0, 0.0)
        self._ack_lazy = False  # the ACK timer set is the lazy one
        self._recv_limit = recv_buffer_limit
        self._close_linger = close_linger
        self._silence_limit = silence_limit
        self.safety_code: str = channel.safety_code
        self.resumption_secret: bytes = channel.resumption_secret
        self.close_reason: str | None = None
        self.rtt: float | None = None
        self._rx: deque[bytes] = deque()
        self._rx_size = 0
        self._rx_ready = asyncio.Event()  # data, EOF or an error for recv()
        self._pong_due: bytes | None = None  # the latest PING's payload, if its PONG waits for room
        # When the ACK's delay is over: from then it goes with the next DATA, or alone after a grace. A time,
        # not a flag a timer sets: a typed key's request would wake the loop for that alone.
        self._ack_due_at = math.inf
        self._acked_at = float("-inf")  # when our last ACK went (alone or in a record)
        self._sampled = float("-inf")  # when the last RTT sample (PONG or ACK) arrived
        self._acked = asyncio.Event()  # an ACK, or the end of the channel
        self._error: ChannelError | None = None
        self._peer_closed = False
        self._closing = False
        self._discard = False
        self._ended = self._end_told = False
        self._on_ack: Callable[[int], None] | None = None
        self._on_rtt: Callable[[float], None] | None = None
        self._on_end: Callable[[], None] | None = None
        self._close_task: asyncio.Task[None] | None = None
        self._sends = SendQueue(channel, self._seal_send, self._fail, threshold=offload_threshold)
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._ack_timer: asyncio.TimerHandle | None = None
        self._heard = loop.time()  # when bytes last arrived, or when we stopped reading for room (not the peer's fault)
        self._receiver: Callable[[bytes], bool] | None = None
        self._held = False  # no record is opened (and the socket not read) until the consumer makes room
        self._processing = False
        self._eof = False
        self._reading = True  # False once nothing more is read: the peer's CLOSE, EOF, a failure
        # Done at the same moment (named for what it replaced: a reader task), for whoever waits for that.
        self._reader_task: asyncio.Future[None] = loop.create_future()
        self._transport = writer.transport
        self._take_over(reader)
        self._ping_task = loop.create_task(self._ping_loop())

    def __repr__(self) -> str:
        return f"SecureStream({self._channel!r}, rtt={self.rtt})"

    @property
    def bytes_sent(self) -> int:
        return self._channel.bytes_sent

    @property
    def compressing(self) -> bool:
        """Whether what we send goes through the long-window compressor (ZDATA records)."""
        return self._channel.compressing

    @property
    def compression_agreed(self) -> bool:
        """Both ends agreed to ZDATA in the handshake."""
        return self._channel.compression_agreed

    def restrict_compression(self, allowed: bool) -> None:
        """Withdraw ZDATA on this connection (a resume keeps the session's first agreement)."""
        self._channel.restrict_compression(allowed)

    @property
    def bytes_received(self) -> int:
        return self._channel.bytes_received

    @property
    def error(self) -> ChannelError | None:
        """Why the channel failed (it is closed then), or None."""
        return self._error

    @property
    def peer_closed(self) -> bool:
        """True once the peer's authenticated CLOSE arrived (reason in close_reason)."""
        return self._peer_closed

    @property
    def in_flight(self) -> int:
        """DATA bytes sent that the peer has not acknowledged yet."""
        return self._channel.in_flight

    # -- notifications -------------------------------------------------------------------------

    def watch(self, *, on_ack: Callable[[int], None] | None = None, on_rtt: Callable[[float], None] | None = None,
              on_end: Callable[[], None] | None = None) -> None:
        """Register the owner's callbacks, replacing those registered before.

        ``on_ack(acked)``: an ACK arrived (DATA bytes the peer has received so far); ``on_rtt(rtt)``: a
        PONG updated the smoothed RTT. Both run in the read callback. ``on_end()``: the stream ended (the
        peer's CLOSE, a failure, or our own close: see ``peer_closed``, ``close_reason``, ``error``),
        called once as its own loop callback, even if registered after the end. Nothing arrives before
        the caller's next ``await``, so watching straight after ``accept_agent`` misses nothing.
        """
        self._on_ack, self._on_rtt, self._on_end = on_ack, on_rtt, on_end
        self._end_told = False
        if self._ended:
            self._loop.call_soon(self._tell_end)

    def _notify(self, callback: Callable[..., None] | None, *args: Any) -> None:
        if callback is not None:
            try:
                callback(*args)
            except Exception:  # the owner's bug must not take the channel down with it
                log.exception("a secure stream notification callback failed")

    def _end(self) -> None:
        if not self._ended:
            self._ended = True
            self._loop.call_soon(self._tell_end)

    def _tell_end(self) -> None:
        if self._on_end is not None and not self._end_told:
            self._end_told = True
            self._notify(self._on_end)

    # -- sending -------------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        out = self._out
        if data and not out.is_closing():
            out.write(data)

    def _send_nowait(self, data: bytes | bytearray | memoryview, *, fixed_size: bool = False,
                     on_sent: Callable[[], None] | None = None) -> None:
        """Seal and write ``data`` after what was sent before it (a big compressed write is compressed in
        a worker first: agent.secure.sendqueue); ``on_sent()`` runs once it is sealed and written."""
        if self._error is not None:
            raise self._error
        if self._closing:  # our CLOSE may still wait behind a compression: nothing may follow it
            raise ChannelClosedError("this end already closed the channel; it cannot send any more")
        if self._sends.busy or len(data) >= self._sends.threshold:
            self._sends.submit(PendingSend(data, fixed_size, on_sent))
        else:  # the common small write: sealed here, without the queue's bookkeeping
            self._seal(data, fixed_size, None, on_sent)

    def _seal_send(self, send: PendingSend) -> None:
        self._seal(send.data, send.fixed_size, send.pieces, send.on_sent)

    def _seal(self, data: bytes | bytearray | memoryview, fixed_size: bool, pieces: list[bytes] | None,
              on_sent: Callable[[], None] | None) -> None:
        """Seal one write on the loop; a due ACK rides along. Paced input (``fixed_size``) always carries an
        ACK field, at its full width, so its records keep one size. It acknowledges what came since our
        last ACK if that one is ``2 * ack_delay`` old (the longest an ACK waits anyway): the first record
        after an update, while ACKs stay as rare as the timer makes them (chaff is 50 records a second,
        and every ACK costs the agent flow-control work)."""
        unacked = len(data) > 0 and self._channel.unacked_received > 0
        if fixed_size:
            ack = unacked and self._loop.time() - self._acked_at >= 2 * self._ack_delay
        else:
            ack = unacked and self._loop.time() >= self._ack_due_at
        if pieces is not None:  # compressed by the worker
            self._write(self._channel.send_deflated(pieces, ack=ack))
        elif fixed_size:
            self._write(self._channel.send_paced(data, ack=ack))
        else:
            self._write(self._channel.send_data(data, ack=ack))
        if ack:
            self._ack_done()
        if on_sent is not None:
            on_sent()

    def _drain_needed(self) -> bool:
        """Whether ``_drain()`` would wait or raise (unknown writers: assumed to)."""
        return (self._sends.busy or self._error is not None or self._out.is_closing()
                or getattr(self._flow, "_paused", True))  # asyncio's StreamWriter

    async def _drain(self) -> None:
        if self._sends.busy:  # what waits for the worker is not in the socket buffer yet
            await self._sends.wait_idle()
        if self._error is not None:
            raise self._error
        try:
            await self._writer.drain()
        except (ConnectionError, OSError):
            raise self._fail(ChannelError("the connection was lost while sending")) from None

    async def send(self, data: bytes) -> None:
        """Send ``data`` as DATA records, then wait until the socket buffer has room."""
        self._send_nowait(data)
        await self._drain()

    async def wait_in_flight_below(self, limit: int) -> None:
        """Wait until fewer than ``limit`` sent bytes are unacknowledged by the peer."""
        while self._channel.in_flight >= limit:
            if self._error is not None:
                raise self._error
            if self._closing or self._peer_closed:
                raise ChannelClosedError("the channel closed before the peer acknowledged the data in flight")
            self._acked.clear()
            await self._acked.wait()

    # -- receiving ------------------------------------------------------------------------------

    async def recv(self) -> bytes:
        """The next DATA payload; b"" after the peer's CLOSE (see close_reason) or our own close.

        Only while no receiver is set (``set_receiver``): then payloads wait here, up to the buffer limit."""
        while not self._rx:
            if self._error is not None:
                raise self._error
            if self._peer_closed or self._closing:
                return b""
            self._rx_ready.clear()
            await self._rx_ready.wait()
        chunk = self._rx.popleft()
        self._rx_size -= len(chunk)
        if self._held and self._rx_size < self._recv_limit:
            self.resume_receiving()
        return chunk

    def _peer_closing(self, reason: str) -> None:
        self.close_reason = reason
        self._peer_closed = True
        self._reading_over()
        # Answer with our own CLOSE at once, as a WebSocket endpoint does: the peer is
        # lingering for it, and nothing more will arrive that we could leave unread.
        self._sends.drop()  # the peer discards DATA after its CLOSE: do not keep it waiting
        self._send_close("bye")
        self._stop_timers()
        self._wake()
        self._writer.close()
        self._end()

    def _reading_over(self) -> None:
        self._reading = False
        if not self._reader_task.done():
            self._reader_task.set_result(None)

    def _rtt_sample(self, rtt: float) -> None:
        self._sampled = self._loop.time()
        self.rtt = rtt if self.rtt is None else self.rtt + _RTT_GAIN * (rtt - self.rtt)
        self._notify(self._on_rtt, self.rtt)

    def _schedule_ack(self) -> None:
        if self._closing:
            return
        unacked = self._channel.unacked_received
        if unacked >= self._ack_bytes:
            self._send_ack()
        elif self._ack_timer is None:
            # after ack_delay DATA may carry it; after one more (or the lazy delay, for a few bytes), alone
            self._ack_due_at = self._loop.time() + self._ack_delay
            self._ack_lazy = unacked < self._lazy_bytes
            self._ack_timer = self._loop.call_later(self._lazy_delay if self._ack_lazy else 2 * self._ack_delay,
                                                    self._send_ack)
        elif self._ack_lazy and unacked >= self._lazy_bytes:  # no longer a few bytes: the usual grace
            self._ack_lazy = False
            self._ack_timer.cancel()
            # (twice ack_delay from when it became owed: one more past the time DATA may carry it)
            self._ack_timer = self._loop.call_at(self._ack_due_at + self._ack_delay, self._send_ack)

    def _ack_done(self) -> None:
        self._ack_due_at = math.inf
        self._acked_at = self._loop.time()
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None

    def _send_ack(self) -> None:
        self._ack_done()
        if self._channel.can_send and self._channel.unacked_received > 0:
            self._write(self._channel.send_ack())

    def _send_pong(self) -> None:
        """The PONG due, unless our transport already holds more than PONG_HIGH_WATER bytes (then it
        waits, replaced by any later PING's, and goes with our next PING or the next PING received)."""
        payload = self._pong_due
        if payload is None or not self._channel.can_send or self._writer.is_closing():
            return
        if self._writer.transport.get_write_buffer_size() > PONG_HIGH_WATER:
            return
        self._pong_due = None
        self._write(self._channel.send_pong(payload))

    async def _ping_loop(self) -> None:
        # RTT samples are needed while data moves (flow control); an idle channel
        # only needs a keepalive now and then, which keeps idle sessions near-silent.
        moved, quiet, pause, sent_before = -1, 0.0, self._ping_interval, -1
        while self._channel.can_send and not self._writer.is_closing():
            sent = self._channel.bytes_sent
            total = sent + self._channel.bytes_received
            self._send_pong()
            if not self._held and self._loop.time() - self._heard > self._silence_limit:
                self._fail(PeerSilentError(f"nothing arrived from the peer for {self._silence_limit:g} s"))
                self._writer.transport.abort()  # a dead path would never flush what close() waits to send
                return
            recent = self._loop.time() - self._sampled < pause  # an ACK gave a sample since the last tick
            if (total != moved and not recent) or quiet >= self._idle_ping_interval:
                self._write(self._channel.send_ping())
                quiet = 0.0
            elif total != moved:
                quiet = 0.0
            else:
                quiet += pause
            # While the ACKs of what we send give the samples, a tick finds nothing to do: each is a loop
            # wake-up on the customer's PC (~0.15 ms of CPU after a sleep), so they come SAMPLED_PAUSE times
            # further apart then (a keepalive after the flow stops may come that much later: far inside
            # the peer's silence limit).
            pause = self._ping_interval * (SAMPLED_PAUSE if recent and sent != sent_before else 1)
            moved, sent_before = total, sent
            await asyncio.sleep(pause)

    def _wake(self) -> None:
        self._rx_ready.set()
        self._acked.set()

    def _fail(self, error: ChannelError) -> ChannelError:
        """Any failure closes: remember the first error, stop the timers, close the socket."""
        if self._error is None:
            self._error = error
            log.debug("secure channel failed: %s", error)
        self._reading_over()
        self._sends.drop()  # nothing is sealed after a failure; a running compression's result is dropped
        self._stop_timers()
        self._wake()
        self._writer.close()
        self._end()
        return self._error

    def _stop_timers(self) -> None:
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None
        self._ping_task.cancel()

    # -- closing -------------------------------------------------------------------------------

    def _send_close(self, reason: str) -> None:
        if self._error is None and self._channel.can_send and not self._writer.is_closing():
            self._write(self._channel.send_close(reason))
            if self._writer.can_write_eof():
                with contextlib.suppress(OSError, RuntimeError):
                    self._writer.write_eof()

    def _start_close(self, reason: str) -> asyncio.Task[None]:
        if self._close_task is None:
            self._closing = True
            self._discard = True
            self._rx.clear()
            self._rx_size = 0
            self._stop_timers()
            self._wake()
            self.resume_receiving()  # what waits for room is discarded now: read on until the peer's CLOSE
            self._sends.after(lambda: self._send_close(reason))  # after the DATA written before it
            self._close_task = self._loop.create_task(self._finish_close())
            self._end()
        return self._close_task

    async def _finish_close(self) -> None:
        # Linger until the peer answers with its CLOSE (or EOF): closing a socket that still has
        # unread input makes the kernel send a reset, which can destroy our CLOSE before the peer reads it.
        try:
            await self._sends.wait_idle()  # our CLOSE may wait for a compression
            if not self._reader_task.done():
                await asyncio.wait({self._reader_task}, timeout=self._close_linger)
        finally:
            self._reading_over()  # the peer did not answer in time: nothing it sends now is read
            self._ping_task.cancel()
            await asyncio.gather(self._reader_task, self._ping_task, return_exceptions=True)
            await close_stream(self._writer)

    def abort(self, reason: str = "the connection was replaced") -> None:
        """Drop the connection at once without a CLOSE (the peer sees a cut it may resume from)."""
        self._fail(TruncatedError(reason))
        self._writer.transport.abort()

    async def close(self, reason: str = "bye") -> None:
        """Send the authenticated CLOSE with ``reason`` and close the connection."""
        await asyncio.shield(self._start_close(reason))

    # -- duck-typed asyncio streams -------------------------------------------------------------

    def as_streams(self) -> tuple[ChannelReader, ChannelWriter]:
        """(reader, writer) objects with the asyncio stream methods RFB code uses."""
        return ChannelReader(self), ChannelWriter(self)

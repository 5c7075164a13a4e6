"""The receiving half of SecureStream: the connection's protocol once established, and what it does
with every record (see agent.secure.stream's docstring: one loop callback per socket read).

A mixin of SecureStream, kept apart for size: it reads and writes SecureStream's own state.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any, Callable

from agent.secure.errors import ChannelError, TruncatedError
from agent.secure.records import NEED_DATA, Ack, Closed, Data, Ping, Pong

log = logging.getLogger("agent.secure.stream")


class ReceiverProtocol(asyncio.Protocol):
    """The connection's protocol once the channel is established (``SecureStream._take_over``).

    Received bytes go straight into the record layer from the transport's read callback, with no
    StreamReader, waiter future or reader task between them: one loop callback per read instead of
    three. Flow control of writing (``StreamWriter.drain``) and the close waiter stay with the
    StreamWriter's own protocol, to which pause/resume of writing and the connection's loss are passed on.
    """

    __slots__ = ("_inner", "_stream")

    def __init__(self, stream: ReceivingHalf, inner: asyncio.BaseProtocol) -> None:
        self._stream = stream
        self._inner = inner

    def data_received(self, data: bytes) -> None:
        self._stream._received(data)

    def eof_received(self) -> bool:
        self._stream._received_eof()
        return True  # half-open: our answer (a CLOSE, or nothing after a failure) still decides the close

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._inner.connection_lost(exc)
        self._stream._lost(exc)


class ReceivingHalf:
    """SecureStream's reading side; see the module docstring."""

    _channel: Any
    _loop: asyncio.AbstractEventLoop
    _transport: Any

    def set_receiver(self, receiver: Callable[[bytes], bool] | None) -> None:
        """Hand every DATA payload to ``receiver(data)`` the moment its record is opened, instead of
        queueing it for ``recv()`` (None: queue again).

        This saves the consumer a task wake-up per record (a viewer's paced input is 50 records a second,
        most of them chaff). ``receiver`` runs inside the connection's read callback: it must not block,
        and a ChannelError it raises fails the channel. It returns False when its consumer has no room
        for more: then no further record is opened and the socket is not read until ``resume_receiving()``.
        Payloads that were queued before it was set go to it first, in order."""
        self._receiver = receiver
        if receiver is None or not self._rx:
            return
        queued, self._rx = self._rx, deque()
        self._rx_size = 0
        try:
            while queued:
                if receiver(queued.popleft()) is False:
                    self._hold()
                    break
        except ChannelError as exc:
            self._fail(exc)
            return
        if queued:  # the receiver is full: what is left waits for it, ahead of anything newer
            queued.extend(self._rx)
            self._rx = queued
            self._rx_size = sum(map(len, queued))

    def resume_receiving(self) -> None:
        """The consumer has room again (after ``recv()`` or a receiver that said no): open records and
        read the socket again, from the next loop iteration (never inside the consumer's own call)."""
        if self._held:
            self._held = False
            self._heard = self._loop.time()  # we were not reading: the peer's silence since is not its own
            self._loop.call_soon(self._resume)

    def _resume(self) -> None:
        if self._held or not self._reading:
            return
        receiver = self._receiver
        if receiver is not None and self._rx:  # left over from set_receiver
            self.set_receiver(receiver)
            if self._held:
                return
        self._process()
        if not self._held and self._reading:
            with contextlib.suppress(RuntimeError):  # the transport closed meanwhile
                self._transport.resume_reading()

    def _hold(self) -> None:
        """The consumer is full: open no further record (a ZDATA one may inflate to 1 MiB) and read no
        more; what arrived stays sealed, and compressed, in the channel until it makes room."""
        if not self._held:
            self._held = True
            with contextlib.suppress(RuntimeError):
                self._transport.pause_reading()

    # -- the connection's protocol (ReceiverProtocol) calls these ----------------------------------------

    def _take_over(self, reader: asyncio.StreamReader) -> None:
        """Read the connection through our own protocol from now on (one loop callback per read, no task,
        no StreamReader between the socket and the record layer); writing stays with the StreamWriter.

        What the handshake's StreamReader had buffered beyond the handshake goes to the channel first.
        Its events are handled from the next loop iteration, so the owner's ``watch()`` right after
        construction misses nothing."""
        transport = self._transport
        buffered = bytes(reader._buffer)  # asyncio's StreamReader keeps unread bytes there (3.8 to 3.13)
        reader._buffer.clear()
        eof = reader.at_eof() or reader.exception() is not None or transport.is_closing()
        if getattr(reader, "_paused", False):  # it stopped reading for a full buffer we just emptied
            reader._paused = False
            transport.resume_reading()
        inner = transport.get_protocol()
        transport.set_protocol(ReceiverProtocol(self, inner))
        if buffered:
            self._channel.receive_data(buffered)
        self._loop.call_soon(self._received_eof if eof else self._process)

    def _received(self, data: bytes) -> None:
        if not self._reading:
            return  # nothing after our CLOSE's answer, a failure or EOF is used
        self._heard = self._loop.time()
        try:
            self._channel.receive_data(data)
        except ChannelError as exc:
            self._fail(exc)
            return
        if not self._held:
            self._process()

    def _received_eof(self) -> None:
        if not self._reading or self._eof:
            return
        self._eof = True
        # Once the records before it are opened (after the consumer made room, if it is full), the
        # channel raises TruncatedError, unless the peer's CLOSE was among them.
        self._channel.receive_data(b"")
        if not self._held:
            self._process()

    def _lost(self, exc: Exception | None) -> None:
        if not self._reading:
            return
        if exc is not None:  # a reset: what the kernel held is gone, so is what we did not open yet
            self._fail(TruncatedError("the connection was reset without the peer's CLOSE"))
        else:
            self._received_eof()

    def _process(self) -> None:
        """Open every complete record received (until the consumer is full) and act on each."""
        if self._processing or not self._reading:  # re-entered from a receiver: the loop below goes on anyway
            return
        self._processing = True
        channel = self._channel
        got_data = False
        try:
            while not self._held and self._reading:  # a receiver may end the stream (abort, a failure)
                event = channel.next_event()
                kind = type(event)
                if kind is Data:
                    got_data = True
                    if self._discard:
                        continue
                    receiver = self._receiver
                    if receiver is not None:
                        if receiver(event.data) is False:
                            self._hold()
                        continue
                    self._rx.append(event.data)
                    self._rx_size += len(event.data)
                    if self._rx_size >= self._recv_limit:
                        self._hold()
                elif event is NEED_DATA:
                    break
                elif kind is Ack:
                    self._acked.set()
                    self._notify(self._on_ack, channel.peer_acked)
                    if event.rtt is not None:
                        self._rtt_sample(event.rtt)
                elif kind is Ping:
                    self._pong_due = event.payload  # coalesced: only the latest PING is answered
                    self._send_pong()
                elif kind is Pong:
                    if event.rtt is not None:
                        self._rtt_sample(event.rtt)
                elif kind is Closed:
                    self._peer_closing(event.reason)
                    return
        except ChannelError as exc:
            self._fail(exc)
            return
        except Exception as exc:  # a bug here must not leave recv() waiting forever
            log.exception("secure channel reader failed")
            self._fail(ChannelError(f"internal error in the secure channel reader: {type(exc).__name__}"))
            return
        finally:
            self._processing = False
        if got_data:
            if self._rx:
                self._rx_ready.set()
            self._schedule_ack()

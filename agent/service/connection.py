"""One RFB connection inside a service: its protocol state, update logic and the I/O that moves its bytes.

Works on any (reader, writer) pair with the asyncio streams duck type: TCP
for ``rejnet-agent rfb``, a stream of the secure channel in a session. The
receive loop feeds the sans-IO RFBServer and hands client messages to the
service (on a session's stream the channel's read callback does, with no task:
``ChannelReader.receive_with``); the send loop wakes on ``kick()`` and writes
one update at a time, encoding in a worker thread. A new frame's small update
is written by ``send_now()`` in the capture's own step when the send loop is
idle and nothing would have to wait.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Callable, Optional

from agent.net import close_stream
from agent.models import shift_matrices
from agent.rfb import messages as M
from agent.rfb.server import RFBServer
from agent.sansio import NEED_DATA, RemoteProtocolError
from agent.service.frame_gate import FrameGate
from agent.service.updater import EncodedJob, UpdateJob, UpdateStats, ViewerUpdater

log = logging.getLogger(__name__)

READ_SIZE = 64 * 1024
CLOSE_FLUSH_TIMEOUT = 1.0  # seconds the last bytes (a SecurityResult with its reason) get on close
# Replies the protocol writes on its own (Fence responses, EndOfContinuousUpdates) pile up while the send
# loop is blocked on a client that does not read. Above this many bytes we stop reading the client's
# messages until the send loop has handed them to the transport: at most this plus one read's worth.
REPLY_HIGH_WATER = 64 * 1024
# Updates up to this many pixels (a keystroke's echo, a cursor blink) are encoded on the event loop: a
# worker thread's hand-off and wake-up cost more than encoding them (tens of microseconds).
INLINE_ENCODE_PIXELS = 128 * 128


class RFBConnection:
    """One connected RFB client of the service."""

    def __init__(self, peer: str, server: RFBServer, updater: ViewerUpdater, reader: Any, writer: Any, *,
                 gate: Optional[FrameGate] = None) -> None:
        self.peer = peer
        self.server = server
        self.updater = updater
        self.connected_at = time.monotonic()
        self._reader = reader
        self._writer = writer
        self._writes_matrices = bool(getattr(writer, "writes_matrices", False))  # MuxWriter: write(data, matrices)
        # MuxWriter: whether drain() would wait (None: the writer cannot say, and send_now() leaves all to the loop)
        self._drain_needed: Optional[Callable[[], bool]] = getattr(writer, "drain_needed", None)
        # held from taking an update's changes to encoding them: the capture may write the frame in place
        self._gate = gate if gate is not None else FrameGate()
        self._kick = asyncio.Event()
        self._replies = bytearray()  # protocol replies taken from the server, not yet written
        self._replies_taken = asyncio.Event()  # the send loop took them (set), or more wait (clear)
        self._replies_taken.set()
        self._receive_held: Optional[bool] = None  # receiving in callbacks: whether the replies stopped it
        self._parked = False  # the send loop waits for a kick: send_now() may do its work meanwhile
        self._carried: Optional[tuple[UpdateJob, float]] = None  # a job send_now() left to the send loop
        self._failed: Optional[Exception] = None  # what send_now() hit: the send loop raises it
        self._due_timer: Optional[asyncio.TimerHandle] = None

    @property
    def stats(self) -> UpdateStats:
        return self.updater.stats

    def kick(self) -> None:
        """Ask this connection's sender to try an update now (new frame, request, link has room)."""
        self._kick.set()

    def refresh(self) -> None:
        """Send the whole screen with the next update (e.g. after the channel under it was resumed)."""
        self.updater.tracker.mark_all()
        self._kick.set()

    def __repr__(self) -> str:
        return f"<RFBConnection {self.peer} {self.server.width}x{self.server.height}>"

    async def run(self, dispatch: Callable[["RFBConnection", object], None]) -> None:
        """Receive and send until the client leaves; raises the reason it had to be closed."""
        receiver = self._receive_in_callbacks(dispatch) or asyncio.ensure_future(self._receive_loop(dispatch))
        sender = asyncio.ensure_future(self._send_loop())
        try:
            done, _ = await asyncio.wait({receiver, sender}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if self._receive_held is not None:
                self._reader.receive_with(None)
            if self._carried is not None:  # a job the sender never took: its hold on the gate goes
                self._carried = None
                self._gate.done_reading()
            if self._due_timer is not None:
                self._due_timer.cancel()
            for task in (receiver, sender):
                task.cancel()
            for task in (receiver, sender):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for task in done:
            task.result()  # re-raise the reason, for the service to log

    def _handle_events(self, dispatch: Callable[["RFBConnection", object], None]) -> bool:
        """Act on every complete client message the server holds; False once the client closed."""
        server = self.server
        while True:
            event = server.next_event()
            if event is NEED_DATA:
                self._replies += server.data_to_send()  # only replies here: the send loop flushes updates at once
                if self._replies or not self.updater.idle(asyncio.get_running_loop().time()):
                    self.kick()  # answer requests and flush fence replies before blocking
                return True
            if isinstance(event, M.ConnectionClosed):
                log.info("viewer %s disconnected", self.peer)
                return False
            dispatch(self, event)

    async def _receive_loop(self, dispatch: Callable[["RFBConnection", object], None]) -> None:
        while self._handle_events(dispatch):
            while len(self._replies) > REPLY_HIGH_WATER:  # a client flooding requests it never reads
                self._replies_taken.clear()
                await self._replies_taken.wait()
            self.server.receive_data(await self._reader.read(READ_SIZE))

    def _receive_in_callbacks(self, dispatch: Callable[["RFBConnection", object], None]
                              ) -> Optional[asyncio.Future[None]]:
        """Where the reader can (a stream of the session channel), the client's bytes are handled in the
        channel's read callback, not by a task: a typed key's update request then wakes no task. The
        future ends as ``_receive_loop`` would; None: the reader cannot (plain TCP), use the loop."""
        if not callable(getattr(self._reader, "receive_with", None)):
            return None
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def handled(data: Optional[bytes]) -> bool:
            """Act on ``data`` (None: only what the server holds); False once ``done`` (closed or erred)."""
            try:
                if data is not None:
                    self.server.receive_data(data)
                if self._handle_events(dispatch):
                    return True
                done.set_result(None)
            except Exception as exc:  # as if _receive_loop raised it: the service logs it and closes
                done.set_exception(exc)
            return False

        def received(data: bytes) -> bool:
            if done.done() or not handled(data):
                return True
            if len(self._replies) > REPLY_HIGH_WATER:  # a client flooding requests it never reads
                self._replies_taken.clear()
                self._receive_held = True
                return False  # the rest waits in the channel until _write_out takes the replies
            return True

        if not handled(None):  # what came with the handshake
            return done
        if not self._reader.receive_with(received):
            return None
        self._receive_held = False
        return done

    async def _send_loop(self) -> None:
        loop = asyncio.get_running_loop()
        updater = self.updater
        while True:
            self._parked = True
            try:
                await self._kick.wait()
            finally:
                self._parked = False
            self._kick.clear()
            if self._failed is not None:
                raise self._failed
            carried, self._carried = self._carried, None
            if carried is None:
                await self._gate.start_reading()
            sent_before = None
            try:
                if carried is None:
                    now = loop.time()
                    job = updater.prepare_update(now)
                else:  # a big update send_now() took: it holds the gate for us
                    job, now = carried
                if job is not None:
                    if job.pixels <= INLINE_ENCODE_PIXELS:
                        encoded = updater.encode_job(job)
                    else:  # encoding releases the GIL: other viewers, input and capture go on meanwhile
                        encoded = await asyncio.to_thread(updater.encode_job, job)
                    sent_before = self._finish(job, encoded)
            finally:
                self._gate.done_reading()
            if updater.close_reason is not None:
                raise RemoteProtocolError(updater.close_reason)
            if self._write_out():
                await self._writer.drain()
            self._sent(job, sent_before, now)

    def send_now(self) -> None:
        """A new frame is in: send its update from here, when that needs no wait (the sender idle, the
        frame free to read, a small update, room in the socket); else wake the sender as ``kick()``.

        A typed key's echo then costs no task wake-up (~50 us of the customer's CPU with the caches cold
        between keys: ``python -m benchmarks.cold_cost``). A big update goes to the sender, gate held,
        to be encoded in a worker thread; an error goes to the sender too, which ends the connection."""
        drain_needed = self._drain_needed
        if not self._parked or self._kick.is_set() or drain_needed is None or drain_needed() \
                or not self._gate.try_read():
            self._kick.set()
            return
        updater = self.updater
        sent_before = None
        try:
            now = asyncio.get_running_loop().time()
            job = updater.prepare_update(now)
            if job is not None and job.pixels > INLINE_ENCODE_PIXELS:
                self._carried = (job, now)
                self._kick.set()
                return  # the gate stays held: the sender lets it go once it has encoded the job
            if job is not None:
                sent_before = self._finish(job, updater.encode_job(job))
        except Exception as exc:
            self._gate.done_reading()
            self._failed = exc
            self._kick.set()
            return
        self._gate.done_reading()
        if updater.close_reason is not None:
            self._kick.set()  # the sender ends the connection with it
            return
        if self._write_out() and drain_needed():
            self._kick.set()  # the sender waits for the room (and finds no update meanwhile)
        self._sent(job, sent_before, now)

    def _finish(self, job: UpdateJob, encoded: EncodedJob) -> Optional[int]:
        """Put the encoded update in the server's buffer; returns the link's sent counter just before (for
        ``_sent`` to learn what the update cost the link)."""
        sent_before = self.updater.link_sent()
        self.updater.finish_update(job, encoded, asyncio.get_running_loop().time())
        return sent_before

    def _sent(self, job: Optional[UpdateJob], sent_before: Optional[int], now: float) -> None:
        """After an update is written: what it cost the link, and the timer for the next one due."""
        updater = self.updater
        sent_after = updater.link_sent() if sent_before is not None else None
        if job is not None and sent_before is not None and sent_after is not None:
            updater.learn_link_cost(job, sent_after - sent_before)
        if self._due_timer is not None:
            self._due_timer.cancel()
            self._due_timer = None
        due = updater.next_due(now)
        if due is not None and due > now and updater.wants_update:
            # a lossless refresh, or churning areas' next turn
            self._due_timer = asyncio.get_running_loop().call_at(due, self.kick)

    @property
    def replies_pending(self) -> int:
        """Protocol replies (Fence, EndOfContinuousUpdates) waiting for the send loop, in bytes."""
        return len(self._replies)

    def _write_out(self) -> bool:
        """Hand the protocol's bytes (replies first: they were queued first) to the writer; False: none."""
        data, matrices = self.server.data_to_send_with_matrices()
        if self._replies:
            matrices = shift_matrices(matrices, len(self._replies))
            data = bytes(self._replies) + data
            self._replies.clear()
        self._replies_taken.set()
        if self._receive_held:
            self._receive_held = False
            self._reader.resume_receiving()
        if data:
            if matrices and self._writes_matrices:
                self._writer.write(data, matrices)  # the secure channel's stream: matrices go in stripes
            else:
                self._writer.write(data)
        return bool(data)


async def flush(writer: Any, server: RFBServer) -> None:
    """Write what the protocol object has to send and wait for the transport to take it."""
    data = server.data_to_send()
    if data:
        writer.write(data)
        await writer.drain()


async def handshake(reader: Any, writer: Any, server: RFBServer, peer: str, auth_failure_delay: float) -> bool:
    """Up to ClientInit; False when the client failed authentication or left."""
    while True:
        event = server.next_event()
        if event is NEED_DATA:
            await flush(writer, server)
            server.receive_data(await reader.read(READ_SIZE))
            continue
        if isinstance(event, M.ClientInit):
            return True
        if isinstance(event, M.AuthenticationFailed):
            log.warning("viewer %s failed VNC authentication", peer)
            await asyncio.sleep(auth_failure_delay)
            return False
        if isinstance(event, M.ConnectionClosed):
            log.info("viewer %s left during the handshake", peer)
            return False


async def close_connection(writer: Any, server: RFBServer) -> None:
    """Send the last words (e.g. a SecurityResult with its reason), then close for good."""
    with contextlib.suppress(ConnectionError, OSError, RuntimeError):
        data = server.data_to_send()
        if data and not writer.is_closing():
            writer.write(data)
            await asyncio.wait_for(writer.drain(), CLOSE_FLUSH_TIMEOUT)
    with contextlib.suppress(RuntimeError):  # a transport whose loop is already gone
        await close_stream(writer)

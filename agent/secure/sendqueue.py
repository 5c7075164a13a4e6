"""Big compressed writes are compressed in a worker thread, so zstd does not stall the event loop.

A novel, weakly compressible 1080p frame (8 MB) costs zstd about half a second; run inside
``write()`` on the loop, that is half a second in which the agent reads no input, answers no PING
and serves no control socket. ``SendQueue`` sits between a SecureStream and its Channel: a DATA
write of at least ``OFFLOAD_THRESHOLD`` raw bytes on a compressing channel goes to a worker
(``Channel.deflate``: it touches only the compressor, which releases the GIL), and the DATA writes
and the CLOSE that come after it wait in a backlog. When the worker is done, the loop seals its
pieces (AES is ~1 ms a MB: not worth a thread) and then runs the backlog in order; a big write in
the backlog starts the next job and the rest waits again. So the zstd stream sees the inner bytes
in order and from one thread at a time, and every record is sealed on the loop, in the order it is
written, which is the order of the implicit record counters.

Control records (ACK, PING, PONG) do not wait: they carry no inner bytes, and sealing them on the
loop while the worker compresses touches nothing the worker uses. That keeps RTT samples honest and
lets a PING be answered during a long compression. Until a job is sealed its bytes are not in
``bytes_sent``/``in_flight`` (they are not known yet); ``drain()`` waits for the backlog first.

If the stream fails or is aborted, the backlog is forgotten and the worker's result dropped: nothing
is sealed after that (the channel is dead; a resume replays from SessionChannel's log).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
from collections import deque
from dataclasses import dataclass
from typing import Callable, Union

from agent.secure.errors import ChannelError
from agent.secure.records import Channel

OFFLOAD_THRESHOLD = 256 * 1024  # raw bytes: below it zstd costs ~1-2 ms, less than a thread hop is worth
_executor: concurrent.futures.ThreadPoolExecutor | None = None


def _worker() -> concurrent.futures.ThreadPoolExecutor:
    """One thread for every channel's compression: the loop keeps the other core (2 cores on the boxes)."""
    global _executor
    if _executor is None:
        _executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="zstd")
    return _executor


@dataclass(slots=True)
class PendingSend:
    """One DATA write: its raw bytes, whether its records keep their size, and who wants to know
    when it is sealed (SessionChannel's replay log marks ``bytes_sent`` then)."""

    data: bytes | bytearray | memoryview
    fixed_size: bool = False
    on_sent: Callable[[], None] | None = None
    pieces: list[bytes] | None = None  # the worker's ZDATA payloads, once it is done

    def own(self) -> None:
        """Copy the bytes if the caller could still change them (asyncio's write() may be relied on to)."""
        if type(self.data) is not bytes:
            self.data = bytes(self.data)


_Item = Union[PendingSend, Callable[[], None]]


class SendQueue:
    """See the module docstring. ``seal(send)`` seals and writes one PendingSend on the loop (raising
    ChannelError as ``_send_nowait`` does); ``fail(error)`` fails the stream when a deferred seal or
    the worker fails, since nobody is there to catch it."""

    def __init__(self, channel: Channel, seal: Callable[[PendingSend], None],
                 fail: Callable[[ChannelError], object], *, threshold: int = OFFLOAD_THRESHOLD) -> None:
        self._channel = channel
        self._seal = seal
        self._fail = fail
        self._threshold = threshold
        self._loop = asyncio.get_running_loop()
        self._backlog: deque[_Item] = deque()
        self._job: asyncio.Future[list[bytes]] | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def threshold(self) -> int:
        """Raw bytes from which a compressed write goes to the worker."""
        return self._threshold

    @property
    def busy(self) -> bool:
        """A compression is running in the worker (DATA and CLOSE wait behind it)."""
        return self._job is not None

    def submit(self, send: PendingSend) -> None:
        """Send ``send`` after everything submitted before it: now, in the worker, or from the backlog."""
        if self._job is not None:
            send.own()
            self._backlog.append(send)
        else:
            self._run(send)

    def after(self, action: Callable[[], None]) -> None:
        """Run ``action`` on the loop once everything submitted so far is sealed (at once if nothing waits)."""
        if self._job is not None:
            self._backlog.append(action)
        else:
            action()

    async def wait_idle(self) -> None:
        """Until nothing waits for the worker (sealed and written, or dropped)."""
        await self._idle.wait()

    def drop(self) -> None:
        """The stream ended: forget the backlog; the running job's result is dropped when it comes."""
        self._backlog.clear()
        self._job = None
        self._idle.set()

    def _run(self, item: _Item) -> None:
        if not isinstance(item, PendingSend):
            item()
        elif self._channel.compressing and len(item.data) >= self._threshold:
            item.own()  # the caller may reuse its buffer once write() returned
            job = self._loop.run_in_executor(_worker(), self._channel.deflate, item.data)
            self._job = job
            self._idle.clear()
            job.add_done_callback(lambda done, item=item: self._done(done, item))  # type: ignore[misc]
        else:
            self._seal(item)

    def _done(self, job: asyncio.Future[list[bytes]], send: PendingSend) -> None:
        if job.cancelled():
            return
        error = job.exception()  # retrieved even when dropped: no "exception never retrieved"
        if job is not self._job:
            return  # dropped: the stream failed or was aborted meanwhile
        self._job = None
        try:
            if error is not None:
                raise ChannelError(f"compression failed: {type(error).__name__}: {error}")
            send.pieces = job.result()
            self._seal(send)
            while self._backlog and self._job is None:
                self._run(self._backlog.popleft())
        except Exception as exc:  # nobody awaits this callback: fail the stream rather than hang drain()
            self._fail(exc if isinstance(exc, ChannelError) else
                       ChannelError(f"internal error in the secure channel's sender: {type(exc).__name__}"))
            self.drop()
            return
        if self._job is None:
            self._idle.set()

"""One stream inside a SessionChannel (agent.secure.session_channel): its bytes in, and out through the mux.

Split from the channel module: the stream's side of receiving (a queue for ``recv``, or a receiver
called in the channel's read callback) and asyncio-style ``as_streams`` for RFB code.
"""
from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Callable, Sequence

from agent.models import Matrix
from agent.secure.stream import ChannelReader

STREAM_BUFFER = 1024 * 1024      # bytes one stream may hold unread before the channel stops reading


class MuxStream:
    """One stream inside a SessionChannel: ``recv``/``send`` and asyncio-style ``as_streams``."""

    def __init__(self, owner: Any, stream_id: int, kind: str) -> None:
        self._owner = owner
        self.id = stream_id
        self.kind = kind
        self._rx: deque[bytes] = deque()
        self._rx_size = 0
        self._ready = asyncio.Event()
        self.closed = False           # no more bytes will arrive
        self.close_reason: str | None = None
        self._sent_close = False
        self._receiver: Callable[[bytes], bool] | None = None  # set_data_receiver's
        self._holding = False  # the receiver said it is full
        self._end_told = False

    def __repr__(self) -> str:
        return f"MuxStream(id={self.id}, kind={self.kind}, closed={self.closed})"

    @property
    def compressing(self) -> bool:
        return self._owner.compressing

    def set_data_receiver(self, receiver: Callable[[bytes], bool] | None, first: bytes = b"") -> None:
        """Hand this stream's bytes to ``receiver`` in the channel's read callback instead of queueing them
        for ``recv``: a viewer's update request then wakes no task, which on the customer's PC, its caches
        cold between keystrokes, costs ~60 us of a key's ~1.5 ms. ``first`` (bytes a reader already took)
        and what is queued go to it at once; ``receiver(b"")`` says the stream ended. It returns False when
        it can take no more for now: the rest waits (the channel stops reading) until ``resume_receiving``.
        None: back to ``recv``."""
        self._receiver = receiver
        if first:
            self._rx.appendleft(first)
            self._rx_size += len(first)
        if receiver is not None:
            self._deliver()

    def resume_receiving(self) -> None:
        """The receiver can take bytes again: what waits goes to it, then the channel reads on."""
        self._holding = False
        if self._deliver():
            self._owner._room_made(self)

    def _deliver(self) -> bool:
        """Queued bytes (then the end) to the receiver; False while it holds them off."""
        while self._receiver is not None and not self._holding:
            if self._rx:
                chunk = self._rx.popleft()
                self._rx_size -= len(chunk)
                self._holding = self._receiver(chunk) is False
            elif self.closed and not self._end_told:
                self._end_told = True
                self._receiver(b"")
            else:
                break
        return not self._holding

    def _feed(self, data: bytes) -> bool:
        """Queue bytes for ``recv`` (or the receiver); False once STREAM_BUFFER or more wait, or the receiver
        is full (the channel stops reading)."""
        self._rx.append(data)
        self._rx_size += len(data)
        if self._receiver is not None:
            return self._deliver()
        self._ready.set()
        return self._rx_size < STREAM_BUFFER

    def _end(self, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self.close_reason = reason
        self._ready.set()
        self._deliver()
        self._owner._room_made(self)

    async def recv(self) -> bytes:
        """The next bytes of this stream; b"" once it (or the channel) ended."""
        while not self._rx:
            if self.closed:
                return b""
            self._ready.clear()
            await self._ready.wait()
        chunk = self._rx.popleft()
        size = self._rx_size = self._rx_size - len(chunk)
        if size < STREAM_BUFFER and self._owner._full is self:
            self._owner._room_made(self)
        return chunk

    def write(self, data: bytes | bytearray | memoryview, *, user_input: bool = True,
              matrices: Sequence[Matrix] = ()) -> None:
        """Send ``data`` on this stream. ``user_input=False``: a viewer's own traffic (update requests), which
        a pacing channel sends padded but without chaff (agent.secure.pacing). ``matrices``: byte matrices
        in ``data`` that may go in stripes (agent.secure.mux, STRIPED)."""
        if not self._sent_close and not self.closed:
            self._owner._send_frames(self._owner._mux.send(self.id, data, matrices), user_input)

    async def send(self, data: bytes | bytearray | memoryview, *, user_input: bool = True) -> None:
        self.write(data, user_input=user_input)
        await self._owner.drain()

    def close(self, reason: str = "closed") -> None:
        """Send this stream's CLOSE (once); the channel stays."""
        if not self._sent_close:
            self._sent_close = True
            self._owner._send_frames(self._owner._mux.close_stream(self.id, reason))
        self._owner._streams.pop(self.id, None)
        self._end(reason)

    def as_streams(self) -> tuple[ChannelReader, MuxWriter]:
        return ChannelReader(self), MuxWriter(self)  # type: ignore[arg-type]


class MuxWriter:
    """``write``/``drain``/``close`` over a MuxStream, like asyncio.StreamWriter."""

    writes_matrices = True  # write(data, matrices): see MuxStream.write

    def __init__(self, stream: MuxStream) -> None:
        self._stream = stream

    def write(self, data: bytes | bytearray | memoryview, matrices: Sequence[Matrix] = ()) -> None:
        """As StreamWriter.write; ``matrices`` as for MuxStream.write."""
        self._stream.write(data, matrices=matrices)

    def writelines(self, data: list[bytes]) -> None:
        self.write(b"".join(data))

    async def drain(self) -> None:
        if self._stream.closed or self._stream._sent_close:
            raise ConnectionResetError("the stream was closed")
        await self._stream._owner.drain()

    def drain_needed(self) -> bool:
        """Whether ``drain()`` would wait or raise; False: what was written is on its way, no need to await."""
        return self.is_closing() or self._stream._owner.drain_needed()

    def can_write_eof(self) -> bool:
        return False

    def close(self) -> None:
        self._stream.close("bye")

    async def wait_closed(self) -> None:
        self._stream.close("bye")

    def is_closing(self) -> bool:
        return self._stream.closed or self._stream._sent_close

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

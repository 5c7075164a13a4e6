"""Duck-typed asyncio streams over a SecureStream (``SecureStream.as_streams()``), for RFB code.

Split from agent.secure.stream (one job: look like asyncio.StreamReader/StreamWriter); they use only
the stream's ``recv``, ``_send_nowait``, ``_drain`` and ``_start_close``.
"""
from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Callable

from agent.secure.errors import ChannelError


class ChannelReader:
    """``read``/``readexactly``/``at_eof`` over a SecureStream, like asyncio.StreamReader."""

    def __init__(self, stream: SecureStream) -> None:
        self._stream = stream
        self._chunk = b""
        self._offset = 0
        self._eof = False

    async def _fill(self) -> bool:
        if self._offset < len(self._chunk):
            return True
        if self._eof:
            return False
        chunk = await self._stream.recv()
        if not chunk:
            self._eof = True
            return False
        self._chunk, self._offset = chunk, 0
        return True

    def _take(self, n: int) -> bytes:
        start = self._offset
        if start == 0 and n >= len(self._chunk):
            self._offset = len(self._chunk)
            return self._chunk
        end = min(len(self._chunk), start + n)
        self._offset = end
        return self._chunk[start:end]

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all until EOF if n < 0); b"" at EOF."""
        if n == 0:
            return b""
        if n > 0:
            return self._take(n) if await self._fill() else b""
        parts = []
        while await self._fill():
            parts.append(self._take(len(self._chunk)))
        return b"".join(parts)

    async def readexactly(self, n: int) -> bytes:
        """Exactly ``n`` bytes; asyncio.IncompleteReadError if the channel ends first."""
        parts = []
        missing = n
        while missing > 0:
            if not await self._fill():
                raise asyncio.IncompleteReadError(b"".join(parts), n)
            part = self._take(missing)
            parts.append(part)
            missing -= len(part)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def at_eof(self) -> bool:
        return self._eof and self._offset >= len(self._chunk)

    def receive_with(self, receiver: Callable[[bytes], bool] | None) -> bool:
        """Bytes to ``receiver`` as they arrive instead of through ``read``, what this reader holds first
        (agent.secure.session_channel, ``MuxStream.set_data_receiver``); False, and nothing changed, where
        the stream cannot hand them over so (a SecureStream: read on)."""
        set_receiver = getattr(self._stream, "set_data_receiver", None)
        if set_receiver is None:
            return False
        rest, self._chunk, self._offset = self._chunk[self._offset:], b"", 0
        set_receiver(receiver, rest)
        return True

    def resume_receiving(self) -> None:
        """After ``receiver`` returned False: it can take bytes again."""
        self._stream.resume_receiving()


class ChannelWriter:
    """``write``/``drain``/``close`` over a SecureStream, like asyncio.StreamWriter."""

    def __init__(self, stream: SecureStream) -> None:
        self._stream = stream

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Seal and queue ``data``; like a transport, a closed channel drops it (drain reports failures)."""
        if self._stream._closing:
            return
        with contextlib.suppress(ChannelError):
            self._stream._send_nowait(data)

    def writelines(self, data: list[bytes]) -> None:
        self.write(b"".join(data))

    async def drain(self) -> None:
        await self._stream._drain()

    def can_write_eof(self) -> bool:
        return False

    def close(self) -> None:
        self._stream._start_close("bye")

    async def wait_closed(self) -> None:
        await asyncio.shield(self._stream._start_close("bye"))

    def is_closing(self) -> bool:
        return self._stream._closing or self._stream._error is not None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._stream._writer.get_extra_info(name, default)

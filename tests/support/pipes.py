"""In-memory stream pairs (no sockets), a recording input backend, and a bounded wait, for asyncio tests."""
from __future__ import annotations

import asyncio
import time
from typing import Any

from agent.inputs.base import InputBackend


class MemoryReader:
    """The reader half of the asyncio streams duck type."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._eof = False
        self._event = asyncio.Event()

    def feed(self, data: bytes) -> None:
        self._buf += data
        self._event.set()

    def feed_eof(self) -> None:
        self._eof = True
        self._event.set()

    async def read(self, n: int) -> bytes:
        while not self._buf and not self._eof:
            self._event.clear()
            await self._event.wait()
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    async def readexactly(self, n: int) -> bytes:
        while len(self._buf) < n:
            if self._eof:
                raise asyncio.IncompleteReadError(bytes(self._buf), n)
            self._event.clear()
            await self._event.wait()
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data


class MemoryWriter:
    """The writer half: what is written lands in the peer's MemoryReader."""

    def __init__(self, peer: MemoryReader) -> None:
        self._peer = peer
        self._closing = False

    def write(self, data: bytes) -> None:
        if self._closing:
            raise ConnectionResetError("writer closed")
        self._peer.feed(bytes(data))

    async def drain(self) -> None:
        await asyncio.sleep(0)

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            self._peer.feed_eof()

    async def wait_closed(self) -> None:
        return None

    def is_closing(self) -> bool:
        return self._closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return "memory-pipe" if name == "peername" else default


def memory_pipe() -> tuple[tuple[MemoryReader, MemoryWriter], tuple[MemoryReader, MemoryWriter]]:
    a, b = MemoryReader(), MemoryReader()
    return (a, MemoryWriter(b)), (b, MemoryWriter(a))


class RecordingInput(InputBackend):
    def __init__(self) -> None:
        self.calls: list = []

    def key(self, keysym: int, down: bool) -> None:
        self.calls.append(("key", keysym, down))

    def pointer(self, x: int, y: int, button_mask: int) -> None:
        self.calls.append(("pointer", x, y, button_mask))

    def release_all(self) -> None:
        self.calls.append(("release_all",))


async def wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)





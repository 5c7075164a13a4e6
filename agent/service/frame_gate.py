"""Turns between viewers reading the current frame and a capture writing into it (one-frame capture).

A viewer's update takes what is pending from its tracker, then encodes those
rectangles from the current frame, often in a worker thread. With a
``SharedFrame`` (agent.capture.shared_frame) the capture writes the next
frame's changes into that same buffer and then marks the trackers. Were the
two to overlap, an update could carry pixels newer than the CopyRects it was
planned with, and the next update's CopyRect would copy the wrong pixels on
the viewer's screen. So an update (tracker snapshot to encoded bytes) holds
the gate to read; the capture's write and its marking hold it to write.

Readers share it; a writer waits for the readers in flight and stops new
ones meanwhile, so a busy viewer cannot starve the capture. With a
FramePool nobody ever writes a frame a viewer holds, the capture never asks
to write, and reading costs a counter. Event-loop only: no thread touches it.
"""
from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Optional


class FrameGate:
    """``async with gate:`` to read the current frame; ``async with gate.writing():`` to write it."""

    def __init__(self) -> None:
        self._readers = 0
        self._writer = False  # a write waits for the readers, or runs
        self._turn: Optional[asyncio.Future[None]] = None  # resolved when readers or the writer leave

    @property
    def readers(self) -> int:
        return self._readers

    async def _wait_turn(self) -> None:
        if self._turn is None or self._turn.done():
            self._turn = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._turn)

    def _next_turn(self) -> None:
        if self._turn is not None and not self._turn.done():
            self._turn.set_result(None)

    async def __aenter__(self) -> "FrameGate":
        await self.start_reading()
        return self

    async def start_reading(self) -> None:
        """Wait for a write waiting or running to end, then read (``done_reading()`` ends it)."""
        while self._writer:
            await self._wait_turn()
        self._readers += 1

    async def __aexit__(self, kind: Optional[type[BaseException]], value: Optional[BaseException],
                        tb: Optional[TracebackType]) -> None:
        self.done_reading()

    def try_read(self) -> bool:
        """Start reading now if no write waits or runs (then ``done_reading()`` ends it); False: it does."""
        if self._writer:
            return False
        self._readers += 1
        return True

    def done_reading(self) -> None:
        self._readers -= 1
        if not self._readers and self._writer:
            self._next_turn()

    def writing(self) -> "_Writing":
        return _Writing(self)


class _Writing:
    def __init__(self, gate: FrameGate) -> None:
        self._gate = gate

    async def __aenter__(self) -> None:
        gate = self._gate
        while gate._writer:  # one writer at a time (there is one capture loop; tests may race two)
            await gate._wait_turn()
        gate._writer = True
        try:
            while gate._readers:
                await gate._wait_turn()
        except BaseException:
            gate._writer = False
            gate._next_turn()
            raise

    async def __aexit__(self, kind: Optional[type[BaseException]], value: Optional[BaseException],
                        tb: Optional[TracebackType]) -> None:
        self._gate._writer = False
        self._gate._next_turn()

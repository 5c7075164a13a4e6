"""RFBConnection.send_now: a new frame's update written in the capture's own step, not by a woken task.

It may act only when nothing would have to wait: the send loop parked, the frame free to read, an
update small enough to encode on the loop, and room in the writer. Anything else is the send loop's,
as before: a full writer (it waits for room), a capture writing the frame in place (it waits for the
gate), a big update (encoded in a worker, the gate held from planning to encoding), and an error (it
ends the connection).
"""
from __future__ import annotations

import asyncio
import struct
from typing import Optional, Sequence

import numpy as np
import pytest

from agent.changes.detector import Changes
from agent.service.connection import INLINE_ENCODE_PIXELS, RFBConnection
from agent.service.frame_gate import FrameGate
from tests.service.test_connection_callbacks import CallbackReader, connection

SET_ENCODINGS = struct.pack(">BxHi", 2, 1, 0)  # Raw


def request(width: int, height: int, incremental: bool = True) -> bytes:
    return struct.pack(">BBHHHH", 3, int(incremental), 0, 0, width, height)


class Writer:
    """A session stream's writer: ``drain_needed()`` says whether ``drain()`` would wait."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.full = False
        self.drains = 0
        self.room = asyncio.Event()
        self.room.set()

    def write(self, data: bytes, matrices: Sequence[object] = ()) -> None:
        self.written += data

    def drain_needed(self) -> bool:
        return self.full

    async def drain(self) -> None:
        self.drains += 1
        await self.room.wait()


async def started(width: int, height: int, gate: Optional[FrameGate] = None
                  ) -> tuple[RFBConnection, CallbackReader, Writer, "asyncio.Future[None]", np.ndarray]:
    """A connection whose viewer has its first full update and an incremental request outstanding."""
    reader, writer = CallbackReader(), Writer()
    conn, _ = connection(writer, reader, width, height, gate)
    frame = np.zeros((height, width, 4), np.uint8)
    conn.updater.on_frame(frame, None, asyncio.get_running_loop().time())
    running = asyncio.ensure_future(conn.run(lambda c, event: c.updater.handle_event(event)))
    for _ in range(3):
        await asyncio.sleep(0)
    reader.receiver(SET_ENCODINGS + request(width, height, incremental=False))
    await until_written(writer)  # the send loop answers it
    assert writer.written[:1] == b"\x00"
    for _ in range(3):
        await asyncio.sleep(0)
    reader.receiver(request(width, height))
    writer.written.clear()
    return conn, reader, writer, running, frame


def changed(conn: RFBConnection, frame: np.ndarray, rect: tuple[int, int, int, int]) -> None:
    x, y, w, h = rect
    frame = frame.copy()
    frame[y:y + h, x:x + w] = 255
    conn.updater.on_frame(frame, Changes(rects=[rect]), asyncio.get_running_loop().time())


async def finish(reader: CallbackReader, running: "asyncio.Future[None]") -> None:
    reader.receiver(b"")
    await asyncio.wait_for(running, 5)


async def until_written(writer: Writer) -> None:
    for _ in range(500):  # a big update is encoded in a worker thread: up to 5 s
        if writer.written:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the send loop never wrote the update")


async def test_a_small_update_is_written_inside_send_now():
    conn, reader, writer, running, frame = await started(64, 48)
    drains = writer.drains
    changed(conn, frame, (8, 8, 16, 16))
    conn.send_now()
    assert writer.written[:1] == b"\x00"  # written in the call: no task ran in between
    assert writer.drains == drains  # nothing to wait for
    assert not conn.updater.wants_update  # the request it answered is used
    await finish(reader, running)


async def test_a_full_writer_leaves_the_update_to_the_send_loop_which_waits_for_room():
    conn, reader, writer, running, frame = await started(64, 48)
    writer.full = True
    drains = writer.drains
    changed(conn, frame, (8, 8, 16, 16))
    conn.send_now()
    assert not writer.written
    await until_written(writer)
    assert writer.drains == drains + 1
    await finish(reader, running)


async def test_a_capture_writing_the_frame_holds_the_update_until_it_is_done():
    gate = FrameGate()
    conn, reader, writer, running, frame = await started(64, 48, gate)
    async with gate.writing():
        changed(conn, frame, (8, 8, 16, 16))
        conn.send_now()
        for _ in range(10):
            await asyncio.sleep(0)
        assert not writer.written  # the send loop waits at the gate
    await until_written(writer)
    await finish(reader, running)


async def test_a_big_update_goes_to_the_send_loop_with_the_gate_held_until_it_is_encoded():
    gate = FrameGate()
    conn, reader, writer, running, frame = await started(256, 160, gate)
    assert 256 * 160 > INLINE_ENCODE_PIXELS
    changed(conn, frame, (0, 0, 256, 160))
    conn.send_now()
    assert not writer.written and gate.readers == 1  # planned here, held for the worker's encoding
    writing = asyncio.ensure_future(gate.writing().__aenter__())
    await until_written(writer)
    assert gate.readers == 0
    await asyncio.wait_for(writing, 5)  # the capture's write got its turn after the encoding
    await finish(reader, running)


async def test_an_error_in_send_now_ends_the_connection_not_the_caller():
    conn, reader, writer, running, frame = await started(64, 48)

    def broken(job: object) -> object:
        raise RuntimeError("encoder bug")

    conn.updater.encode_job = broken  # type: ignore[method-assign]
    changed(conn, frame, (8, 8, 16, 16))
    conn.send_now()  # the capture calling it goes on
    with pytest.raises(RuntimeError, match="encoder bug"):
        await asyncio.wait_for(running, 5)
    assert conn._gate.readers == 0


@pytest.mark.parametrize("end", ["viewer left", "service stopped"])
async def test_a_connection_ending_with_a_big_update_in_hand_lets_the_gate_go(end):
    gate = FrameGate()
    conn, reader, writer, running, frame = await started(256, 160, gate)
    changed(conn, frame, (0, 0, 256, 160))
    if end == "viewer left":
        conn.send_now()
        reader.receiver(b"")
        await asyncio.wait_for(running, 5)
    else:  # the connection is told to stop first: its send loop never takes the job
        running.cancel()
        conn.send_now()
        assert gate.readers == 1
        with pytest.raises(asyncio.CancelledError):
            await running
    assert gate.readers == 0

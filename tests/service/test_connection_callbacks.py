"""RFBConnection receiving in the session channel's read callback (no task): what the receive loop did.

A session's RFB stream hands the client's bytes to the connection as they are read
(``ChannelReader.receive_with``). The connection must then do what its receive loop does: act on each
message, stop taking bytes while its protocol replies pile up (a client flooding Fence requests and
never reading) and take them again once they are written, and end when the client closes or errs.
"""
from __future__ import annotations

import asyncio
import struct
from typing import Any, Callable, Optional

import pytest

from agent.rfb import messages as M
from agent.rfb.server import RFBServer
from agent.sansio import RemoteProtocolError
from agent.service.connection import REPLY_HIGH_WATER, RFBConnection
from agent.service.frame_gate import FrameGate
from agent.service.updater import ViewerUpdater

HELLO = b"RFB 003.008\n" + b"\x01" + b"\x01"  # version, security None, shared
FENCE = struct.pack(">B3xIB", 248, 0x80000000, 64) + bytes(64)
SET_ENCODINGS = struct.pack(">BxHii", 2, 2, 0, -312)  # Raw, Fence


class CallbackReader:
    """What ChannelReader over a MuxStream offers the connection."""

    def __init__(self) -> None:
        self.receiver: Optional[Callable[[bytes], bool]] = None
        self.resumed = 0

    def receive_with(self, receiver: Optional[Callable[[bytes], bool]]) -> bool:
        self.receiver = receiver
        return True

    def resume_receiving(self) -> None:
        self.resumed += 1

    async def read(self, n: int) -> bytes:
        raise AssertionError("a connection receiving in callbacks never reads")


class StuckWriter:
    """A client that does not read: every drain waits until ``unstick``."""

    def __init__(self) -> None:
        self.written = bytearray()
        self._room = asyncio.Event()

    def write(self, data: bytes) -> None:
        self.written += data

    async def drain(self) -> None:
        await self._room.wait()

    def unstick(self) -> None:
        self._room.set()


def connection(writer: Any, reader: CallbackReader, width: int = 64, height: int = 48,
               gate: Optional[FrameGate] = None) -> tuple[RFBConnection, list[object]]:
    server = RFBServer(width, height, "test")
    server.receive_data(HELLO)
    for _ in range(10):  # the handshake, up to ClientInit
        if isinstance(server.next_event(), M.ClientInit):
            break
    else:
        raise AssertionError("no ClientInit")
    server.data_to_send()
    seen: list[object] = []
    conn = RFBConnection("test", server, ViewerUpdater(server), reader, writer, gate=gate)
    return conn, seen


async def test_a_request_is_acted_on_in_the_callback_and_the_client_closing_ends_the_connection():
    reader, writer = CallbackReader(), StuckWriter()
    writer.unstick()
    conn, seen = connection(writer, reader)
    running = asyncio.ensure_future(conn.run(lambda c, event: (seen.append(event), c.updater.handle_event(event))))
    await asyncio.sleep(0)
    assert reader.receiver is not None
    reader.receiver(struct.pack(">BBHHHH", 3, 1, 0, 0, 64, 48))  # an incremental FramebufferUpdateRequest
    assert conn.updater.wants_update  # handled at once, no task between
    assert isinstance(seen[-1], M.FramebufferUpdateRequest)
    reader.receiver(b"")  # the stream ended
    await asyncio.wait_for(running, 5)
    assert reader.receiver is None  # handed back


async def test_a_fence_flood_stops_taking_bytes_until_the_replies_are_written():
    reader, writer = CallbackReader(), StuckWriter()
    conn, _ = connection(writer, reader)
    running = asyncio.ensure_future(conn.run(lambda c, event: None))
    await asyncio.sleep(0)
    assert reader.receiver(SET_ENCODINGS)
    taken = 0
    while reader.receiver(FENCE * 64):
        taken += 1
        assert taken < 1000, "the flood was never held off"
        await asyncio.sleep(0)  # the send loop writes a first batch, then waits on the stuck client
    assert REPLY_HIGH_WATER < conn.replies_pending + len(writer.written) <= 2 * REPLY_HIGH_WATER + len(FENCE) * 64
    assert reader.resumed == 0
    writer.unstick()  # the client reads: the replies go, the connection takes bytes again
    for _ in range(20):
        await asyncio.sleep(0)
    assert reader.resumed == 1 and conn.replies_pending == 0
    reader.receiver(b"")
    await asyncio.wait_for(running, 5)


async def test_a_malformed_message_ends_the_connection_with_its_error():
    reader, writer = CallbackReader(), StuckWriter()
    writer.unstick()
    conn, _ = connection(writer, reader)
    running = asyncio.ensure_future(conn.run(lambda c, event: None))
    await asyncio.sleep(0)
    assert reader.receiver(b"\xee")  # no such client message: the error ends the connection, not the channel
    with pytest.raises(RemoteProtocolError, match="unknown client message type 238"):
        await asyncio.wait_for(running, 5)

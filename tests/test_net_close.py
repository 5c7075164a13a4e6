"""agent.net: a close that always ends, even when the peer never reads."""
from __future__ import annotations

import asyncio
import socket

from agent.net import close_stream


async def test_a_peer_that_never_reads_is_aborted_after_the_timeout():
    got: list[asyncio.StreamWriter] = []
    server = await asyncio.start_server(lambda r, w: got.append(w), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    peer = socket.create_connection(("127.0.0.1", port))  # connected, never reads
    try:
        while not got:
            await asyncio.sleep(0.01)
        writer = got[0]
        sock = writer.get_extra_info("socket")
        assert sock.fileno() >= 0
        writer.write(b"x" * (64 << 20))  # far more than the socket buffers take: close() must wait to flush
        loop = asyncio.get_running_loop()
        started = loop.time()
        await close_stream(writer, timeout=0.3)
        assert loop.time() - started < 2
        assert sock.fileno() == -1  # the socket is gone (aborted), not merely closing
    finally:
        peer.close()
        server.close()
        await server.wait_closed()


async def test_a_writer_without_a_transport_is_left_to_its_own_close():
    class SlowWriter:  # like our channel's writer: its close lingers for the peer's CLOSE
        closed = False

        def is_closing(self) -> bool:
            return self.closed

        def close(self) -> None:
            self.closed = True

        async def wait_closed(self) -> None:
            await asyncio.sleep(10)

    writer = SlowWriter()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await close_stream(writer, timeout=0.1)  # type: ignore[arg-type]
    assert writer.closed and loop.time() - started < 1

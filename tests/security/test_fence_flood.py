"""A hostile RFB client floods Fence requests and never reads (issue #11, item 2).

The RFB server answers every Fence request (and every EnableContinuousUpdates(off)) on its own. With
the send loop blocked on a client that does not read, those replies used to pile up one for one. The
attacker speaks raw RFB 3.8 on a TCP socket with a tiny receive buffer and reads nothing.
"""
from __future__ import annotations

import asyncio
import socket
import struct

from agent.service.connection import REPLY_HIGH_WATER, READ_SIZE
from agent.service.rfb_service import RFBService
from agent.workloads.synthetic import SyntheticSource

FENCE_REQUEST = 0x80000000
PAYLOAD = bytes(64)  # the largest Fence payload
FENCES = 40_000      # ~2.9 MB of requests, as many bytes of replies if nothing bounds them
SMALL_BUFFER = 4096


def _fence() -> bytes:
    return struct.pack(">B3xIB", 248, FENCE_REQUEST, len(PAYLOAD)) + PAYLOAD


async def test_a_fence_flood_from_a_client_that_never_reads_keeps_queued_replies_bounded():
    service = RFBService(SyntheticSource("idle", 64, 48), fps=30)
    await service.start()
    server = await asyncio.start_server(service.serve_connection, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
    raw.setblocking(False)
    try:
        await loop.sock_connect(raw, ("127.0.0.1", port))
        # RFB 3.8, security None, shared; SetEncodings(Raw, Fence); then nothing but Fence requests.
        hello = b"RFB 003.008\n" + b"\x01" + b"\x01" + struct.pack(">BxHii", 2, 2, 0, -312)
        await loop.sock_sendall(raw, hello)
        for _ in range(200):
            if service.viewers:
                break
            await asyncio.sleep(0.01)
        (viewer,) = service.viewers
        viewer._writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
        flood = asyncio.ensure_future(loop.sock_sendall(raw, _fence() * FENCES))
        peak = 0
        for _ in range(300):
            await asyncio.sleep(0.01)
            queued = (viewer.replies_pending + len(viewer.server._out)  # not yet written
                      + viewer._writer.transport.get_write_buffer_size())  # written, not yet sent
            peak = max(peak, queued)
        print(f"Fence reply bytes queued at most: {peak} (bound {REPLY_HIGH_WATER} + one read {READ_SIZE} "
              f"+ the transport's own high-water mark; {FENCES * len(_fence())} bytes of requests)")
        assert peak <= REPLY_HIGH_WATER + READ_SIZE + 64 * 1024 + 1024, f"{peak} bytes of replies queued"
        flood.cancel()
    finally:
        raw.close()
        server.close()
        await service.close()

"""A hostile peer floods PINGs and never reads (issue #11, item 2).

Each PING asks for a PONG. A peer that never reads its socket would, without a bound, make us queue
one PONG per PING in our transport's write buffer for as long as it keeps sending. The attacker here
seals its PINGs with our own sans-IO record layer and writes them on a raw TCP connection whose
receive buffer it keeps tiny and never reads.
"""
from __future__ import annotations

import asyncio
import socket

from agent.secure.records import Channel, Role
from agent.secure.stream import PONG_HIGH_WATER, SecureStream
from tests.support.channels import KEYS

PINGS = 100_000  # ~2.9 MB of PING records; unbounded, that is ~2.9 MB of PONGs queued on our side
SMALL_BUFFER = 4096


async def _victim_and_attacker():
    accepted: asyncio.Future = asyncio.get_running_loop().create_future()
    server = await asyncio.start_server(lambda r, w: accepted.set_result((r, w)), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)  # the attacker reads nothing anyway
    raw.setblocking(False)
    await asyncio.get_running_loop().sock_connect(raw, ("127.0.0.1", port))
    reader, writer = await accepted
    server.close()
    # Our side's kernel send buffer small too, so the test sees the user-space queue quickly.
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
    victim = SecureStream(reader, writer, Channel(Role.AGENT, KEYS), ping_interval=3600)
    return victim, writer, raw, Channel(Role.VIEWER, KEYS)


async def test_a_ping_flood_from_a_peer_that_never_reads_keeps_our_write_buffer_bounded():
    victim, writer, raw, attacker = await _victim_and_attacker()
    loop = asyncio.get_running_loop()
    wire = b"".join(attacker.send_ping() for _ in range(PINGS))
    await loop.sock_sendall(raw, wire)  # our side keeps reading: it is only its replies that pile up
    peak = 0
    for _ in range(500):
        await asyncio.sleep(0.01)
        peak = max(peak, writer.transport.get_write_buffer_size())
        if victim._reader_task.done() or _all_read(victim, PINGS):
            break
    print(f"PONG bytes queued at most: {peak} (high-water mark {PONG_HIGH_WATER}, "
          f"{len(wire)} bytes of PINGs sent)")
    assert not victim._reader_task.done(), "the channel failed instead of coalescing"
    assert _all_read(victim, PINGS)
    assert peak <= PONG_HIGH_WATER + 64, f"{peak} bytes of PONGs queued for a peer that never reads"
    writer.transport.abort()
    raw.close()
    victim.abort()


def _all_read(victim: SecureStream, count: int) -> bool:
    return victim._channel._opener._counter >= count  # every PING record was opened

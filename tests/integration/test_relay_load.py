"""Load on loopback: 200 paired sessions each moving 1 MB both ways through one relay, plus one stalled viewer.

Bounded in count and time. The relay runs in the same event loop so its
instrumentation counters can be read directly: each connection's largest write
buffer (exact: a buffer only grows when the relay writes to it), their sum (a
bound on the relay's total at any instant), and the total sampled while the
traffic flows.

The stalled viewer's socket gets a small receive buffer before it connects, and
its agent floods until the relay says it holds back (it stopped reading the
sender because the viewer's write buffer is full). Otherwise whether the relay
ever buffers anything for it depends on how much the kernel's socket buffers
absorb (tcp_rmem may allow tens of MB), and the test could pass or fail by luck.
"""
from __future__ import annotations

import asyncio
import json
import os
import socket
import time

import pytest
import xxhash

from agent.relay.server import RelayServer

pytestmark = pytest.mark.slow

SESSIONS = 200
PAYLOAD = 1024 * 1024
CHUNK = 64 * 1024
HIGH_WATER = 128 * 1024
READ_SIZE = 64 * 1024
TIME_BOUND = 60.0
HOLD_BACK_BOUND = 30.0  # seconds the flood may take to make the relay hold back the stalled session
STALLED_RCVBUF = 4096  # the kernel doubles it and keeps a floor; either way a few KiB, not megabytes
BASE = os.urandom(PAYLOAD)


def _payload(offset: int) -> list[memoryview]:
    """The session's 1 MB: BASE rotated by ``offset``, as chunks (no copies)."""
    view = memoryview(BASE)
    rotated = [view[offset:], view[:offset]]
    chunks = []
    for part in rotated:
        chunks += [part[i:i + CHUNK] for i in range(0, len(part), CHUNK)]
    return chunks


def _digest(chunks: list[memoryview]) -> bytes:
    h = xxhash.xxh3_128()
    for chunk in chunks:
        h.update(chunk)
    return h.digest()


async def _line(reader: asyncio.StreamReader) -> dict:
    return json.loads(await asyncio.wait_for(reader.readline(), 30))


async def _open(port: int, hello: dict, rcvbuf: int | None = None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if rcvbuf is None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    else:  # SO_RCVBUF before connect: the window the kernel offers is then small from the handshake on
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        except BaseException:
            sock.close()
            raise
        reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(json.dumps(hello).encode() + b"\n")
    return reader, writer


async def _paired_session(port: int, gate: asyncio.Semaphore, viewer_rcvbuf: int | None = None) -> tuple:
    async with gate:
        control = await _open(port, {"v": 1, "role": "agent"})
        session = (await _line(control[0]))["session"]
        viewer = await _open(port, {"v": 1, "role": "viewer", "session": session}, viewer_rcvbuf)
        assert (await _line(viewer[0]))["status"] == "waiting"
        ticket = (await _line(control[0]))["ticket"]
        agent = await _open(port, {"v": 1, "role": "agent-data", "session": session, "ticket": ticket})
        assert (await _line(agent[0]))["status"] == "paired"
        assert (await _line(viewer[0]))["status"] == "paired"
        return session, control, viewer, agent


async def _send(writer: asyncio.StreamWriter, chunks: list[memoryview]) -> None:
    for chunk in chunks:
        writer.write(chunk)
        await writer.drain()


async def _receive(reader: asyncio.StreamReader, size: int) -> bytes:
    h = xxhash.xxh3_128()
    got = 0
    while got < size:
        data = await reader.read(256 * 1024)
        assert data, "connection ended early"
        h.update(data)
        got += len(data)
    assert got == size
    return h.digest()


async def _exchange(index: int, viewer: tuple, agent: tuple) -> None:
    up, down = _payload(index * 4099 % PAYLOAD), _payload(index * 7919 % PAYLOAD)
    results = await asyncio.gather(_send(viewer[1], up), _send(agent[1], down),
                                   _receive(agent[0], PAYLOAD), _receive(viewer[0], PAYLOAD))
    assert results[2] == _digest(up), f"session {index}: viewer->agent bytes differ"
    assert results[3] == _digest(down), f"session {index}: agent->viewer bytes differ"


async def _load() -> dict:
    # 200 sessions from one loopback address: a load test, not an attack, so the per-source registration
    # budget (tests/security covers it) is opened wide enough for them.
    server = RelayServer("127.0.0.1", 0, max_per_source=4 * SESSIONS, high_water=HIGH_WATER, read_size=READ_SIZE,
                         register_limit=(2 * SESSIONS, 2 * SESSIONS))
    await server.start()
    gate = asyncio.Semaphore(50)
    sessions = await asyncio.gather(*(_paired_session(server.port, gate) for _ in range(SESSIONS)),
                                    _paired_session(server.port, gate, viewer_rcvbuf=STALLED_RCVBUF))
    stalled_id, stalled_control, stalled_viewer, stalled_agent = sessions[-1]
    [stalled_conn] = server._sessions[stalled_id].viewers()  # the one paired viewer
    assert stalled_conn is not None

    async def flood() -> None:  # the stalled session's agent keeps sending; its viewer never reads
        chunk = b"\x5a" * CHUNK
        while True:
            stalled_agent[1].write(chunk)
            await stalled_agent[1].drain()

    peak_total = 0
    sampling = True

    async def sample() -> None:
        nonlocal peak_total
        while sampling:
            peak_total = max(peak_total, server.buffered_bytes())
            await asyncio.sleep(0.02)

    flooder = asyncio.create_task(flood())
    sampler = asyncio.create_task(sample())
    start = time.monotonic()
    await asyncio.gather(*(_exchange(i, viewer, agent) for i, (_, _, viewer, agent) in enumerate(sessions[:-1])))
    elapsed = time.monotonic() - start
    # Flood on until the relay holds the stalled session back: the viewer's write buffer passed the
    # high-water mark, so the relay stopped reading the agent's data connection.
    sender = stalled_conn.peer
    assert sender is not None
    deadline = time.monotonic() + HOLD_BACK_BOUND
    while "peer-full" not in sender.paused:
        assert not flooder.done(), f"the flooder stopped: {flooder.exception() if not flooder.cancelled() else 'cancelled'}"
        assert time.monotonic() < deadline, (f"the relay never held back the stalled session in {HOLD_BACK_BOUND} s "
                                             f"(its viewer buffer peaked at {stalled_conn.peak_write_buffer} B)")
        await asyncio.sleep(0.01)
    sampling = False
    peak_total = max(peak_total, server.buffered_bytes())  # the hold-back may have come after the last sample
    await sampler
    stalled_peak = stalled_conn.peak_write_buffer
    # A write buffer only grows when the relay writes, so each connection's peak is exact, and their sum
    # bounds what the relay held at any one instant.
    sum_of_peaks = sum(conn.peak_write_buffer for conn in server._conns)
    flooder_blocked = not flooder.done()
    flooder.cancel()
    stats = server.stats
    writers = [conn[1] for s in sessions for conn in s[1:]]
    for writer in writers:
        writer.close()
    await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)
    await server.close()
    return {"elapsed": elapsed, "peak_total": peak_total, "sum_of_peaks": sum_of_peaks,
            "peak_conn": stats.peak_write_buffer, "stalled_peak": stalled_peak, "flooder_blocked": flooder_blocked,
            "forwarded": stats.bytes_forwarded}


def test_200_sessions_move_1_mb_each_way_with_bounded_relay_memory() -> None:
    result = asyncio.run(asyncio.wait_for(_load(), TIME_BOUND + 30))
    print(f"\nrelay load: {SESSIONS} sessions x 2 x {PAYLOAD} B in {result['elapsed']:.1f} s; "
          f"held at most {result['sum_of_peaks']} B in all (sampled peak {result['peak_total']} B), "
          f"{result['peak_conn']} B on one connection; "
          f"stalled viewer buffer peak {result['stalled_peak']} B")
    assert result["elapsed"] < TIME_BOUND  # the stalled session did not hold the others up
    assert result["forwarded"] >= SESSIONS * 2 * PAYLOAD
    per_connection = HIGH_WATER + READ_SIZE
    assert result["peak_conn"] <= per_connection
    assert result["peak_total"] <= result["sum_of_peaks"] <= (SESSIONS + 1) * 2 * per_connection
    assert result["flooder_blocked"]  # backpressure reached the stalled session's sender
    assert 0 < result["stalled_peak"] <= per_connection

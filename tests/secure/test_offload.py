"""Big compressed writes are compressed in a worker thread (agent.secure.sendqueue), off the event loop.

The worker is gated with a threading.Event in most tests, so each one asserts an order of events
(a PONG arrives while the compression is still held; bytes written after the big write arrive after
it) rather than a timing: had the compression run on the loop, the gate would never open and the
test would fail, not flake."""
from __future__ import annotations

import asyncio
import random
import threading
from typing import Any, Callable

from agent.secure.errors import TruncatedError
from agent.secure.resume_io import accept_resume, connect_resume
from agent.secure.session_channel import SessionChannel
from agent.secure.stream import SecureStream
from tests.secure.test_stream import SESSION, established, recv_exactly, run, tcp_pair

THRESHOLD = 64 * 1024
_WEAK = bytes(b & 0x33 for b in range(256))  # 4 bits of entropy a byte: zstd works hard, gains little


def frame(size: int, seed: int) -> bytes:
    """Novel, weakly compressible bytes, like a Raw update of a busy screen."""
    return random.Random(seed).randbytes(size).translate(_WEAK)


async def compressing_pair(**options: Any) -> tuple[SecureStream, SecureStream]:
    viewer, agent = await established(compress=True, offload_threshold=THRESHOLD, **options)
    assert agent.compressing and viewer.compressing
    return viewer, agent


def gate(stream: SecureStream) -> tuple[threading.Event, list[bool]]:
    """Hold the stream's worker until the returned event is set; the list records whether it was
    (False: the 10 s wait ran out, as it would if the compression ran on the blocked loop)."""
    release, opened = threading.Event(), []
    deflate: Callable[[Any], list[bytes]] = stream._channel.deflate

    def held(data: Any) -> list[bytes]:
        opened.append(release.wait(10))
        return deflate(data)

    stream._channel.deflate = held  # type: ignore[method-assign]
    return release, opened


def test_a_big_write_is_compressed_off_the_loop_and_a_ping_is_answered_meanwhile() -> None:
    async def main() -> None:
        viewer, agent = await compressing_pair(ping_interval=60)
        release, opened = gate(agent)
        big = frame(1 << 20, 1)
        agent._send_nowait(big)  # returns at once: the worker holds the compression
        assert agent._sends.busy
        pong: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        viewer.watch(on_rtt=lambda rtt: pong.done() or pong.set_result(rtt))
        viewer._write(viewer._channel.send_ping())
        await asyncio.wait_for(pong, 5)  # the agent's loop read the PING and sealed a PONG meanwhile
        assert agent._sends.busy and not opened  # ... while the compression was still held
        release.set()
        assert await recv_exactly(viewer, len(big)) == big
        assert opened == [True]
        await asyncio.gather(viewer.close(), agent.close())

    run(main())


def test_writes_after_a_big_one_and_the_close_keep_their_order() -> None:
    """A big write, small ones straight after, a big one again, and the close: the viewer reads every
    byte in write order, then the authenticated CLOSE; drain() waited for the worker."""
    async def main() -> None:
        viewer, agent = await compressing_pair()
        release, opened = gate(agent)
        writer = agent.as_streams()[1]
        parts = [frame(300_000, 2), b"small one", bytearray(b"small two"), frame(200_000, 3), b"last"]
        for part in parts:
            writer.write(part)
        parts[2][:] = b"XXXXXXXXX"  # the caller reuses its buffer: what was written must not change
        drained = asyncio.ensure_future(writer.drain())
        await asyncio.sleep(0.05)
        assert not drained.done() and agent.bytes_sent < 100  # nothing of the big write sealed yet
        closing = agent._start_close("done")  # what close() awaits
        writer.write(b"after the close")  # dropped, as on a closing transport
        release.set()
        await drained
        expected = parts[0] + b"small one" + b"small two" + parts[3] + b"last"
        assert await recv_exactly(viewer, len(expected)) == expected
        assert await viewer.recv() == b"" and viewer.peer_closed and viewer.close_reason == "done"
        await closing
        assert opened == [True, True] and agent.error is None and viewer.error is None
        assert agent.in_flight == agent.bytes_sent - agent._channel.peer_acked > 0

    run(main())


def test_an_abort_during_a_compression_drops_its_result_quietly() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        leaked: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, context: leaked.append(context))
        viewer, agent = await compressing_pair()
        release, opened = gate(agent)
        agent._send_nowait(frame(500_000, 4))
        agent._send_nowait(b"queued behind it")
        agent.abort()
        drained = asyncio.ensure_future(agent._drain())
        release.set()
        while not opened:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # the worker's result came back to a dead stream
        assert drained.done() and isinstance(drained.exception(), TruncatedError)
        await asyncio.wait_for(viewer._reader_task, 5)  # the viewer saw the cut
        assert isinstance(viewer.error, TruncatedError)
        assert viewer.bytes_received == 0 and agent.bytes_sent < 100  # no ZDATA record went out
        assert not leaked
        await viewer.close()

    run(main())


def test_small_writes_and_an_uncompressed_channel_never_use_the_worker() -> None:
    async def main() -> None:
        viewer, agent = await compressing_pair()
        agent._send_nowait(b"x" * (THRESHOLD - 1))
        assert not agent._sends.busy and agent.bytes_sent > 0  # sealed in the call, as before
        plain_viewer, plain_agent = await established(offload_threshold=THRESHOLD)
        plain_agent._send_nowait(frame(1 << 20, 5))
        assert not plain_agent._sends.busy and plain_agent.bytes_sent == 1 << 20
        for stream in (viewer, agent, plain_viewer, plain_agent):
            await stream.close()

    run(main())


def test_a_resume_after_a_cut_during_a_compression_replays_byte_exactly() -> None:
    """The replay log takes an entry's mark when the worker's records are sealed, not when written: a
    cut while a compression is held loses that write on the old connection, and the replay brings it."""
    async def main() -> None:
        viewer_tr, agent_tr = await compressing_pair()
        streams: asyncio.Queue[Any] = asyncio.Queue()
        agent = SessionChannel(agent_tr, "agent", on_message=lambda m: None, on_open=streams.put_nowait)
        viewer = SessionChannel(viewer_tr, "viewer", on_message=lambda m: None)
        v_stream = viewer.open_stream("rfb")
        a_stream = await asyncio.wait_for(streams.get(), 5)
        got = bytearray()

        async def reader() -> None:
            while chunk := await v_stream.recv():
                got.extend(chunk)

        reading = asyncio.create_task(reader())
        sent = bytearray()
        for i in range(6):  # some compressed in the worker, acknowledged and dropped from the log
            for piece in (frame(100_000 + i, 10 + i), b"small %d" % i):
                sent += piece
                a_stream.write(piece)
            await agent.drain()
        while len(got) < len(sent):
            await asyncio.sleep(0.01)
        release, opened = gate(agent_tr)
        for piece in (b"sealed at once " * 100, frame(400_000, 20), b"behind the held one"):
            sent += piece
            a_stream.write(piece)
        assert agent_tr._sends.busy
        for _ in range(250):  # the viewer ACKs all that was sealed; the held write must stay logged
            if agent_tr._channel.peer_acked == agent_tr.bytes_sent:
                break
            await asyncio.sleep(0.02)
        assert agent_tr._channel.peer_acked == agent_tr.bytes_sent and agent_tr._sends.busy
        agent_tr._writer.transport.abort()  # the path is cut while the worker holds a compression
        release.set()
        await asyncio.sleep(0.2)
        assert not agent.connected and not viewer.connected and not agent.closed
        (cr, cw), (sr, sw) = await tcp_pair()
        options = {"timeout": 10, "compression": True, "compress": True, "offload_threshold": THRESHOLD}
        (new_v, agent_had), (new_a, viewer_had) = await asyncio.gather(
            connect_resume(cr, cw, SESSION, viewer.resumption_secret, viewer.inner_received, **options),
            accept_resume(sr, sw, SESSION, agent.resumption_secret, lambda: agent.inner_received, b"", **options))
        viewer.resume(new_v, agent_had)
        agent.resume(new_a, viewer_had)
        assert new_a.compressing
        for piece in (frame(300_000, 30), b"after the resume"):
            sent += piece
            a_stream.write(piece)
        await agent.drain()
        for _ in range(200):
            if len(got) >= len(sent):
                break
            await asyncio.sleep(0.05)
        assert bytes(got) == bytes(sent) and opened == [True]
        await agent.close("bye")
        await asyncio.wait_for(reading, 5)
        await viewer.close()

    run(main())

"""The asyncio adapter over real loopback TCP: handshake outcomes, data, close, failures, flow control, streams."""
from __future__ import annotations

import asyncio
import hashlib
from typing import Any, Awaitable, TypeVar

import pytest

from agent.secure.errors import (
    PeerSilentError,
    AuthFailedError,
    ChannelClosedError,
    HandshakeError,
    RecordAuthenticationError,
    TruncatedError,
    WrongPasswordError,
)
from agent.secure.stream import SecureStream, accept_agent, connect_viewer

SESSION = "123456789"
PASSWORD = "k3mx7q"
T = TypeVar("T")
Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def run(coro: Awaitable[T], timeout: float = 20) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def tcp_pair() -> tuple[Conn, Conn]:
    accepted: asyncio.Future[Conn] = asyncio.get_running_loop().create_future()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set_result((reader, writer))

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = await asyncio.open_connection("127.0.0.1", port)
    agent_side = await accepted
    server.close()
    await server.wait_closed()
    return client, agent_side


async def established(viewer_password: str = PASSWORD, **options: Any) -> tuple[SecureStream, SecureStream]:
    (cr, cw), (sr, sw) = await tcp_pair()
    viewer, agent = await asyncio.gather(
        connect_viewer(cr, cw, SESSION, viewer_password, timeout=10, **options),
        accept_agent(sr, sw, SESSION, PASSWORD, timeout=10, failure_delay=0, **options))
    return viewer, agent


async def recv_exactly(stream: SecureStream, size: int) -> bytes:
    parts, got = [], 0
    while got < size:
        chunk = await stream.recv()
        assert chunk, "channel ended early"
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def test_round_trip_and_authenticated_close() -> None:
    async def main() -> None:
        viewer, agent = await established()
        assert viewer.safety_code == agent.safety_code and len(viewer.safety_code) == 4
        big = bytes(range(256)) * 1000
        await viewer.send(b"hello agent")
        await agent.send(big)
        assert await agent.recv() == b"hello agent"
        assert await recv_exactly(viewer, len(big)) == big
        assert viewer.bytes_sent == agent.bytes_received == 11
        assert agent.bytes_sent == viewer.bytes_received == len(big)
        await viewer.close("technician ended the session")
        assert await agent.recv() == b""
        assert agent.close_reason == "technician ended the session"
        assert agent.peer_closed and agent.error is None
        await agent.close()
        assert await viewer.recv() == b""
        with pytest.raises(ChannelClosedError):
            await viewer.send(b"too late")

    run(main())


def test_wrong_password_closes_both_ends() -> None:
    async def main() -> None:
        (cr, cw), (sr, sw) = await tcp_pair()
        results = await asyncio.gather(
            connect_viewer(cr, cw, SESSION, "wrong!", timeout=10),
            accept_agent(sr, sw, SESSION, PASSWORD, timeout=10, failure_delay=0.05),
            return_exceptions=True)
        assert isinstance(results[0], WrongPasswordError) and results[0].exit_code == 3
        assert isinstance(results[1], AuthFailedError) and results[1].exit_code == 3
        assert cw.is_closing() and sw.is_closing()
        assert PASSWORD not in str(results[1]) and "wrong!" not in str(results[0])

    run(main())


def test_handshake_times_out_against_a_silent_peer() -> None:
    async def main() -> None:
        (cr, cw), (_, sw) = await tcp_pair()
        with pytest.raises(asyncio.TimeoutError):
            await connect_viewer(cr, cw, SESSION, PASSWORD, timeout=0.3)
        assert cw.is_closing()
        sw.close()

    run(main())


def test_peer_speaking_another_protocol() -> None:
    async def main() -> None:
        (cr, cw), (_, sw) = await tcp_pair()
        sw.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        with pytest.raises(HandshakeError):
            await connect_viewer(cr, cw, SESSION, PASSWORD, timeout=5)
        assert cw.is_closing()
        sw.close()

    run(main())


def test_connection_cut_without_close_is_truncation() -> None:
    async def main() -> None:
        viewer, agent = await established()
        await agent.send(b"genuine")
        agent._writer.close()  # the relay or the network cuts the connection: no CLOSE record
        assert await viewer.recv() == b"genuine"  # data before the cut is delivered
        with pytest.raises(TruncatedError):
            await viewer.recv()
        with pytest.raises(TruncatedError):
            await viewer.send(b"x")
        assert isinstance(viewer.error, TruncatedError) and not viewer.peer_closed
        await asyncio.gather(viewer.close(), agent.close())

    run(main())


def test_injected_record_fails_and_closes() -> None:
    async def main() -> None:
        viewer, agent = await established()
        agent._writer.write(b"\0\0\0\x20\x01" + bytes(32))  # a relay inserting its own record
        with pytest.raises(RecordAuthenticationError):
            await viewer.recv()
        assert viewer._writer.is_closing()
        await agent.close()

    run(main())


def test_rtt_is_measured_with_pings() -> None:
    async def main() -> None:
        viewer, agent = await established(ping_interval=0.05)
        for _ in range(100):
            if viewer.rtt is not None and agent.rtt is not None:
                break
            await asyncio.sleep(0.02)
        assert viewer.rtt is not None and 0 <= viewer.rtt < 1
        assert agent.rtt is not None and 0 <= agent.rtt < 1
        await viewer.close()
        await agent.close()

    run(main())


def test_acks_keep_bytes_in_flight_bounded() -> None:
    async def main() -> None:
        viewer, agent = await established()
        payload = hashlib.sha256(b"seed").digest() * 2048  # 64 KiB
        limit, peak = 256 * 1024, 0

        async def sender() -> None:
            nonlocal peak
            for _ in range(40):
                await viewer.wait_in_flight_below(limit)
                await viewer.send(payload)
                peak = max(peak, viewer.in_flight)

        task = asyncio.create_task(sender())
        received = await recv_exactly(agent, 40 * len(payload))
        await task
        assert received == payload * 40
        assert peak <= limit + len(payload)
        for _ in range(50):  # the last ACK comes after at most ~50 ms
            if viewer.in_flight == 0:
                break
            await asyncio.sleep(0.02)
        assert viewer.in_flight == 0
        await viewer.close()
        await agent.close()

    run(main())


def test_a_receiver_that_stops_reading_pushes_back_on_the_sender() -> None:
    async def main() -> None:
        viewer, agent = await established(recv_buffer_limit=128 * 1024)
        chunk = b"p" * 65536

        async def sender() -> None:
            for _ in range(400):  # 25 MiB: far more than socket buffers hold
                await viewer.send(chunk)

        task = asyncio.create_task(sender())
        await asyncio.sleep(0.5)
        assert not task.done()  # blocked in drain(): the receiver stopped reading the socket
        assert agent._rx_size <= 128 * 1024 + 256 * 1024  # limit plus one socket read
        total = 0
        while total < 400 * len(chunk):
            total += len(await agent.recv())
        await task
        await viewer.close()
        await agent.close()

    run(main())


def test_as_streams_behaves_like_asyncio_streams() -> None:
    async def main() -> None:
        viewer, agent = await established()
        v_reader, v_writer = viewer.as_streams()
        a_reader, a_writer = agent.as_streams()
        a_writer.write(b"RFB 003.008\n")
        a_writer.write(b"\x01\x02")
        a_writer.writelines([b"abc", b"def"])
        await a_writer.drain()
        assert await v_reader.readexactly(12) == b"RFB 003.008\n"  # spans nothing
        assert await v_reader.readexactly(4) == b"\x01\x02ab"  # spans two records
        assert await v_reader.read(2) == b"cd"
        assert await v_reader.read(100) == b"ef"
        assert await v_reader.read(0) == b""
        assert v_writer.get_extra_info("peername") == viewer._writer.get_extra_info("peername")
        assert v_writer.get_extra_info("no-such-thing", 7) == 7
        v_writer.write(b"\x03" * 5)
        await v_writer.drain()
        assert await a_reader.readexactly(5) == b"\x03" * 5
        a_writer.write(b"tail")
        a_writer.close()
        assert a_writer.is_closing()
        await a_writer.wait_closed()
        with pytest.raises(asyncio.IncompleteReadError) as info:
            await v_reader.readexactly(10)
        assert info.value.partial == b"tail"
        assert await v_reader.read() == b""
        assert v_reader.at_eof()
        assert viewer.close_reason == "bye"
        v_writer.close()
        await v_writer.wait_closed()

    run(main())


def test_read_all_until_eof() -> None:
    async def main() -> None:
        viewer, agent = await established()
        v_reader, _ = viewer.as_streams()
        await agent.send(b"a" * 100_000)
        await agent.send(b"b")
        await agent.close("done")
        assert await v_reader.read() == b"a" * 100_000 + b"b"
        await viewer.close()

    run(main())


# -- notifications (SecureStream.watch): what the session's flow control runs on, with no polling ----------


async def _until(predicate: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def test_watch_reports_every_ack_with_the_cumulative_count() -> None:
    async def main() -> None:
        viewer, agent = await established()
        acks: list[int] = []
        agent.watch(on_ack=acks.append)
        payload = bytes(range(256)) * 1024  # 256 KiB: several ACKs (one per ~16 KiB received)
        await agent.send(payload)
        assert await recv_exactly(viewer, len(payload)) == payload
        await _until(lambda: agent.in_flight == 0)
        assert len(acks) >= 2
        assert acks == sorted(acks) and acks[-1] == agent.bytes_sent == len(payload)
        assert all(0 < acked <= len(payload) for acked in acks)
        await viewer.close()
        await agent.close()

    run(main())


def test_watch_reports_rtt_samples_from_pongs() -> None:
    async def main() -> None:
        viewer, agent = await established(ping_interval=0.05, idle_ping_interval=0.05)
        samples: list[float] = []
        agent.watch(on_rtt=samples.append)
        await _until(lambda: len(samples) >= 2)
        assert all(0 <= rtt < 1 for rtt in samples)
        assert samples[-1] == agent.rtt  # the smoothed estimate, as the stream keeps it
        await viewer.close()
        await agent.close()

    run(main())


def test_on_end_once_when_the_peer_closes() -> None:
    async def main() -> None:
        viewer, agent = await established()
        ends: list[tuple[bool, str | None]] = []
        agent.watch(on_end=lambda: ends.append((agent.peer_closed, agent.close_reason)))
        await viewer.close("technician ended the session")
        await _until(lambda: bool(ends))
        await agent.close()  # our own close after the end is not a second end
        await asyncio.sleep(0.05)
        assert ends == [(True, "technician ended the session")]

    run(main())


def test_on_end_once_when_the_connection_is_cut() -> None:
    async def main() -> None:
        viewer, agent = await established()
        ends: list[BaseException | None] = []
        agent.watch(on_end=lambda: ends.append(agent.error))
        viewer._writer.transport.abort()  # no CLOSE record: truncation
        await _until(lambda: bool(ends))
        assert isinstance(ends[0], TruncatedError) and not agent.peer_closed
        await asyncio.sleep(0.05)
        assert len(ends) == 1
        await asyncio.gather(viewer.close(), agent.close())

    run(main())


def test_on_end_for_our_own_close_runs_outside_the_close_call() -> None:
    async def main() -> None:
        viewer, agent = await established()
        ends: list[str] = []
        agent.watch(on_end=lambda: ends.append("end"))
        closing = asyncio.ensure_future(agent.close("customer ended"))
        assert ends == []  # never inside a stream method
        await closing
        assert ends == ["end"] and agent.error is None
        late: list[str] = []
        agent.watch(on_end=lambda: late.append("late"))  # registered after the end: still told, once
        await asyncio.sleep(0.05)
        assert late == ["late"] and ends == ["end"]
        await viewer.close()

    run(main())


def test_a_failing_callback_is_logged_and_the_channel_carries_on(caplog: pytest.LogCaptureFixture) -> None:
    def broken(_: int) -> None:
        raise RuntimeError("owner bug")

    async def main() -> None:
        viewer, agent = await established()
        agent.watch(on_ack=broken)
        payload = b"x" * (64 * 1024)
        for _ in range(3):
            await agent.send(payload)
            assert await recv_exactly(viewer, len(payload)) == payload
        await _until(lambda: agent.in_flight == 0)
        assert agent.error is None
        await viewer.send(b"still here")
        assert await agent.recv() == b"still here"
        await viewer.close()
        await agent.close()

    run(main())
    assert "notification callback failed" in caplog.text


def test_a_silent_path_fails_as_a_cut_after_the_silence_limit() -> None:
    """A NAT that drops the path sends no reset: without a deadline the session would wait for TCP."""
    async def main() -> None:
        viewer, agent = await established(ping_interval=0.05, idle_ping_interval=0.1, silence_limit=0.5)
        await asyncio.sleep(0.8)
        assert viewer.error is None and agent.error is None  # idle but alive: keepalives arrive
        agent._write = lambda data: None  # the path goes silent: nothing from the agent gets through
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(PeerSilentError):
            await viewer.recv()
        assert 0.4 <= loop.time() - start <= 2.0
        assert isinstance(viewer.error, TruncatedError) and not viewer.peer_closed
        agent.abort()

    run(main())


def test_a_reader_paused_for_room_is_not_mistaken_for_a_silent_peer() -> None:
    async def main() -> None:
        viewer, agent = await established(ping_interval=0.05, idle_ping_interval=0.1, silence_limit=0.3,
                                          recv_buffer_limit=64 * 1024)
        chunk = b"q" * 65536
        sending = asyncio.create_task(viewer.send(chunk * 40))
        await asyncio.sleep(1.0)  # the agent reads nothing: its own doing, not the peer's
        assert agent.error is None
        total = 0
        while total < 40 * len(chunk):
            total += len(await agent.recv())
        await sending
        assert agent.error is None and viewer.error is None
        await asyncio.gather(viewer.close(), agent.close())

    run(main())


def _tap_record_types(stream: SecureStream) -> list[int]:
    """The types of the records ``stream`` writes from now on (read off where its records go)."""
    from tests.support.channels import record_header

    types: list[int] = []
    write = stream._out.write

    def tap(data: bytes) -> None:
        pos = 0
        while pos < len(data):
            length, rtype, header = record_header(data, pos)
            types.append(rtype)
            pos += header + length
        write(data)

    stream._out.write = tap  # type: ignore[method-assign]
    return types


def test_while_updates_flow_acks_give_the_rtt_and_ride_on_data_instead_of_pings_and_ack_records() -> None:
    """The typing pattern: the viewer sends a little, the agent answers with an update every 50 ms.

    The agent's PINGs stop after the first (each ACK of its updates is an RTT sample), and its ACKs of
    the viewer's bytes go inside its updates (DATA_ACK), not as records of their own."""
    from agent.secure.records import RecordType

    async def main() -> None:
        # Intervals far above the 50 ms rhythm: a loaded machine stretching a sleep must not make an ACK
        # fall due twice between two updates, or a PING find no recent RTT sample.
        viewer, agent = await established(ping_interval=0.5, ack_delay=0.25)
        types = _tap_record_types(agent)
        for _ in range(60):
            await viewer.send(b"key")
            await agent.recv()
            await agent.send(b"update" * 20)
            await viewer.recv()
            await asyncio.sleep(0.05)
        assert agent.rtt is not None and 0 <= agent.rtt < 1
        assert types.count(RecordType.PING) <= 1
        assert types.count(RecordType.ACK) == 0
        assert types.count(RecordType.DATA_ACK) >= 5
        await viewer.close()
        await agent.close()

    run(main())


# -- a receiver (set_receiver): payloads handed over in the read callback, what SessionChannel uses ----------


def test_a_receiver_gets_every_payload_in_order_inside_the_read_callback() -> None:
    async def main() -> None:
        viewer, agent = await established()
        got: list[bytes] = []
        tasks: list[object] = []

        def receive(data: bytes) -> bool:
            got.append(data)
            tasks.append(asyncio.current_task())  # None: a plain loop callback, no task woken per record
            return True

        agent.set_receiver(receive)
        for i in range(20):
            await viewer.send(b"key %d" % i)
        await asyncio.wait_for(_until(lambda: len(got) == 20), 5)
        assert got == [b"key %d" % i for i in range(20)]
        assert tasks == [None] * 20
        assert agent.bytes_received == sum(map(len, got))
        await asyncio.gather(viewer.close(), agent.close())

    run(main())


async def _until(condition: Any) -> None:
    while not condition():
        await asyncio.sleep(0.01)


def test_a_full_receiver_opens_no_further_record_until_it_has_room() -> None:
    async def main() -> None:
        viewer, agent = await established()
        got: list[bytes] = []
        room = [False]

        def receive(data: bytes) -> bool:
            got.append(data)
            return room[0]

        agent.set_receiver(receive)
        opened_before = agent._channel._opener.counter
        for part in (b"one", b"two", b"three"):
            await viewer.send(part)
        await viewer.close("done")  # the CLOSE too waits behind the records before it
        await asyncio.sleep(0.3)
        assert got == [b"one"]  # the receiver said no room: the rest is still sealed in the channel
        assert agent._channel._opener.counter == opened_before + 1
        assert not agent.peer_closed and agent.error is None
        room[0] = True
        agent.resume_receiving()
        await asyncio.wait_for(_until(lambda: agent.peer_closed), 5)
        assert got == [b"one", b"two", b"three"] and agent.close_reason == "done"
        assert agent.error is None

    run(main())


def test_payloads_queued_before_a_receiver_was_set_go_to_it_first() -> None:
    async def main() -> None:
        viewer, agent = await established()
        await viewer.send(b"early 1")
        await viewer.send(b"early 2")
        await asyncio.wait_for(_until(lambda: agent._rx_size == 14), 5)  # queued for recv()
        got: list[bytes] = []
        agent.set_receiver(lambda data: got.append(data) or True)
        assert got == [b"early 1", b"early 2"]
        await viewer.send(b"late")
        await asyncio.wait_for(_until(lambda: len(got) == 3), 5)
        assert got[2] == b"late"
        await asyncio.gather(viewer.close(), agent.close())

    run(main())


def test_bytes_that_arrived_with_the_handshake_are_not_lost_to_the_takeover() -> None:
    # The viewer's first records can reach the agent's StreamReader in the same read as its last
    # handshake message; the SecureStream takes the connection over from that reader, bytes and all.
    async def main() -> None:
        (cr, cw), (sr, sw) = await tcp_pair()
        viewer_task = asyncio.ensure_future(connect_viewer(cr, cw, SESSION, PASSWORD, timeout=10))
        from agent.secure.handshake import AgentHandshake
        from agent.secure.handshake_io import _handshake

        outcome = await _handshake(AgentHandshake(SESSION, PASSWORD), sr, sw, 10, failure_delay=0)
        viewer = await viewer_task
        await viewer.send(b"right after the handshake")
        await asyncio.wait_for(_until(lambda: len(sr._buffer) > 0), 5)  # it sits in the StreamReader
        agent = SecureStream(sr, sw, outcome.channel)
        assert await asyncio.wait_for(agent.recv(), 5) == b"right after the handshake"
        await asyncio.gather(viewer.close(), agent.close())

    run(main())


def test_an_ack_due_rides_on_data_after_its_delay_and_goes_alone_after_twice_that() -> None:
    """One timer per ACK owed, set for the ACK alone (twice ack_delay): before it, DATA sent later than
    ack_delay carries the ACK. No timer fires in between, only to say the ACK may ride (a typed key's
    request would otherwise wake the customer's loop once more per key)."""
    from agent.secure.records import RecordType

    async def main() -> None:
        delay = 0.2
        viewer, agent = await established(ping_interval=60, idle_ping_interval=60, ack_delay=delay)
        types = _tap_record_types(agent)
        loop = asyncio.get_running_loop()

        await viewer.send(b"request")
        assert await agent.recv() == b"request"
        timer = agent._ack_timer
        assert timer is not None and timer.when() - loop.time() > 1.5 * delay  # the ACK-alone deadline only
        await agent.send(b"too soon")  # within ack_delay: the ACK waits for a later record
        assert types == [RecordType.DATA] and agent._ack_timer is timer
        await asyncio.sleep(1.2 * delay)
        await agent.send(b"update")  # past ack_delay: it carries the ACK, and the timer goes
        assert types[-1] == RecordType.DATA_ACK and agent._ack_timer is None and timer.cancelled()
        assert await recv_exactly(viewer, len(b"too soonupdate")) == b"too soonupdate"

        await viewer.send(b"again")
        assert await agent.recv() == b"again"
        sent = len(types)
        await asyncio.sleep(1.5 * delay)
        assert types[sent:] == []  # nothing to carry it, and its grace is not over
        await _until(lambda: RecordType.ACK in types[sent:])
        await viewer.close()
        await agent.close()

    run(main())


def test_a_lazy_ack_waits_its_longer_delay_for_a_few_bytes_and_the_usual_grace_for_more() -> None:
    """``lazy_ack`` (the viewer bridge's): a typed key's echo of tens of bytes is acknowledged only after the
    lazy delay, one ACK for several echoes, and the RTT the agent takes from it is still the path's (the
    ACK's delay field); once more bytes than the lazy limit wait, the ACK goes after twice ack_delay."""
    from agent.secure.records import RecordType

    async def main() -> None:
        delay, lazy = 0.05, 0.6
        viewer, agent = await established(ping_interval=60, idle_ping_interval=60, ack_delay=delay,
                                          lazy_ack=(1000, lazy))
        types = _tap_record_types(viewer)
        loop = asyncio.get_running_loop()
        samples: list[float] = []
        agent.watch(on_rtt=samples.append)

        started = loop.time()
        for echo in (b"a" * 40, b"b" * 40, b"c" * 40):
            await agent.send(echo)
            assert await viewer.recv() == echo
            await asyncio.sleep(0.1)
        assert types == [] and agent.in_flight == 120  # three echoes, no ACK yet
        await _until(lambda: agent.in_flight == 0)
        assert types == [RecordType.ACK]  # one ACK for the three
        assert loop.time() - started >= lazy - 0.02
        assert samples and samples[-1] < 0.1  # loopback's RTT, not the 0.6 s the ACK waited

        sent = len(types)
        started = loop.time()
        await agent.send(b"d" * 40)
        assert await viewer.recv() == b"d" * 40
        await agent.send(b"e" * 2000)  # past the lazy limit: the usual grace from the first byte owed
        assert await recv_exactly(viewer, 2000) == b"e" * 2000
        await _until(lambda: agent.in_flight == 0)
        assert types[sent:] == [RecordType.ACK] and loop.time() - started < lazy / 2
        await viewer.close()
        await agent.close()

    run(main())


def test_the_ping_loop_ticks_less_often_while_acks_give_rtt_samples(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each tick of the ping loop is a wake-up of the customer's event loop; while the ACKs of what the agent
    sends give RTT samples a tick has nothing to do, so they come SAMPLED_PAUSE intervals apart; once the
    flow stops they come every interval again (keepalives, the silence check). The viewer, which only
    receives here, keeps its tick."""
    import agent.secure.stream as stream_module
    from agent.secure.records import RecordType

    pauses: list[float] = []
    real_sleep = asyncio.sleep

    class _Asyncio:  # stream.py's view of asyncio, its sleeps noted
        def __getattr__(self, name: str) -> Any:
            return getattr(asyncio, name)

        @staticmethod
        async def sleep(delay: float, result: Any = None) -> Any:
            pauses.append(delay)
            return await real_sleep(delay, result)

    monkeypatch.setattr(stream_module, "asyncio", _Asyncio())

    async def main() -> None:
        interval = 0.05
        viewer, agent = await established(ping_interval=interval, idle_ping_interval=10, ack_delay=0.005)
        pauses.clear()
        for _ in range(40):  # updates every 20 ms, each acknowledged: samples all along
            await agent.send(b"update" * 10)
            await viewer.recv()
            await asyncio.sleep(0.02)
        flowing = list(pauses)
        pauses.clear()
        types = _tap_record_types(agent)
        await asyncio.sleep(20 * interval)  # nothing moves: back to a tick an interval
        assert agent.rtt is not None
        assert stream_module.SAMPLED_PAUSE * interval in flowing
        assert len(pauses) >= 8 and pauses[-6:] == [interval] * 6
        assert RecordType.PING not in types  # the last updates' ACKs were samples: no PING for the RTT
        await viewer.close()
        await agent.close()

    run(main())

"""The resumable session channel (agent.secure.session_channel): after a cut, the replay from the peer's
received count is byte-exact, over fake transports and over real TCP with the resume handshake; the
unacknowledged bytes kept for a replay are bounded (64 MiB) and going over fails the session closed."""
from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, TypeVar

import pytest

from agent.secure.errors import ChannelError, ProtocolViolationError, TruncatedError
from agent.secure.mux import Mux, Role, StreamData
from agent.secure.resume_io import accept_resume, connect_resume
from agent.secure.session_channel import REPLAY_LIMIT, STREAM_BUFFER, SessionChannel
from agent.sansio import NEED_DATA
from tests.secure.test_stream import SESSION, established, tcp_pair

T = TypeVar("T")


def run(coro: Awaitable[T], timeout: float = 30) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout))


class FakeTransport:
    """What SessionChannel needs of a SecureStream: records what it is given, ends when told."""

    def __init__(self, secret: bytes = b"r" * 32) -> None:
        self.safety_code = "1234"
        self.resumption_secret = secret
        self.compressing = False
        self.in_flight = 0
        self.rtt = None
        self.sent = bytearray()
        self.peer_closed = False
        self.close_reason: str | None = None
        self.error: ChannelError | None = None
        self.aborted = False
        self.receiver: Callable[[bytes], bool] | None = None
        self.resumed = 0  # resume_receiving() calls
        self._callbacks: dict[str, Any] = {}

    @property
    def bytes_sent(self) -> int:
        return len(self.sent)

    def watch(self, *, on_ack: Any = None, on_rtt: Any = None, on_end: Any = None) -> None:
        self._callbacks = {"ack": on_ack, "end": on_end}

    def _send_nowait(self, data: bytes, *, fixed_size: bool = False, on_sent: Any = None) -> None:
        self.sent += data
        if on_sent is not None:  # sealed at once, as a SecureStream does below its offload threshold
            on_sent()

    async def _drain(self) -> None:
        return None

    def set_receiver(self, receiver: Callable[[bytes], bool] | None) -> None:
        self.receiver = receiver

    def resume_receiving(self) -> None:
        self.resumed += 1

    def feed(self, data: bytes) -> bool:
        """Inner bytes from the peer, as a SecureStream hands them over; False: the channel is full."""
        assert self.receiver is not None
        return self.receiver(data)

    def ack(self, count: int) -> None:
        self._callbacks["ack"](count)

    def cut(self) -> None:
        self.error = TruncatedError("the connection was cut")
        self._callbacks["end"]()

    def abort(self) -> None:
        self.aborted = True

    def _fail(self, exc: ChannelError) -> None:
        self.error = exc


def parse(wire: bytes, opened: int = 1) -> list[object]:
    """The viewer's view of agent-sent frames (stream ``opened`` already open on the viewer)."""
    viewer = Mux(Role.VIEWER)
    for _ in range(opened):
        viewer.open_stream("rfb")
    viewer.receive_data(wire)
    events = []
    while (event := viewer.next_event()) is not NEED_DATA:
        events.append(event)
    return events


async def agent_channel() -> tuple[SessionChannel, FakeTransport, list[bool], Any]:
    """An agent-side channel with one RFB stream the viewer opened."""
    transport = FakeTransport()
    ends: list[bool] = []
    opened: list[Any] = []
    channel = SessionChannel(transport, "agent", on_message=lambda m: None, on_open=opened.append,
                             on_transport_end=ends.append)
    viewer = Mux(Role.VIEWER)
    _, frames = viewer.open_stream("rfb")
    assert transport.feed(frames)
    assert len(opened) == 1
    return channel, transport, ends, opened[0]


@pytest.mark.parametrize("peer_received_at", ["start", "inside-first", "boundary", "inside-last", "all"])
def test_replay_after_a_cut_is_byte_exact_from_the_peers_count(peer_received_at: str) -> None:
    async def main() -> None:
        channel, old, ends, stream = await agent_channel()
        pieces = [bytes([i]) * (1000 + 37 * i) for i in range(5)]
        for piece in pieces:
            stream.write(piece)
        channel.send_message({"type": "state", "state": "active"})
        wire = bytes(old.sent)
        assert channel._mux.sent_total == len(wire)
        acked = len(pieces[0]) + 7  # the first frame (header 7) acked: dropped from the log
        old.ack(acked)
        received = {"start": acked, "inside-first": acked + 100, "boundary": acked + len(pieces[1]) + 7,
                    "inside-last": len(wire) - 3, "all": len(wire)}[peer_received_at]
        old.cut()
        await asyncio.sleep(0)
        assert ends == [True] and not channel.connected and not channel.closed
        # the session goes on while cut: more frames are logged, sent on nothing
        stream.write(b"during the cut")
        new = FakeTransport(secret=b"n" * 32)
        channel.resume(new, received)
        assert channel.connected and channel.resumption_secret == b"n" * 32
        assert channel.bytes_sent >= len(old.sent)  # acked totals never go backwards
        # what the viewer had (wire[:received]) + the replay == every frame ever sent, byte for byte
        stream_bytes_after = bytes(new.sent)
        whole = wire[:received] + stream_bytes_after
        events = parse(whole)
        datas = b"".join(e.data for e in events if isinstance(e, StreamData))
        assert datas == b"".join(pieces) + b"during the cut"
        assert stream_bytes_after == (wire + _frame_of(b"during the cut"))[received:]
        await channel.close()

    run(main())


def _frame_of(data: bytes, stream: int = 1) -> bytes:
    from agent.secure.mux import _frame

    return _frame(2, stream, data)


def test_a_resume_from_before_the_acked_point_or_past_the_end_is_refused() -> None:
    async def main() -> None:
        channel, old, _, stream = await agent_channel()
        stream.write(b"a" * 100)
        stream.write(b"b" * 100)
        old.ack(102)  # the first frame: a 2-byte header and 100 bytes
        old.cut()
        await asyncio.sleep(0)
        with pytest.raises(ProtocolViolationError):
            channel.resume(FakeTransport(), 101)  # those bytes were acked and dropped
        with pytest.raises(ProtocolViolationError):
            channel.resume(FakeTransport(), 205)  # more than was ever sent
        channel.resume(FakeTransport(), 204)
        await channel.close()

    run(main())


def test_the_replay_log_is_bounded_and_going_over_fails_the_session_closed() -> None:
    async def main() -> None:
        channel, old, _, stream = await agent_channel()
        chunk = b"\0" * (1024 * 1024)
        for _ in range(REPLAY_LIMIT // len(chunk) - 1):
            stream.write(chunk)
        assert not channel.closed
        assert channel._log_size <= REPLAY_LIMIT
        stream.write(chunk)  # past 64 MiB unacknowledged
        assert channel.closed and "acknowledging" in channel.close_reason
        assert stream.closed and old.aborted
        assert channel._log_size <= REPLAY_LIMIT
        with pytest.raises(ConnectionResetError):
            await channel.drain()

    run(main())


def test_acks_keep_the_log_small_for_a_long_session() -> None:
    async def main() -> None:
        channel, old, _, stream = await agent_channel()
        chunk = b"\1" * (1024 * 1024)
        for _ in range(3 * REPLAY_LIMIT // len(chunk)):
            stream.write(chunk)
            old.ack(old.bytes_sent)
        assert not channel.closed and channel._log_size == 0
        await channel.close()

    run(main())


def test_an_authenticated_close_is_not_a_cut() -> None:
    async def main() -> None:
        channel, old, ends, _ = await agent_channel()
        old.peer_closed, old.close_reason = True, "the technician ended the session"
        old.cut()
        await asyncio.sleep(0)
        assert ends == [False] and channel.closed and channel.peer_closed
        with pytest.raises(ChannelError):
            channel.resume(FakeTransport(), 0)

    run(main())


def test_a_resume_over_tcp_replays_every_stream_byte_exactly() -> None:
    """Real SecureStreams: the agent streams while the path is cut; the resume handshake (never the
    password) continues the channel and the viewer's stream reads every byte once, in order."""
    async def main() -> None:
        viewer_tr, agent_tr = await established()
        agent_streams: asyncio.Queue[Any] = asyncio.Queue()
        cuts: list[tuple[str, bool]] = []
        agent = SessionChannel(agent_tr, "agent", on_message=lambda m: None, on_open=agent_streams.put_nowait,
                               on_transport_end=lambda cut: cuts.append(("agent", cut)))
        viewer = SessionChannel(viewer_tr, "viewer", on_message=lambda m: None,
                                on_transport_end=lambda cut: cuts.append(("viewer", cut)))
        v_stream = viewer.open_stream("rfb")
        a_stream = await asyncio.wait_for(agent_streams.get(), 5)
        sent = bytearray()
        got = bytearray()

        async def reader() -> None:
            while chunk := await v_stream.recv():
                got.extend(chunk)

        reading = asyncio.create_task(reader())
        for i in range(200):
            piece = bytes([i % 256]) * (3000 + i)
            sent += piece
            a_stream.write(piece)
            if i == 100:
                agent_tr._writer.transport.abort()  # the path is cut mid-stream, unacked bytes in flight
        await asyncio.sleep(0.2)
        assert ("agent", True) in cuts and ("viewer", True) in cuts
        assert not agent.closed and not viewer.closed
        (cr, cw), (sr, sw) = await tcp_pair()
        agent_secret, viewer_secret = agent.resumption_secret, viewer.resumption_secret
        assert agent_secret == viewer_secret
        (new_v, agent_had), (new_a, viewer_had) = await asyncio.gather(
            connect_resume(cr, cw, SESSION, viewer_secret, viewer.inner_received, timeout=10),
            accept_resume(sr, sw, SESSION, agent_secret, lambda: agent.inner_received, b"", timeout=10))
        assert viewer_had == viewer.inner_received and agent_had == agent.inner_received
        viewer.resume(new_v, agent_had)
        agent.resume(new_a, viewer_had)
        assert agent.resumption_secret == viewer.resumption_secret != agent_secret
        a_stream.write(b"after the resume")
        sent += b"after the resume"
        for _ in range(200):
            if len(got) >= len(sent):
                break
            await asyncio.sleep(0.05)
        assert bytes(got) == bytes(sent)
        await agent.close("bye")
        await asyncio.wait_for(reading, 5)
        await viewer.close()

    run(main())


def test_a_resume_with_a_stale_secret_is_refused_over_tcp() -> None:
    from agent.secure.errors import AuthFailedError
    from agent.secure.resume import ResumeRefusedError

    async def main() -> None:
        (cr, cw), (sr, sw) = await tcp_pair()
        results = await asyncio.gather(
            connect_resume(cr, cw, SESSION, b"old" * 11, 0, timeout=10),
            accept_resume(sr, sw, SESSION, b"new" * 11, lambda: 0, b"", timeout=10), return_exceptions=True)
        assert isinstance(results[0], ResumeRefusedError)
        assert isinstance(results[1], AuthFailedError)

    run(main())


def test_a_path_that_goes_silent_is_a_cut_on_both_sides_and_the_session_stays_resumable() -> None:
    async def main() -> None:
        viewer_tr, agent_tr = await established(ping_interval=0.05, idle_ping_interval=0.1, silence_limit=0.4)
        cuts: list[tuple[str, bool]] = []
        agent = SessionChannel(agent_tr, "agent", on_message=lambda m: None,
                               on_transport_end=lambda cut: cuts.append(("agent", cut)))
        viewer = SessionChannel(viewer_tr, "viewer", on_message=lambda m: None,
                                on_transport_end=lambda cut: cuts.append(("viewer", cut)))
        agent_tr._write = viewer_tr._write = lambda data: None  # a NAT drops the path: no reset, no bytes
        for _ in range(60):
            if len(cuts) == 2:
                break
            await asyncio.sleep(0.05)
        assert sorted(cuts) == [("agent", True), ("viewer", True)]
        assert not agent.closed and not viewer.closed
        await agent.close("bye")
        await viewer.close()

    run(main())


# -- receiving in the transport's callback: a full stream stops the reading, reading it restarts it ----------

async def read_bytes(stream: Any, size: int) -> None:
    """Read ``size`` bytes of ``stream`` (they come in MAX_FRAME pieces): what a consumer making room does."""
    got = 0
    while got < size:
        chunk = await stream.recv()
        assert chunk, "the stream ended early"
        got += len(chunk)



def test_a_full_stream_stops_the_channel_reading_until_it_is_read() -> None:
    async def main() -> None:
        channel, transport, _, stream = await agent_channel()
        viewer = Mux(Role.VIEWER)
        viewer.open_stream("rfb")
        big = viewer.send(1, b"b" * STREAM_BUFFER)  # fills the stream's buffer on its own
        after = viewer.send(1, b"after") + viewer.send_message({"type": "hello"})
        assert transport.feed(big + after) is False  # full: the transport must open no more records
        assert stream._rx_size == STREAM_BUFFER  # "after" and the message wait in the mux
        assert transport.feed(viewer.send(1, b"late")) is False  # had the transport read on, it would wait too
        await asyncio.sleep(0)
        assert transport.resumed == 0
        await read_bytes(stream, STREAM_BUFFER)  # the reader makes room
        for _ in range(3):
            await asyncio.sleep(0)
        assert transport.resumed == 1  # what the mux held went on, then the transport reads again
        assert await stream.recv() == b"after"
        assert await stream.recv() == b"late"
        assert transport.feed(viewer.send(1, b"more"))
        assert await stream.recv() == b"more"

    run(main())


def test_a_data_receiver_gets_the_bytes_in_the_read_callback_holds_them_off_and_hears_the_end() -> None:
    """``set_data_receiver``: what a reader took and what was queued go first, in order; then each frame
    as it is read, no task between; a full receiver stops the channel reading until it resumes; then
    b"" once the stream ends."""
    async def main() -> None:
        channel, transport, _, stream = await agent_channel()
        viewer = Mux(Role.VIEWER)
        viewer.open_stream("rfb")
        assert transport.feed(viewer.send(1, b"queued"))
        got: list[bytes] = []
        full = [False]

        def receiver(data: bytes) -> bool:
            got.append(data)
            return not full[0]

        stream.set_data_receiver(receiver, b"taken")
        assert got == [b"taken", b"queued"]
        assert transport.feed(viewer.send(1, b"one")) and got[-1] == b"one"
        full[0] = True
        assert transport.feed(viewer.send(1, b"two") + viewer.send(1, b"three")) is False
        assert got[-1] == b"two" and transport.feed(viewer.send(1, b"four")) is False  # held: the mux keeps them
        full[0] = False
        stream.resume_receiving()
        assert got[-1] == b"two"  # the rest goes on as a loop callback, as after any full stream
        for _ in range(3):
            await asyncio.sleep(0)
        assert got[-2:] == [b"three", b"four"] and transport.resumed == 1
        stream.set_data_receiver(None)
        assert transport.feed(viewer.send(1, b"five"))
        assert await stream.recv() == b"five" and got[-1] == b"four"  # back to recv
        stream.set_data_receiver(receiver)
        assert transport.feed(viewer.close_stream(1, "bye"))
        assert got[-1] == b"" and stream.closed

    run(main())


def test_the_acks_of_small_echoes_kick_the_service_only_when_the_link_could_hold_something_back() -> None:
    """Typing: the agent sends a small echo, the viewer ACKs it. Once the link has a rate estimate, an ACK
    that found less in flight than the window and half a round trip at the peak rate kicks nobody (each
    kick costs the service an update attempt); an ACK behind a backlog still kicks at once."""
    from agent.session.channel import ViewerChannel

    class Service:
        def __init__(self) -> None:
            self.kicks = 0

        def set_link_quality(self, cap: int | None) -> None:
            self.kicks += 1

        def kick_all(self) -> None:
            self.kicks += 1

    async def main() -> None:
        channel, transport, _, stream = await agent_channel()
        now = [0.0]
        service = Service()
        viewer_channel = ViewerChannel(channel, service, report=lambda e: None, on_end=lambda c: None,
                                       clock=lambda: now[0])
        viewer_channel.flow.on_rtt(0.1)

        def echo_acked(size: int) -> None:
            stream.write(b"e" * size)
            now[0] += 0.25
            transport.ack(transport.bytes_sent)

        echo_acked(100_000)  # the first ACKs: no rate yet, every one kicks as before
        echo_acked(100_000)
        assert viewer_channel.flow.peak_bandwidth is not None
        kicks = service.kicks
        for _ in range(10):
            echo_acked(200)  # 200 bytes in flight: far below 0.5 x 400 kB/s x 0.1 s
        assert service.kicks == kicks
        stream.write(b"b" * 60_000)  # a backlog: 60 kB in flight, above that bar
        now[0] += 0.25
        transport.ack(transport.bytes_sent)
        assert service.kicks == kicks + 1
        viewer_channel.stop()

    run(main())


def test_frames_held_for_room_when_the_path_is_cut_arrive_after_the_resume() -> None:
    # They were received (inner_received counts them, so the peer will not resend them): the next
    # connection must deliver them once there is room, with nothing new arriving to push them along.
    async def main() -> None:
        channel, old, ends, stream = await agent_channel()
        viewer = Mux(Role.VIEWER)
        viewer.open_stream("rfb")
        assert old.feed(viewer.send(1, b"b" * STREAM_BUFFER) + viewer.send(1, b"held")) is False
        received = channel.inner_received
        old.cut()
        await asyncio.sleep(0)
        assert ends == [True]
        await read_bytes(stream, STREAM_BUFFER)  # room is made while no connection is there
        new = FakeTransport(secret=b"n" * 32)
        channel.resume(new, 0)
        assert await asyncio.wait_for(stream.recv(), 2) == b"held"
        assert channel.inner_received == received

    run(main())


def test_the_agent_stripes_matrices_only_for_a_viewer_that_said_it_reads_them() -> None:
    """The viewer's channel says first thing that it reads STRIPED frames (a session message the channel
    keeps to itself); only then do an update's matrices go in stripes, and the viewer's stream gets the
    bytes as written, resumed or not."""
    async def main() -> None:
        messages: list[dict] = []
        opened: list[Any] = []
        viewer_transport, agent_transport = FakeTransport(), FakeTransport()
        viewer = SessionChannel(viewer_transport, "viewer", on_message=messages.append)
        SessionChannel(agent_transport, "agent", on_message=messages.append, on_open=opened.append)
        data = bytes(range(256)) * 3
        matrices = [(10, 16, 4, 8, 0), (200, 32, 10, 9, 4)]
        # a viewer that predates STRIPED (a bare Mux, no message): the same bytes as DATA only
        old_viewer = Mux(Role.VIEWER)
        old_agent_transport = FakeTransport()
        old_opened: list[Any] = []
        SessionChannel(old_agent_transport, "agent", on_message=messages.append, on_open=old_opened.append)
        old_agent_transport.feed(old_viewer.open_stream("rfb")[1])
        old_opened[0].write(data, matrices=matrices)
        events = parse(bytes(old_agent_transport.sent))
        assert {type(e) for e in events} == {StreamData} and b"".join(e.data for e in events) == data
        assert bytes(old_agent_transport.sent) == _frame_of(data)  # one DATA frame, as before STRIPED

        rfb = viewer.open_stream("rfb")
        assert agent_transport.feed(bytes(viewer_transport.sent))
        assert messages == []  # the channel's own message went no further
        opened[0].write(data, matrices=matrices)
        wire = bytes(agent_transport.sent)
        assert wire.count(bytes([5 << 4 | 1])) >= 2  # two STRIPED frames on stream 1
        assert bytes(old_agent_transport.sent) != wire
        assert viewer_transport.feed(wire)
        received = b""
        while len(received) < len(data):
            received += await asyncio.wait_for(rfb.recv(), 2)
        assert received == data

    run(main())

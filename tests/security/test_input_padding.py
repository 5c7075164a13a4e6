"""Input kinds and keystroke timing are hidden from the relay (issue #11 C, DESIGN §4.2 point 3).

The relay sees every record's header (length and type) and when it passes. Before the fix the viewer's
RFB input went out as one DATA record per event, its size telling a KeyEvent (8 bytes) from a
PointerEvent (6) and its time giving away the rhythm of typing. Now the bridge's channel sends input as
records of one fixed size, on a fixed tick, with chaff while typing.
"""
from __future__ import annotations

import asyncio
import contextlib
import struct

from tests.support.channels import record_header

try:
    from agent.secure.pacing import INPUT_RECORD_SIZE, INPUT_TICK, TYPING_WINDOW
except ImportError:  # the code before the fix: the same expectations, so the test fails on behaviour
    INPUT_RECORD_SIZE, INPUT_TICK, TYPING_WINDOW = 64, 0.020, 1.0
from agent.secure.records import RecordType
from agent.secure.session_channel import SessionChannel
from agent.secure.stream import accept_agent, connect_viewer

KEY_EVENT = struct.pack(">BBxxI", 4, 1, 0x61)        # RFB KeyEvent: 'a' down (8 bytes)
POINTER_EVENT = struct.pack(">BBHH", 5, 0, 100, 200)  # RFB PointerEvent (6 bytes)
SID = "123456789"
_DATA_TYPES = (RecordType.DATA, RecordType.DATA_ACK)


class _Tap:
    """Wraps where the viewer's records go (its socket's transport): keeps what goes on the wire after the
    handshake."""

    def __init__(self, writer):
        self._writer = writer
        self.wire = bytearray()
        self.times: list[tuple[float, int]] = []

    def write(self, data):
        self.wire += data
        data_records = [length for rtype, length in _records(bytes(data)) if rtype in _DATA_TYPES]
        if data_records:  # (ACKs and PINGs are not input)
            self.times.append((asyncio.get_running_loop().time(), len(data_records) * (2 + data_records[0])))
            assert set(data_records) == {data_records[0]}
        self._writer.write(data)

    def __getattr__(self, name):
        return getattr(self._writer, name)


def _records(wire: bytes) -> list[tuple[int, int]]:
    out, pos = [], 0
    while pos < len(wire):
        length, rtype, header = record_header(wire, pos)
        out.append((rtype, length))
        pos += header + length
    return out


@contextlib.asynccontextmanager
async def _channel_pair():
    """(viewer channel, agent channel, the viewer's wire tap, the agent's opened streams), closed after."""
    accepted: asyncio.Future = asyncio.get_running_loop().create_future()

    async def on_agent(reader, writer):
        accepted.set_result(await accept_agent(reader, writer, SID, "pw2345", failure_delay=0.0))

    server = await asyncio.start_server(on_agent, "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname()[:2])
    viewer_stream = await connect_viewer(reader, writer, SID, "pw2345")
    agent_stream = await accepted
    tap = _Tap(viewer_stream._out)
    viewer_stream._out = tap
    opened: asyncio.Queue = asyncio.Queue()
    agent = SessionChannel(agent_stream, "agent", on_message=lambda m: None, on_open=opened.put_nowait)
    try:
        viewer = SessionChannel(viewer_stream, "viewer", on_message=lambda m: None, pace_input=True)
    except TypeError:  # before the fix
        viewer = SessionChannel(viewer_stream, "viewer", on_message=lambda m: None)
    try:
        yield viewer, agent, tap, opened
    finally:
        await viewer.close("done")
        await agent.close("done")
        server.close()


async def test_a_key_and_a_pointer_event_make_identical_records_on_the_wire():
    async with _channel_pair() as (viewer, agent, tap, opened):
        rfb = viewer.open_stream("rfb")
        agent_rfb = await asyncio.wait_for(opened.get(), 2)
        sizes = {}
        for name, event in (("key", KEY_EVENT), ("pointer", POINTER_EVENT)):
            await asyncio.sleep(TYPING_WINDOW + 3 * INPUT_TICK)  # quiet: no chaff, nothing queued
            start = len(tap.wire)
            rfb.write(event)
            assert await asyncio.wait_for(agent_rfb.recv(), 2) == event  # delivered, padding dropped
            await asyncio.sleep(2 * INPUT_TICK)
            sizes[name] = {length for rtype, length in _records(tap.wire[start:]) if rtype in _DATA_TYPES}
        assert sizes["key"] == sizes["pointer"] == {INPUT_RECORD_SIZE + 16}, sizes
        # one type too: every input record carries the viewer's ACK, something new to acknowledge or not
        assert {rtype for rtype, _ in _records(tap.wire) if rtype in _DATA_TYPES + (RecordType.ZDATA,)} == {
            RecordType.DATA_ACK}


async def test_typing_goes_out_on_the_tick_with_chaff_then_stops():
    async with _channel_pair() as (viewer, agent, tap, opened):
        loop = asyncio.get_running_loop()
        rfb = viewer.open_stream("rfb")
        await asyncio.wait_for(opened.get(), 2)
        await asyncio.sleep(TYPING_WINDOW + 3 * INPUT_TICK)
        start = len(tap.times)
        began = loop.time()
        for delay in (0.013, 0.151, 0.037, 0.290, 0.071):  # a person's irregular rhythm
            rfb.write(KEY_EVENT)
            await asyncio.sleep(delay)
        typed = loop.time() - began
        await asyncio.sleep(TYPING_WINDOW + 5 * INPUT_TICK)
        sends = tap.times[start:]
        # every send is whole fixed-size records, and sends land on the tick grid
        assert all(size % (2 + INPUT_RECORD_SIZE + 16) == 0 for _, size in sends)
        late = [round(when / INPUT_TICK, 6) % 1.0 for when, _ in sends]  # (uvloop's clock: whole milliseconds)
        assert sorted(late)[len(late) // 2] < 0.25, late  # just after a grid point (timer jitter), whenever the key
        ticks = [round(when / INPUT_TICK) for when, _ in sends]
        assert len(set(ticks)) == len(ticks), "one send a tick at most"
        records = sum(size // (2 + INPUT_RECORD_SIZE + 16) for _, size in sends)
        expected = (typed + TYPING_WINDOW) / INPUT_TICK
        assert 0.6 * expected <= records <= 1.2 * expected + 2, (records, expected)  # chaff fills silent ticks
        wire_bytes = sum(size for _, size in sends)
        print(f"typing 5 keys over {typed:.2f} s: {records} records, {wire_bytes} bytes on the wire "
              f"({wire_bytes / (typed + TYPING_WINDOW):.0f} B/s) against 5 x {2 + 10 + 16} = {5 * 28} unpadded")
        quiet = len(tap.times)
        await asyncio.sleep(0.3)
        assert len(tap.times) == quiet  # after the typing window nothing more is sent


UPDATE_REQUEST = struct.pack(">BBHHHH", 3, 1, 0, 0, 640, 480)  # RFB FramebufferUpdateRequest (10 bytes)


async def test_a_viewer_that_only_watches_sends_its_requests_padded_on_the_tick_but_no_chaff():
    """A technician watching a changing screen: the viewer requests an update after each one. Those requests
    are the viewer's own (no person's timing), so they start no chaff; a key still does."""
    async with _channel_pair() as (viewer, agent, tap, opened):
        rfb = viewer.open_stream("rfb")
        agent_rfb = await asyncio.wait_for(opened.get(), 2)
        await asyncio.sleep(TYPING_WINDOW + 3 * INPUT_TICK)
        start = len(tap.times)
        for _ in range(8):
            rfb.write(UPDATE_REQUEST, user_input=False)
            assert await asyncio.wait_for(agent_rfb.recv(), 2) == UPDATE_REQUEST
            await asyncio.sleep(0.1)  # an update on a slow link
        sends = tap.times[start:]
        assert all(size == 2 + INPUT_RECORD_SIZE + 16 for _, size in sends), sends  # one padded record each
        assert len(sends) == 8, f"{len(sends)} records for 8 requests: chaff ran"
        late = [(when / INPUT_TICK) % 1.0 for when, _ in sends]
        assert sorted(late)[len(late) // 2] < 0.25, late  # on the tick grid, like input
        start = len(tap.times)
        rfb.write(KEY_EVENT)
        await asyncio.sleep(TYPING_WINDOW / 2)
        records = sum(size // (2 + INPUT_RECORD_SIZE + 16) for _, size in tap.times[start:])
        assert records >= 0.6 * (TYPING_WINDOW / 2) / INPUT_TICK, records  # a key: chaff fills the ticks


async def test_a_new_viewer_channel_is_silent_after_its_opening_message():
    """The channel's own opening message (agent.secure.session_channel, ``mux``) is not a person's input."""
    async with _channel_pair() as (viewer, agent, tap, opened):
        await asyncio.sleep(0.3)
        assert len(tap.times) <= 1, tap.times  # the opening message's record, and no chaff after it


async def test_the_ack_an_update_earns_rides_the_next_input_record_with_no_record_of_its_own():
    """The agent sends a key's echo; the viewer asks for the next update. Its request's record acknowledges
    the echo (an RTT sample for the agent), it is no bigger than any other input record, and the viewer
    sends no ACK record by itself: one record fewer for the customer's agent to open per typed key."""
    async with _channel_pair() as (viewer, agent, tap, opened):
        rfb = viewer.open_stream("rfb")
        agent_rfb = await asyncio.wait_for(opened.get(), 2)
        await asyncio.sleep(0.1)
        acks_before = agent._transport._channel.peer_acked
        start = len(tap.wire)
        for n in range(5):
            agent_rfb.write(b"u" * 300)  # an update
            assert len(await asyncio.wait_for(rfb.recv(), 2)) == 300
            rfb.write(UPDATE_REQUEST, user_input=False)
            assert await asyncio.wait_for(agent_rfb.recv(), 2) == UPDATE_REQUEST
            await asyncio.sleep(0.15)  # the next key's echo: a typist's pace
        await asyncio.sleep(0.25)  # past the ACK's own delays (2 x 50 ms): any lone ACK would have gone
        records = _records(tap.wire[start:])
        assert RecordType.ACK not in {rtype for rtype, _ in records}, records
        assert {(rtype, length) for rtype, length in records if rtype in _DATA_TYPES} == {
            (RecordType.DATA_ACK, INPUT_RECORD_SIZE + 16)}
        channel = agent._transport._channel
        assert channel.peer_acked > acks_before and channel.in_flight == 0
        assert agent._transport.rtt is not None


async def test_chaff_carries_acks_no_more_often_than_the_ack_timer_would_send_them():
    """While the technician types (a record every tick, 50 a second) and the screen streams updates, the
    input records acknowledge at most every 2 x ACK_DELAY (as the timer would): every ACK the customer's
    agent gets costs it flow-control work, and 50 a second cost more than the records they replaced."""
    from agent.secure.stream import ACK_DELAY

    async with _channel_pair() as (viewer, agent, tap, opened):
        loop = asyncio.get_running_loop()
        rfb = viewer.open_stream("rfb")
        agent_rfb = await asyncio.wait_for(opened.get(), 2)
        acks: list[float] = []
        agent.watch(on_ack=lambda total: acks.append(loop.time()))
        began = loop.time()
        while loop.time() - began < 1.0:
            agent_rfb.write(b"u" * 500)  # the screen streams
            if int((loop.time() - began) / 0.1) % 2 == 0:
                rfb.write(KEY_EVENT)  # typing: chaff fills the other ticks
            await asyncio.sleep(0.01)
        await asyncio.sleep(3 * ACK_DELAY)
        gaps = [b - a for a, b in zip(acks, acks[1:])]
        assert 5 <= len(acks) <= 1.0 / (2 * ACK_DELAY) + 3, (len(acks), gaps)
        assert agent._transport._channel.in_flight == 0  # everything acknowledged in the end
        start = len(tap.wire)
        await asyncio.sleep(0.3)
        assert RecordType.ACK not in {rtype for rtype, _ in _records(tap.wire[start:])}

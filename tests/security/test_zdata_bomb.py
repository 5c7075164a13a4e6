"""A hostile peer's decompression bomb through ZDATA records (issue #11, item 1).

The attacker is an authenticated but hostile agent: it runs our own sans-IO handshake over a raw
socket against the real viewer code, then writes records it sealed itself. Each ZDATA record is
~50 bytes that inflate to 1 MiB (one flushed chunk of zeros); a single 64 KiB read could hold over
a thousand of them. The viewer's receive side must stay within its stated bound however many arrive
in one read, and must refuse ZDATA outright when compression was not agreed in the handshake.
"""
from __future__ import annotations

import asyncio
import gc
import tracemalloc

import pytest

from agent.secure.compress import MAX_INFLATED
from agent.secure.errors import ChannelError, HandshakeError, ProtocolViolationError, WrongPasswordError
from agent.secure.handshake import AgentHandshake, Established, ViewerHandshake
from agent.secure.records import NEED_DATA, RecordType
from agent.secure.stream import RECV_BUFFER_LIMIT, connect_viewer

SESSION = "123456789"
PASSWORD = "k3mx7q"
BOMB_RECORDS = 64  # 64 MiB once inflated; the wire carries ~3 KiB
# The stated receive-side bound: the recv() budget, one record inflated past it, and slack for the
# interpreter (reader buffers, the few Python objects per record).
RECEIVE_BOUND = RECV_BUFFER_LIMIT + MAX_INFLATED + 1024 * 1024


async def _hostile_agent_and_viewer(*, viewer_offers: bool):
    """(hostile agent's established Channel, its socket writer, the real viewer's SecureStream)."""
    accepted: asyncio.Future = asyncio.get_running_loop().create_future()
    server = await asyncio.start_server(lambda r, w: accepted.set_result((r, w)), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    viewer_conn = await asyncio.open_connection("127.0.0.1", port)
    reader, writer = await accepted
    server.close()

    async def attacker() -> Established:
        handshake = AgentHandshake(SESSION, PASSWORD, compression=True)
        while True:
            event = handshake.next_event()
            out = handshake.data_to_send()
            if out:
                writer.write(out)
            if isinstance(event, Established):
                return event
            handshake.receive_data(await reader.read(4096))

    outcome, viewer = await asyncio.gather(
        attacker(), connect_viewer(*viewer_conn, SESSION, PASSWORD, timeout=10, compression=viewer_offers))
    return outcome.channel, writer, viewer


def _bomb(channel, count: int) -> bytes:
    """``count`` ZDATA records, each ~50 bytes inflating to exactly 1 MiB (our own deflater, flushed per MiB)."""
    channel.enable_compression()
    wire = channel.send_data(bytes(MAX_INFLATED * count))
    assert len(wire) < 100 * count, len(wire)  # tiny on the wire
    return wire


async def test_many_tiny_zdata_records_in_one_read_stay_within_the_receive_bound():
    hostile, writer, viewer = await _hostile_agent_and_viewer(viewer_offers=True)
    wire = _bomb(hostile, BOMB_RECORDS)
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        writer.write(wire)  # one write: the viewer gets them in one or two reads
        await writer.drain()
        for _ in range(50):  # let the viewer's reader do all it will do without a consumer
            await asyncio.sleep(0.02)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"receive-side peak {peak / 2**20:.2f} MiB")
    assert peak < RECEIVE_BOUND, f"receive side peaked at {peak / 2**20:.1f} MiB (bound {RECEIVE_BOUND / 2**20:.1f})"
    # Nothing was lost: a consumer that drains gets every byte, and the reader resumes each time.
    received = 0
    while received < BOMB_RECORDS * MAX_INFLATED:
        chunk = await asyncio.wait_for(viewer.recv(), 10)
        assert chunk and not chunk.strip(b"\0")
        received += len(chunk)
    assert received == BOMB_RECORDS * MAX_INFLATED
    await viewer.close()
    writer.close()


async def test_zdata_is_refused_when_the_viewer_did_not_agree_to_compression():
    hostile, writer, viewer = await _hostile_agent_and_viewer(viewer_offers=False)
    assert not viewer.compression_agreed and not hostile.compression_agreed
    with pytest.raises(ChannelError, match="not agreed"):
        hostile.enable_compression()  # our own code will not send it...
    payload = b"\x28\xb5\x2f\xfd" + bytes(60)  # ...so the attacker seals a "zstd frame" itself
    writer.write(hostile._record(RecordType.ZDATA, payload))
    await writer.drain()
    with pytest.raises(ProtocolViolationError, match="compression was not agreed"):
        await asyncio.wait_for(viewer.recv(), 5)
    assert isinstance(viewer.error, ProtocolViolationError)
    writer.close()


def _handshake(viewer: ViewerHandshake, agent: AgentHandshake, tamper=lambda hello: hello):
    agent.receive_data(tamper(viewer.data_to_send()))
    agent.next_event()
    viewer.receive_data(agent.data_to_send())
    viewer.next_event()
    agent.receive_data(viewer.data_to_send())
    agent_done = agent.next_event()
    viewer.receive_data(agent.data_to_send())
    return viewer.next_event(), agent_done


def test_compression_is_agreed_only_when_both_hellos_offer_it():
    for viewer_offers, agent_offers in ((True, True), (True, False), (False, True), (False, False)):
        viewer_done, agent_done = _handshake(ViewerHandshake(SESSION, PASSWORD, compression=viewer_offers),
                                             AgentHandshake(SESSION, PASSWORD, compression=agent_offers))
        agreed = viewer_offers and agent_offers
        assert viewer_done.channel.compression_agreed is agreed
        assert agent_done.channel.compression_agreed is agreed


def test_a_relay_that_strips_the_offer_breaks_the_handshake_instead_of_downgrading_quietly():
    def strip(hello: bytes) -> bytes:  # drop the options byte and fix the length: a well-formed HELLO
        return (int.from_bytes(hello[:2], "big") - 1).to_bytes(2, "big") + hello[2:-1]

    viewer = ViewerHandshake(SESSION, PASSWORD, compression=True)
    agent = AgentHandshake(SESSION, PASSWORD, compression=True)
    agent.receive_data(strip(viewer.data_to_send()))
    assert agent.next_event() is NEED_DATA
    viewer.receive_data(agent.data_to_send())
    viewer.next_event()
    agent.receive_data(viewer.data_to_send())
    outcome = agent.next_event()  # the transcripts differ: the viewer's confirmation cannot verify
    assert not isinstance(outcome, Established)
    viewer.receive_data(agent.data_to_send())
    with pytest.raises((WrongPasswordError, HandshakeError)):
        viewer.next_event()

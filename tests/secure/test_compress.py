"""ZDATA: the channel's long-window compression. Exact round trips, the inflate bound, bad streams."""
from __future__ import annotations

import os

import numpy as np
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.secure.compress import CHUNK, MAX_INFLATED, MAX_WINDOW_LOG, WINDOW_LOG, Deflater, Inflater
from agent.secure.errors import ProtocolViolationError
from agent.secure.records import MAX_PLAINTEXT, NEED_DATA, Data, RecordType
from tests.support.channels import drain, pair, record_header, records


def compressing_pair():
    viewer, agent = pair(compression=True)  # as if both HELLOs offered ZDATA
    agent.enable_compression()
    return viewer, agent


def deliver(wire: bytes, channel) -> bytes:
    channel.receive_data(wire)
    events = drain(channel)
    assert all(isinstance(e, Data) and e.data for e in events)
    return b"".join(e.data for e in events)


@pytest.mark.parametrize("size", [1, 1000, MAX_PLAINTEXT, MAX_PLAINTEXT + 1, CHUNK, CHUNK + 7, 3 * CHUNK + 12345])
def test_round_trip_of_every_size_as_zdata_records(size):
    viewer, agent = compressing_pair()
    data = os.urandom(size // 2) + bytes(size - size // 2)  # half incompressible, half zeros
    wire = agent.send_data(data)
    assert {record_header(rec)[1] for rec in records(wire)} == {RecordType.ZDATA}
    assert all(len(rec) <= 3 + MAX_PLAINTEXT + 16 for rec in records(wire))
    assert deliver(wire, viewer) == data


def test_counters_and_acks_count_what_the_link_carries():
    viewer, agent = compressing_pair()
    data = bytes(CHUNK)
    wire = agent.send_data(data)
    assert agent.bytes_sent < len(data) // 100  # compressed payload bytes, not inner bytes
    assert deliver(wire, viewer) == data
    assert viewer.bytes_received == agent.bytes_sent
    agent.receive_data(viewer.send_ack())
    [ack] = drain(agent)
    assert ack.total == agent.bytes_sent and ack.rtt is not None  # the send's end: an RTT sample
    assert agent.in_flight == 0


def test_a_screen_seen_before_costs_almost_nothing_the_second_time():
    # The point of the long window: zlib (32 KiB) forgets a 1080p screen within a line; the 4 MiB
    # window holds a 1080p screen's worth of palette indices (2 MiB), or half its Raw pixels, with room
    # for what changed in between.
    viewer, agent = compressing_pair()
    rng = np.random.default_rng(1)
    screen = rng.integers(0, 256, (1080, 1920), dtype=np.uint8).tobytes()  # 2 MiB, incompressible alone
    between = 64 * 1024
    assert len(screen) + between < 1 << WINDOW_LOG
    first = agent.send_data(screen)
    other = agent.send_data(bytes(between))
    again = agent.send_data(screen)
    assert deliver(first + other + again, viewer) == screen + bytes(between) + screen
    assert len(again) < len(first) // 50


def test_the_other_direction_stays_plain_and_both_mix():
    viewer, agent = compressing_pair()
    assert {record_header(rec)[1] for rec in records(viewer.send_data(b"key event"))} == {RecordType.DATA}
    wire = agent.send_data(b"one") + agent.send_ping() + agent.send_data(b"two")
    viewer.receive_data(wire)
    events = drain(viewer)
    assert [e.data for e in events if isinstance(e, Data)] == [b"one", b"two"]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=5000), min_size=1, max_size=20), st.integers(1, 4096))
def test_any_sends_arrive_exactly_however_the_bytes_are_cut(chunks, cut):
    viewer, agent = compressing_pair()
    wire = b"".join(agent.send_data(c) for c in chunks)
    got = b""
    for i in range(0, len(wire), cut):
        viewer.receive_data(wire[i:i + cut])
        got += b"".join(e.data for e in drain(viewer))
    assert got == b"".join(chunks)


def _zdata(agent, payload: bytes) -> bytes:
    return agent._record(RecordType.ZDATA, payload)  # sealed like the agent would, with our own payload


def test_a_decompression_bomb_fails_the_channel_within_one_chunk():
    viewer, agent = compressing_pair()
    bomb = zstandard.ZstdCompressor().compress(bytes(64 * MAX_INFLATED))
    assert len(bomb) < MAX_PLAINTEXT
    viewer.receive_data(_zdata(agent, bomb))
    with pytest.raises(ProtocolViolationError, match="inflates to more than"):
        viewer.next_event()
    with pytest.raises(ProtocolViolationError):
        viewer.next_event()  # failed for good


def test_garbage_in_a_zdata_record_is_a_protocol_violation():
    viewer, agent = compressing_pair()
    viewer.receive_data(_zdata(agent, b"this is not zstd at all"))
    with pytest.raises(ProtocolViolationError, match="not a valid continuation"):
        viewer.next_event()


def test_an_empty_zdata_record_is_refused():
    viewer, agent = compressing_pair()
    viewer.receive_data(_zdata(agent, b""))
    with pytest.raises(ProtocolViolationError, match="empty"):
        viewer.next_event()


def test_many_records_that_complete_nothing_are_skipped_without_recursion():
    # Valid zstd that yields no bytes (a frame header, then empty flushed blocks), many times over.
    viewer, agent = compressing_pair()
    obj = zstandard.ZstdCompressor().compressobj()
    empties = [obj.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK) for _ in range(5000)]
    last = obj.compress(b"finally") + obj.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
    wire = b"".join(_zdata(agent, e) for e in empties if e) + _zdata(agent, last)
    viewer.receive_data(wire)
    assert drain(viewer) == [Data(b"finally")]
    assert viewer.next_event() is NEED_DATA


def test_deflater_pieces_respect_the_record_size():
    deflater = Deflater(max_piece=1000)
    data = os.urandom(5 * CHUNK // 2)
    pieces = deflater.compress(data)
    assert max(map(len, pieces)) <= 1000
    inflater = Inflater()
    assert b"".join(inflater.inflate(p) for p in pieces) == data


def test_a_stream_that_asks_for_a_bigger_window_is_refused():
    # The window is memory the receiver must hold: the peer cannot choose more than ours.
    viewer, agent = compressing_pair()
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=27)
    obj = zstandard.ZstdCompressor(compression_params=params).compressobj()
    payload = obj.compress(b"x" * 1000) + obj.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
    viewer.receive_data(_zdata(agent, payload))
    with pytest.raises(ProtocolViolationError):
        viewer.next_event()


def test_our_stream_declares_the_window_we_chose_and_no_more():
    # The window is the compressor's memory (agent.secure.compress.WINDOW_LOG): the frame header says it.
    deflater = Deflater(max_piece=MAX_PLAINTEXT)
    first = deflater.compress(os.urandom(4 * CHUNK))[0]
    assert zstandard.get_frame_parameters(first).window_size == 1 << WINDOW_LOG


def test_a_peer_with_the_former_16_mib_window_is_still_understood():
    # A peer built when the window was 16 MiB (MAX_WINDOW_LOG) keeps working with a smaller-window one.
    params = zstandard.ZstdCompressionParameters.from_level(8, window_log=MAX_WINDOW_LOG)
    obj = zstandard.ZstdCompressor(compression_params=params).compressobj()
    data = os.urandom(3 * CHUNK)
    payload = obj.compress(data) + obj.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
    assert zstandard.get_frame_parameters(payload).window_size == 1 << MAX_WINDOW_LOG > 1 << WINDOW_LOG
    inflater = Inflater()
    assert b"".join(inflater.inflate(payload[i:i + MAX_PLAINTEXT])
                    for i in range(0, len(payload), MAX_PLAINTEXT)) == data

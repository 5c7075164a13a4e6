"""The sans-IO record layer: round trips, every kind of tampering, limits, ratchet, and a bit-flip property."""
from __future__ import annotations

import struct

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.secure._aead import MAX_RECORDS, RATCHET_INTERVAL, Opener
from agent.secure.errors import (
    ChannelClosedError,
    ChannelError,
    CounterExhaustedError,
    ProtocolViolationError,
    RecordAuthenticationError,
    RecordTooLargeError,
    TruncatedError,
)
from agent.secure.keyschedule import derive_session_keys, ratchet
from agent.secure.records import (
    MAX_CLOSE_REASON,
    MAX_PLAINTEXT,
    MAX_RECORD_LENGTH,
    NEED_DATA,
    Ack,
    Channel,
    Closed,
    Data,
    Ping,
    Pong,
    RecordType,
    Role,
)

from tests.support.channels import KEYS, drain, pair, records  # noqa: E402


@pytest.mark.parametrize("size", [1, 100, MAX_PLAINTEXT - 1, MAX_PLAINTEXT, MAX_PLAINTEXT + 1, 3 * MAX_PLAINTEXT + 7])
def test_data_round_trip_and_splitting(size: int) -> None:
    viewer, agent = pair()
    payload = bytes(i % 251 for i in range(size))
    wire = viewer.send_data(payload)
    assert len(records(wire)) == -(-size // MAX_PLAINTEXT)
    agent.receive_data(wire)
    events = drain(agent)
    assert all(isinstance(e, Data) and len(e.data) <= MAX_PLAINTEXT for e in events)
    assert b"".join(e.data for e in events) == payload
    assert viewer.bytes_sent == agent.bytes_received == size


def test_empty_data_sends_nothing() -> None:
    viewer, _ = pair()
    assert viewer.send_data(b"") == b""


def test_accepts_any_buffer() -> None:
    viewer, agent = pair()
    agent.receive_data(viewer.send_data(bytearray(b"ab")) + viewer.send_data(memoryview(b"xcd")[1:]))
    assert drain(agent) == [Data(b"ab"), Data(b"cd")]


def test_ack_ping_pong_close() -> None:
    now = [100.0]
    viewer, agent = pair(clock=lambda: now[0])
    agent.receive_data(viewer.send_data(b"x" * 1000) + viewer.send_ping())
    events = drain(agent)
    assert events[0] == Data(b"x" * 1000)
    assert isinstance(events[1], Ping) and len(events[1].payload) == 8
    assert agent.unacked_received == 1000
    now[0] += 0.25
    viewer.receive_data(agent.send_ack() + agent.send_pong(events[1].payload))
    assert agent.unacked_received == 0
    assert drain(viewer) == [Ack(1000), Pong(0.25)]
    assert viewer.in_flight == 0 and viewer.peer_acked == 1000
    viewer.receive_data(agent.send_pong(b"\0" * 8))  # matches no ping: no RTT sample
    assert drain(viewer) == [Pong(None)]
    agent.receive_data(viewer.send_close("session ended by technician ✓"))
    assert drain(agent) == [Closed("session ended by technician ✓")]
    assert agent.next_event() == Closed("session ended by technician ✓")  # stays closed
    with pytest.raises(ChannelClosedError):
        viewer.send_data(b"more")
    # the other direction still works until the agent closes too
    viewer.receive_data(agent.send_data(b"last words") + agent.send_close("bye"))
    assert drain(viewer) == [Data(b"last words"), Closed("bye")]


def test_close_reason_is_cut_at_a_character_boundary() -> None:
    viewer, agent = pair()
    agent.receive_data(viewer.send_close("ż" * MAX_CLOSE_REASON))
    (closed,) = drain(agent)
    assert isinstance(closed, Closed)
    assert set(closed.reason) == {"ż"} and len(closed.reason.encode()) <= MAX_CLOSE_REASON


@pytest.mark.parametrize("mode", ["whole", "byte-by-byte", "trailing"])
def test_receive_three_ways(mode: str) -> None:
    viewer, agent = pair()
    wire = viewer.send_data(b"first") + viewer.send_ping() + viewer.send_data(b"second" * 5000) + \
        viewer.send_close("end")
    events: list[object] = []
    if mode == "whole":
        agent.receive_data(wire)
        events = drain(agent)
    elif mode == "byte-by-byte":
        for i in range(len(wire)):
            agent.receive_data(wire[i:i + 1])
            events += drain(agent)
            if events and isinstance(events[-1], Closed):
                break
    else:
        cut = len(records(wire)[0]) + 3  # one whole record, then part of the next header
        agent.receive_data(wire[:cut])
        events = drain(agent)
        assert len(events) == 1 and agent.next_event() is NEED_DATA
        agent.receive_data(wire[cut:])
        events += drain(agent)
    assert [type(e) for e in events] == [Data, Ping, Data, Closed]
    assert events[2] == Data(b"second" * 5000)


def test_tampered_ciphertext_is_not_authentic() -> None:
    viewer, agent = pair()
    wire = bytearray(viewer.send_data(b"secret pixels"))
    wire[9] ^= 0x01
    agent.receive_data(bytes(wire))
    with pytest.raises(RecordAuthenticationError):
        agent.next_event()


def test_tampered_type_in_header_is_not_authentic() -> None:
    viewer, agent = pair()
    wire = bytearray(viewer.send_data(b"pixels"))
    wire[4] = RecordType.CLOSE  # turn DATA into CLOSE: the header is associated data
    agent.receive_data(bytes(wire))
    with pytest.raises(RecordAuthenticationError):
        agent.next_event()


def test_tampered_length_shorter_is_not_authentic() -> None:
    viewer, agent = pair()
    wire = bytearray(viewer.send_data(b"pixels" * 10))
    wire[3] -= 1
    agent.receive_data(bytes(wire))
    with pytest.raises(RecordAuthenticationError):
        agent.next_event()


def test_tampered_length_longer_waits_then_is_truncated() -> None:
    viewer, agent = pair()
    wire = bytearray(viewer.send_data(b"pixels" * 10))
    wire[3] += 1
    agent.receive_data(bytes(wire))
    assert agent.next_event() is NEED_DATA
    agent.receive_data(b"")
    with pytest.raises(TruncatedError):
        agent.next_event()


def test_length_below_tag_size_is_not_authentic() -> None:
    _, agent = pair()
    agent.receive_data(struct.pack(">IB", 15, RecordType.DATA) + bytes(15))
    with pytest.raises(RecordAuthenticationError):
        agent.next_event()


@pytest.mark.parametrize("length", [MAX_RECORD_LENGTH + 1, 2**32 - 1])
def test_oversize_length_is_refused_as_soon_as_the_header_is_read(length: int) -> None:
    _, agent = pair()
    agent.receive_data(struct.pack(">IB", length, RecordType.DATA))  # only the 5-byte header
    with pytest.raises(RecordTooLargeError):
        agent.next_event()
    agent.receive_data(b"x" * 100_000)  # nothing more is buffered after the failure
    assert agent._buf == b""
    with pytest.raises(RecordTooLargeError):
        agent.next_event()


def test_largest_legal_record_is_accepted() -> None:
    viewer, agent = pair()
    wire = viewer.send_data(b"z" * MAX_PLAINTEXT)
    assert struct.unpack_from(">I", wire)[0] == MAX_RECORD_LENGTH
    agent.receive_data(wire)
    assert agent.next_event() == Data(b"z" * MAX_PLAINTEXT)


def _three_records() -> tuple[Channel, list[bytes]]:
    viewer, agent = pair()
    return agent, [viewer.send_data(b"one"), viewer.send_data(b"two"), viewer.send_data(b"three")]


def test_replayed_record_fails() -> None:
    agent, (one, two, _) = _three_records()
    agent.receive_data(one + two + two)
    assert drain_until_error(agent) == ([Data(b"one"), Data(b"two")], RecordAuthenticationError)


def test_reordered_records_fail() -> None:
    agent, (one, two, three) = _three_records()
    agent.receive_data(one + three + two)
    assert drain_until_error(agent) == ([Data(b"one")], RecordAuthenticationError)


def test_dropped_record_fails() -> None:
    agent, (one, _, three) = _three_records()
    agent.receive_data(one + three)
    assert drain_until_error(agent) == ([Data(b"one")], RecordAuthenticationError)


def test_record_reflected_to_its_sender_fails() -> None:
    viewer, _ = pair()
    viewer.receive_data(viewer.send_data(b"echo"))
    with pytest.raises(RecordAuthenticationError):
        viewer.next_event()


def test_record_from_another_session_fails() -> None:
    viewer, _ = pair()
    stranger = Channel(Role.AGENT, derive_session_keys(b"s" * 32, b"y" * 32, b"t" * 32))
    stranger.receive_data(viewer.send_data(b"hi"))
    with pytest.raises(RecordAuthenticationError):
        stranger.next_event()


@pytest.mark.parametrize("cut", [0, 3, 5, 20])
def test_eof_without_close_is_truncation(cut: int) -> None:
    viewer, agent = pair()
    wire = viewer.send_data(b"complete") + viewer.send_data(b"partial record")
    first = len(records(wire)[0])
    agent.receive_data(wire[:first + cut])
    agent.receive_data(b"")
    assert drain_until_error(agent) == ([Data(b"complete")], TruncatedError)


def test_eof_after_close_is_clean() -> None:
    viewer, agent = pair()
    agent.receive_data(viewer.send_data(b"all") + viewer.send_close("done"))
    agent.receive_data(b"")
    assert drain(agent) == [Data(b"all"), Closed("done")]


def test_failed_channel_refuses_everything() -> None:
    viewer, agent = pair()
    agent.receive_data(b"\0\0\0\x20\x01" + bytes(32))
    with pytest.raises(RecordAuthenticationError):
        agent.next_event()
    agent.receive_data(viewer.send_data(b"genuine"))  # too late: dropped, not buffered
    with pytest.raises(RecordAuthenticationError):
        agent.next_event()
    with pytest.raises(ChannelClosedError):
        agent.send_data(b"reply")
    assert not agent.can_send


@pytest.mark.parametrize("rtype, payload, words", [
    (99, b"", "unknown type 99"),
    (RecordType.DATA, b"", "empty DATA"),
    (RecordType.ACK, b"\0" * 7, "ACK of the wrong size"),
    (RecordType.ACK, (10).to_bytes(8, "big"), "never sent"),
    (RecordType.PING, b"\0" * 9, "PING of the wrong size"),
    (RecordType.PONG, b"", "PONG of the wrong size"),
    (RecordType.CLOSE, b"\xff\xfe", "not UTF-8"),
])
def test_authentic_but_invalid_records(rtype: int, payload: bytes, words: str) -> None:
    viewer, agent = pair()
    agent.receive_data(viewer._record(rtype, payload))  # the peer's own (buggy) sealing
    with pytest.raises(ProtocolViolationError, match=words):
        agent.next_event()


def test_ack_going_backwards_is_refused() -> None:
    viewer, agent = pair()
    agent.receive_data(viewer.send_data(b"x" * 10))
    drain(agent)
    viewer.receive_data(agent.send_ack() + agent._record(RecordType.ACK, (5).to_bytes(8, "big")))
    assert viewer.next_event() == Ack(10)
    with pytest.raises(ProtocolViolationError):
        viewer.next_event()


def test_ratchet_every_2_24_records_keeps_the_counter() -> None:
    start = RATCHET_INTERVAL - 2
    viewer, agent = pair(_counters=(start, start))
    wire = b"".join(viewer.send_data(bytes([i])) for i in range(4))
    agent.receive_data(wire)
    assert drain(agent) == [Data(bytes([i])) for i in range(4)]
    # record 2^24 is sealed with HKDF(old key, "rejnet/v1:ratchet") and nonce counter 2^24
    third = records(wire)[2]
    expected = AESGCM(ratchet(KEYS.viewer_to_agent)).decrypt(b"V->A" + RATCHET_INTERVAL.to_bytes(8, "big"),
                                                              third[5:], third[:5])
    assert expected == b"\x02"
    # and not with the old key any more
    stale = Opener(KEYS.viewer_to_agent, b"V->A", _counter=RATCHET_INTERVAL)
    with pytest.raises(RecordAuthenticationError):
        stale.open(third[:5], third[5:])


def test_refuses_to_send_past_the_record_limit() -> None:
    viewer, agent = pair(_counters=(MAX_RECORDS - 1, 0))
    viewer.send_data(b"last one allowed")
    with pytest.raises(CounterExhaustedError):
        viewer.send_data(b"one too many")
    with pytest.raises(ChannelClosedError):
        viewer.send_ping()


def test_refuses_to_receive_past_the_record_limit() -> None:
    _, agent = pair(_counters=(0, MAX_RECORDS))
    agent.receive_data(b"\0\0\0\x20\x01" + bytes(32))
    with pytest.raises(CounterExhaustedError):
        agent.next_event()


def test_receive_after_eof_is_a_local_error() -> None:
    _, agent = pair()
    agent.receive_data(b"")
    with pytest.raises(RuntimeError):
        agent.receive_data(b"x")


def test_repr_shows_no_key() -> None:
    viewer, _ = pair()
    assert KEYS.viewer_to_agent.hex() not in repr(viewer)
    assert "V->A" in repr(viewer._sealer) and KEYS.viewer_to_agent.hex() not in repr(viewer._sealer)


def drain_until_error(channel: Channel) -> tuple[list[object], type]:
    events: list[object] = []
    with pytest.raises(ChannelError) as info:
        while True:
            event = channel.next_event()
            assert event is not NEED_DATA, "expected a failure"
            events.append(event)
    return events, type(info.value)


def _stream() -> tuple[bytes, list[object]]:
    viewer, agent = pair()
    wire = (viewer.send_data(b"frame one" * 30) + viewer.send_ping() + viewer.send_data(b"two")
            + viewer.send_ack() + viewer.send_data(b"x" * 3000) + viewer.send_close("done"))
    agent.receive_data(wire)
    return wire, drain(agent)


STREAM, STREAM_EVENTS = _stream()


@settings(max_examples=150, deadline=None)
@given(bit=st.integers(min_value=0, max_value=len(STREAM) * 8 - 1),
       chunk=st.integers(min_value=1, max_value=len(STREAM)))
def test_any_single_bit_flip_is_detected(bit: int, chunk: int) -> None:
    """Every flipped bit ends in a specific ChannelError, and no altered content is ever delivered."""
    tampered = bytearray(STREAM)
    tampered[bit // 8] ^= 1 << (bit % 8)
    _, agent = pair()
    events: list[object] = []
    with pytest.raises((RecordAuthenticationError, RecordTooLargeError, TruncatedError)):
        for start in range(0, len(tampered), chunk):
            agent.receive_data(bytes(tampered[start:start + chunk]))
            events += drain(agent)
        agent.receive_data(b"")
        events += drain(agent)
    assert events == STREAM_EVENTS[:len(events)]
    assert not events or not isinstance(events[-1], Closed)


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_chunking_gives_the_same_events(cuts: list[int]) -> None:
    _, agent = pair()
    events: list[object] = []
    bounds = sorted({0, len(STREAM), *cuts})
    for start, end in zip(bounds, bounds[1:]):
        agent.receive_data(STREAM[start:end])
        events += drain(agent)
    assert events == STREAM_EVENTS

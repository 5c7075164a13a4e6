"""The sans-IO record layer: round trips, every kind of tampering, limits, ratchet, and a bit-flip property."""
from __future__ import annotations


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

from agent.secure.varint import encode as varint
from tests.support.channels import KEYS, drain, pair, record_header, records  # noqa: E402


def _header(length: int, rtype: int) -> bytes:
    return varint(length << 4 | rtype)


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
    assert drain(viewer) == [Ack(1000, 0.0), Pong(0.25)]  # the ACK's reported delay (0.25 s) taken off
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


def test_paced_records_carry_the_ack_at_one_size_whatever_they_acknowledge() -> None:
    """Paced input (agent.secure.pacing) keeps one size and one type: the ACK in front is at full width,
    for nothing new, a little or a lot received, after a short or a long delay; the peer reads it all."""
    now = [10.0]
    viewer, agent = pair(clock=lambda: now[0])
    agent.receive_data(viewer.send_data(b"request"))
    drain(agent)
    sizes, seen = set(), []
    for update, wait in ((0, 0.0), (5, 0.001), (300_000, 0.02), (0, 300.0)):
        if update:
            viewer.receive_data(agent.send_data(b"u" * update))
            drain(viewer)
        now[0] += wait
        wire = viewer.send_paced(b"k" * 50)
        ((length, rtype, _),) = [record_header(r) for r in records(wire)]
        sizes.add(length)
        assert rtype == RecordType.DATA_ACK
        agent.receive_data(wire)
        seen += drain(agent)
    assert sizes == {12 + 50 + 16}
    assert [e for e in seen if isinstance(e, Data)] == [Data(b"k" * 50)] * 4
    # only what acknowledges something new is an event: chaff while typing costs the agent no ACK handling
    assert [e.total for e in seen if isinstance(e, Ack)] == [5, 300_005]
    assert agent.in_flight == 0 and viewer.bytes_sent == agent.bytes_received == 7 + 4 * 50
    with pytest.raises(ValueError):
        viewer.send_paced(b"x" * (MAX_PLAINTEXT - 11))
    with pytest.raises(ValueError):
        viewer.send_paced(b"")


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
    wire[0] = wire[0] & 0xF0 | RecordType.CLOSE  # turn DATA into CLOSE: the header is associated data
    agent.receive_data(bytes(wire))
    with pytest.raises(RecordAuthenticationError):
        agent.next_event()


def test_tampered_length_shorter_is_not_authentic() -> None:
    viewer, agent = pair()
    wire = bytearray(viewer.send_data(b"pixels" * 10))
    wire[0] -= 0x10  # the length (above the type's 4 bits) one less
    agent.receive_data(bytes(wire))
    with pytest.raises(RecordAuthenticationError):
        agent.next_event()


def test_tampered_length_longer_waits_then_is_truncated() -> None:
    viewer, agent = pair()
    wire = bytearray(viewer.send_data(b"pixels" * 10))
    wire[0] += 0x10  # the length one more
    agent.receive_data(bytes(wire))
    assert agent.next_event() is NEED_DATA
    agent.receive_data(b"")
    with pytest.raises(TruncatedError):
        agent.next_event()


def test_length_below_tag_size_is_not_authentic() -> None:
    _, agent = pair()
    agent.receive_data(_header(15, RecordType.DATA) + bytes(15))
    with pytest.raises(RecordAuthenticationError):
        agent.next_event()


@pytest.mark.parametrize("length", [MAX_RECORD_LENGTH + 1, 2**17, 2**32 - 1])
def test_oversize_length_is_refused_as_soon_as_the_header_is_read(length: int) -> None:
    _, agent = pair()
    agent.receive_data(_header(length, RecordType.DATA))  # only the header (a 4-byte varint is refused too)
    with pytest.raises(RecordTooLargeError):
        agent.next_event()
    agent.receive_data(b"x" * 100_000)  # nothing more is buffered after the failure
    assert agent._buf == b""
    with pytest.raises(RecordTooLargeError):
        agent.next_event()


def test_largest_legal_record_is_accepted() -> None:
    viewer, agent = pair()
    wire = viewer.send_data(b"z" * MAX_PLAINTEXT)
    assert record_header(wire) == (MAX_RECORD_LENGTH, RecordType.DATA, 3)
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
    agent.receive_data(_header(0x20, RecordType.DATA) + bytes(32))
    with pytest.raises(RecordAuthenticationError):
        agent.next_event()
    agent.receive_data(viewer.send_data(b"genuine"))  # too late: dropped, not buffered
    with pytest.raises(RecordAuthenticationError):
        agent.next_event()
    with pytest.raises(ChannelClosedError):
        agent.send_data(b"reply")
    assert not agent.can_send


@pytest.mark.parametrize("rtype, payload, words", [
    (7, b"", "unknown type 7"),
    (15, b"x", "unknown type 15"),
    (RecordType.DATA, b"", "empty DATA"),
    (RecordType.ACK, b"\0" * 7, "ACK of the wrong size"),
    (RecordType.ACK, b"\x0a\x00", "never sent"),
    (RecordType.ACK, b"\x0a", "ACK of the wrong size"),
    (RecordType.ACK, b"\x80" * 10, "longer than 9 bytes"),
    (RecordType.ACK, b"\x00" + b"\x80" * 4, "longer than 3 bytes"),
    (RecordType.DATA_ACK, b"\x00\x00", "without data"),
    (RecordType.ZDATA, b"z", "not agreed"),
    (RecordType.ZDATA_ACK, b"\x00\x00z", "not agreed"),
    (RecordType.ACK | 8, b"\x00\x00", "unknown type 10"),
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
    viewer.receive_data(agent.send_ack() + agent._record(RecordType.ACK, b"\x05\x00"))
    assert viewer.next_event().total == 10
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
                                                              third[2:], third[:2])
    assert expected == b"\x02"
    # and not with the old key any more
    stale = Opener(KEYS.viewer_to_agent, b"V->A", _counter=RATCHET_INTERVAL)
    with pytest.raises(RecordAuthenticationError):
        stale.open(third[:2], third[2:])


def test_refuses_to_send_past_the_record_limit() -> None:
    viewer, agent = pair(_counters=(MAX_RECORDS - 1, 0))
    viewer.send_data(b"last one allowed")
    with pytest.raises(CounterExhaustedError):
        viewer.send_data(b"one too many")
    with pytest.raises(ChannelClosedError):
        viewer.send_ping()


def test_refuses_to_receive_past_the_record_limit() -> None:
    _, agent = pair(_counters=(0, MAX_RECORDS))
    agent.receive_data(_header(0x20, RecordType.DATA) + bytes(32))
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


def test_an_ack_rides_in_front_of_data_and_gives_an_rtt_sample() -> None:
    now = [10.0]
    viewer, agent = pair(clock=lambda: now[0])
    agent.receive_data(viewer.send_data(b"k" * 64))
    drain(agent)
    now[0] += 0.5  # the agent holds its ACK for half a second, then sends it with its next update
    wire = agent.send_data(b"pixels", ack=True)
    assert [record_header(r)[1] for r in records(wire)] == [RecordType.DATA_ACK]
    assert len(wire) == 2 + 1 + 2 + 6 + 16  # header, ACK (total 64: 1 byte; 5,000 units of delay: 2), data, tag
    now[0] += 0.1
    viewer.receive_data(wire)
    ack, data = drain(viewer)
    assert (ack.total, data) == (64, Data(b"pixels")) and ack.rtt == pytest.approx(0.1)  # 0.6 s less the 0.5 held
    assert agent.unacked_received == 0 and viewer.in_flight == 0


def test_an_ack_of_no_send_end_gives_no_sample() -> None:
    viewer, agent = pair()
    agent.receive_data(viewer.send_data(b"ab") + viewer.send_data(b"cd"))
    drain(agent)
    viewer.receive_data(agent._record(RecordType.ACK, b"\x01\x00"))  # inside the first send
    assert drain(viewer) == [Ack(1, None)]

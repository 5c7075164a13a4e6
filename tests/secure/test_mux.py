"""The stream multiplexer (agent.secure.mux), sans-IO: every frame read whole, one byte at a time and with
trailing bytes; every bound; OPEN only from the viewer with increasing ids; violations fail closed."""
from __future__ import annotations

import json
from typing import Callable

import pytest
from hypothesis import given, settings, strategies as st

from agent.sansio import NEED_DATA
from agent.secure.errors import ProtocolViolationError
from agent.secure import varint
from agent.secure.mux import (
    _header,
    MAX_FRAME,
    MAX_KIND,
    MAX_MESSAGE,
    MAX_REASON,
    MAX_STREAM_ID,
    SESSION_STREAM,
    FrameKind,
    Mux,
    Role,
    SessionMessage,
    StreamClosed,
    StreamData,
    StreamOpened,
)

def frame(kind: int, stream: int, payload: bytes = b"", length: int | None = None) -> bytes:
    """A frame as the wire has it; a ``length`` too big for the 3-byte varint is sent as 4 bytes."""
    size = len(payload) if length is None else length
    if size < 1 << 21:
        return _header(kind, stream, size) + payload
    return _header(kind, stream, 0)[:-1] + varint.encode(size) + payload


def drain(mux: Mux) -> list[object]:
    events = []
    while (event := mux.next_event()) is not NEED_DATA:
        events.append(event)
    return events


def whole(mux: Mux, wire: bytes) -> list[object]:
    mux.receive_data(wire)
    return drain(mux)


def bytewise(mux: Mux, wire: bytes) -> list[object]:
    events: list[object] = []
    for i in range(len(wire)):
        mux.receive_data(wire[i:i + 1])
        events += drain(mux)
    return events


def trailing(mux: Mux, wire: bytes) -> list[object]:
    """The wire plus the first 6 bytes of a further frame: those stay buffered, no event, no error."""
    tail = frame(FrameKind.DATA, SESSION_STREAM, b'{"type":"x"}')[:6]
    mux.receive_data(wire + tail)
    events = drain(mux)
    assert mux.buffered == tail
    return events


FEEDS: dict[str, Callable[[Mux, bytes], list[object]]] = {"whole": whole, "bytewise": bytewise,
                                                          "trailing": trailing}


def agent_after_open(kind: str = "rfb") -> Mux:
    agent = Mux(Role.AGENT)
    agent.receive_data(frame(FrameKind.OPEN, 1, kind.encode()))
    assert drain(agent) == [StreamOpened(1, kind)]
    return agent


# -- round trips, three ways ------------------------------------------------------------------------


@pytest.mark.parametrize("feed", FEEDS)
def test_a_viewer_session_round_trips_to_the_agent(feed: str) -> None:
    viewer = Mux(Role.VIEWER)
    stream, wire = viewer.open_stream("rfb")
    assert stream == 1
    wire += viewer.send(stream, b"RFB 003.008\n")
    wire += viewer.send_message({"type": "hello", "n": 1})
    wire += viewer.close_stream(stream, "bye")
    agent = Mux(Role.AGENT)
    events = FEEDS[feed](agent, wire)
    assert events == [StreamOpened(1, "rfb"), StreamData(1, b"RFB 003.008\n"),
                      SessionMessage({"type": "hello", "n": 1}), StreamClosed(1, "bye")]
    assert viewer.sent_total == len(wire)
    assert agent.received_total == len(wire) + (6 if feed == "trailing" else 0)
    assert not agent.is_open(1) and agent.is_open(SESSION_STREAM)


@pytest.mark.parametrize("feed", FEEDS)
def test_the_agent_answers_on_the_stream_the_viewer_opened(feed: str) -> None:
    viewer = Mux(Role.VIEWER)
    stream, opened = viewer.open_stream("rfb")
    agent = Mux(Role.AGENT)
    agent.receive_data(opened)
    drain(agent)
    wire = agent.send(stream, b"x" * 1000) + agent.send_message({"type": "state", "state": "active"})
    assert FEEDS[feed](viewer, wire) == [StreamData(1, b"x" * 1000),
                                        SessionMessage({"type": "state", "state": "active"})]


def test_a_write_larger_than_one_frame_is_split_and_arrives_whole() -> None:
    viewer, agent = Mux(Role.VIEWER), Mux(Role.AGENT)
    stream, wire = viewer.open_stream("rfb")
    data = bytes(range(256)) * ((2 * MAX_FRAME + 10) // 256 + 1)
    wire += viewer.send(stream, memoryview(data))
    events = whole(agent, wire)
    assert [len(e.data) for e in events[1:]] == [MAX_FRAME, MAX_FRAME, len(data) - 2 * MAX_FRAME]
    assert b"".join(e.data for e in events[1:]) == data


def test_sending_on_a_closed_or_unknown_stream_sends_nothing() -> None:
    viewer = Mux(Role.VIEWER)
    stream, _ = viewer.open_stream("rfb")
    assert viewer.close_stream(stream) != b""
    assert viewer.send(stream, b"late") == b""
    assert viewer.close_stream(stream) == b""  # once
    assert viewer.send(7, b"never opened") == b""
    assert viewer.close_stream(SESSION_STREAM) == b""  # the session stream is never closed
    assert viewer.send(SESSION_STREAM, b"") == b""


def test_late_data_and_a_crossing_close_for_a_closed_stream_are_dropped() -> None:
    agent = agent_after_open()
    agent.close_stream(1, "replaced")
    assert whole(agent, frame(FrameKind.DATA, 1, b"late") + frame(FrameKind.CLOSE, 1, b"bye")) == []
    assert whole(agent, frame(FrameKind.DATA, SESSION_STREAM, b'{"type":"ok"}')) == [SessionMessage({"type": "ok"})]


def test_an_unknown_stream_kind_is_reported_for_the_agent_to_refuse() -> None:
    agent = agent_after_open("chat")
    assert agent.is_open(1)  # the owner answers with a CLOSE (agent.session.resuming)
    assert agent.close_stream(1, "unknown stream kind") == frame(FrameKind.CLOSE, 1, b"unknown stream kind")


def test_the_viewer_opens_only_known_kinds_and_only_the_viewer_opens() -> None:
    with pytest.raises(ValueError):
        Mux(Role.VIEWER).open_stream("files")
    with pytest.raises(ValueError):
        Mux(Role.AGENT).open_stream("rfb")


def test_stream_ids_run_out_rather_than_wrap() -> None:
    viewer = Mux(Role.VIEWER)
    viewer._last_opened = MAX_STREAM_ID - 1
    assert viewer.open_stream("rfb")[0] == MAX_STREAM_ID
    with pytest.raises(ProtocolViolationError):
        viewer.open_stream("rfb")


def test_a_close_reason_is_cut_to_the_bound_on_a_character_boundary() -> None:
    viewer = Mux(Role.VIEWER)
    stream, _ = viewer.open_stream("rfb")
    wire = viewer.close_stream(stream, "ż" * MAX_REASON)
    assert len(wire) - 3 <= MAX_REASON  # tag and a 2-byte length
    agent = agent_after_open()
    (event,) = whole(agent, wire)
    assert event.reason == "ż" * ((len(wire) - 3) // 2)


def test_a_session_message_over_the_bound_is_refused_on_sending() -> None:
    with pytest.raises(ValueError):
        Mux(Role.AGENT).send_message({"type": "x", "pad": "a" * MAX_MESSAGE})


# -- bounds: each exactly at the limit passes, one over fails before the payload is buffered --------


BOUNDS = [  # (kind, stream, limit, role, needs an open stream)
    (FrameKind.DATA, SESSION_STREAM, MAX_MESSAGE, Role.AGENT, False),
    (FrameKind.DATA, 1, MAX_FRAME, Role.AGENT, True),
    (FrameKind.CLOSE, 1, MAX_REASON, Role.AGENT, True),
    (FrameKind.OPEN, 1, MAX_KIND, Role.AGENT, False),
]


def _payload(kind: int, stream: int, size: int) -> bytes:
    if kind == FrameKind.DATA and stream == SESSION_STREAM:
        body = json.dumps({"type": "pad", "p": ""}).encode()
        return body[:-2] + b"a" * (size - len(body)) + body[-2:]
    return b"r" * size


@pytest.mark.parametrize("kind,stream,limit,role,opened", BOUNDS)
def test_a_frame_at_its_bound_is_read(kind: int, stream: int, limit: int, role: Role, opened: bool) -> None:
    mux = agent_after_open() if opened else Mux(role)
    events = whole(mux, frame(kind, stream, _payload(kind, stream, limit)))
    assert len(events) == 1


@pytest.mark.parametrize("kind,stream,limit,role,opened", BOUNDS)
def test_a_frame_over_its_bound_fails_on_the_header_alone(kind: int, stream: int, limit: int, role: Role,
                                                          opened: bool) -> None:
    mux = agent_after_open() if opened else Mux(role)
    mux.receive_data(frame(kind, stream, length=limit + 1))  # the header only: nothing of the payload yet
    with pytest.raises(ProtocolViolationError, match="more than"):
        mux.next_event()


def test_a_huge_declared_length_buffers_nothing() -> None:
    mux = agent_after_open()
    mux.receive_data(frame(FrameKind.DATA, 1, length=0xFFFFFFFF))
    with pytest.raises(ProtocolViolationError):
        mux.next_event()
    assert mux.buffered == b""


# -- violations ---------------------------------------------------------------------------------------


VIOLATIONS = {
    "unknown frame kind": (Role.AGENT, frame(0, SESSION_STREAM) ),
    "frame kind 6": (Role.AGENT, frame(6, 1, b"x")),  # 4 is PAD (agent.secure.pacing), 5 STRIPED
    "a striped frame to the agent": (Role.AGENT, frame(FrameKind.OPEN, 1, b"rfb") + frame(5, 1, b"\x01\x01\x00x")),
    "a striped frame on the session stream": (Role.VIEWER, frame(5, SESSION_STREAM, b"\x01\x01\x00x")),
    "frame kind 15": (Role.VIEWER, frame(15, 0)),
    "frame kind 0": (Role.VIEWER, frame(0, 0)),
    "agent opens a stream": (Role.VIEWER, frame(FrameKind.OPEN, 1, b"rfb")),
    "OPEN of stream 0": (Role.AGENT, frame(FrameKind.OPEN, 0, b"rfb")),
    "ids going backwards": (Role.AGENT, frame(FrameKind.OPEN, 2, b"rfb") + frame(FrameKind.OPEN, 1, b"rfb")),
    "an id reused": (Role.AGENT, frame(FrameKind.OPEN, 1, b"rfb") + frame(FrameKind.OPEN, 1, b"rfb")),
    "a kind that is not ASCII": (Role.AGENT, frame(FrameKind.OPEN, 1, "ż".encode())),
    "data on a stream never opened": (Role.AGENT, frame(FrameKind.DATA, 3, b"x")),
    "close of a stream never opened": (Role.AGENT, frame(FrameKind.CLOSE, 3, b"x")),
    "data to the viewer on a stream it never opened": (Role.VIEWER, frame(FrameKind.DATA, 1, b"x")),
    "close of the session stream": (Role.AGENT, frame(FrameKind.CLOSE, SESSION_STREAM, b"bye")),
    "a session message that is not JSON": (Role.AGENT, frame(FrameKind.DATA, SESSION_STREAM, b"{nope")),
    "a session message that is a list": (Role.AGENT, frame(FrameKind.DATA, SESSION_STREAM, b"[1]")),
    "a session message without a type": (Role.AGENT, frame(FrameKind.DATA, SESSION_STREAM, b'{"a":1}')),
    "a session message with a numeric type": (Role.VIEWER, frame(FrameKind.DATA, SESSION_STREAM, b'{"type":1}')),
    "an empty session message": (Role.AGENT, frame(FrameKind.DATA, SESSION_STREAM, b"")),
}


@pytest.mark.parametrize("name", VIOLATIONS)
@pytest.mark.parametrize("feed", ["whole", "bytewise"])
def test_violations_fail_closed(name: str, feed: str) -> None:
    role, wire = VIOLATIONS[name]
    mux = Mux(role)
    good = frame(FrameKind.DATA, SESSION_STREAM, b'{"type":"after"}')
    with pytest.raises(ProtocolViolationError) as raised:
        FEEDS[feed](mux, wire + good)
    # in error for good: nothing after the violation is ever read, every call raises the same error
    with pytest.raises(ProtocolViolationError) as again:
        mux.next_event()
    assert again.value is raised.value
    with pytest.raises(ProtocolViolationError):
        mux.receive_data(good)
    assert mux.buffered == b""


def test_errors_name_no_payload_bytes() -> None:
    mux = Mux(Role.AGENT)
    secret = b'{"password":"k3mx7q"}'
    with pytest.raises(ProtocolViolationError) as raised:
        whole(mux, frame(FrameKind.DATA, SESSION_STREAM, secret))
    assert "k3mx7q" not in str(raised.value)
    assert "k3mx7q" not in repr(mux)


def test_pad_frames_are_dropped_and_bounded() -> None:
    from agent.secure.mux import HEADER_SIZE, MAX_FRAME, FrameKind, Mux
    from agent.secure.records import Role as _Role
    from agent.secure.errors import ProtocolViolationError as _PVE
    from agent.sansio import NEED_DATA as _NEED

    viewer, agent = Mux(_Role.VIEWER), Mux(_Role.AGENT)
    pads = [viewer.pad(size) for size in (2, 64, 129, 130, 131, 16386, 16387, HEADER_SIZE)]
    assert [len(p) for p in pads] == [2, 64, 129, 130, 131, 16386, 16387, HEADER_SIZE]
    data = b"".join(pads) + viewer.send_message({"type": "x"})
    assert viewer.sent_total == len(data)
    agent.receive_data(data)
    assert agent.next_event().message == {"type": "x"}
    assert agent.next_event() is _NEED
    evil = Mux(_Role.AGENT)
    evil.receive_data(frame(FrameKind.PAD, 0, length=MAX_FRAME + 1))
    with pytest.raises(_PVE):
        evil.next_event()


# -- STRIPED: byte matrices in stripes, agent -> viewer, only once the viewer accepts them ---------------


def _viewer_and_agent() -> tuple[Mux, Mux, int]:
    viewer, agent = Mux(Role.VIEWER), Mux(Role.AGENT)
    stream, opened = viewer.open_stream("rfb")
    agent.receive_data(opened)
    drain(agent)
    return viewer, agent, stream


def _kinds(wire: bytes) -> list[int]:
    """The frame kinds on a wire of frames on streams below 15."""
    kinds, pos = [], 0
    while pos < len(wire):
        kinds.append(wire[pos] >> 4)
        length, pos = varint.decode(wire, pos + 1, 3, "length")
        pos += length
    return kinds


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_matrices_go_striped_and_arrive_as_the_bytes_written(data: st.DataObject) -> None:
    viewer, agent, stream = _viewer_and_agent()
    agent.peer_accepts_striped = True
    payload = data.draw(st.binary(min_size=1, max_size=3000))
    matrices, pos = [], 0
    while pos < len(payload) and data.draw(st.booleans()):
        offset = data.draw(st.integers(pos, len(payload) - 1))
        width = data.draw(st.integers(1, 40))
        rows = data.draw(st.integers(1, 20))
        stripe = data.draw(st.integers(1, 12))
        if offset + width * rows > len(payload):
            break
        matrices.append((offset, width, rows, stripe, data.draw(st.integers(0, stripe - 1))))
        pos = offset + width * rows
    wire = agent.send(stream, payload, matrices)
    assert _kinds(wire).count(FrameKind.STRIPED) == len(matrices)
    events = data.draw(st.sampled_from(list(FEEDS.values())))(viewer, wire)
    assert b"".join(e.data for e in events) == payload
    assert agent.sent_total == len(wire)


def test_without_the_viewers_word_everything_goes_as_data() -> None:
    viewer, agent, stream = _viewer_and_agent()
    payload = bytes(range(200))
    wire = agent.send(stream, payload, [(10, 8, 4, 8, 0), (50, 16, 3, 8, 0)])
    assert set(_kinds(wire)) == {FrameKind.DATA}
    assert b"".join(e.data for e in whole(viewer, wire)) == payload


def test_matrices_out_of_order_or_outside_the_data_are_refused() -> None:
    _, agent, stream = _viewer_and_agent()
    agent.peer_accepts_striped = True
    for matrices in ([(10, 8, 4, 8, 0), (20, 8, 1, 8, 0)], [(190, 8, 2, 8, 0)], [(0, 0, 3, 8, 0)], [(0, 4, 0, 8, 0)],
                     [(0, 4, 2, 0, 0)], [(0, 4, 2, 3, 3)], [(0, 4, 2, 256, 0)]):
        with pytest.raises(ValueError):
            agent.send(stream, bytes(200), matrices)


def test_a_matrix_bigger_than_a_frame_goes_as_data() -> None:
    viewer, agent, stream = _viewer_and_agent()
    agent.peer_accepts_striped = True
    payload = bytes(range(256)) * (MAX_FRAME // 256 + 2)
    wire = agent.send(stream, payload, [(0, 256, len(payload) // 256, 8, 0)])
    assert FrameKind.STRIPED not in _kinds(wire)
    assert b"".join(e.data for e in whole(viewer, wire)) == payload


@pytest.mark.parametrize("body", [
    b"",                          # no header
    b"\x08\x08",                  # no first-stripe byte
    b"\x00\x08\x00abcdefgh",       # width 0
    b"\x08\x00\x00abcdefgh",       # stripe 0
    b"\x08\x04\x04abcdefgh",       # a first stripe as wide as the others
    b"\x08\x08\x00abcdefghi",      # not whole rows
    b"\x80\x80\x80\x01\x08\x00x",  # a width longer than 3 bytes
])
@pytest.mark.parametrize("feed", ["whole", "bytewise"])
def test_a_malformed_striped_frame_fails_closed(body: bytes, feed: str) -> None:
    viewer, _, stream = _viewer_and_agent()
    with pytest.raises(ProtocolViolationError):
        FEEDS[feed](viewer, frame(FrameKind.STRIPED, stream, body))
    with pytest.raises(ProtocolViolationError):
        viewer.next_event()

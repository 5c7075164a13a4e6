"""The bridge's filter: keys and pointer moves made during a cut never reach the agent; the rest does."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from agent.rfb import constants as C
from agent.rfb.client_messages import (
    write_client_cut_text,
    write_key_event,
    write_pointer_event,
    write_set_encodings,
    write_update_request,
)
from agent.rfb.messages import MAX_ENCODINGS
from agent.viewer.input_filter import InputFilter

HANDSHAKE_38 = b"RFB 003.008\n" + b"\x01" + b"\x01"
HANDSHAKE_33 = b"RFB 003.003\n" + b"\x01"
REQUEST = write_update_request(True, 0, 0, 100, 100)
KEY_DOWN, KEY_UP = write_key_event(True, 0x61), write_key_event(False, 0x61)
POINTER = write_pointer_event(1, 10, 20)


@pytest.mark.parametrize("handshake", [HANDSHAKE_38, HANDSHAKE_33])
def test_input_passes_while_connected_and_is_dropped_while_cut(handshake: bytes) -> None:
    f = InputFilter()
    assert f.feed(handshake + REQUEST + KEY_DOWN, drop_input=False) == handshake + REQUEST + KEY_DOWN
    assert f.feed(KEY_UP + REQUEST + POINTER + write_client_cut_text("hi"), drop_input=True) == \
        REQUEST + write_client_cut_text("hi")
    assert f.dropped == 2
    assert f.feed(POINTER, drop_input=False) == POINTER


def test_the_handshake_is_never_filtered_even_during_a_cut() -> None:
    f = InputFilter()
    # 14 bytes that happen to start with a KeyEvent's type byte still pass: they are the handshake.
    assert f.feed(HANDSHAKE_38, drop_input=True) == HANDSHAKE_38
    assert f.feed(KEY_DOWN, drop_input=True) == b""


@given(st.lists(st.sampled_from([REQUEST, KEY_DOWN, KEY_UP, POINTER, write_set_encodings([0, 16]),
                                 write_client_cut_text("x" * 40)]), max_size=30),
       st.lists(st.integers(1, 40), max_size=40), st.booleans())
def test_split_anywhere_gives_the_same_bytes(messages: list[bytes], cuts: list[int], drop: bool) -> None:
    wire = HANDSHAKE_38 + b"".join(messages)
    expected = HANDSHAKE_38 + b"".join(m for m in messages if not drop or m not in (KEY_DOWN, KEY_UP, POINTER))
    f, out, pos = InputFilter(), bytearray(), 0
    for size in cuts:
        out += f.feed(wire[pos:pos + size], drop_input=drop)
        pos += size
    out += f.feed(wire[pos:], drop_input=drop)
    assert bytes(out) == expected


def test_bytes_it_cannot_parse_go_through_untouched_for_the_agent_to_refuse() -> None:
    f = InputFilter()
    f.feed(HANDSHAKE_38, drop_input=False)
    assert f.feed(b"\xee\x00junk" + KEY_DOWN, drop_input=True) == b"\xee\x00junk" + KEY_DOWN
    assert f.feed(KEY_UP, drop_input=True) == KEY_UP


def test_it_tells_a_persons_input_from_the_viewers_own_traffic() -> None:
    """Only input keeps the channel's chaff going (agent.secure.pacing): update requests, encodings, pixel
    format and the handshake are what a viewer sends by itself while the technician only watches."""
    f = InputFilter()
    f.feed(HANDSHAKE_38, drop_input=False)
    assert f.user_input is False
    own = REQUEST + write_set_encodings([0, 16]) + REQUEST
    assert f.feed(own, drop_input=False) == own and f.user_input is False
    for event in (KEY_DOWN, POINTER, write_client_cut_text("hi")):
        assert f.feed(REQUEST + event, drop_input=False) == REQUEST + event and f.user_input is True
        assert f.feed(REQUEST, drop_input=False) == REQUEST and f.user_input is False
    # input dropped during a cut is not sent, so it is not input on the channel either
    assert f.feed(KEY_DOWN + REQUEST, drop_input=True) == REQUEST and f.user_input is False
    # half a key now, the rest later: input once the whole message goes
    assert f.feed(KEY_DOWN[:3], drop_input=False) == b"" and f.user_input is False
    assert f.feed(KEY_DOWN[3:], drop_input=False) == KEY_DOWN and f.user_input is True
    # bytes it cannot parse are taken for input
    assert f.feed(b"\xee\x00junk", drop_input=False) == b"\xee\x00junk" and f.user_input is True
    assert f.feed(REQUEST, drop_input=False) == REQUEST and f.user_input is True


# -- requests that stand -------------------------------------------------------------------------

FULL = write_update_request(False, 0, 0, 100, 100)
ENCODINGS = (C.ENC_TIGHT, C.ENC_RAW)


def _connected(standing: bool) -> InputFilter:
    f = InputFilter(standing=lambda: standing)
    assert f.feed(HANDSHAKE_38, drop_input=False) == HANDSHAKE_38
    return f


def test_when_the_agent_knows_standing_requests_the_viewer_asks_once_and_the_rest_are_kept() -> None:
    f = _connected(True)
    assert f.feed(REQUEST, drop_input=False) == REQUEST  # before any SetEncodings: an ordinary request
    assert f.feed(write_set_encodings(ENCODINGS), drop_input=False) == \
        write_set_encodings(ENCODINGS + (C.ENC_STANDING_REQUEST,))
    assert f.feed(FULL, drop_input=False) == FULL  # the first request after: it starts standing
    assert f.feed(REQUEST + KEY_DOWN + REQUEST, drop_input=False) == KEY_DOWN
    assert f.requests_kept == 2
    assert f.user_input  # the key still counts as input (chaff)
    assert f.feed(FULL, drop_input=False) == FULL  # the whole screen again: always passed on
    assert f.feed(REQUEST, drop_input=False) == b""
    assert not f.user_input and f.requests_kept == 3


def test_without_the_agents_word_everything_passes_as_the_viewer_sent_it() -> None:
    for f in (InputFilter(standing=lambda: False), InputFilter()):
        assert f.feed(HANDSHAKE_38, drop_input=False) == HANDSHAKE_38
        assert f.feed(write_set_encodings(ENCODINGS) + REQUEST + REQUEST, drop_input=False) == \
            write_set_encodings(ENCODINGS) + REQUEST + REQUEST
        assert f.requests_kept == 0


def test_a_viewer_cannot_offer_standing_requests_itself_and_a_full_list_is_not_grown() -> None:
    f = _connected(False)
    assert f.feed(write_set_encodings(ENCODINGS + (C.ENC_STANDING_REQUEST,)) + REQUEST + REQUEST,
                  drop_input=False) == write_set_encodings(ENCODINGS) + REQUEST + REQUEST
    full = tuple(range(MAX_ENCODINGS))
    f = _connected(True)
    assert f.feed(write_set_encodings(full) + REQUEST + REQUEST, drop_input=False) == \
        write_set_encodings(full) + REQUEST + REQUEST  # one more would be refused by the agent


def test_a_new_set_encodings_keeps_requests_standing_only_while_offered() -> None:
    offered = [True]
    f = InputFilter(standing=lambda: offered[0])
    f.feed(HANDSHAKE_38 + write_set_encodings(ENCODINGS) + REQUEST, drop_input=False)
    assert f.feed(REQUEST, drop_input=False) == b""
    assert f.feed(write_set_encodings(ENCODINGS), drop_input=False) == \
        write_set_encodings(ENCODINGS + (C.ENC_STANDING_REQUEST,))
    assert f.feed(REQUEST, drop_input=False) == b""  # the agent's request still stands
    offered[0] = False  # (a resumed agent that no longer says it: requests count one by one again)
    assert f.feed(write_set_encodings(ENCODINGS) + REQUEST + REQUEST, drop_input=False) == \
        write_set_encodings(ENCODINGS) + REQUEST + REQUEST


@given(st.lists(st.sampled_from([REQUEST, FULL, KEY_DOWN, write_set_encodings(list(ENCODINGS))]), max_size=30),
       st.lists(st.integers(1, 40), max_size=40))
def test_standing_split_anywhere_gives_the_same_bytes(messages: list[bytes], cuts: list[int]) -> None:
    """The model: SetEncodings gains the pseudo-encoding; an incremental request is kept once a request
    went after a SetEncodings; nothing else changes, however the bytes arrive."""
    expected, offered, stands = bytearray(HANDSHAKE_38), False, False
    for m in messages:
        if m == REQUEST and stands:
            continue
        if m.startswith(bytes((C.MSG_SET_ENCODINGS,))):
            expected += write_set_encodings(ENCODINGS + (C.ENC_STANDING_REQUEST,))
            offered = True
            continue
        expected += m
        stands = stands or (offered and m in (REQUEST, FULL))
    wire = HANDSHAKE_38 + b"".join(messages)
    f, out, pos = InputFilter(standing=lambda: True), bytearray(), 0
    for size in cuts:
        out += f.feed(wire[pos:pos + size], drop_input=False)
        pos += size
    out += f.feed(wire[pos:], drop_input=False)
    assert bytes(out) == bytes(expected)

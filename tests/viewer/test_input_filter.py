"""The bridge's filter: keys and pointer moves made during a cut never reach the agent; the rest does."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from agent.rfb.client_messages import (
    write_client_cut_text,
    write_key_event,
    write_pointer_event,
    write_set_encodings,
    write_update_request,
)
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

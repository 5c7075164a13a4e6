"""The varint codec's fast paths (one and two bytes) against LEB128 worked out another way."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.secure import varint
from agent.secure.errors import ProtocolViolationError


def _reference(value: int, width: int = 0) -> bytes:
    """LEB128 from the number of 7-bit groups (a different route from the codec's loop)."""
    groups = max(1, -(-value.bit_length() // 7), width)
    if width and groups != width:
        raise ValueError("the value does not fit the width")
    return bytes((value >> 7 * i) & 0x7F | (0x80 if i < groups - 1 else 0) for i in range(groups))


@given(st.one_of(st.integers(0, 0x4100), st.integers(0, 1 << 28)), st.integers(0, 4))
def test_encode_matches_the_plain_loop_and_decodes_back(value: int, width: int) -> None:
    try:
        expected = _reference(value, width)
    except ValueError:
        with pytest.raises(ValueError):
            varint.encode(value, width)
        return
    wire = varint.encode(value, width)
    assert wire == expected
    assert varint.decode(b"\x05" + wire + b"\x01", 1, 4, "a field") == (value, 1 + len(wire))


@pytest.mark.parametrize("wire, max_bytes, expected", [
    (b"", 3, None), (b"\x80", 3, None), (b"\x7f", 1, (127, 1)), (b"\x80\x01", 2, (128, 2)),
    (b"\x80\x00", 2, (0, 2)),  # non-minimal: accepted (the PAD frame needs it)
])
def test_decode_edges(wire: bytes, max_bytes: int, expected: object) -> None:
    assert varint.decode(wire, 0, max_bytes, "a field") == expected


def test_decode_refuses_a_varint_longer_than_allowed() -> None:
    with pytest.raises(ProtocolViolationError, match="a field longer than 2 bytes"):
        varint.decode(b"\x80\x80\x01", 0, 2, "a field")
    with pytest.raises(ProtocolViolationError):
        varint.decode(b"\x01", 0, 0, "a field")
    with pytest.raises(ValueError):
        varint.encode(-1)

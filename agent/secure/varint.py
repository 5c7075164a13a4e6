"""Bounded LEB128 varints for the compact headers of records and mux frames (sans-IO, no state).

Little-endian groups of 7 bits, the top bit of a byte saying another follows. Every reader takes the
most bytes it will look at, so a length read from the wire is bounded before anything else is
buffered: a varint still going at that many bytes is a ProtocolViolationError, never a bigger number.
A non-minimal encoding (a group of zeros at the top) is accepted: the PAD frame needs one to hit an
exact size, and for records the header is authenticated anyway.
"""
from __future__ import annotations

from agent.secure.errors import ProtocolViolationError

_ONE_BYTE = tuple(bytes((value,)) for value in range(0x80))


def encode(value: int, width: int = 0) -> bytes:
    """``value`` in as few bytes as it takes, or in exactly ``width`` bytes (non-minimal if need be)."""
    if value < 0:
        raise ValueError("varints here are unsigned")
    if value < 0x80 and width <= 1:  # one byte: most mux frame headers
        return _ONE_BYTE[value]
    if 0x80 <= value < 0x4000 and width in (0, 2):  # two: most record headers
        return bytes((value & 0x7F | 0x80, value >> 7))
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value or (width and len(out) + 1 < width):
            out.append(byte | 0x80)
        else:
            out.append(byte)
            break
    if value or (width and len(out) != width):
        raise ValueError("the value does not fit the width")
    return bytes(out)


def decode(buf: bytes | bytearray | memoryview, pos: int, max_bytes: int, what: str) -> tuple[int, int] | None:
    """(value, position after it), or None if ``buf`` ends inside it; at most ``max_bytes`` are read.

    Raises ProtocolViolationError (naming ``what``) for a varint longer than ``max_bytes``."""
    if pos < len(buf) and max_bytes > 0 and buf[pos] < 0x80:  # one byte, the common case
        return buf[pos], pos + 1
    value = shift = 0
    for index in range(max_bytes):
        if pos + index >= len(buf):
            return None
        byte = buf[pos + index]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos + index + 1
        shift += 7
    raise ProtocolViolationError(f"the peer sent {what} longer than {max_bytes} bytes")

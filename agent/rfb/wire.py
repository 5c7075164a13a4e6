"""RFB byte layouts both directions share, and the reader convention every message module follows.

Readers follow h11's ``_readers.py``: each takes a memoryview that starts at
the first byte of a message and returns ``(event, consumed)``, or ``None``
when the view does not yet hold the whole message, or raises
RemoteProtocolError. Every length read from the wire is checked against a
bound *before* waiting for the bytes it announces, so a peer cannot make us
buffer in proportion to a number it made up. Writers take plain values and
return bytes. The connection classes (server.py, client.py) only pick the
reader for their state.

Shared here: fixed-size fields, u32-length strings, cut text (the same body
both ways), ExtendedDesktopSize screen layouts and Fence (one layout, type 248
both ways).
"""
from __future__ import annotations

import struct
from typing import Callable, Optional, Sequence, Tuple

from agent.rfb.messages import MAX_CUT_TEXT, MAX_FENCE_PAYLOAD, Fence, Screen
from agent.sansio import RemoteProtocolError

Reader = Callable[[memoryview], Optional[Tuple[object, int]]]
"""A reader: the bytes so far -> (event or value, bytes consumed), or None for "need more"."""

U8 = struct.Struct(">B")
U16 = struct.Struct(">H")
U32 = struct.Struct(">I")
SCREEN = struct.Struct(">IHHHHI")


def need(view: memoryview, n: int) -> bool:
    return len(view) >= n


def check_bound(what: str, value: int, bound: int) -> None:
    if value > bound:
        raise RemoteProtocolError(f"{what} of {value} bytes exceeds the limit of {bound}")


def read_string(view: memoryview, offset: int, bound: int, what: str) -> Optional[Tuple[bytes, int]]:
    """A u32 length then that many bytes, at ``offset``; returns (bytes, end offset)."""
    if not need(view, offset + 4):
        return None
    (length,) = U32.unpack_from(view, offset)
    check_bound(what, length, bound)
    end = offset + 4 + length
    if not need(view, end):
        return None
    return bytes(view[offset + 4:end]), end


def write_string(data: bytes) -> bytes:
    return U32.pack(len(data)) + data


# ---------------------------------------------------------------- cut text

def encode_cut_text(text: str) -> bytes:
    # RFB cut text is Latin-1; characters outside it cannot be sent and become '?'.
    return text.encode("latin-1", errors="replace")


def write_cut_text(msg_type: int, text: str) -> bytes:
    """ClientCutText and ServerCutText: type, 3 bytes padding, u32 length, Latin-1 text."""
    return bytes([msg_type, 0, 0, 0]) + write_string(encode_cut_text(text))


def read_cut_text(view: memoryview, what: str) -> Optional[Tuple[str, int]]:
    if not need(view, 8):
        return None
    (length,) = U32.unpack_from(view, 4)
    if length >= 1 << 31:
        raise RemoteProtocolError(f"{what} with a negative length (extended clipboard was not negotiated)")
    check_bound(what, length, MAX_CUT_TEXT)
    if not need(view, 8 + length):
        return None
    return bytes(view[8:8 + length]).decode("latin-1"), 8 + length


# ---------------------------------------------------------------- screen layouts

def write_screens(screens: Sequence[Screen]) -> bytes:
    return b"".join(SCREEN.pack(s.id, s.x, s.y, s.width, s.height, s.flags) for s in screens)


def read_screens(view: memoryview, offset: int, count: int) -> Tuple[Screen, ...]:
    return tuple(Screen(*SCREEN.unpack_from(view, offset + i * SCREEN.size)) for i in range(count))


# ---------------------------------------------------------------- Fence

def write_fence(msg_type: int, flags: int, payload: bytes = b"") -> bytes:
    """Fence, the same layout both ways (ClientFence 248 and ServerFence 248)."""
    if len(payload) > MAX_FENCE_PAYLOAD:
        raise ValueError(f"fence payload is at most {MAX_FENCE_PAYLOAD} bytes")
    return struct.pack(">BxxxIB", msg_type, flags, len(payload)) + payload


def read_fence(view: memoryview) -> Optional[Tuple[Fence, int]]:
    if not need(view, 9):
        return None
    flags, length = struct.unpack_from(">IB", view, 4)
    if length > MAX_FENCE_PAYLOAD:
        raise RemoteProtocolError(f"fence payload of {length} bytes exceeds the limit of {MAX_FENCE_PAYLOAD}")
    if not need(view, 9 + length):
        return None
    return Fence(flags, bytes(view[9:9 + length])), 9 + length

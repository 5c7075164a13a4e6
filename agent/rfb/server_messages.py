"""RFB server-to-client messages (RFC 6143 §7.6, rfbproto): writers, readers, and the reader by message type.

The server (and the encoders in agent.encode, for rectangle headers) writes
these; the client reads them with ``read_server_message``, its reader for the
NORMAL state, except for the rectangles of a FramebufferUpdate, which it reads
one by one with ``read_rect_header`` and the decoders in agent.rfb.decode.
Readers follow the convention in agent.rfb.wire.
"""
from __future__ import annotations

import struct
from typing import Optional, Sequence, Tuple

from agent.rfb import constants as C
from agent.rfb.messages import (
    EDS_REASON_SERVER,
    EDS_STATUS_OK,
    Bell,
    ColourMapEntries,
    EndOfContinuousUpdates,
    FramebufferUpdateHeader,
    Screen,
    ServerCutText,
)
from agent.rfb.wire import SCREEN, U8, U16, Reader, need, read_cut_text, read_fence, read_screens, write_cut_text, write_screens
from agent.sansio import RemoteProtocolError

_RECT_HEADER = struct.Struct(">HHHHi")

RECT_HEADER_SIZE = _RECT_HEADER.size


# ---------------------------------------------------------------- FramebufferUpdate

def write_update_header(count: int) -> bytes:
    """FramebufferUpdate: type, padding, number-of-rectangles (0xFFFF with LastRect)."""
    return struct.pack(">BxH", C.MSG_FRAMEBUFFER_UPDATE, count)


def read_update_header(view: memoryview) -> Optional[Tuple[FramebufferUpdateHeader, int]]:
    if not need(view, 4):
        return None
    return FramebufferUpdateHeader(U16.unpack_from(view, 2)[0]), 4


def write_rect_header(x: int, y: int, width: int, height: int, encoding: int) -> bytes:
    return _RECT_HEADER.pack(x, y, width, height, encoding)


def read_rect_header(view: memoryview) -> Optional[Tuple[Tuple[int, int, int, int, int], int]]:
    if not need(view, RECT_HEADER_SIZE):
        return None
    return _RECT_HEADER.unpack_from(view, 0), RECT_HEADER_SIZE


# ---------------------------------------------------------------- pseudo-encoding rectangles

def write_desktop_size_rect(width: int, height: int) -> bytes:
    return write_rect_header(0, 0, width, height, C.ENC_DESKTOP_SIZE)


def write_extended_desktop_size_rect(width: int, height: int, reason: int = EDS_REASON_SERVER,
                                     status: int = EDS_STATUS_OK,
                                     screens: Optional[Sequence[Screen]] = None) -> bytes:
    """x carries the reason, y the status; the payload is the screen layout."""
    if screens is None:
        screens = (Screen(0, 0, 0, width, height, 0),)
    return (write_rect_header(reason, status, width, height, C.ENC_EXTENDED_DESKTOP_SIZE)
            + struct.pack(">Bxxx", len(screens)) + write_screens(screens))


def read_extended_desktop_size_payload(view: memoryview) -> Optional[Tuple[Tuple[Screen, ...], int]]:
    if not need(view, 4):
        return None
    count = view[0]
    end = 4 + count * SCREEN.size
    if not need(view, end):
        return None
    return read_screens(view, 4, count), end


def write_last_rect() -> bytes:
    return write_rect_header(0, 0, 0, 0, C.ENC_LAST_RECT)


# ---------------------------------------------------------------- the other messages

def write_bell() -> bytes:
    return U8.pack(C.MSG_BELL)


def read_bell(view: memoryview) -> Optional[Tuple[Bell, int]]:
    return (Bell(), 1) if need(view, 1) else None


def write_server_cut_text(text: str) -> bytes:
    return write_cut_text(C.MSG_SERVER_CUT_TEXT, text)


def read_server_cut_text(view: memoryview) -> Optional[Tuple[ServerCutText, int]]:
    got = read_cut_text(view, "ServerCutText")
    return None if got is None else (ServerCutText(got[0]), got[1])


def write_end_of_continuous_updates() -> bytes:
    return U8.pack(C.MSG_END_OF_CONTINUOUS_UPDATES)


def read_end_of_continuous_updates(view: memoryview) -> Optional[Tuple[EndOfContinuousUpdates, int]]:
    return (EndOfContinuousUpdates(), 1) if need(view, 1) else None


def read_colour_map_entries(view: memoryview) -> Optional[Tuple[ColourMapEntries, int]]:
    if not need(view, 6):
        return None
    first, count = struct.unpack_from(">HH", view, 2)
    end = 6 + 6 * count
    if not need(view, end):
        return None
    colours = tuple(struct.unpack_from(">HHH", view, 6 + 6 * i) for i in range(count))
    return ColourMapEntries(first, colours), end


# ServerFence has the shared layout: agent.rfb.wire.write_fence(C.MSG_SERVER_FENCE, ...) and read_fence.

# Which reader applies to which message type (the first byte).
READERS: dict[int, Reader] = {
    C.MSG_FRAMEBUFFER_UPDATE: read_update_header,
    C.MSG_SET_COLOUR_MAP_ENTRIES: read_colour_map_entries,
    C.MSG_BELL: read_bell,
    C.MSG_SERVER_CUT_TEXT: read_server_cut_text,
    C.MSG_END_OF_CONTINUOUS_UPDATES: read_end_of_continuous_updates,
    C.MSG_SERVER_FENCE: read_fence,
}


def read_server_message(view: memoryview) -> Optional[Tuple[object, int]]:
    """One server-to-client message (for a FramebufferUpdate, its header): the client's reader in NORMAL."""
    if not len(view):
        return None
    reader = READERS.get(view[0])
    if reader is None:
        raise RemoteProtocolError(f"unknown server message type {view[0]}")
    return reader(view)

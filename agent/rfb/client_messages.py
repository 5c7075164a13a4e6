"""RFB client-to-server messages (RFC 6143 §7.5, rfbproto): writers, readers, and the reader by message type.

The client writes these once the handshake is over; the server reads them with
``read_client_message``, its reader for the NORMAL state. Readers follow the
convention in agent.rfb.wire.
"""
from __future__ import annotations

import struct
from typing import Optional, Sequence, Tuple

from agent.rfb import constants as C
from agent.rfb.messages import (
    MAX_ENCODINGS,
    ClientCutText,
    EnableContinuousUpdates,
    FramebufferUpdateRequest,
    KeyEvent,
    PointerEvent,
    Screen,
    SetDesktopSize,
    SetEncodings,
    SetPixelFormat,
)
from agent.rfb.pixelformat import PixelFormat
from agent.rfb.wire import SCREEN, U16, Reader, need, read_cut_text, read_fence, read_screens, write_cut_text, write_screens
from agent.sansio import RemoteProtocolError

_FBUR = struct.Struct(">BBHHHH")
_KEY = struct.Struct(">BBxxI")
_POINTER = struct.Struct(">BBHH")
_ECU = struct.Struct(">BBHHHH")


def write_set_pixel_format(pf: PixelFormat) -> bytes:
    return bytes([C.MSG_SET_PIXEL_FORMAT, 0, 0, 0]) + pf.pack()


def read_set_pixel_format(view: memoryview) -> Optional[Tuple[SetPixelFormat, int]]:
    if not need(view, 20):
        return None
    return SetPixelFormat(PixelFormat.unpack(bytes(view[4:20]))), 20


def write_set_encodings(encodings: Sequence[int]) -> bytes:
    return struct.pack(f">BxH{len(encodings)}i", C.MSG_SET_ENCODINGS, len(encodings), *encodings)


def read_set_encodings(view: memoryview) -> Optional[Tuple[SetEncodings, int]]:
    if not need(view, 4):
        return None
    (count,) = U16.unpack_from(view, 2)
    if count > MAX_ENCODINGS:
        raise RemoteProtocolError(f"SetEncodings lists {count} encodings, more than the limit of {MAX_ENCODINGS}")
    end = 4 + 4 * count
    if not need(view, end):
        return None
    return SetEncodings(struct.unpack_from(f">{count}i", view, 4)), end


def write_update_request(incremental: bool, x: int, y: int, width: int, height: int) -> bytes:
    return _FBUR.pack(C.MSG_FRAMEBUFFER_UPDATE_REQUEST, 1 if incremental else 0, x, y, width, height)


def read_update_request(view: memoryview) -> Optional[Tuple[FramebufferUpdateRequest, int]]:
    if not need(view, _FBUR.size):
        return None
    _, inc, x, y, w, h = _FBUR.unpack_from(view, 0)
    return FramebufferUpdateRequest(inc != 0, x, y, w, h), _FBUR.size


def write_key_event(down: bool, keysym: int) -> bytes:
    return _KEY.pack(C.MSG_KEY_EVENT, 1 if down else 0, keysym)


def read_key_event(view: memoryview) -> Optional[Tuple[KeyEvent, int]]:
    if not need(view, _KEY.size):
        return None
    _, down, keysym = _KEY.unpack_from(view, 0)
    return KeyEvent(down != 0, keysym), _KEY.size


def write_pointer_event(button_mask: int, x: int, y: int) -> bytes:
    return _POINTER.pack(C.MSG_POINTER_EVENT, button_mask, x, y)


def read_pointer_event(view: memoryview) -> Optional[Tuple[PointerEvent, int]]:
    if not need(view, _POINTER.size):
        return None
    _, mask, x, y = _POINTER.unpack_from(view, 0)
    return PointerEvent(mask, x, y), _POINTER.size


def write_client_cut_text(text: str) -> bytes:
    return write_cut_text(C.MSG_CLIENT_CUT_TEXT, text)


def read_client_cut_text(view: memoryview) -> Optional[Tuple[ClientCutText, int]]:
    got = read_cut_text(view, "ClientCutText")
    return None if got is None else (ClientCutText(got[0]), got[1])


def write_enable_continuous_updates(enable: bool, x: int, y: int, width: int, height: int) -> bytes:
    return _ECU.pack(C.MSG_ENABLE_CONTINUOUS_UPDATES, 1 if enable else 0, x, y, width, height)


def read_enable_continuous_updates(view: memoryview) -> Optional[Tuple[EnableContinuousUpdates, int]]:
    if not need(view, _ECU.size):
        return None
    _, enable, x, y, w, h = _ECU.unpack_from(view, 0)
    return EnableContinuousUpdates(enable != 0, x, y, w, h), _ECU.size


def write_set_desktop_size(width: int, height: int, screens: Sequence[Screen]) -> bytes:
    return struct.pack(">BxHHBx", C.MSG_SET_DESKTOP_SIZE, width, height, len(screens)) + write_screens(screens)


def read_set_desktop_size(view: memoryview) -> Optional[Tuple[SetDesktopSize, int]]:
    if not need(view, 8):
        return None
    width, height, count = struct.unpack_from(">HHB", view, 2)
    end = 8 + count * SCREEN.size
    if not need(view, end):
        return None
    return SetDesktopSize(width, height, read_screens(view, 8, count)), end


# ClientFence has the shared layout: agent.rfb.wire.write_fence(C.MSG_CLIENT_FENCE, ...) and read_fence.

# Which reader applies to which message type (the first byte).
READERS: dict[int, Reader] = {
    C.MSG_SET_PIXEL_FORMAT: read_set_pixel_format,
    C.MSG_SET_ENCODINGS: read_set_encodings,
    C.MSG_FRAMEBUFFER_UPDATE_REQUEST: read_update_request,
    C.MSG_KEY_EVENT: read_key_event,
    C.MSG_POINTER_EVENT: read_pointer_event,
    C.MSG_CLIENT_CUT_TEXT: read_client_cut_text,
    C.MSG_ENABLE_CONTINUOUS_UPDATES: read_enable_continuous_updates,
    C.MSG_CLIENT_FENCE: read_fence,
    C.MSG_SET_DESKTOP_SIZE: read_set_desktop_size,
}


def read_client_message(view: memoryview) -> Optional[Tuple[object, int]]:
    """One client-to-server message, whichever its type: the server's reader once the handshake is over."""
    if not len(view):
        return None
    reader = READERS.get(view[0])
    if reader is None:
        raise RemoteProtocolError(f"unknown client message type {view[0]}")
    return reader(view)

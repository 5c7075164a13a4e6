"""RFB 3.8 messages (RFC 6143 §7, rfbproto): event dataclasses, readers and writers.

Readers follow h11's ``_readers.py``: each takes a memoryview that starts at
the first byte of a message and returns ``(event, consumed)``, or ``None``
when the view does not yet hold the whole message, or raises
RemoteProtocolError. Every length read from the wire is checked against a
bound *before* waiting for the bytes it announces, so a peer cannot make us
buffer in proportion to a number it made up. Writers take plain values and
return bytes. The connection classes (server.py, client.py) only pick the
reader for their state.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence, Tuple

import numpy as np

from agent.rfb import constants as C
from agent.sansio import RemoteProtocolError
from agent.rfb.pixelformat import PixelFormat, PixelFormatError

# Bounds on lengths read from the wire.
MAX_CUT_TEXT = 1 << 20          # ClientCutText / ServerCutText bytes
MAX_ENCODINGS = 1024            # SetEncodings count (real viewers send < 50)
MAX_FENCE_PAYLOAD = 64          # rfbproto: "length ... must not exceed 64"
MAX_REASON = 64 * 1024          # failure reason strings
MAX_NAME = 64 * 1024            # desktop name in ServerInit
MAX_SECURITY_TYPES = 255        # u8 count, bounded by the type itself

FENCE_BLOCK_BEFORE = 1 << 0
FENCE_BLOCK_AFTER = 1 << 1
FENCE_SYNC_NEXT = 1 << 2
FENCE_REQUEST = 1 << 31
FENCE_SUPPORTED = FENCE_BLOCK_BEFORE | FENCE_BLOCK_AFTER | FENCE_SYNC_NEXT | FENCE_REQUEST

# ExtendedDesktopSize reasons (x) and statuses (y)
EDS_REASON_SERVER = 0
EDS_REASON_CLIENT = 1
EDS_REASON_OTHER_CLIENT = 2
EDS_STATUS_OK = 0
EDS_STATUS_PROHIBITED = 1
EDS_STATUS_NO_RESOURCES = 2
EDS_STATUS_INVALID_LAYOUT = 3

SECURITY_RESULT_OK = 0
SECURITY_RESULT_FAILED = 1

LAST_RECT_COUNT = 0xFFFF  # number-of-rectangles when the update ends with LastRect

_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_RECT_HEADER = struct.Struct(">HHHHi")
_SCREEN = struct.Struct(">IHHHHI")
_FBUR = struct.Struct(">BBHHHH")
_KEY = struct.Struct(">BBxxI")
_POINTER = struct.Struct(">BBHH")
_ECU = struct.Struct(">BBHHHH")
_SERVER_INIT = struct.Struct(">HH16sI")

RECT_HEADER_SIZE = _RECT_HEADER.size


# ---------------------------------------------------------------- events

@dataclass(frozen=True)
class Screen:
    """One screen of an ExtendedDesktopSize layout."""

    id: int
    x: int
    y: int
    width: int
    height: int
    flags: int = 0


# handshake
@dataclass(frozen=True)
class ClientInit:
    shared: bool


@dataclass(frozen=True)
class ServerInit:
    width: int
    height: int
    name: str
    pixel_format: PixelFormat


@dataclass(frozen=True)
class AuthenticationFailed:
    """VNC Authentication was refused; the reason is the one the server gave (or ours)."""

    reason: str


@dataclass(frozen=True)
class ConnectionClosed:
    """The peer closed (EOF), or refused the connection during the handshake with a reason."""

    reason: str = ""


# client -> server
@dataclass(frozen=True)
class SetPixelFormat:
    pixel_format: PixelFormat


@dataclass(frozen=True)
class SetEncodings:
    encodings: Tuple[int, ...]


@dataclass(frozen=True)
class FramebufferUpdateRequest:
    incremental: bool
    x: int
    y: int
    width: int
    height: int

    def clipped(self, width: int, height: int) -> Optional[Tuple[int, int, int, int]]:
        """The requested region clipped to a width x height screen; None if nothing is left."""
        x0, y0 = min(self.x, width), min(self.y, height)
        x1, y1 = min(self.x + self.width, width), min(self.y + self.height, height)
        if x1 <= x0 or y1 <= y0:
            return None
        return (x0, y0, x1 - x0, y1 - y0)


@dataclass(frozen=True)
class KeyEvent:
    down: bool
    keysym: int


@dataclass(frozen=True)
class PointerEvent:
    button_mask: int
    x: int
    y: int


@dataclass(frozen=True)
class ClientCutText:
    text: str


@dataclass(frozen=True)
class EnableContinuousUpdates:
    enable: bool
    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True)
class Fence:
    """A fence either way; ``flags & FENCE_REQUEST`` says whether the peer expects an answer."""

    flags: int
    payload: bytes = b""

    @property
    def is_request(self) -> bool:
        return bool(self.flags & FENCE_REQUEST)


@dataclass(frozen=True)
class SetDesktopSize:
    width: int
    height: int
    screens: Tuple[Screen, ...]


# server -> client
@dataclass(frozen=True)
class FramebufferUpdate:
    """A whole update was decoded into the client's framebuffer."""

    rects: list = field(default_factory=list)  # (x, y, w, h, encoding) per rectangle received
    nbytes: int = 0  # wire bytes of the whole message, header included


@dataclass(frozen=True)
class DesktopResized:
    width: int
    height: int
    reason: int = EDS_REASON_SERVER
    status: int = EDS_STATUS_OK
    screens: Tuple[Screen, ...] = ()


@dataclass(frozen=True, eq=False)
class CursorChanged:
    """The server sent a new cursor shape (Cursor pseudo-encoding)."""

    hot_x: int
    hot_y: int
    pixels: np.ndarray  # (h, w, 4) BGRA, alpha 255 where the mask is set, else 0


@dataclass(frozen=True)
class Bell:
    pass


@dataclass(frozen=True)
class ServerCutText:
    text: str


@dataclass(frozen=True)
class EndOfContinuousUpdates:
    pass


@dataclass(frozen=True)
class ColourMapEntries:
    """SetColourMapEntries: only meaningful for colour-map formats, which we never ask for."""

    first: int
    colours: Tuple[Tuple[int, int, int], ...]


Reader = Callable[[memoryview], Optional[Tuple[object, int]]]
"""A reader: the bytes so far -> (event or value, bytes consumed), or None for "need more"."""


# ---------------------------------------------------------------- helpers

def _need(view: memoryview, n: int) -> bool:
    return len(view) >= n


def _latin1(data: bytes) -> str:
    return data.decode("latin-1")


def _check_bound(what: str, value: int, bound: int) -> None:
    if value > bound:
        raise RemoteProtocolError(f"{what} of {value} bytes exceeds the limit of {bound}")


def _read_string(view: memoryview, offset: int, bound: int, what: str) -> Optional[Tuple[bytes, int]]:
    """A u32 length then that many bytes, at ``offset``; returns (bytes, end offset)."""
    if not _need(view, offset + 4):
        return None
    (length,) = _U32.unpack_from(view, offset)
    _check_bound(what, length, bound)
    end = offset + 4 + length
    if not _need(view, end):
        return None
    return bytes(view[offset + 4:end]), end


def write_string(data: bytes) -> bytes:
    return _U32.pack(len(data)) + data


# ---------------------------------------------------------------- handshake

def write_version(major: int, minor: int) -> bytes:
    return b"RFB %03d.%03d\n" % (major, minor)


def read_version(view: memoryview) -> Optional[Tuple[Tuple[int, int], int]]:
    """ProtocolVersion: exactly b"RFB xxx.yyy\\n" (12 bytes)."""
    if not _need(view, 12):
        # Refuse early when the prefix is already wrong: garbage should not wait for 12 bytes.
        if bytes(view[:4]) != b"RFB "[:len(view[:4])]:
            raise RemoteProtocolError("not an RFB protocol version message")
        return None
    raw = bytes(view[:12])
    if raw[:4] != b"RFB ":
        raise RemoteProtocolError(f"not an RFB protocol version message: {raw!r}")
    if raw[7:8] != b"." or raw[11:12] != b"\n" or not (raw[4:7].isdigit() and raw[8:11].isdigit()):
        raise RemoteProtocolError(f"malformed protocol version {raw!r}")
    return (int(raw[4:7]), int(raw[8:11])), 12


def write_security_types(types: Sequence[int]) -> bytes:
    """3.7+: u8 count, then one u8 per type."""
    return _U8.pack(len(types)) + bytes(types)


def write_security_failure(reason: str) -> bytes:
    """3.7+: a zero count then a reason: the server refuses before any security type."""
    return _U8.pack(0) + write_string(reason.encode())


def read_security_types(view: memoryview) -> Optional[Tuple[object, int]]:
    """Returns (tuple of types, n) or (ConnectionClosed(reason), n) for a zero count."""
    if not _need(view, 1):
        return None
    count = view[0]
    if count == 0:
        got = _read_string(view, 1, MAX_REASON, "failure reason")
        if got is None:
            return None
        return ConnectionClosed(got[0].decode(errors="replace")), got[1]
    if not _need(view, 1 + count):
        return None
    return tuple(view[1:1 + count]), 1 + count


def write_security_type_33(sec_type: int) -> bytes:
    """3.3: the server decides; a u32 type (0 = failure followed by a reason)."""
    return _U32.pack(sec_type)


def read_security_type_33(view: memoryview) -> Optional[Tuple[object, int]]:
    if not _need(view, 4):
        return None
    (sec_type,) = _U32.unpack_from(view, 0)
    if sec_type == C.SEC_INVALID:
        got = _read_string(view, 4, MAX_REASON, "failure reason")
        if got is None:
            return None
        return ConnectionClosed(got[0].decode(errors="replace")), got[1]
    return sec_type, 4


def write_security_result(ok: bool, reason: Optional[str] = None) -> bytes:
    """SecurityResult; a reason string follows a failure in 3.8 only (pass None before 3.8)."""
    if ok:
        return _U32.pack(SECURITY_RESULT_OK)
    out = _U32.pack(SECURITY_RESULT_FAILED)
    if reason is not None:
        out += write_string(reason.encode())
    return out


def read_security_result(view: memoryview, with_reason: bool) -> Optional[Tuple[object, int]]:
    """Returns (True, n) on success, (AuthenticationFailed, n) on failure."""
    if not _need(view, 4):
        return None
    (status,) = _U32.unpack_from(view, 0)
    if status == SECURITY_RESULT_OK:
        return True, 4
    if not with_reason:
        return AuthenticationFailed("authentication failed"), 4
    got = _read_string(view, 4, MAX_REASON, "failure reason")
    if got is None:
        return None
    return AuthenticationFailed(got[0].decode(errors="replace") or "authentication failed"), got[1]


def write_client_init(shared: bool) -> bytes:
    return _U8.pack(1 if shared else 0)


def read_client_init(view: memoryview) -> Optional[Tuple[ClientInit, int]]:
    if not _need(view, 1):
        return None
    return ClientInit(view[0] != 0), 1


def write_server_init(width: int, height: int, pf: PixelFormat, name: str) -> bytes:
    raw = name.encode()
    return _SERVER_INIT.pack(width, height, pf.pack(), len(raw)) + raw


def read_server_init(view: memoryview) -> Optional[Tuple[ServerInit, int]]:
    if not _need(view, _SERVER_INIT.size):
        return None
    width, height, pf_raw, name_len = _SERVER_INIT.unpack_from(view, 0)
    _check_bound("desktop name", name_len, MAX_NAME)
    end = _SERVER_INIT.size + name_len
    if not _need(view, end):
        return None
    try:
        pf = PixelFormat.unpack(pf_raw)
    except PixelFormatError as exc:  # pragma: no cover - 16 bytes always unpack
        raise RemoteProtocolError(str(exc)) from None
    name = bytes(view[_SERVER_INIT.size:end]).decode(errors="replace")
    return ServerInit(width, height, name, pf), end


# ---------------------------------------------------------------- client -> server

def write_set_pixel_format(pf: PixelFormat) -> bytes:
    return bytes([C.MSG_SET_PIXEL_FORMAT, 0, 0, 0]) + pf.pack()


def read_set_pixel_format(view: memoryview) -> Optional[Tuple[SetPixelFormat, int]]:
    if not _need(view, 20):
        return None
    return SetPixelFormat(PixelFormat.unpack(bytes(view[4:20]))), 20


def write_set_encodings(encodings: Sequence[int]) -> bytes:
    return struct.pack(f">BxH{len(encodings)}i", C.MSG_SET_ENCODINGS, len(encodings), *encodings)


def read_set_encodings(view: memoryview) -> Optional[Tuple[SetEncodings, int]]:
    if not _need(view, 4):
        return None
    (count,) = _U16.unpack_from(view, 2)
    if count > MAX_ENCODINGS:
        raise RemoteProtocolError(f"SetEncodings lists {count} encodings, more than the limit of {MAX_ENCODINGS}")
    end = 4 + 4 * count
    if not _need(view, end):
        return None
    return SetEncodings(struct.unpack_from(f">{count}i", view, 4)), end


def write_update_request(incremental: bool, x: int, y: int, width: int, height: int) -> bytes:
    return _FBUR.pack(C.MSG_FRAMEBUFFER_UPDATE_REQUEST, 1 if incremental else 0, x, y, width, height)


def read_update_request(view: memoryview) -> Optional[Tuple[FramebufferUpdateRequest, int]]:
    if not _need(view, _FBUR.size):
        return None
    _, inc, x, y, w, h = _FBUR.unpack_from(view, 0)
    return FramebufferUpdateRequest(inc != 0, x, y, w, h), _FBUR.size


def write_key_event(down: bool, keysym: int) -> bytes:
    return _KEY.pack(C.MSG_KEY_EVENT, 1 if down else 0, keysym)


def read_key_event(view: memoryview) -> Optional[Tuple[KeyEvent, int]]:
    if not _need(view, _KEY.size):
        return None
    _, down, keysym = _KEY.unpack_from(view, 0)
    return KeyEvent(down != 0, keysym), _KEY.size


def write_pointer_event(button_mask: int, x: int, y: int) -> bytes:
    return _POINTER.pack(C.MSG_POINTER_EVENT, button_mask, x, y)


def read_pointer_event(view: memoryview) -> Optional[Tuple[PointerEvent, int]]:
    if not _need(view, _POINTER.size):
        return None
    _, mask, x, y = _POINTER.unpack_from(view, 0)
    return PointerEvent(mask, x, y), _POINTER.size


def _encode_cut_text(text: str) -> bytes:
    # RFB cut text is Latin-1; characters outside it cannot be sent and become '?'.
    return text.encode("latin-1", errors="replace")


def _read_cut_text(view: memoryview, what: str) -> Optional[Tuple[str, int]]:
    if not _need(view, 8):
        return None
    (length,) = _U32.unpack_from(view, 4)
    if length >= 1 << 31:
        raise RemoteProtocolError(f"{what} with a negative length (extended clipboard was not negotiated)")
    _check_bound(what, length, MAX_CUT_TEXT)
    if not _need(view, 8 + length):
        return None
    return _latin1(bytes(view[8:8 + length])), 8 + length


def write_client_cut_text(text: str) -> bytes:
    raw = _encode_cut_text(text)
    return bytes([C.MSG_CLIENT_CUT_TEXT, 0, 0, 0]) + write_string(raw)


def read_client_cut_text(view: memoryview) -> Optional[Tuple[ClientCutText, int]]:
    got = _read_cut_text(view, "ClientCutText")
    return None if got is None else (ClientCutText(got[0]), got[1])


def write_enable_continuous_updates(enable: bool, x: int, y: int, width: int, height: int) -> bytes:
    return _ECU.pack(C.MSG_ENABLE_CONTINUOUS_UPDATES, 1 if enable else 0, x, y, width, height)


def read_enable_continuous_updates(view: memoryview) -> Optional[Tuple[EnableContinuousUpdates, int]]:
    if not _need(view, _ECU.size):
        return None
    _, enable, x, y, w, h = _ECU.unpack_from(view, 0)
    return EnableContinuousUpdates(enable != 0, x, y, w, h), _ECU.size


def write_fence(msg_type: int, flags: int, payload: bytes = b"") -> bytes:
    """Fence, the same layout both ways (ClientFence 248 and ServerFence 248)."""
    if len(payload) > MAX_FENCE_PAYLOAD:
        raise ValueError(f"fence payload is at most {MAX_FENCE_PAYLOAD} bytes")
    return struct.pack(">BxxxIB", msg_type, flags, len(payload)) + payload


def read_fence(view: memoryview) -> Optional[Tuple[Fence, int]]:
    if not _need(view, 9):
        return None
    flags, length = struct.unpack_from(">IB", view, 4)
    if length > MAX_FENCE_PAYLOAD:
        raise RemoteProtocolError(f"fence payload of {length} bytes exceeds the limit of {MAX_FENCE_PAYLOAD}")
    if not _need(view, 9 + length):
        return None
    return Fence(flags, bytes(view[9:9 + length])), 9 + length


def fence_response(request: Fence) -> Fence:
    """The answer the spec asks for: the request bit cleared, unknown flags dropped, payload echoed."""
    return Fence(request.flags & FENCE_SUPPORTED & ~FENCE_REQUEST, request.payload)


def _write_screens(screens: Sequence[Screen]) -> bytes:
    return b"".join(_SCREEN.pack(s.id, s.x, s.y, s.width, s.height, s.flags) for s in screens)


def _read_screens(view: memoryview, offset: int, count: int) -> Tuple[Screen, ...]:
    return tuple(Screen(*_SCREEN.unpack_from(view, offset + i * _SCREEN.size)) for i in range(count))


def write_set_desktop_size(width: int, height: int, screens: Sequence[Screen]) -> bytes:
    return struct.pack(">BxHHBx", C.MSG_SET_DESKTOP_SIZE, width, height, len(screens)) + _write_screens(screens)


def read_set_desktop_size(view: memoryview) -> Optional[Tuple[SetDesktopSize, int]]:
    if not _need(view, 8):
        return None
    width, height, count = struct.unpack_from(">HHB", view, 2)
    end = 8 + count * _SCREEN.size
    if not _need(view, end):
        return None
    return SetDesktopSize(width, height, _read_screens(view, 8, count)), end


# ---------------------------------------------------------------- server -> client

def write_update_header(count: int) -> bytes:
    """FramebufferUpdate: type, padding, number-of-rectangles (0xFFFF with LastRect)."""
    return struct.pack(">BxH", C.MSG_FRAMEBUFFER_UPDATE, count)


def read_update_header(view: memoryview) -> Optional[Tuple[int, int]]:
    if not _need(view, 4):
        return None
    return _U16.unpack_from(view, 2)[0], 4


def write_rect_header(x: int, y: int, width: int, height: int, encoding: int) -> bytes:
    return _RECT_HEADER.pack(x, y, width, height, encoding)


def read_rect_header(view: memoryview) -> Optional[Tuple[Tuple[int, int, int, int, int], int]]:
    if not _need(view, RECT_HEADER_SIZE):
        return None
    return _RECT_HEADER.unpack_from(view, 0), RECT_HEADER_SIZE


def write_desktop_size_rect(width: int, height: int) -> bytes:
    return write_rect_header(0, 0, width, height, C.ENC_DESKTOP_SIZE)


def write_extended_desktop_size_rect(width: int, height: int, reason: int = EDS_REASON_SERVER,
                                     status: int = EDS_STATUS_OK,
                                     screens: Optional[Sequence[Screen]] = None) -> bytes:
    """x carries the reason, y the status; the payload is the screen layout."""
    if screens is None:
        screens = (Screen(0, 0, 0, width, height, 0),)
    return (write_rect_header(reason, status, width, height, C.ENC_EXTENDED_DESKTOP_SIZE)
            + struct.pack(">Bxxx", len(screens)) + _write_screens(screens))


def read_extended_desktop_size_payload(view: memoryview) -> Optional[Tuple[Tuple[Screen, ...], int]]:
    if not _need(view, 4):
        return None
    count = view[0]
    end = 4 + count * _SCREEN.size
    if not _need(view, end):
        return None
    return _read_screens(view, 4, count), end


def write_last_rect() -> bytes:
    return write_rect_header(0, 0, 0, 0, C.ENC_LAST_RECT)


def write_bell() -> bytes:
    return _U8.pack(C.MSG_BELL)


def write_server_cut_text(text: str) -> bytes:
    return bytes([C.MSG_SERVER_CUT_TEXT, 0, 0, 0]) + write_string(_encode_cut_text(text))


def read_server_cut_text(view: memoryview) -> Optional[Tuple[ServerCutText, int]]:
    got = _read_cut_text(view, "ServerCutText")
    return None if got is None else (ServerCutText(got[0]), got[1])


def write_end_of_continuous_updates() -> bytes:
    return _U8.pack(C.MSG_END_OF_CONTINUOUS_UPDATES)


def read_colour_map_entries(view: memoryview) -> Optional[Tuple[ColourMapEntries, int]]:
    if not _need(view, 6):
        return None
    first, count = struct.unpack_from(">HH", view, 2)
    end = 6 + 6 * count
    if not _need(view, end):
        return None
    colours = tuple(struct.unpack_from(">HHH", view, 6 + 6 * i) for i in range(count))
    return ColourMapEntries(first, colours), end

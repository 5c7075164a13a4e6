"""The RFB client connection, sans-IO (h11 style). This file owns the client state machine.

Same face as agent.rfb.server: ``receive_data(data)`` (``b""`` = EOF),
``next_event()`` -> event or ``NEED_DATA``, ``data_to_send()`` for everything
we must write. Protocol-mandated answers (the handshake, Fence responses) are
written automatically. Every rectangle the server can send is decoded into
``framebuffer``, a numpy (H, W, 4) uint8 BGRA array with alpha 255, through
agent.rfb.decode; pseudo-encodings (DesktopSize, ExtendedDesktopSize, LastRect,
Cursor) are handled here.

States::

    AWAIT_VERSION --ProtocolVersion--> AWAIT_SECURITY_TYPES (3.7, 3.8) | AWAIT_SECURITY_33 (3.3)
    AWAIT_SECURITY_* --None--> AWAIT_SECURITY_RESULT (3.8) | AWAIT_SERVER_INIT (3.3, 3.7)
                     --VNC--> AWAIT_CHALLENGE --response--> AWAIT_SECURITY_RESULT
    AWAIT_SECURITY_RESULT --ok--> AWAIT_SERVER_INIT ; --failed--> CLOSED (AuthenticationFailed)
    AWAIT_SERVER_INIT --ServerInit--> NORMAL (SetPixelFormat / SetEncodings written if configured)
    NORMAL: server messages; a FramebufferUpdate is consumed rectangle by rectangle
    any --EOF--> CLOSED ; any --garbage--> ERROR (RemoteProtocolError raised)

Changing the pixel format takes effect at once: call ``set_pixel_format``
only while no update is in flight (before the first request, or right after a
FramebufferUpdate event), as vncdotool and most simple viewers do.
"""
from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence, Tuple

import numpy as np

from agent.rfb.decode import DecodeError, DecoderState, decode_cursor, decode_rect
from agent.rfb import constants as C
from agent.rfb import messages as M
from agent.rfb import vncauth
from agent.sansio import NEED_DATA, LocalProtocolError, ProtocolError, ReceiveBuffer, RemoteProtocolError
from agent.rfb.pixelformat import PixelFormat, PixelFormatError

CLIENT_VERSIONS = ((3, 3), (3, 7), (3, 8))
DEFAULT_ENCODINGS: Tuple[int, ...] = (
    C.ENC_TIGHT, C.ENC_ZRLE, C.ENC_HEXTILE, C.ENC_RRE, C.ENC_COPYRECT, C.ENC_RAW,
    C.ENC_DESKTOP_SIZE, C.ENC_EXTENDED_DESKTOP_SIZE, C.ENC_LAST_RECT, C.ENC_CURSOR,
    C.ENC_FENCE, C.ENC_CONTINUOUS_UPDATES,
)
# Encodings whose payload agent.rfb.decode.decode_rect understands.
PIXEL_ENCODINGS = frozenset({C.ENC_RAW, C.ENC_COPYRECT, C.ENC_RRE, C.ENC_HEXTILE, C.ENC_ZRLE, C.ENC_TIGHT})
MAX_UPDATE_RECTS = 1 << 20  # rectangles in one LastRect-terminated update
MAX_FRAMEBUFFER_PIXELS = 8192 * 8192  # 256 MiB of BGRA: a bigger claim is refused, not allocated


class ClientState(enum.Enum):
    AWAIT_VERSION = "await-version"
    AWAIT_SECURITY_TYPES = "await-security-types"
    AWAIT_SECURITY_33 = "await-security-3.3"
    AWAIT_CHALLENGE = "await-challenge"
    AWAIT_SECURITY_RESULT = "await-security-result"
    AWAIT_SERVER_INIT = "await-server-init"
    NORMAL = "normal"
    CLOSED = "closed"
    ERROR = "error"


@dataclass
class _UpdateProgress:
    remaining: Optional[int]  # None: until LastRect
    nbytes: int = 4
    rects: list = field(default_factory=list)
    header: Optional[Tuple[int, int, int, int, int]] = None


_SendStates = {ClientState.NORMAL}


class RFBClient:
    """One RFB connection, client side (see the module docstring for the states)."""

    def __init__(self, *, password: Optional[str] = None, shared: bool = True,
                 pixel_format: Optional[PixelFormat] = None,
                 encodings: Optional[Sequence[int]] = DEFAULT_ENCODINGS,
                 version: Tuple[int, int] = (3, 8)) -> None:
        if version not in CLIENT_VERSIONS:
            raise ValueError(f"version must be one of {CLIENT_VERSIONS}, got {version}")
        if pixel_format is not None:
            pixel_format.validate()
        self.__password = password  # name-mangled; never in repr or errors
        self._shared = shared
        self._wanted_pf = pixel_format
        self._wanted_encodings = tuple(encodings) if encodings is not None else None
        self._max_version = version
        self.state = ClientState.AWAIT_VERSION
        self.version: Optional[Tuple[int, int]] = None
        self.security_type: Optional[int] = None
        self.name = ""
        self.width = 0
        self.height = 0
        self.server_pixel_format: Optional[PixelFormat] = None
        self.pixel_format: Optional[PixelFormat] = None
        self.encodings: Tuple[int, ...] = ()
        self.framebuffer = np.zeros((0, 0, 4), np.uint8)
        self._decoder = DecoderState()
        self._buf = ReceiveBuffer()
        self._out = bytearray()
        self._eof = False
        self._close_reason = ""
        self._update: Optional[_UpdateProgress] = None
        self._pending: deque = deque()  # events ready before the one a step returns
        self._readers: dict[ClientState, Callable[[], object]] = {
            ClientState.AWAIT_VERSION: self._step_version,
            ClientState.AWAIT_SECURITY_TYPES: self._step_security_types,
            ClientState.AWAIT_SECURITY_33: self._step_security_33,
            ClientState.AWAIT_CHALLENGE: self._step_challenge,
            ClientState.AWAIT_SECURITY_RESULT: self._step_security_result,
            ClientState.AWAIT_SERVER_INIT: self._step_server_init,
            ClientState.NORMAL: self._step_normal,
        }

    def __repr__(self) -> str:
        return f"<RFBClient {self.width}x{self.height} state={self.state.value} version={self.version}>"

    # ---------------------------------------------------------------- I/O face

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the server; ``b""`` means EOF."""
        if self.state is ClientState.ERROR:
            raise LocalProtocolError("client connection is in ERROR and accepts no more data")
        if self._eof and data:
            raise LocalProtocolError("data received after EOF")
        if not data:
            self._eof = True
            return
        if self.state is not ClientState.CLOSED:
            self._buf.append(data)

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    @property
    def update_in_progress(self) -> bool:
        return self._update is not None

    def next_event(self) -> object:
        if self.state is ClientState.ERROR:
            raise LocalProtocolError("client connection is in ERROR")
        try:
            while True:
                if self._pending:
                    return self._pending.popleft()
                if self.state is ClientState.CLOSED:
                    return M.ConnectionClosed(self._close_reason)
                event = self._readers[self.state]()
                if event is NEED_DATA:
                    return self._need_data()
                if event is not None:
                    return event
        except ProtocolError:
            self.state = ClientState.ERROR
            raise
        except DecodeError as exc:
            self.state = ClientState.ERROR
            raise RemoteProtocolError(f"undecodable rectangle: {exc}") from None
        except (ValueError, OverflowError) as exc:
            self.state = ClientState.ERROR
            raise RemoteProtocolError(f"malformed message: {exc}") from None

    def _need_data(self) -> object:
        if self._eof:
            if len(self._buf) or self._update is not None:
                raise RemoteProtocolError(
                    f"connection closed in the middle of a message (state {self.state.value})")
            self._close("server closed the connection")
            return M.ConnectionClosed(self._close_reason)
        return NEED_DATA

    def _close(self, reason: str) -> None:
        self.state = ClientState.CLOSED
        self._close_reason = reason

    def _read(self, reader: Callable[[memoryview], Optional[Tuple[object, int]]]) -> object:
        """Run a messages.py reader on the buffer; consume and return its value, or NEED_DATA."""
        with self._buf.view() as view:
            got = reader(view)
        if got is None:
            return NEED_DATA
        value, n = got
        self._buf.consume(n)
        if self._update is not None:
            self._update.nbytes += n
        return value

    # ---------------------------------------------------------------- handshake

    def _step_version(self) -> object:
        got = self._read(M.read_version)
        if got is NEED_DATA:
            return got
        major, minor = got  # type: ignore[misc]
        if major != 3 or minor < 3:
            raise RemoteProtocolError(f"server speaks RFB {major}.{minor}; we need 3.3 or later")
        offered = (3, 8) if minor >= 8 else (3, 7) if minor == 7 else (3, 3)
        self.version = min(offered, self._max_version)
        self._out += M.write_version(*self.version)
        self.state = ClientState.AWAIT_SECURITY_33 if self.version == (3, 3) else ClientState.AWAIT_SECURITY_TYPES
        return None

    def _choose_security(self, offered: Sequence[int]) -> object:
        if self.__password is not None and C.SEC_VNC_AUTH in offered:
            return C.SEC_VNC_AUTH
        if C.SEC_NONE in offered:
            return C.SEC_NONE
        if C.SEC_VNC_AUTH in offered:
            self._close("the server requires a password")
            return M.AuthenticationFailed("the server requires a password (VNC authentication)")
        raise RemoteProtocolError(f"the server offers no security type we support: {list(offered)}")

    def _step_security_types(self) -> object:
        got = self._read(M.read_security_types)
        if got is NEED_DATA:
            return got
        if isinstance(got, M.ConnectionClosed):
            self._close(f"server refused the connection: {got.reason}")
            return M.ConnectionClosed(self._close_reason)
        choice = self._choose_security(got)  # type: ignore[arg-type]
        if not isinstance(choice, int):
            return choice
        self._out += bytes([choice])
        self._begin_security(choice)
        return None

    def _step_security_33(self) -> object:
        got = self._read(M.read_security_type_33)
        if got is NEED_DATA:
            return got
        if isinstance(got, M.ConnectionClosed):
            self._close(f"server refused the connection: {got.reason}")
            return M.ConnectionClosed(self._close_reason)
        if got not in (C.SEC_NONE, C.SEC_VNC_AUTH):
            raise RemoteProtocolError(f"server chose security type {got}, which we do not support")
        if got == C.SEC_VNC_AUTH and self.__password is None:
            self._close("the server requires a password")
            return M.AuthenticationFailed("the server requires a password (VNC authentication)")
        self._begin_security(got)  # type: ignore[arg-type]
        return None

    def _begin_security(self, sec_type: int) -> None:
        self.security_type = sec_type
        if sec_type == C.SEC_VNC_AUTH:
            self.state = ClientState.AWAIT_CHALLENGE
        elif self.version == (3, 8):
            self.state = ClientState.AWAIT_SECURITY_RESULT
        else:
            self._send_client_init()

    def _step_challenge(self) -> object:
        n = vncauth.CHALLENGE_SIZE
        got = self._read(lambda v: (bytes(v[:n]), n) if len(v) >= n else None)
        if got is NEED_DATA:
            return got
        assert self.__password is not None
        self._out += vncauth.vnc_auth_response(self.__password, got)  # type: ignore[arg-type]
        self.state = ClientState.AWAIT_SECURITY_RESULT
        return None

    def _step_security_result(self) -> object:
        got = self._read(lambda v: M.read_security_result(v, with_reason=self.version == (3, 8)))
        if got is NEED_DATA:
            return got
        if isinstance(got, M.AuthenticationFailed):
            self._close(got.reason)
            return got
        self._send_client_init()
        return None

    def _send_client_init(self) -> None:
        self._out += M.write_client_init(self._shared)
        self.state = ClientState.AWAIT_SERVER_INIT

    def _step_server_init(self) -> object:
        got = self._read(M.read_server_init)
        if got is NEED_DATA:
            return got
        assert isinstance(got, M.ServerInit)
        self.name = got.name
        self.server_pixel_format = got.pixel_format
        self.pixel_format = got.pixel_format
        self._resize(got.width, got.height)
        self.state = ClientState.NORMAL
        if self._wanted_pf is not None:
            self.set_pixel_format(self._wanted_pf)
        else:
            try:
                got.pixel_format.validate()
            except PixelFormatError as exc:
                raise RemoteProtocolError(f"server pixel format unusable ({exc}); ask for one") from None
        if self._wanted_encodings is not None:
            self.set_encodings(self._wanted_encodings)
        return got

    def _resize(self, width: int, height: int) -> None:
        if width * height > MAX_FRAMEBUFFER_PIXELS:
            raise RemoteProtocolError(f"server framebuffer of {width}x{height} exceeds our limit "
                                      f"of {MAX_FRAMEBUFFER_PIXELS} pixels")
        old = self.framebuffer
        fb = np.zeros((height, width, 4), np.uint8)
        fb[..., 3] = 255
        h, w = min(height, old.shape[0]), min(width, old.shape[1])
        fb[:h, :w] = old[:h, :w]
        self.framebuffer = fb
        self.width, self.height = width, height

    # ---------------------------------------------------------------- normal phase

    def _step_normal(self) -> object:
        if self._update is not None:
            return self._step_rect()
        with self._buf.view() as view:
            if not len(view):
                return NEED_DATA
            msg_type = view[0]
        if msg_type == C.MSG_FRAMEBUFFER_UPDATE:
            with self._buf.view() as view:
                got = M.read_update_header(view)
            if got is None:
                return NEED_DATA
            count, n = got
            self._buf.consume(n)
            remaining = None if count == M.LAST_RECT_COUNT and C.ENC_LAST_RECT in self.encodings else count
            self._update = _UpdateProgress(remaining)
            if remaining == 0:
                self._finish_update()
            return None
        if msg_type == C.MSG_BELL:
            self._buf.consume(1)
            return M.Bell()
        if msg_type == C.MSG_SERVER_CUT_TEXT:
            return self._read(M.read_server_cut_text)
        if msg_type == C.MSG_END_OF_CONTINUOUS_UPDATES:
            self._buf.consume(1)
            return M.EndOfContinuousUpdates()
        if msg_type == C.MSG_SERVER_FENCE:
            fence = self._read(M.read_fence)
            if isinstance(fence, M.Fence) and fence.is_request:
                answer = M.fence_response(fence)
                self._out += M.write_fence(C.MSG_CLIENT_FENCE, answer.flags, answer.payload)
            return fence
        if msg_type == C.MSG_SET_COLOUR_MAP_ENTRIES:
            return self._read(M.read_colour_map_entries)
        raise RemoteProtocolError(f"unknown server message type {msg_type}")

    def _finish_update(self) -> None:
        assert self._update is not None
        self._pending.append(M.FramebufferUpdate(self._update.rects, self._update.nbytes))
        self._update = None

    def _step_rect(self) -> object:
        upd = self._update
        assert upd is not None
        if upd.header is None:
            header = self._read(M.read_rect_header)
            if header is NEED_DATA:
                return header
            upd.header = header  # type: ignore[assignment]
            x, y, w, h, enc = upd.header  # type: ignore[misc]
            if enc in PIXEL_ENCODINGS:
                if enc != C.ENC_RAW and enc not in self.encodings:
                    raise RemoteProtocolError(f"server used encoding {enc}, which we did not offer")
                if x + w > self.width or y + h > self.height:
                    raise RemoteProtocolError(
                        f"rectangle {w}x{h} at ({x},{y}) lies outside the {self.width}x{self.height} framebuffer")
        x, y, w, h, enc = upd.header
        if enc in PIXEL_ENCODINGS:
            assert self.pixel_format is not None
            with self._buf.view() as view:
                consumed = decode_rect(self._decoder, enc, view, x, y, w, h, self.framebuffer, self.pixel_format)
            if consumed is None:
                return NEED_DATA
            self._buf.consume(consumed)
            upd.nbytes += consumed
            self._rect_done()
            return None
        if enc == C.ENC_LAST_RECT:
            upd.header = None
            self._finish_update()
            return None
        if enc == C.ENC_DESKTOP_SIZE:
            event = self._desktop_resized(M.DesktopResized(w, h))
            self._rect_done()
            return event
        if enc == C.ENC_EXTENDED_DESKTOP_SIZE:
            screens = self._read(M.read_extended_desktop_size_payload)
            if screens is NEED_DATA:
                return screens
            event = self._desktop_resized(M.DesktopResized(w, h, reason=x, status=y, screens=screens))  # type: ignore[arg-type]
            self._rect_done()
            return event
        if enc == C.ENC_CURSOR:
            return self._step_cursor(x, y, w, h)
        raise RemoteProtocolError(f"server sent a rectangle with unknown encoding {enc}")

    def _step_cursor(self, hot_x: int, hot_y: int, w: int, h: int) -> object:
        assert self._update is not None and self.pixel_format is not None
        if C.ENC_CURSOR not in self.encodings:
            raise RemoteProtocolError("server sent a Cursor rectangle we did not ask for")
        with self._buf.view() as view:
            got = decode_cursor(view, w, h, self.pixel_format)
        if got is None:
            return NEED_DATA
        pixels, consumed = got
        self._buf.consume(consumed)
        self._update.nbytes += consumed
        event = M.CursorChanged(hot_x, hot_y, pixels)
        self._rect_done()
        return event

    def _desktop_resized(self, event: M.DesktopResized) -> M.DesktopResized:
        if event.status == M.EDS_STATUS_OK and (event.width, event.height) != (self.width, self.height):
            if event.width <= 0 or event.height <= 0:
                raise RemoteProtocolError(f"server resized the desktop to {event.width}x{event.height}")
            self._resize(event.width, event.height)
        return event

    def _rect_done(self) -> None:
        upd = self._update
        assert upd is not None and upd.header is not None
        upd.rects.append(upd.header)
        upd.header = None
        if len(upd.rects) > MAX_UPDATE_RECTS:
            raise RemoteProtocolError(f"update with more than {MAX_UPDATE_RECTS} rectangles")
        if upd.remaining is not None:
            upd.remaining -= 1
            if upd.remaining == 0:
                self._finish_update()

    # ---------------------------------------------------------------- output

    def _require(self, action: str) -> None:
        if self.state not in _SendStates:
            raise LocalProtocolError(f"client cannot {action} in state {self.state.value}")

    def set_pixel_format(self, pf: PixelFormat) -> None:
        self._require("set_pixel_format")
        pf.validate()
        self.pixel_format = pf
        self._out += M.write_set_pixel_format(pf)

    def set_encodings(self, encodings: Sequence[int]) -> None:
        self._require("set_encodings")
        if len(encodings) > M.MAX_ENCODINGS:
            raise LocalProtocolError(f"at most {M.MAX_ENCODINGS} encodings")
        self.encodings = tuple(encodings)
        self._out += M.write_set_encodings(self.encodings)

    def request_update(self, incremental: bool = True,
                       region: Optional[Tuple[int, int, int, int]] = None) -> None:
        self._require("request_update")
        x, y, w, h = region if region is not None else (0, 0, self.width, self.height)
        self._out += M.write_update_request(incremental, x, y, w, h)

    def key_event(self, keysym: int, down: bool) -> None:
        self._require("key_event")
        self._out += M.write_key_event(down, keysym)

    def pointer_event(self, x: int, y: int, button_mask: int = 0) -> None:
        self._require("pointer_event")
        self._out += M.write_pointer_event(button_mask, x, y)

    def cut_text(self, text: str) -> None:
        self._require("cut_text")
        self._out += M.write_client_cut_text(text)

    def enable_continuous_updates(self, enable: bool = True,
                                  region: Optional[Tuple[int, int, int, int]] = None) -> None:
        self._require("enable_continuous_updates")
        if C.ENC_CONTINUOUS_UPDATES not in self.encodings:
            raise LocalProtocolError("offer the ContinuousUpdates pseudo-encoding first")
        x, y, w, h = region if region is not None else (0, 0, self.width, self.height)
        self._out += M.write_enable_continuous_updates(enable, x, y, w, h)

    def send_fence(self, flags: int, payload: bytes = b"") -> None:
        self._require("send_fence")
        self._out += M.write_fence(C.MSG_CLIENT_FENCE, flags, payload)

    def set_desktop_size(self, width: int, height: int) -> None:
        self._require("set_desktop_size")
        self._out += M.write_set_desktop_size(width, height, [M.Screen(0, 0, 0, width, height, 0)])

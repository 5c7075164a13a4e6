"""The RFB client connection, sans-IO (h11 style). This file owns the client state machine.

Same face as agent.rfb.server: ``receive_data(data)`` (``b""`` = EOF),
``next_event()`` -> event or ``NEED_DATA``, ``data_to_send()`` for everything
we must write. Protocol-mandated answers (the handshake, Fence responses) are
written automatically. Every rectangle the server can send is decoded into
``framebuffer``, a numpy (H, W, 4) uint8 BGRA array with alpha 255, through
agent.rfb.decode; pseudo-encodings (DesktopSize, ExtendedDesktopSize, LastRect,
Cursor) are handled here.

The machine is data, as in h11's ``_state.py``: ``TRANSITIONS`` maps (role,
state, event) to the next state (see agent.rfb.transitions), ``READERS`` gives
the reader of the server's bytes per state and ``_HANDLERS`` the method that
applies what it read; every state change goes through ``_move``, which swaps
the reader with the state::

    AWAIT_VERSION --our ProtocolVersion (the lower of the server's and ours)-->
        3.3: AWAIT_SECURITY_33 ; 3.7, 3.8: AWAIT_SECURITY_TYPES
    AWAIT_SECURITY_TYPES --our SecurityType--> | AWAIT_SECURITY_33 --the server's SecurityType-->
        None: AWAIT_SECURITY_RESULT ; VNC: AWAIT_CHALLENGE --VncAuthChallenge--> AWAIT_SECURITY_RESULT
    AWAIT_SECURITY_RESULT --AuthenticationSucceeded (implied for None before 3.8)--> AWAIT_SERVER_INIT
        (ClientInit written) ; --AuthenticationFailed--> CLOSED
    AWAIT_SECURITY_* --our AuthenticationFailed (the server wants a password we lack)--> CLOSED
    AWAIT_SERVER_INIT --ServerInit--> NORMAL (SetPixelFormat / SetEncodings written if configured)
    NORMAL --server messages, and ours--> NORMAL
    any --ConnectionClosed (EOF, or a refusal with a reason)--> CLOSED ; any --garbage--> ERROR

In NORMAL a FramebufferUpdate is read in pieces, the state staying NORMAL:
its header swaps in the reader of rectangle headers, each rectangle header the
reader of its payload, and the last rectangle the message reader again.

Changing the pixel format takes effect at once: call ``set_pixel_format``
only while no update is in flight (before the first request, or right after a
FramebufferUpdate event), as vncdotool and most simple viewers do.
"""
from __future__ import annotations

from collections import deque
from functools import partial
from typing import Callable, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from agent.rfb import client_messages as CM
from agent.rfb import constants as C
from agent.rfb import handshake as H
from agent.rfb import messages as M
from agent.rfb import server_messages as SM
from agent.rfb import vncauth
from agent.rfb.decode import DecodeError, decode_cursor
from agent.rfb.framebuffer import Framebuffer, RectHeader, UpdateProgress
from agent.rfb.pixelformat import PixelFormat, PixelFormatError
from agent.rfb.transitions import EventKey, KeyEnum, Role, next_state
from agent.rfb.wire import Reader, write_fence
from agent.sansio import NEED_DATA, LocalProtocolError, ProtocolError, ReceiveBuffer, RemoteProtocolError

CLIENT_VERSIONS = ((3, 3), (3, 7), (3, 8))
DEFAULT_ENCODINGS: Tuple[int, ...] = (
    C.ENC_TIGHT, C.ENC_ZRLE, C.ENC_HEXTILE, C.ENC_RRE, C.ENC_COPYRECT, C.ENC_RAW,
    C.ENC_DESKTOP_SIZE, C.ENC_EXTENDED_DESKTOP_SIZE, C.ENC_LAST_RECT, C.ENC_CURSOR,
    C.ENC_FENCE, C.ENC_CONTINUOUS_UPDATES,
)
# Encodings whose payload agent.rfb.decode.decode_rect understands.
PIXEL_ENCODINGS = frozenset({C.ENC_RAW, C.ENC_COPYRECT, C.ENC_RRE, C.ENC_HEXTILE, C.ENC_ZRLE, C.ENC_TIGHT})


class ClientState(KeyEnum):
    AWAIT_VERSION = "await-version"
    AWAIT_SECURITY_TYPES = "await-security-types"
    AWAIT_SECURITY_33 = "await-security-3.3"
    AWAIT_CHALLENGE = "await-challenge"
    AWAIT_SECURITY_RESULT = "await-security-result"
    AWAIT_SERVER_INIT = "await-server-init"
    NORMAL = "normal"
    CLOSED = "closed"
    ERROR = "error"


# ---------------------------------------------------------------- the state machine

S = ClientState
CLIENT, SERVER = Role.CLIENT, Role.SERVER
_LIVE = [state for state in S if state not in (S.CLOSED, S.ERROR)]
# What the server may send once the handshake is over (read_server_message returns these).
SERVER_MESSAGES = (M.FramebufferUpdateHeader, M.ColourMapEntries, M.Bell, M.ServerCutText,
                   M.EndOfContinuousUpdates, M.Fence)
# What our owner may send then, by the method it calls.
SENDS = {"set_pixel_format": M.SetPixelFormat, "set_encodings": M.SetEncodings,
         "request_update": M.FramebufferUpdateRequest, "key_event": M.KeyEvent, "pointer_event": M.PointerEvent,
         "cut_text": M.ClientCutText, "enable_continuous_updates": M.EnableContinuousUpdates,
         "send_fence": M.Fence, "set_desktop_size": M.SetDesktopSize}

TRANSITIONS: dict[Tuple[Role, ClientState, EventKey], ClientState] = {
    (CLIENT, S.AWAIT_VERSION, (M.ProtocolVersion, (3, 3))): S.AWAIT_SECURITY_33,
    (CLIENT, S.AWAIT_VERSION, (M.ProtocolVersion, (3, 7))): S.AWAIT_SECURITY_TYPES,
    (CLIENT, S.AWAIT_VERSION, (M.ProtocolVersion, (3, 8))): S.AWAIT_SECURITY_TYPES,
    (CLIENT, S.AWAIT_SECURITY_TYPES, (M.SecurityType, C.SEC_NONE)): S.AWAIT_SECURITY_RESULT,
    (CLIENT, S.AWAIT_SECURITY_TYPES, (M.SecurityType, C.SEC_VNC_AUTH)): S.AWAIT_CHALLENGE,
    (CLIENT, S.AWAIT_SECURITY_TYPES, M.AuthenticationFailed): S.CLOSED,
    (SERVER, S.AWAIT_SECURITY_33, (M.SecurityType, C.SEC_NONE)): S.AWAIT_SECURITY_RESULT,
    (SERVER, S.AWAIT_SECURITY_33, (M.SecurityType, C.SEC_VNC_AUTH)): S.AWAIT_CHALLENGE,
    (CLIENT, S.AWAIT_SECURITY_33, M.AuthenticationFailed): S.CLOSED,
    (SERVER, S.AWAIT_CHALLENGE, M.VncAuthChallenge): S.AWAIT_SECURITY_RESULT,
    (SERVER, S.AWAIT_SECURITY_RESULT, M.AuthenticationSucceeded): S.AWAIT_SERVER_INIT,
    (SERVER, S.AWAIT_SECURITY_RESULT, M.AuthenticationFailed): S.CLOSED,
    (SERVER, S.AWAIT_SERVER_INIT, M.ServerInit): S.NORMAL,
    **{(SERVER, S.NORMAL, message): S.NORMAL for message in SERVER_MESSAGES},
    **{(CLIENT, S.NORMAL, message): S.NORMAL for message in SENDS.values()},
    **{(SERVER, state, M.ConnectionClosed): S.CLOSED for state in _LIVE},
}

# Which reader parses the server's bytes in which state (none once CLOSED or in ERROR). A reason
# follows a failed SecurityResult in 3.8 only, so that state has a reader per agreed version.
READERS: dict[ClientState, Union[Reader, dict[Tuple[int, int], Reader]]] = {
    S.AWAIT_VERSION: H.read_version,
    S.AWAIT_SECURITY_TYPES: H.read_security_types,
    S.AWAIT_SECURITY_33: H.read_security_type_33,
    S.AWAIT_CHALLENGE: H.read_vnc_challenge,
    S.AWAIT_SECURITY_RESULT: {(3, 3): partial(H.read_security_result, with_reason=False),
                              (3, 7): partial(H.read_security_result, with_reason=False),
                              (3, 8): partial(H.read_security_result, with_reason=True)},
    S.AWAIT_SERVER_INIT: H.read_server_init,
    S.NORMAL: SM.read_server_message,
}
del S


def transition(role: Role, state: ClientState, event: EventKey, action: Optional[str] = None) -> ClientState:
    """The client's state after ``role``'s ``event`` in ``state``, or the protocol error for a miss."""
    return next_state(TRANSITIONS, CLIENT, role, state, event, action)


class _Rect(NamedTuple):
    """One rectangle of an update, payload read (and decoded); ``event`` is what it means for the owner, if anything."""
    header: RectHeader
    event: object = None


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
        self._reader: Optional[Reader] = READERS[self.state]  # type: ignore[assignment]
        self.version: Optional[Tuple[int, int]] = None
        self.security_type: Optional[int] = None
        self.name = ""
        self.server_pixel_format: Optional[PixelFormat] = None
        self.pixel_format: Optional[PixelFormat] = None
        self.encodings: Tuple[int, ...] = ()
        self._screen = Framebuffer()
        self._buf = ReceiveBuffer()
        self._out = bytearray()
        self._eof = False
        self._close_reason = ""
        self._update: Optional[UpdateProgress] = None
        self._pending: deque = deque()  # events ready before the one a step returns

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
    def framebuffer(self) -> np.ndarray:
        return self._screen.pixels

    @property
    def width(self) -> int:
        return self._screen.width

    @property
    def height(self) -> int:
        return self._screen.height

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
                if self._reader is None:  # CLOSED
                    return M.ConnectionClosed(self._close_reason)
                with self._buf.view() as view:
                    got = self._reader(view)
                if got is None:
                    return self._need_data()
                event, consumed = got
                self._buf.consume(consumed)
                if self._update is not None:
                    self._update.nbytes += consumed
                answer = _HANDLERS[self.state](self, event)
                if answer is not None:
                    return answer
        except ProtocolError:
            self._error()
            raise
        except DecodeError as exc:
            self._error()
            raise RemoteProtocolError(f"undecodable rectangle: {exc}") from None
        except (ValueError, OverflowError) as exc:
            self._error()
            raise RemoteProtocolError(f"malformed message: {exc}") from None

    def _need_data(self) -> object:
        if self._eof:
            if len(self._buf) or self._update is not None:
                raise RemoteProtocolError(
                    f"connection closed in the middle of a message (state {self.state.value})")
            return self._closed("server closed the connection")
        return NEED_DATA

    def _move(self, role: Role, event: EventKey, action: Optional[str] = None) -> None:
        """Apply one transition from the table (a miss raises); a new state brings its reader."""
        target = transition(role, self.state, event, action)
        if target is not self.state:
            self.state = target
            reader = READERS.get(target)
            self._reader = reader[self.version] if isinstance(reader, dict) else reader  # type: ignore[index]

    def _closed(self, reason: str) -> M.ConnectionClosed:
        self._move(SERVER, M.ConnectionClosed)
        self._close_reason = reason
        return M.ConnectionClosed(reason)

    def _error(self) -> None:
        self.state = ClientState.ERROR
        self._reader = None

    # ---------------------------------------------------------------- handshake

    def _on_version(self, version: M.ProtocolVersion) -> None:
        major, minor = version
        if major != 3 or minor < 3:
            raise RemoteProtocolError(f"server speaks RFB {major}.{minor}; we need 3.3 or later")
        offered = (3, 8) if minor >= 8 else (3, 7) if minor == 7 else (3, 3)
        self.version = min(offered, self._max_version)
        self._move(CLIENT, (M.ProtocolVersion, self.version))
        self._out += H.write_version(*self.version)

    def _on_security_types(self, offered: object) -> Optional[object]:
        if isinstance(offered, M.ConnectionClosed):
            return self._closed(f"server refused the connection: {offered.reason}")
        assert isinstance(offered, tuple)
        if self.__password is not None and C.SEC_VNC_AUTH in offered:
            choice = C.SEC_VNC_AUTH
        elif C.SEC_NONE in offered:
            choice = C.SEC_NONE
        elif C.SEC_VNC_AUTH in offered:
            return self._password_missing()
        else:
            raise RemoteProtocolError(f"the server offers no security type we support: {list(offered)}")
        self._move(CLIENT, (M.SecurityType, choice))
        self._out += H.write_security_type(choice)
        self._begin_security(choice)
        return None

    def _on_security_33(self, sec_type: object) -> Optional[object]:
        if isinstance(sec_type, M.ConnectionClosed):
            return self._closed(f"server refused the connection: {sec_type.reason}")
        if sec_type not in (C.SEC_NONE, C.SEC_VNC_AUTH):
            raise RemoteProtocolError(f"server chose security type {sec_type}, which we do not support")
        if sec_type == C.SEC_VNC_AUTH and self.__password is None:
            return self._password_missing()
        self._move(SERVER, (M.SecurityType, sec_type))
        self._begin_security(sec_type)  # type: ignore[arg-type]
        return None

    def _password_missing(self) -> M.AuthenticationFailed:
        self._move(CLIENT, M.AuthenticationFailed)
        self._close_reason = "the server requires a password"
        return M.AuthenticationFailed("the server requires a password (VNC authentication)")

    def _begin_security(self, sec_type: int) -> None:
        self.security_type = sec_type
        if sec_type == C.SEC_NONE and self.version != (3, 8):  # 3.3 and 3.7 send no SecurityResult for None
            self._security_passed()

    def _on_challenge(self, challenge: M.VncAuthChallenge) -> None:
        assert self.__password is not None
        self._move(SERVER, M.VncAuthChallenge)
        self._out += vncauth.vnc_auth_response(self.__password, challenge.challenge)

    def _on_security_result(self, result: object) -> Optional[object]:
        if isinstance(result, M.AuthenticationFailed):
            self._move(SERVER, M.AuthenticationFailed)
            self._close_reason = result.reason
            return result
        self._security_passed()
        return None

    def _security_passed(self) -> None:
        self._move(SERVER, M.AuthenticationSucceeded)
        self._out += H.write_client_init(self._shared)

    def _on_server_init(self, init: M.ServerInit) -> object:
        self._move(SERVER, M.ServerInit)
        self.name = init.name
        self.server_pixel_format = init.pixel_format
        self.pixel_format = init.pixel_format
        self._screen.resize(init.width, init.height)
        if self._wanted_pf is not None:
            self.set_pixel_format(self._wanted_pf)
        else:
            try:
                init.pixel_format.validate()
            except PixelFormatError as exc:
                raise RemoteProtocolError(f"server pixel format unusable ({exc}); ask for one") from None
        if self._wanted_encodings is not None:
            self.set_encodings(self._wanted_encodings)
        return init

    # ---------------------------------------------------------------- normal phase

    def _on_normal(self, event: object) -> object:
        if self._update is None:
            return self._on_message(event)
        if isinstance(event, _Rect):
            return self._on_rect(event)
        return self._on_rect_header(event)  # type: ignore[arg-type]

    def _on_message(self, msg: object) -> object:
        self._move(SERVER, type(msg))
        if isinstance(msg, M.FramebufferUpdateHeader):
            remaining = None if msg.count == M.LAST_RECT_COUNT and C.ENC_LAST_RECT in self.encodings else msg.count
            self._update = UpdateProgress(remaining)
            if remaining == 0:
                self._finish_update()
            else:
                self._reader = SM.read_rect_header
            return None
        if isinstance(msg, M.Fence) and msg.is_request:
            answer = M.fence_response(msg)
            self._out += write_fence(C.MSG_CLIENT_FENCE, answer.flags, answer.payload)
        return msg

    def _on_rect_header(self, header: RectHeader) -> object:
        """A rectangle header of the update in flight: swap in the reader of its payload (or apply it)."""
        x, y, w, h, enc = header
        if enc in PIXEL_ENCODINGS:
            if enc != C.ENC_RAW and enc not in self.encodings:
                raise RemoteProtocolError(f"server used encoding {enc}, which we did not offer")
            if x + w > self.width or y + h > self.height:
                raise RemoteProtocolError(
                    f"rectangle {w}x{h} at ({x},{y}) lies outside the {self.width}x{self.height} framebuffer")
            self._reader = partial(self._read_pixels, header)
            return None
        if enc == C.ENC_LAST_RECT:
            self._finish_update()
            return None
        if enc == C.ENC_DESKTOP_SIZE:
            return self._on_rect(_Rect(header, M.DesktopResized(w, h)))
        if enc == C.ENC_EXTENDED_DESKTOP_SIZE:
            self._reader = partial(self._read_layout, header)
            return None
        if enc == C.ENC_CURSOR:
            self._reader = partial(self._read_cursor, header)
            return None
        raise RemoteProtocolError(f"server sent a rectangle with unknown encoding {enc}")

    def _read_pixels(self, header: RectHeader, view: memoryview) -> Optional[Tuple[_Rect, int]]:
        assert self.pixel_format is not None
        consumed = self._screen.decode(header, view, self.pixel_format)
        return None if consumed is None else (_Rect(header), consumed)

    def _read_layout(self, header: RectHeader, view: memoryview) -> Optional[Tuple[_Rect, int]]:
        got = SM.read_extended_desktop_size_payload(view)
        if got is None:
            return None
        x, y, w, h, _ = header
        return _Rect(header, M.DesktopResized(w, h, reason=x, status=y, screens=got[0])), got[1]

    def _read_cursor(self, header: RectHeader, view: memoryview) -> Optional[Tuple[_Rect, int]]:
        if C.ENC_CURSOR not in self.encodings:  # checked at every attempt, the header's as the payload's
            raise RemoteProtocolError("server sent a Cursor rectangle we did not ask for")
        x, y, w, h, _ = header
        assert self.pixel_format is not None
        got = decode_cursor(view, w, h, self.pixel_format)
        if got is None:
            return None
        return _Rect(header, M.CursorChanged(x, y, got[0])), got[1]

    def _on_rect(self, rect: _Rect) -> object:
        if isinstance(rect.event, M.DesktopResized):
            self._screen.apply(rect.event)
        self._reader = SM.read_rect_header
        assert self._update is not None
        if self._update.add(rect.header):
            self._finish_update()
        return rect.event

    def _finish_update(self) -> None:
        assert self._update is not None
        self._pending.append(M.FramebufferUpdate(self._update.rects, self._update.nbytes))
        self._update = None
        self._reader = READERS[ClientState.NORMAL]  # type: ignore[assignment]

    # ---------------------------------------------------------------- output

    def _send(self, action: str) -> None:
        self._move(CLIENT, SENDS[action], action)

    def set_pixel_format(self, pf: PixelFormat) -> None:
        self._send("set_pixel_format")
        pf.validate()
        self.pixel_format = pf
        self._out += CM.write_set_pixel_format(pf)

    def set_encodings(self, encodings: Sequence[int]) -> None:
        self._send("set_encodings")
        if len(encodings) > M.MAX_ENCODINGS:
            raise LocalProtocolError(f"at most {M.MAX_ENCODINGS} encodings")
        self.encodings = tuple(encodings)
        self._out += CM.write_set_encodings(self.encodings)

    def request_update(self, incremental: bool = True,
                       region: Optional[Tuple[int, int, int, int]] = None) -> None:
        self._send("request_update")
        x, y, w, h = region if region is not None else (0, 0, self.width, self.height)
        self._out += CM.write_update_request(incremental, x, y, w, h)

    def key_event(self, keysym: int, down: bool) -> None:
        self._send("key_event")
        self._out += CM.write_key_event(down, keysym)

    def pointer_event(self, x: int, y: int, button_mask: int = 0) -> None:
        self._send("pointer_event")
        self._out += CM.write_pointer_event(button_mask, x, y)

    def cut_text(self, text: str) -> None:
        self._send("cut_text")
        self._out += CM.write_client_cut_text(text)

    def enable_continuous_updates(self, enable: bool = True,
                                  region: Optional[Tuple[int, int, int, int]] = None) -> None:
        self._send("enable_continuous_updates")
        if C.ENC_CONTINUOUS_UPDATES not in self.encodings:
            raise LocalProtocolError("offer the ContinuousUpdates pseudo-encoding first")
        x, y, w, h = region if region is not None else (0, 0, self.width, self.height)
        self._out += CM.write_enable_continuous_updates(enable, x, y, w, h)

    def send_fence(self, flags: int, payload: bytes = b"") -> None:
        self._send("send_fence")
        self._out += write_fence(C.MSG_CLIENT_FENCE, flags, payload)

    def set_desktop_size(self, width: int, height: int) -> None:
        self._send("set_desktop_size")
        self._out += CM.write_set_desktop_size(width, height, [M.Screen(0, 0, 0, width, height, 0)])


# Which method applies what the state's reader returned (in NORMAL: a message, or a rectangle of the update).
_HANDLERS: dict[ClientState, Callable[[RFBClient, object], object]] = {
    ClientState.AWAIT_VERSION: RFBClient._on_version,  # type: ignore[dict-item]
    ClientState.AWAIT_SECURITY_TYPES: RFBClient._on_security_types,
    ClientState.AWAIT_SECURITY_33: RFBClient._on_security_33,
    ClientState.AWAIT_CHALLENGE: RFBClient._on_challenge,  # type: ignore[dict-item]
    ClientState.AWAIT_SECURITY_RESULT: RFBClient._on_security_result,
    ClientState.AWAIT_SERVER_INIT: RFBClient._on_server_init,  # type: ignore[dict-item]
    ClientState.NORMAL: RFBClient._on_normal,
}

"""The RFB server connection, sans-IO (h11 style). This file owns the server state machine.

Style: bytes in through ``receive_data(data)`` (``b""`` = EOF); events out of
``next_event()`` (an event from agent.rfb.messages, or ``NEED_DATA``); every
byte we must send goes into one outgoing buffer that the owner drains with
``data_to_send()`` after each call. Protocol-mandated answers (the handshake,
Fence responses, EndOfContinuousUpdates) are written automatically; what to
send in framebuffer updates is the caller's business (agent.service.updater).

States and what moves them (the table ``_READERS`` picks the reader per state)::

    AWAIT_VERSION --ProtocolVersion--> AWAIT_SECURITY (3.7, 3.8)
                                     | AWAIT_VNC_RESPONSE (3.3 + VNC auth)
                                     | AWAIT_CLIENT_INIT (3.3 + None)
    AWAIT_SECURITY --type--> AWAIT_VNC_RESPONSE | AWAIT_CLIENT_INIT
    AWAIT_VNC_RESPONSE --good--> AWAIT_CLIENT_INIT ; --bad--> CLOSED (AuthenticationFailed)
    AWAIT_CLIENT_INIT --ClientInit--> NORMAL (ServerInit written)
    any --EOF--> CLOSED ; any --garbage--> ERROR (RemoteProtocolError raised)

The delay before answering a wrong password is applied by the asyncio owner
when it sees ``AuthenticationFailed`` (sans-IO code has no clock).
"""
from __future__ import annotations

import enum
from typing import Optional, Sequence, Tuple

from agent.rfb import constants as C
from agent.rfb import messages as M
from agent.rfb import vncauth
from agent.sansio import NEED_DATA, LocalProtocolError, ProtocolError, ReceiveBuffer, RemoteProtocolError
from agent.rfb.pixelformat import NATIVE, PixelFormat, PixelFormatError

SERVER_VERSION = (3, 8)
MAX_INCOMPLETE = M.MAX_CUT_TEXT + 64  # the largest message we accept, plus its header
MAX_DIMENSION = 65535




class ServerState(enum.Enum):
    AWAIT_VERSION = "await-version"
    AWAIT_SECURITY = "await-security"
    AWAIT_VNC_RESPONSE = "await-vnc-response"
    AWAIT_CLIENT_INIT = "await-client-init"
    NORMAL = "normal"
    CLOSED = "closed"
    ERROR = "error"


def negotiate_version(major: int, minor: int) -> Tuple[int, int]:
    """The version we speak with a client that announced major.minor (rfbproto §7.1.1).

    3.7 and 3.8 as such; anything from 3.8 up (3.889 from Apple's viewer) as
    3.8; other 3.x (3.4, 3.6, ...) as 3.3 since those clients do not know the
    3.7 handshake. A major above 3 answered our 3.8 offer wrongly but we can
    still speak 3.8 to it.
    """
    if major < 3:
        raise RemoteProtocolError(f"client speaks RFB {major}.{minor}; 3.3 or later is required")
    if major > 3 or minor >= 8:
        return (3, 8)
    if minor == 7:
        return (3, 7)
    return (3, 3)


_Reader = M.Reader

_CLIENT_MESSAGE_READERS: dict[int, _Reader] = {
    C.MSG_SET_PIXEL_FORMAT: M.read_set_pixel_format,
    C.MSG_SET_ENCODINGS: M.read_set_encodings,
    C.MSG_FRAMEBUFFER_UPDATE_REQUEST: M.read_update_request,
    C.MSG_KEY_EVENT: M.read_key_event,
    C.MSG_POINTER_EVENT: M.read_pointer_event,
    C.MSG_CLIENT_CUT_TEXT: M.read_client_cut_text,
    C.MSG_ENABLE_CONTINUOUS_UPDATES: M.read_enable_continuous_updates,
    C.MSG_CLIENT_FENCE: M.read_fence,
    C.MSG_SET_DESKTOP_SIZE: M.read_set_desktop_size,
}


def read_client_message(view: memoryview) -> Optional[Tuple[object, int]]:
    """One client-to-server message of the NORMAL phase."""
    if not len(view):
        return None
    reader = _CLIENT_MESSAGE_READERS.get(view[0])
    if reader is None:
        raise RemoteProtocolError(f"unknown client message type {view[0]}")
    return reader(view)


def _read_u8(view: memoryview) -> Optional[Tuple[int, int]]:
    return (view[0], 1) if len(view) else None


def _read_vnc_response(view: memoryview) -> Optional[Tuple[bytes, int]]:
    n = vncauth.CHALLENGE_SIZE
    return (bytes(view[:n]), n) if len(view) >= n else None


_READERS: dict[ServerState, _Reader] = {
    ServerState.AWAIT_VERSION: M.read_version,
    ServerState.AWAIT_SECURITY: _read_u8,
    ServerState.AWAIT_VNC_RESPONSE: _read_vnc_response,
    ServerState.AWAIT_CLIENT_INIT: M.read_client_init,
    ServerState.NORMAL: read_client_message,
}

# What the owner may call in which state (a lookup miss is a LocalProtocolError).
_SEND_STATES = {
    "send_update": {ServerState.NORMAL},
    "send_bell": {ServerState.NORMAL},
    "send_server_cut_text": {ServerState.NORMAL},
    "send_fence": {ServerState.NORMAL},
    "send_end_of_continuous_updates": {ServerState.NORMAL},
}



class RFBServer:
    """One viewer's RFB connection, server side (see the module docstring for the states)."""

    def __init__(self, width: int, height: int, name: str = "rejnet", *, security: str = "none",
                 password: Optional[str] = None, challenge: Optional[bytes] = None) -> None:
        if security not in ("none", "vnc"):
            raise ValueError(f"security must be 'none' or 'vnc', got {security!r}")
        if security == "vnc" and not password:
            raise ValueError("VNC authentication needs a non-empty password")
        if not (0 < width <= MAX_DIMENSION and 0 < height <= MAX_DIMENSION):
            raise ValueError(f"framebuffer size {width}x{height} is out of range")
        self.width = width
        self.height = height
        self.name = name
        self._security = C.SEC_VNC_AUTH if security == "vnc" else C.SEC_NONE
        self.__password = password  # name-mangled; never in repr or errors
        self._challenge = challenge
        self.state = ServerState.AWAIT_VERSION
        self.version: Optional[Tuple[int, int]] = None
        self.pixel_format: PixelFormat = NATIVE
        self.encodings: Tuple[int, ...] = ()
        self.shared = False
        self._encoding_set: frozenset[int] = frozenset()
        self._buf = ReceiveBuffer()
        self._out = bytearray(M.write_version(*SERVER_VERSION))
        self._eof = False
        self._close_reason = ""

    def __repr__(self) -> str:
        return f"<RFBServer {self.width}x{self.height} state={self.state.value} version={self.version}>"

    # ---------------------------------------------------------------- I/O face

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the client; ``b""`` means EOF."""
        if self.state is ServerState.ERROR:
            raise LocalProtocolError("server connection is in ERROR and accepts no more data")
        if self._eof and data:
            raise LocalProtocolError("data received after EOF")
        if not data:
            self._eof = True
            return
        if self.state is ServerState.CLOSED:
            return  # the connection is over; late bytes are dropped
        self._buf.append(data)

    def data_to_send(self) -> bytes:
        """Everything written since the last call (may be empty)."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def next_event(self) -> object:
        """The next event, NEED_DATA, or ConnectionClosed (repeated once closed)."""
        if self.state is ServerState.ERROR:
            raise LocalProtocolError("server connection is in ERROR")
        try:
            while True:
                if self.state is ServerState.CLOSED:
                    return M.ConnectionClosed(self._close_reason)
                with self._buf.view() as view:
                    got = _READERS[self.state](view)
                if got is None:
                    return self._need_data()
                raw, consumed = got
                self._buf.consume(consumed)
                event = self._handle(raw)
                if event is not None:
                    return event
        except ProtocolError:
            self.state = ServerState.ERROR
            raise
        except (ValueError, OverflowError) as exc:  # struct/decoding surprises from a peer's bytes
            self.state = ServerState.ERROR
            raise RemoteProtocolError(f"malformed message: {exc}") from None

    def _need_data(self) -> object:
        if len(self._buf) > MAX_INCOMPLETE:
            raise RemoteProtocolError(f"incomplete message larger than {MAX_INCOMPLETE} bytes")
        if self._eof:
            if len(self._buf):
                raise RemoteProtocolError(
                    f"connection closed in the middle of a message ({len(self._buf)} bytes pending, "
                    f"state {self.state.value})")
            self._close("client closed the connection")
            return M.ConnectionClosed(self._close_reason)
        return NEED_DATA

    def _close(self, reason: str) -> None:
        self.state = ServerState.CLOSED
        self._close_reason = reason

    # ---------------------------------------------------------------- handshake

    def _handle(self, raw: object) -> object:
        """Apply one parsed input; returns an event for the owner, or None to keep parsing."""
        state = self.state
        if state is ServerState.AWAIT_VERSION:
            return self._on_version(raw)  # type: ignore[arg-type]
        if state is ServerState.AWAIT_SECURITY:
            return self._on_security_type(raw)  # type: ignore[arg-type]
        if state is ServerState.AWAIT_VNC_RESPONSE:
            return self._on_vnc_response(raw)  # type: ignore[arg-type]
        if state is ServerState.AWAIT_CLIENT_INIT:
            assert isinstance(raw, M.ClientInit)
            self.shared = raw.shared
            self._out += M.write_server_init(self.width, self.height, NATIVE, self.name)
            self.state = ServerState.NORMAL
            return raw
        return self._on_message(raw)

    def _on_version(self, version: Tuple[int, int]) -> None:
        self.version = negotiate_version(*version)
        if self.version == (3, 3):
            self._out += M.write_security_type_33(self._security)
            self._start_security(self._security)
        else:
            self._out += M.write_security_types([self._security])
            self.state = ServerState.AWAIT_SECURITY
        return None

    def _start_security(self, sec_type: int) -> None:
        if sec_type == C.SEC_VNC_AUTH:
            if self._challenge is None:
                self._challenge = vncauth.make_challenge()
            self._out += self._challenge
            self.state = ServerState.AWAIT_VNC_RESPONSE
        else:
            if self.version == (3, 8):  # 3.3 and 3.7 send no SecurityResult for None
                self._out += M.write_security_result(True)
            self.state = ServerState.AWAIT_CLIENT_INIT

    def _on_security_type(self, sec_type: int) -> None:
        if sec_type != self._security:
            reason = f"security type {sec_type} was not offered"
            self._out += M.write_security_result(False, reason if self.version == (3, 8) else None)
            raise RemoteProtocolError(reason)
        self._start_security(sec_type)
        return None

    def _on_vnc_response(self, response: bytes) -> Optional[object]:
        assert self._challenge is not None and self.__password is not None
        ok = vncauth.check_response(self.__password, self._challenge, response)
        self._challenge = None  # one response per challenge
        if ok:
            self._out += M.write_security_result(True)
            self.state = ServerState.AWAIT_CLIENT_INIT
            return None
        reason = "authentication failed: wrong password"
        self._out += M.write_security_result(False, reason if self.version == (3, 8) else None)
        self._close(reason)
        return M.AuthenticationFailed(reason)

    # ---------------------------------------------------------------- normal phase

    def _on_message(self, msg: object) -> object:
        if isinstance(msg, M.SetPixelFormat):
            try:
                msg.pixel_format.validate()
            except PixelFormatError as exc:
                raise RemoteProtocolError(f"SetPixelFormat refused: {exc}") from None
            self.pixel_format = msg.pixel_format
        elif isinstance(msg, M.SetEncodings):
            self._on_set_encodings(msg)
        elif isinstance(msg, M.Fence):
            if msg.is_request:
                answer = M.fence_response(msg)
                self._out += M.write_fence(C.MSG_SERVER_FENCE, answer.flags, answer.payload)
        elif isinstance(msg, M.EnableContinuousUpdates):
            if not msg.enable:
                self._out += M.write_end_of_continuous_updates()
        return msg

    def _on_set_encodings(self, msg: M.SetEncodings) -> None:
        first_fence = C.ENC_FENCE not in self._encoding_set
        first_cu = C.ENC_CONTINUOUS_UPDATES not in self._encoding_set
        self.encodings = msg.encodings
        self._encoding_set = frozenset(msg.encodings)
        # Announce our support the way TigerVNC does: our own Fence, then EndOfContinuousUpdates.
        if first_fence and C.ENC_FENCE in self._encoding_set:
            self._out += M.write_fence(C.MSG_SERVER_FENCE, M.FENCE_REQUEST, b"\0")
        if first_cu and C.ENC_CONTINUOUS_UPDATES in self._encoding_set:
            self._out += M.write_end_of_continuous_updates()

    def supports(self, encoding: int) -> bool:
        """Whether the client listed ``encoding`` in its last SetEncodings."""
        return encoding in self._encoding_set

    # ---------------------------------------------------------------- output

    def _require(self, action: str) -> None:
        if self.state not in _SEND_STATES[action]:
            raise LocalProtocolError(f"server cannot {action} in state {self.state.value}")

    def send_update(self, rects: Sequence[bytes]) -> int:
        """Write one FramebufferUpdate of complete rectangles; returns the bytes written.

        Up to 65534 rectangles go with their count; more use LastRect when the
        client offered it, else several consecutive updates.
        """
        self._require("send_update")
        start = len(self._out)
        if len(rects) < M.LAST_RECT_COUNT:
            self._out += M.write_update_header(len(rects))
            self._out += b"".join(rects)
        elif self.supports(C.ENC_LAST_RECT):
            self._out += M.write_update_header(M.LAST_RECT_COUNT)
            self._out += b"".join(rects)
            self._out += M.write_last_rect()
        else:
            step = M.LAST_RECT_COUNT - 1
            for i in range(0, len(rects), step):
                chunk = rects[i:i + step]
                self._out += M.write_update_header(len(chunk))
                self._out += b"".join(chunk)
        return len(self._out) - start

    def send_bell(self) -> None:
        self._require("send_bell")
        self._out += M.write_bell()

    def send_server_cut_text(self, text: str) -> None:
        self._require("send_server_cut_text")
        raw = text.encode("latin-1", errors="replace")
        if len(raw) > M.MAX_CUT_TEXT:
            raise LocalProtocolError(f"cut text of {len(raw)} bytes exceeds {M.MAX_CUT_TEXT}")
        self._out += M.write_server_cut_text(text)

    def send_fence(self, flags: int, payload: bytes = b"") -> None:
        self._require("send_fence")
        if not self.supports(C.ENC_FENCE):
            raise LocalProtocolError("the client did not offer the Fence pseudo-encoding")
        self._out += M.write_fence(C.MSG_SERVER_FENCE, flags, payload)

    def send_end_of_continuous_updates(self) -> None:
        self._require("send_end_of_continuous_updates")
        self._out += M.write_end_of_continuous_updates()

    def set_size(self, width: int, height: int) -> None:
        """Record a new framebuffer size (the updater sends DesktopSize; this only tracks it)."""
        if not (0 < width <= MAX_DIMENSION and 0 < height <= MAX_DIMENSION):
            raise LocalProtocolError(f"framebuffer size {width}x{height} is out of range")
        self.width = width
        self.height = height

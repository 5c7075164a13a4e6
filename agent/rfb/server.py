"""The RFB server connection, sans-IO (h11 style). This file owns the server state machine.

Style: bytes in through ``receive_data(data)`` (``b""`` = EOF); events out of
``next_event()`` (an event from agent.rfb.messages, or ``NEED_DATA``); every
byte we must send goes into one outgoing buffer that the owner drains with
``data_to_send()`` after each call. Protocol-mandated answers (the handshake,
Fence responses, EndOfContinuousUpdates) are written automatically; what to
send in framebuffer updates is the caller's business (agent.service.updater).

The machine is data, as in h11's ``_state.py``: ``TRANSITIONS`` maps (role,
state, event) to the next state (see agent.rfb.transitions), ``READERS`` says
which reader parses the client's bytes in each state, and ``_HANDLERS`` which
method applies what it read. The connection only looks them up: every state
change goes through ``_move``, which swaps the reader with the state::

    AWAIT_VERSION --client ProtocolVersion--> AWAIT_SECURITY
    AWAIT_SECURITY --SecurityType None--> AWAIT_CLIENT_INIT ; --SecurityType VNC--> AWAIT_VNC_RESPONSE
        (the client picks in 3.7 and 3.8; in 3.3 we decide, at once, and the client only follows)
    AWAIT_VNC_RESPONSE --our AuthenticationSucceeded--> AWAIT_CLIENT_INIT
                       --our AuthenticationFailed--> CLOSED
    AWAIT_CLIENT_INIT --client ClientInit--> NORMAL (ServerInit written)
    NORMAL --client messages, and ours (send_*)--> NORMAL
    any --EOF (ConnectionClosed)--> CLOSED ; any --garbage--> ERROR (RemoteProtocolError raised)

The delay before answering a wrong password is applied by the asyncio owner
when it sees ``AuthenticationFailed`` (sans-IO code has no clock).
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple

from agent.models import Matrix, shift_matrices
from agent.rfb import client_messages as CM
from agent.rfb import constants as C
from agent.rfb import handshake as H
from agent.rfb import messages as M
from agent.rfb import server_messages as SM
from agent.rfb import vncauth
from agent.rfb.pixelformat import NATIVE, PixelFormat, PixelFormatError
from agent.rfb.transitions import EventKey, KeyEnum, Role, next_state
from agent.rfb.wire import Reader, write_fence
from agent.sansio import NEED_DATA, LocalProtocolError, ProtocolError, ReceiveBuffer, RemoteProtocolError

SERVER_VERSION = (3, 8)
MAX_INCOMPLETE = M.MAX_CUT_TEXT + 64  # the largest message we accept, plus its header
MAX_DIMENSION = 65535


class ServerState(KeyEnum):
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


# ---------------------------------------------------------------- the state machine

S = ServerState
CLIENT, SERVER = Role.CLIENT, Role.SERVER
_LIVE = [state for state in S if state not in (S.CLOSED, S.ERROR)]
# What the client may send once the handshake is over (read_client_message returns these).
CLIENT_MESSAGES = (M.SetPixelFormat, M.SetEncodings, M.FramebufferUpdateRequest, M.KeyEvent, M.PointerEvent,
                   M.ClientCutText, M.EnableContinuousUpdates, M.Fence, M.SetDesktopSize)
# What our owner may send then, by the method it calls.
SENDS = {"send_update": M.FramebufferUpdate, "send_bell": M.Bell, "send_server_cut_text": M.ServerCutText,
         "send_fence": M.Fence, "send_end_of_continuous_updates": M.EndOfContinuousUpdates}

TRANSITIONS: dict[Tuple[Role, ServerState, EventKey], ServerState] = {
    (CLIENT, S.AWAIT_VERSION, M.ProtocolVersion): S.AWAIT_SECURITY,
    (CLIENT, S.AWAIT_SECURITY, (M.SecurityType, C.SEC_NONE)): S.AWAIT_CLIENT_INIT,
    (CLIENT, S.AWAIT_SECURITY, (M.SecurityType, C.SEC_VNC_AUTH)): S.AWAIT_VNC_RESPONSE,
    (SERVER, S.AWAIT_SECURITY, (M.SecurityType, C.SEC_NONE)): S.AWAIT_CLIENT_INIT,  # 3.3
    (SERVER, S.AWAIT_SECURITY, (M.SecurityType, C.SEC_VNC_AUTH)): S.AWAIT_VNC_RESPONSE,  # 3.3
    (SERVER, S.AWAIT_VNC_RESPONSE, M.AuthenticationSucceeded): S.AWAIT_CLIENT_INIT,
    (SERVER, S.AWAIT_VNC_RESPONSE, M.AuthenticationFailed): S.CLOSED,
    (CLIENT, S.AWAIT_CLIENT_INIT, M.ClientInit): S.NORMAL,
    **{(CLIENT, S.NORMAL, message): S.NORMAL for message in CLIENT_MESSAGES},
    **{(SERVER, S.NORMAL, message): S.NORMAL for message in SENDS.values()},
    **{(CLIENT, state, M.ConnectionClosed): S.CLOSED for state in _LIVE},
}

# Which reader parses the client's bytes in which state (none once CLOSED or in ERROR).
READERS: dict[ServerState, Reader] = {
    S.AWAIT_VERSION: H.read_version,
    S.AWAIT_SECURITY: H.read_security_type,
    S.AWAIT_VNC_RESPONSE: H.read_vnc_response,
    S.AWAIT_CLIENT_INIT: H.read_client_init,
    S.NORMAL: CM.read_client_message,
}
del S


def transition(role: Role, state: ServerState, event: EventKey, action: Optional[str] = None) -> ServerState:
    """The server's state after ``role``'s ``event`` in ``state``, or the protocol error for a miss."""
    return next_state(TRANSITIONS, SERVER, role, state, event, action)


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
        self._reader: Optional[Reader] = READERS[self.state]
        self.version: Optional[Tuple[int, int]] = None
        self.pixel_format: PixelFormat = NATIVE
        self.encodings: Tuple[int, ...] = ()
        self.shared = False
        self._encoding_set: frozenset[int] = frozenset()
        self._buf = ReceiveBuffer()
        self._out = bytearray(H.write_version(*SERVER_VERSION))
        self._matrices: list[Matrix] = []  # byte matrices in _out (data_to_send_with_matrices)
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
        return self.data_to_send_with_matrices()[0]

    def data_to_send_with_matrices(self) -> tuple[bytes, list[Matrix]]:
        """``data_to_send()``, and the byte matrices in it that updates carried (``send_update``), for a
        transport that sends them in stripes (agent.secure.mux)."""
        out = bytes(self._out)
        self._out.clear()
        matrices, self._matrices = self._matrices, []
        return out, matrices

    def next_event(self) -> object:
        """The next event, NEED_DATA, or ConnectionClosed (repeated once closed)."""
        if self.state is ServerState.ERROR:
            raise LocalProtocolError("server connection is in ERROR")
        try:
            while True:
                if self._reader is None:  # CLOSED
                    return M.ConnectionClosed(self._close_reason)
                with self._buf.view() as view:
                    got = self._reader(view)
                if got is None:
                    return self._need_data()
                event, consumed = got
                self._buf.consume(consumed)
                answer = _HANDLERS[self.state](self, event)
                if answer is not None:
                    return answer
        except ProtocolError:
            self._error()
            raise
        except (ValueError, OverflowError) as exc:  # struct/decoding surprises from a peer's bytes
            self._error()
            raise RemoteProtocolError(f"malformed message: {exc}") from None

    def _need_data(self) -> object:
        if len(self._buf) > MAX_INCOMPLETE:
            raise RemoteProtocolError(f"incomplete message larger than {MAX_INCOMPLETE} bytes")
        if self._eof:
            if len(self._buf):
                raise RemoteProtocolError(
                    f"connection closed in the middle of a message ({len(self._buf)} bytes pending, "
                    f"state {self.state.value})")
            self._move(CLIENT, M.ConnectionClosed)
            self._close_reason = "client closed the connection"
            return M.ConnectionClosed(self._close_reason)
        return NEED_DATA

    def _move(self, role: Role, event: EventKey, action: Optional[str] = None) -> None:
        """Apply one transition from the table (a miss raises); a new state brings its reader."""
        target = transition(role, self.state, event, action)
        if target is not self.state:
            self.state = target
            self._reader = READERS.get(target)

    def _error(self) -> None:
        self.state = ServerState.ERROR
        self._reader = None

    # ---------------------------------------------------------------- handshake

    def _on_version(self, version: M.ProtocolVersion) -> None:
        self.version = negotiate_version(*version)
        self._move(CLIENT, M.ProtocolVersion)
        if self.version == (3, 3):  # the server decides the security type
            self._move(SERVER, (M.SecurityType, self._security))
            self._out += H.write_security_type_33(self._security)
            self._start_security()
        else:
            self._out += H.write_security_types([self._security])

    def _on_security_type(self, chosen: M.SecurityType) -> None:
        if chosen.sec_type != self._security:
            reason = f"security type {chosen.sec_type} was not offered"
            self._out += H.write_security_result(False, reason if self.version == (3, 8) else None)
            raise RemoteProtocolError(reason)
        self._move(CLIENT, (M.SecurityType, chosen.sec_type))
        self._start_security()

    def _start_security(self) -> None:
        if self._security == C.SEC_VNC_AUTH:
            if self._challenge is None:
                self._challenge = vncauth.make_challenge()
            self._out += self._challenge
        elif self.version == (3, 8):  # 3.3 and 3.7 send no SecurityResult for None
            self._out += H.write_security_result(True)

    def _on_vnc_response(self, answer: M.VncAuthResponse) -> Optional[object]:
        assert self._challenge is not None and self.__password is not None
        ok = vncauth.check_response(self.__password, self._challenge, answer.response)
        self._challenge = None  # one response per challenge
        if ok:
            self._move(SERVER, M.AuthenticationSucceeded)
            self._out += H.write_security_result(True)
            return None
        reason = "authentication failed: wrong password"
        self._move(SERVER, M.AuthenticationFailed)
        self._close_reason = reason
        self._out += H.write_security_result(False, reason if self.version == (3, 8) else None)
        return M.AuthenticationFailed(reason)

    def _on_client_init(self, init: M.ClientInit) -> object:
        self._move(CLIENT, M.ClientInit)
        self.shared = init.shared
        self._out += H.write_server_init(self.width, self.height, NATIVE, self.name)
        return init

    # ---------------------------------------------------------------- normal phase

    def _on_message(self, msg: object) -> object:
        self._move(CLIENT, type(msg))
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
                self._out += write_fence(C.MSG_SERVER_FENCE, answer.flags, answer.payload)
        elif isinstance(msg, M.EnableContinuousUpdates):
            if not msg.enable:
                self._out += SM.write_end_of_continuous_updates()
        return msg

    def _on_set_encodings(self, msg: M.SetEncodings) -> None:
        first_fence = C.ENC_FENCE not in self._encoding_set
        first_cu = C.ENC_CONTINUOUS_UPDATES not in self._encoding_set
        self.encodings = msg.encodings
        self._encoding_set = frozenset(msg.encodings)
        # Announce our support the way TigerVNC does: our own Fence, then EndOfContinuousUpdates.
        if first_fence and C.ENC_FENCE in self._encoding_set:
            self._out += write_fence(C.MSG_SERVER_FENCE, M.FENCE_REQUEST, b"\0")
        if first_cu and C.ENC_CONTINUOUS_UPDATES in self._encoding_set:
            self._out += SM.write_end_of_continuous_updates()

    def supports(self, encoding: int) -> bool:
        """Whether the client listed ``encoding`` in its last SetEncodings."""
        return encoding in self._encoding_set

    # ---------------------------------------------------------------- output

    def _send(self, action: str) -> None:
        self._move(SERVER, SENDS[action], action)

    def send_update(self, rects: Sequence[bytes], matrices: Sequence[Matrix] = ()) -> int:
        """Write one FramebufferUpdate of complete rectangles; returns the bytes written.

        Up to 65534 rectangles go with their count; more use LastRect when the
        client offered it, else several consecutive updates. ``matrices``: byte
        matrices in the rectangles joined (agent.models.Matrix), handed on by
        ``data_to_send_with_matrices`` (kept only with a single header).
        """
        self._send("send_update")
        start = len(self._out)
        out = self._out
        if len(rects) < M.LAST_RECT_COUNT:
            out += SM.write_update_header(len(rects))
            self._matrices += shift_matrices(matrices, len(out))
            for rect in rects:  # appended one by one: a joined copy of a page of Raw pixels costs a copy more
                out += rect
        elif self.supports(C.ENC_LAST_RECT):
            out += SM.write_update_header(M.LAST_RECT_COUNT)
            for rect in rects:
                out += rect
            out += SM.write_last_rect()
        else:
            step = M.LAST_RECT_COUNT - 1
            for i in range(0, len(rects), step):
                chunk = rects[i:i + step]
                out += SM.write_update_header(len(chunk))
                for rect in chunk:
                    out += rect
        return len(self._out) - start

    def send_bell(self) -> None:
        self._send("send_bell")
        self._out += SM.write_bell()

    def send_server_cut_text(self, text: str) -> None:
        self._send("send_server_cut_text")
        raw = text.encode("latin-1", errors="replace")
        if len(raw) > M.MAX_CUT_TEXT:
            raise LocalProtocolError(f"cut text of {len(raw)} bytes exceeds {M.MAX_CUT_TEXT}")
        self._out += SM.write_server_cut_text(text)

    def send_fence(self, flags: int, payload: bytes = b"") -> None:
        self._send("send_fence")
        if not self.supports(C.ENC_FENCE):
            raise LocalProtocolError("the client did not offer the Fence pseudo-encoding")
        self._out += write_fence(C.MSG_SERVER_FENCE, flags, payload)

    def send_end_of_continuous_updates(self) -> None:
        self._send("send_end_of_continuous_updates")
        self._out += SM.write_end_of_continuous_updates()

    def set_size(self, width: int, height: int) -> None:
        """Record a new framebuffer size (the updater sends DesktopSize; this only tracks it)."""
        if not (0 < width <= MAX_DIMENSION and 0 < height <= MAX_DIMENSION):
            raise LocalProtocolError(f"framebuffer size {width}x{height} is out of range")
        self.width = width
        self.height = height


# Which method applies what the state's reader returned.
_HANDLERS: dict[ServerState, Callable[[RFBServer, object], object]] = {
    ServerState.AWAIT_VERSION: RFBServer._on_version,  # type: ignore[dict-item]
    ServerState.AWAIT_SECURITY: RFBServer._on_security_type,  # type: ignore[dict-item]
    ServerState.AWAIT_VNC_RESPONSE: RFBServer._on_vnc_response,  # type: ignore[dict-item]
    ServerState.AWAIT_CLIENT_INIT: RFBServer._on_client_init,  # type: ignore[dict-item]
    ServerState.NORMAL: RFBServer._on_message,
}

"""RFB 3.8 messages (RFC 6143 §7, rfbproto) as values: the event dataclasses, wire constants and bounds.

What a connection returns from ``next_event()`` is one of these, and the
state tables of agent.rfb.server and agent.rfb.client key on their types. The
bytes live elsewhere: agent.rfb.handshake (ProtocolVersion to ServerInit),
agent.rfb.client_messages (client to server), agent.rfb.server_messages
(server to client) and agent.rfb.wire (the layouts both directions share).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Optional, Tuple

import numpy as np

from agent.rfb.pixelformat import PixelFormat

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


@dataclass(frozen=True)
class Screen:
    """One screen of an ExtendedDesktopSize layout."""

    id: int
    x: int
    y: int
    width: int
    height: int
    flags: int = 0


# ---------------------------------------------------------------- handshake
# ProtocolVersion to VncAuthResponse and AuthenticationSucceeded drive the
# handshake inside the connections; their owners see ClientInit, ServerInit,
# AuthenticationFailed and ConnectionClosed.

class ProtocolVersion(NamedTuple):
    """ProtocolVersion, "RFB xxx.yyy\\n" (a tuple, so it compares equal to (major, minor))."""

    major: int
    minor: int


@dataclass(frozen=True)
class SecurityType:
    """The security type in force: the client's pick (3.7, 3.8) or the server's decision (3.3)."""

    sec_type: int


@dataclass(frozen=True)
class VncAuthChallenge:
    """VNC Authentication: the server's 16 random bytes."""

    challenge: bytes


@dataclass(frozen=True)
class VncAuthResponse:
    """VNC Authentication: the challenge encrypted with the password."""

    response: bytes


@dataclass(frozen=True)
class AuthenticationSucceeded:
    """SecurityResult OK (implied before 3.8 for security type None, which sends none)."""


@dataclass(frozen=True)
class AuthenticationFailed:
    """VNC Authentication was refused; the reason is the one the server gave (or ours)."""

    reason: str


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
class ConnectionClosed:
    """The peer closed (EOF), or refused the connection during the handshake with a reason."""

    reason: str = ""


# ---------------------------------------------------------------- client -> server

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


def fence_response(request: Fence) -> Fence:
    """The answer the spec asks for: the request bit cleared, unknown flags dropped, payload echoed."""
    return Fence(request.flags & FENCE_SUPPORTED & ~FENCE_REQUEST, request.payload)


@dataclass(frozen=True)
class SetDesktopSize:
    width: int
    height: int
    screens: Tuple[Screen, ...]


# ---------------------------------------------------------------- server -> client

@dataclass(frozen=True)
class FramebufferUpdateHeader:
    """The start of a FramebufferUpdate: how many rectangles follow (LAST_RECT_COUNT: maybe until LastRect).

    The client reads the rectangles into its framebuffer and then returns one FramebufferUpdate.
    """

    count: int


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

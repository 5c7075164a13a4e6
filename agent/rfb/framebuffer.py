"""The RFB client's picture of the server's screen, and the FramebufferUpdate being read into it.

``Framebuffer`` holds the pixels, a numpy (H, W, 4) uint8 BGRA array with
alpha 255, with the decoder state its rectangles need (the zlib streams of
ZRLE and Tight), and resizes when the server says so. ``UpdateProgress``
counts the rectangles of the update in flight. The client connection
(agent.rfb.client) decides when each is used; nothing here reads the wire.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np

from agent.rfb.decode import DecoderState, decode_rect
from agent.rfb.messages import EDS_STATUS_OK, DesktopResized
from agent.rfb.pixelformat import PixelFormat
from agent.sansio import RemoteProtocolError

MAX_FRAMEBUFFER_PIXELS = 8192 * 8192  # 256 MiB of BGRA: a bigger claim is refused, not allocated
MAX_UPDATE_RECTS = 1 << 20  # rectangles in one LastRect-terminated update

RectHeader = Tuple[int, int, int, int, int]  # x, y, width, height, encoding


class Framebuffer:
    """The server's screen as the client knows it; empty (0 x 0) until ServerInit."""

    def __init__(self) -> None:
        self.pixels = np.zeros((0, 0, 4), np.uint8)
        self.width = 0
        self.height = 0
        self._decoder = DecoderState()

    def resize(self, width: int, height: int) -> None:
        """A new size, keeping the pixels both sizes share; the rest starts black."""
        if width * height > MAX_FRAMEBUFFER_PIXELS:
            raise RemoteProtocolError(f"server framebuffer of {width}x{height} exceeds our limit "
                                      f"of {MAX_FRAMEBUFFER_PIXELS} pixels")
        old = self.pixels
        fb = np.zeros((height, width, 4), np.uint8)
        fb[..., 3] = 255
        h, w = min(height, old.shape[0]), min(width, old.shape[1])
        fb[:h, :w] = old[:h, :w]
        self.pixels = fb
        self.width, self.height = width, height

    def apply(self, event: DesktopResized) -> None:
        """Follow a DesktopSize or ExtendedDesktopSize rectangle (a refused request changes nothing)."""
        if event.status == EDS_STATUS_OK and (event.width, event.height) != (self.width, self.height):
            if event.width <= 0 or event.height <= 0:
                raise RemoteProtocolError(f"server resized the desktop to {event.width}x{event.height}")
            self.resize(event.width, event.height)

    def decode(self, header: RectHeader, view: memoryview, pf: PixelFormat) -> Optional[int]:
        """Decode one pixel rectangle's payload into the pixels: bytes consumed, or None for "need more"."""
        x, y, w, h, enc = header
        return decode_rect(self._decoder, enc, view, x, y, w, h, self.pixels, pf)


@dataclass
class UpdateProgress:
    """One FramebufferUpdate being read: its rectangles so far and its wire bytes (header included)."""

    remaining: Optional[int]  # None: until LastRect
    nbytes: int = 4
    rects: list = field(default_factory=list)

    def add(self, header: RectHeader) -> bool:
        """Count one more rectangle; True if it was the last one the header announced."""
        self.rects.append(header)
        if len(self.rects) > MAX_UPDATE_RECTS:
            raise RemoteProtocolError(f"update with more than {MAX_UPDATE_RECTS} rectangles")
        if self.remaining is None:
            return False
        self.remaining -= 1
        return self.remaining == 0

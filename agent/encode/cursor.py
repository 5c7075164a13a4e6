"""Cursor pseudo-encoding (rfbproto "Cursor", -239): the shape, in the client's format, and a bitmask."""
from __future__ import annotations

import numpy as np

from agent.encode.base import EncoderError
from agent.models import CursorShape
from agent.rfb.constants import ENC_CURSOR
from agent.rfb.server_messages import write_rect_header
from agent.rfb.pixels import PixelCodec

NAME = "Cursor"


def cursor_rect(cursor: CursorShape, codec: PixelCodec) -> bytes:
    """A complete Cursor pseudo-rectangle: header (x, y = hotspot), pixels, then 1-bit mask rows.

    A mask bit is 1 where the cursor pixel is visible (alpha > 0).
    """
    pixels = cursor.pixels
    if pixels.ndim != 3 or pixels.shape[2] != 4 or pixels.dtype != np.uint8:
        raise EncoderError("cursor pixels must be (h, w, 4) uint8 BGRA")
    h, w = pixels.shape[:2]
    if w > 0xFFFF or h > 0xFFFF:
        raise EncoderError(f"cursor of {w}x{h} is too large for RFB")
    hot_x = min(max(cursor.hot_x, 0), max(w - 1, 0))
    hot_y = min(max(cursor.hot_y, 0), max(h - 1, 0))
    header = write_rect_header(hot_x, hot_y, w, h, ENC_CURSOR)
    if w == 0 or h == 0:
        return header
    body = codec.pack(codec.to_values(pixels))
    mask = np.packbits(pixels[..., 3] > 0, axis=1)  # rows padded to bytes, MSB leftmost
    return header + body + mask.tobytes()

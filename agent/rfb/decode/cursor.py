"""Cursor pseudo-encoding decoder: pixels in the server's format, then a 1-bit visibility mask."""
from __future__ import annotations

import numpy as np

from agent.rfb.decode.base import DecodeError
from agent.rfb.pixels import PixelCodec

MAX_CURSOR_SIDE = 1024
"""Cursors are at most 256 pixels a side in practice; anything past this is garbage, not a cursor."""


def decode_cursor_payload(data: memoryview, w: int, h: int, codec: PixelCodec) -> tuple[np.ndarray, int] | None:
    """(BGRA image with alpha 255 where the mask bit is set and 0 elsewhere, bytes consumed) or None."""
    if w > MAX_CURSOR_SIDE or h > MAX_CURSOR_SIDE:
        raise DecodeError(f"a {w}x{h} cursor is larger than {MAX_CURSOR_SIDE}x{MAX_CURSOR_SIDE}")
    npix = w * h * codec.bytes_per_pixel
    rowbytes = (w + 7) // 8
    total = npix + rowbytes * h
    if len(data) < total:
        return None
    image = codec.to_bgra(codec.unpack(data[:npix], w * h).reshape(h, w))
    if w and h:
        mask = np.frombuffer(data[npix:total], np.uint8).reshape(h, rowbytes)
        visible = np.unpackbits(mask, axis=1, count=w).astype(bool)
        image[..., 3] = np.where(visible, 255, 0)
    return image, total

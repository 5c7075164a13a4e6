"""ZRLE decoder: u32 length, zlib data on the connection's stream, 64x64 tiles."""
from __future__ import annotations

import numpy as np

from agent._native import decoders as _dec
from agent.rfb.decode.base import MAX_COMPRESSED, DecodeError, DecoderState, as_array, check, inflate
from agent.rfb.pixels import PixelCodec


def _inflated_bound(w: int, h: int, cpixel: int) -> int:
    """Most bytes a valid w x h ZRLE rectangle can inflate to.

    Per tile: subencoding, a 127-colour palette, and per pixel at worst a
    CPIXEL plus a run byte (plain RLE of single pixels); longer run-length
    sequences only cover more pixels, so they cannot exceed this.
    """
    tiles = ((w + 63) // 64) * ((h + 63) // 64)
    return tiles * (1 + 127 * cpixel) + w * h * (cpixel + 1)


def decode_zrle(state: DecoderState, data: memoryview, x: int, y: int, w: int, h: int,
                fb: np.ndarray, codec: PixelCodec) -> int | None:
    if len(data) < 4:
        return None
    length = int.from_bytes(data[:4], "big")
    if length > MAX_COMPRESSED:
        raise DecodeError(f"ZRLE data of {length} bytes is over the {MAX_COMPRESSED}-byte limit")
    if len(data) < 4 + length:
        return None
    raw = inflate(state.zrle, data[4:4 + length], _inflated_bound(w, h, codec.cpixel_size))
    values = np.empty((h, w), np.uint32)
    check(_dec.zrle_decode(as_array(raw), codec.cpixel, values), "ZRLE")
    codec.to_bgra(values, fb[y:y + h, x:x + w])
    return 4 + length

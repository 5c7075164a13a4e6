"""Decoders for the encodings without compression: Raw, CopyRect, RRE, Hextile.

Each returns the payload bytes consumed, or None while ``data`` does not hold
the whole payload yet (nothing written to the framebuffer then).
"""
from __future__ import annotations

import numpy as np

from agent._native import decoders as _dec
from agent.rfb.decode.base import DecodeError, DecoderState, as_array, check
from agent.rfb.pixels import PixelCodec


def decode_raw(state: DecoderState, data: memoryview, x: int, y: int, w: int, h: int,
               fb: np.ndarray, codec: PixelCodec) -> int | None:
    n = w * h * codec.bytes_per_pixel
    if len(data) < n:
        return None
    values = codec.unpack(data[:n], w * h).reshape(h, w)
    codec.to_bgra(values, fb[y:y + h, x:x + w])
    return n


def decode_copyrect(state: DecoderState, data: memoryview, x: int, y: int, w: int, h: int,
                    fb: np.ndarray, codec: PixelCodec) -> int | None:
    if len(data) < 4:
        return None
    sx = (data[0] << 8) | data[1]
    sy = (data[2] << 8) | data[3]
    if sx + w > fb.shape[1] or sy + h > fb.shape[0]:
        raise DecodeError(f"CopyRect source ({sx}, {sy}) {w}x{h} is outside the framebuffer")
    fb[y:y + h, x:x + w] = fb[sy:sy + h, sx:sx + w]  # numpy copies through a buffer when they overlap
    return 4


def decode_rre(state: DecoderState, data: memoryview, x: int, y: int, w: int, h: int,
               fb: np.ndarray, codec: PixelCodec) -> int | None:
    bpp = codec.bytes_per_pixel
    head = 4 + bpp
    if len(data) < head:
        return None
    nsub = int.from_bytes(data[:4], "big")
    if nsub > w * h:
        raise DecodeError(f"RRE rectangle of {w}x{h} claims {nsub} subrectangles")
    total = head + nsub * (bpp + 8)
    if len(data) < total:
        return None
    values = np.full((h, w), codec.unpack(data[4:head], 1)[0], np.uint32)
    check(_dec.rre_decode(as_array(data[head:total]), nsub, codec.pixel, values), "RRE")
    codec.to_bgra(values, fb[y:y + h, x:x + w])
    return total


def decode_hextile(state: DecoderState, data: memoryview, x: int, y: int, w: int, h: int,
                   fb: np.ndarray, codec: PixelCodec) -> int | None:
    values = np.empty((h, w), np.uint32)
    n = _dec.hextile_decode(as_array(data), codec.pixel, values)
    if n == _dec.NEED_MORE:
        return None
    check(n, "Hextile")
    codec.to_bgra(values, fb[y:y + h, x:x + w])
    return n

"""Tight decoder: fill, JPEG, and basic compression with copy, palette and gradient filters.

Parses the whole rectangle before touching any state (zlib streams, reset
bits, the framebuffer), so "not enough data yet" leaves everything as it
was. Follows TigerVNC's TightDecoder, stricter where it only asserts: bad
control bytes, filters, palette indices and lengths raise DecodeError.
"""
from __future__ import annotations

import numpy as np
import simplejpeg

from agent._native import decoders as _dec
from agent.rfb.decode.base import DecodeError, DecoderState, as_array, check, inflate
from agent.rfb.pixels import PixelCodec
from agent.rfb import constants as C
from agent.models import MAX_RECT_WIDTH

_FILL, _JPEG = 0x8, 0x9


def _compact(data: memoryview, pos: int) -> tuple[int, int] | None:
    """(value, position after it), or None if the 1-3 bytes are not all there."""
    value = 0
    for i in range(2):
        if pos >= len(data):
            return None
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << (7 * i)
        if not b & 0x80:
            return value, pos
    if pos >= len(data):
        return None
    return value | (data[pos] << 14), pos + 1


def _counted(data: memoryview, pos: int) -> tuple[int, int] | None:
    """(start, end) of a payload led by its compact length, or None until all of it is there."""
    got = _compact(data, pos)
    if got is None:
        return None
    length, start = got
    if len(data) < start + length:
        return None
    return start, start + length


def _reset(state: DecoderState, ctl: int) -> None:
    for i in range(4):
        if ctl & (1 << i):
            state.reset_tight(i)


def _jpeg(data: bytes, x: int, y: int, w: int, h: int, fb: np.ndarray) -> None:
    try:
        jh, jw, _, _ = simplejpeg.decode_jpeg_header(data)
        if (jw, jh) != (w, h):
            raise DecodeError(f"JPEG of {jw}x{jh} in a {w}x{h} Tight rectangle")
        image = simplejpeg.decode_jpeg(data, colorspace="BGRX")  # X comes back as 255
    except (ValueError, RuntimeError) as exc:
        raise DecodeError(f"bad JPEG data in a Tight rectangle: {exc}") from None
    fb[y:y + h, x:x + w] = image


def decode_tight(state: DecoderState, data: memoryview, x: int, y: int, w: int, h: int,
                 fb: np.ndarray, codec: PixelCodec) -> int | None:
    if len(data) < 1:
        return None
    ctl = data[0]
    kind = ctl >> 4
    pos = 1
    tsize = codec.tpixel_size
    if kind == _FILL:
        if len(data) < pos + tsize:
            return None
        colour = codec.unpack_tpixels(data[pos:pos + tsize], 1)
        _reset(state, ctl)
        codec.to_bgra(np.broadcast_to(colour.reshape(1, 1), (h, w)), fb[y:y + h, x:x + w])
        return pos + tsize
    if kind > _JPEG:
        raise DecodeError(f"unknown Tight compression type {kind:#x}")
    if w > MAX_RECT_WIDTH:
        raise DecodeError(f"Tight rectangle {w} pixels wide (at most {MAX_RECT_WIDTH})")
    if kind == _JPEG:
        span = _counted(data, pos)
        if span is None:
            return None
        start, end = span
        _reset(state, ctl)
        _jpeg(bytes(data[start:end]), x, y, w, h, fb)
        return end

    # basic compression
    stream = kind & 0x3
    filt = C.TIGHT_FILTER_COPY
    palette = None
    if kind & 0x4:
        if len(data) < pos + 1:
            return None
        filt = data[pos]
        pos += 1
        if filt == C.TIGHT_FILTER_PALETTE:
            if len(data) < pos + 1:
                return None
            npal = data[pos] + 1
            pos += 1
            if len(data) < pos + npal * tsize:
                return None
            palette = codec.unpack_tpixels(data[pos:pos + npal * tsize], npal)
            pos += npal * tsize
        elif filt == C.TIGHT_FILTER_GRADIENT:
            if codec.bytes_per_pixel == 1:
                raise DecodeError("Tight gradient filter with an 8 bpp pixel format")
        elif filt != C.TIGHT_FILTER_COPY:
            raise DecodeError(f"unknown Tight filter {filt}")
    if palette is not None:
        rowsize = (w + 7) // 8 if len(palette) <= 2 else w
    else:
        rowsize = w * tsize
    size = rowsize * h
    if size < C.TIGHT_MIN_TO_COMPRESS:
        if len(data) < pos + size:
            return None
        _reset(state, ctl)
        raw: bytes | memoryview = data[pos:pos + size]
        pos += size
    else:
        span = _counted(data, pos)
        if span is None:
            return None
        start, pos = span
        _reset(state, ctl)
        raw = inflate(state.tight[stream], data[start:pos], size)
        if len(raw) != size:
            raise DecodeError(f"Tight data inflates to {len(raw)} bytes, the rectangle needs {size}")

    if palette is not None:
        values = np.empty((h, w), np.uint32)
        check(_dec.palette_expand(as_array(raw), 1 if len(palette) <= 2 else 8, palette, values), "Tight palette")
    else:
        values = codec.unpack_tpixels(raw, w * h).reshape(h, w)
        if filt == C.TIGHT_FILTER_GRADIENT:
            pf = codec.pf
            residual, values = values, np.empty((h, w), np.uint32)
            _dec.gradient_unfilter(residual, pf.red_shift, pf.green_shift, pf.blue_shift,
                                   pf.red_max, pf.green_max, pf.blue_max, values)
    codec.to_bgra(values, fb[y:y + h, x:x + w])
    return pos

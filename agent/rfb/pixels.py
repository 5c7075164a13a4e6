"""One client pixel format, ready for the kernels: lookup tables and wire layouts.

Encoders and decoders share it so that a lossless round trip is exact by
construction: a channel c (0..255) becomes round(c * max / 255) on the way
out and round(v * 255 / max) on the way back; ``quantize`` is that trip.
"""
from __future__ import annotations

import sys
from functools import lru_cache

import numpy as np

from agent._native import pixconv
from agent.rfb.pixelformat import PixelFormat

Layout = tuple[int, int, int, int, int]
"""(nbytes, shift of byte 0, byte 1, byte 2, byte 3): wire byte i is (value >> shift_i) & 0xFF."""

_LITTLE_HOST = sys.byteorder == "little"


def _plain_layout(nbytes: int, big_endian: bool) -> Layout:
    shifts = [8 * i for i in range(nbytes)]
    if big_endian:
        shifts.reverse()
    shifts += [0] * (4 - nbytes)
    return (nbytes, shifts[0], shifts[1], shifts[2], shifts[3])


def _encode_lut(cmax: int, shift: int) -> np.ndarray:
    c = np.arange(256, dtype=np.uint64)
    return (((c * cmax + 127) // 255) << shift).astype(np.uint32)


def _decode_lut(cmax: int) -> np.ndarray:
    v = np.arange(cmax + 1, dtype=np.uint64)
    return ((v * 255 + cmax // 2) // cmax).astype(np.uint8)


class PixelCodec:
    """Converts between BGRA frames, pixel values and wire bytes for one pixel format."""

    def __init__(self, pf: PixelFormat) -> None:
        pf.validate()
        self.pf = pf
        self.bytes_per_pixel = pf.bits_per_pixel // 8
        self.pixel: Layout = _plain_layout(self.bytes_per_pixel, pf.big_endian)
        self.cpixel: Layout = self._cpixel_layout()
        self.is888 = pf.bits_per_pixel == 32 and pf.depth == 24 and (
            pf.red_max, pf.green_max, pf.blue_max) == (255, 255, 255)
        # Tight's TPIXEL is R, G, B bytes; a byte layout reads it straight from
        # the value when each channel sits on a byte boundary.
        self._tpixel_direct = self.is888 and all(s % 8 == 0 for s in (pf.red_shift, pf.green_shift, pf.blue_shift))
        if not self.is888:
            self.tpixel: Layout = self.pixel
        elif self._tpixel_direct:
            self.tpixel = (3, pf.red_shift, pf.green_shift, pf.blue_shift, 0)
        else:
            self.tpixel = (3, 16, 8, 0, 0)
        self.tpixel_size = self.tpixel[0]
        self.cpixel_size = self.cpixel[0]
        self._lut_r = _encode_lut(pf.red_max, pf.red_shift)
        self._lut_g = _encode_lut(pf.green_max, pf.green_shift)
        self._lut_b = _encode_lut(pf.blue_max, pf.blue_shift)
        self._dlut_r = _decode_lut(pf.red_max)
        self._dlut_g = _decode_lut(pf.green_max)
        self._dlut_b = _decode_lut(pf.blue_max)
        rgb888 = (pf.red_max, pf.green_max, pf.blue_max) == (255, 255, 255) and (
            pf.red_shift, pf.green_shift, pf.blue_shift) == (16, 8, 0)
        self._native_mask = 0x00FFFFFF if rgb888 and _LITTLE_HOST else 0
        self._native_out = rgb888 and _LITTLE_HOST

    def _cpixel_layout(self) -> Layout:
        """ZRLE's CPIXEL: 3 bytes when every colour bit is in the low or high 3 bytes."""
        pf = self.pf
        if pf.bits_per_pixel != 32 or pf.depth > 24:
            return self.pixel
        mask = (pf.red_max << pf.red_shift) | (pf.green_max << pf.green_shift) | (pf.blue_max << pf.blue_shift)
        if mask < (1 << 24):  # the low bytes win when both would do (rfbproto)
            return (3, 16, 8, 0, 0) if pf.big_endian else (3, 0, 8, 16, 0)
        if mask & 0xFF == 0:
            return (3, 24, 16, 8, 0) if pf.big_endian else (3, 8, 16, 24, 0)
        return self.pixel

    # BGRA <-> values

    def to_values(self, bgra: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """(h, w, 4) uint8 BGRA -> (h, w) uint32 pixel values in this format."""
        if bgra.ndim != 3 or bgra.shape[2] != 4 or bgra.dtype != np.uint8:
            raise ValueError("expected an (h, w, 4) uint8 BGRA array")
        if bgra.strides[2] != 1:
            bgra = np.ascontiguousarray(bgra)
        if out is None:
            out = np.empty(bgra.shape[:2], np.uint32)
        pixconv.bgra_to_values(bgra, self._lut_r, self._lut_g, self._lut_b, self._native_mask, out)
        return out

    def to_bgra(self, values: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """(h, w) uint32 pixel values -> BGRA with alpha 255, written into ``out`` if given."""
        values = np.ascontiguousarray(values, np.uint32)
        if out is None:
            out = np.empty(values.shape + (4,), np.uint8)
        pf = self.pf
        pixconv.values_to_bgra(values, self._dlut_r, self._dlut_g, self._dlut_b,
                               pf.red_shift, pf.green_shift, pf.blue_shift, self._native_out, out)
        return out

    def quantize(self, bgra: np.ndarray) -> np.ndarray:
        """What a viewer in this format shows for ``bgra`` after a lossless round trip."""
        return self.to_bgra(self.to_values(bgra))

    # values <-> wire bytes

    def pack(self, values: np.ndarray, layout: Layout | None = None) -> bytes:
        """Wire bytes of ``values`` (row-major) in ``layout`` (default: PIXEL)."""
        layout = layout or self.pixel
        values = values.reshape(1, -1) if values.ndim == 1 else values
        if values.ndim != 2 or values.strides[-1] != 4 or values.dtype != np.uint32:
            values = np.ascontiguousarray(values.reshape(-1, values.shape[-1]), np.uint32)
        return pixconv.pack_values(values, layout)

    def unpack(self, data: bytes | memoryview | np.ndarray, count: int, layout: Layout | None = None) -> np.ndarray:
        """``count`` wire pixels in ``layout`` -> uint32 values (raises ValueError if short)."""
        out = np.empty(count, np.uint32)
        pixconv.unpack_values(np.frombuffer(data, np.uint8), layout or self.pixel, out)
        return out

    def pack_tpixels(self, values: np.ndarray) -> bytes:
        """Tight TPIXELs: R, G, B bytes for 888 formats, else plain PIXELs."""
        if self.is888 and not self._tpixel_direct:
            values = self.values_to_rgb24(values)
        return self.pack(values, self.tpixel)

    def unpack_tpixels(self, data: bytes | memoryview | np.ndarray, count: int) -> np.ndarray:
        out = self.unpack(data, count, self.tpixel)
        if self.is888 and not self._tpixel_direct:
            out = self.rgb24_to_values(out)
        return out

    def values_to_rgb24(self, values: np.ndarray) -> np.ndarray:
        pf = self.pf
        v = values.astype(np.uint32)
        return (((v >> pf.red_shift) & 255) << 16) | (((v >> pf.green_shift) & 255) << 8) | ((v >> pf.blue_shift) & 255)

    def rgb24_to_values(self, rgb: np.ndarray) -> np.ndarray:
        pf = self.pf
        v = rgb.astype(np.uint32)
        return ((((v >> 16) & 255) << pf.red_shift) | (((v >> 8) & 255) << pf.green_shift)
                | ((v & 255) << pf.blue_shift)).astype(np.uint32)

    def pixel_bytes(self, value: int, layout: Layout | None = None) -> bytes:
        """One value as wire bytes (backgrounds, hextile colours)."""
        return self.pack(np.array([value], np.uint32), layout)


@lru_cache(maxsize=32)
def codec_for(pf: PixelFormat) -> PixelCodec:
    """Codecs are immutable and their tables cost a little to build: share them."""
    return PixelCodec(pf)


def quantize(frame: np.ndarray, pf: PixelFormat) -> np.ndarray:
    """``frame`` converted to ``pf`` and back to BGRA, alpha 255."""
    return codec_for(pf).quantize(frame)

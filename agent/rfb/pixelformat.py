"""The RFB PIXEL_FORMAT structure (RFC 6143 §7.4) and its validation.

Frames inside the agent are always BGRA bytes, which is exactly ``NATIVE``
(32 bpp, depth 24, little endian, red at bit 16). Every other true-colour
format a viewer may ask for is converted per rectangle by the encoders.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

_STRUCT = struct.Struct(">BBBBHHHBBB3x")


class PixelFormatError(ValueError):
    """A viewer asked for a pixel format we cannot serve (colour map, bad bpp, bad masks)."""


@dataclass(frozen=True)
class PixelFormat:
    bits_per_pixel: int
    depth: int
    big_endian: bool
    true_colour: bool
    red_max: int
    green_max: int
    blue_max: int
    red_shift: int
    green_shift: int
    blue_shift: int

    SIZE = 16

    def pack(self) -> bytes:
        return _STRUCT.pack(
            self.bits_per_pixel,
            self.depth,
            int(self.big_endian),
            int(self.true_colour),
            self.red_max,
            self.green_max,
            self.blue_max,
            self.red_shift,
            self.green_shift,
            self.blue_shift,
        )

    @classmethod
    def unpack(cls, data: bytes) -> "PixelFormat":
        if len(data) != cls.SIZE:
            raise PixelFormatError(f"pixel format is {cls.SIZE} bytes, got {len(data)}")
        bpp, depth, be, tc, rmax, gmax, bmax, rsh, gsh, bsh = _STRUCT.unpack(data)
        return cls(bpp, depth, be != 0, tc != 0, rmax, gmax, bmax, rsh, gsh, bsh)

    @property
    def bytes_per_pixel(self) -> int:
        return self.bits_per_pixel // 8

    def validate(self) -> None:
        """Raise PixelFormatError unless this is a true-colour format we can produce."""
        if not self.true_colour:
            raise PixelFormatError("colour-map pixel formats are not supported; use true colour")
        if self.bits_per_pixel not in (8, 16, 32):
            raise PixelFormatError(f"bits-per-pixel must be 8, 16 or 32, got {self.bits_per_pixel}")
        if not 1 <= self.depth <= self.bits_per_pixel:
            raise PixelFormatError(f"depth {self.depth} does not fit in {self.bits_per_pixel} bpp")
        used = 0
        for name, cmax, shift in (
            ("red", self.red_max, self.red_shift),
            ("green", self.green_max, self.green_shift),
            ("blue", self.blue_max, self.blue_shift),
        ):
            if cmax == 0 or cmax & (cmax + 1):
                raise PixelFormatError(f"{name}-max must be 2^n - 1 and non-zero, got {cmax}")
            mask = cmax << shift
            if mask >> self.bits_per_pixel:
                raise PixelFormatError(f"{name} channel does not fit in {self.bits_per_pixel} bpp")
            if mask & used:
                raise PixelFormatError(f"{name} channel overlaps another channel")
            used |= mask

    @property
    def is_native(self) -> bool:
        """True when BGRA frame bytes can be sent as they are."""
        return self == NATIVE or (
            self.bits_per_pixel == 32
            and self.true_colour
            and (self.red_max, self.green_max, self.blue_max) == (255, 255, 255)
            and (
                (not self.big_endian and (self.red_shift, self.green_shift, self.blue_shift) == (16, 8, 0))
                or (self.big_endian and (self.red_shift, self.green_shift, self.blue_shift) == (8, 16, 24))
            )
        )


NATIVE = PixelFormat(32, 24, False, True, 255, 255, 255, 16, 8, 0)
"""What the server announces in ServerInit: the BGRA layout of captured frames."""

# Formats the tests and benchmarks exercise: every bpp and both byte orders.
BGR233 = PixelFormat(8, 8, False, True, 7, 7, 3, 0, 3, 6)
RGB565_LE = PixelFormat(16, 16, False, True, 31, 63, 31, 11, 5, 0)
RGB565_BE = PixelFormat(16, 16, True, True, 31, 63, 31, 11, 5, 0)
RGB888_BE = PixelFormat(32, 24, True, True, 255, 255, 255, 16, 8, 0)

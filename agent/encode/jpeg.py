"""Tight JPEG (compression type 0x9): photo-like areas for clients that accept lossy pixels.

Only used when the client sent a quality-level pseudo-encoding, and never
for 8 bpp formats (TigerVNC's rule: the client could not show the colours
JPEG keeps). The quality level maps to a JPEG quality and chroma
subsampling with TigerVNC's table (TightJPEGEncoder.cxx, measured by the
VirtualGL project). simplejpeg (libjpeg-turbo) releases the GIL while it works.
"""
from __future__ import annotations

import simplejpeg

from agent.encode.base import Encoder, EncoderError, RectInput
from agent.encode.tight import compact_length
from agent.rfb.constants import ENC_TIGHT, TIGHT_CTL_JPEG

# quality level 0..9 -> (JPEG quality, chroma subsampling)
JPEG_QUALITY_TABLE = (
    (15, "420"), (29, "420"), (41, "420"), (42, "422"), (62, "422"),
    (77, "422"), (79, "444"), (86, "444"), (92, "444"), (100, "444"),
)


class TightJPEGEncoder(Encoder):
    encoding = ENC_TIGHT
    name = "TightJPEG"
    lossy = True

    def __init__(self) -> None:
        self.quality_level = 6

    def encode(self, rect: RectInput) -> bytes:
        if rect.codec.bytes_per_pixel < 2:
            raise EncoderError("Tight JPEG is not used for 8 bpp pixel formats")
        quality, subsampling = JPEG_QUALITY_TABLE[self.quality_level]
        try:
            data = simplejpeg.encode_jpeg(rect.bgra, quality, colorspace="BGRX",
                                          colorsubsampling=subsampling, fastdct=True)
        except ValueError as exc:  # only for shapes simplejpeg cannot take
            raise EncoderError(f"JPEG encoding of a {rect.w}x{rect.h} rectangle failed: {exc}") from exc
        return bytes((TIGHT_CTL_JPEG,)) + compact_length(len(data)) + data

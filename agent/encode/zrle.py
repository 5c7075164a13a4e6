"""ZRLE encoding (RFC 6143 7.7.6): 64x64 tiles of palette/RLE data through one zlib stream.

The stream lives as long as the connection: every ZRLE rectangle continues
it and ends with a sync flush so the client can decode it whole. ZRLE has no
way to tell the client to reset its stream, and Python's zlib cannot change
a stream's level, so the level is fixed by the first ZRLE rectangle.

Below an outer compressor (the secure channel's zstd) the stream stores
(level 0): the packed tiles stay visible to the outer compressor's long
window, where a glyph's bits recur page after page.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np

from agent._native import zrle as _zrle
from agent.encode.base import Encoder, RectInput
from agent.rfb.constants import ENC_ZRLE

# zlib level per compression level 0..9 (None: the client sent none -> DEFAULT). The
# tile data is already run-length and palette coded, so zlib effort changes
# little: measured on the synthetic workloads, level 6 saves about 1% over 1.
ZRLE_ZLIB_LEVELS = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9)
ZRLE_DEFAULT_COMPRESS_LEVEL = 2

_LEN = struct.Struct(">I")


class ZRLEEncoder(Encoder):
    encoding = ENC_ZRLE
    name = "ZRLE"
    max_palette = 127

    def __init__(self) -> None:
        self._level = ZRLE_ZLIB_LEVELS[ZRLE_DEFAULT_COMPRESS_LEVEL]
        self._stream: zlib._Compress | None = None
        self._stored = False

    def set_compress_level(self, level: int | None) -> None:
        if self._stream is None and not self._stored:  # see module docstring: fixed once the stream exists
            self._level = ZRLE_ZLIB_LEVELS[ZRLE_DEFAULT_COMPRESS_LEVEL if level is None else level]

    @property
    def stored(self) -> bool:
        return self._stored

    def store_only(self) -> None:
        """Let zlib store, not compress (an outer compressor follows); only before the first rectangle."""
        if self._stream is None:
            self._stored = True
            self._level = 0

    def encode(self, rect: RectInput) -> bytes:
        codec = rect.codec
        out = np.empty(_zrle.bound(rect.w, rect.h, codec.cpixel_size), np.uint8)
        n = _zrle.encode_tiles(rect.values, codec.cpixel, out)
        if self._stream is None:
            self._stream = zlib.compressobj(self._level)
        data = self._stream.compress(out[:n]) + self._stream.flush(zlib.Z_SYNC_FLUSH)
        return _LEN.pack(len(data)) + data

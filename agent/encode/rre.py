"""RRE encoding (RFC 6143 7.7.3): background plus solid subrectangles.

Good for solid areas and large flat shapes, dreadful for text or photos: the
encoder gives up (returns None) past the Raw size so the manager falls back.
"""
from __future__ import annotations

import numpy as np

from agent._native import rre as _rre
from agent.encode.base import Encoder, RectInput
from agent.rfb.constants import ENC_RRE


class RREEncoder(Encoder):
    encoding = ENC_RRE
    name = "RRE"
    max_palette = 256

    def encode(self, rect: RectInput) -> bytes | None:
        codec = rect.codec
        bg = int(rect.palette[0]) if rect.palette is not None else int(rect.values[0, 0])
        limit = rect.area * codec.bytes_per_pixel
        out = np.empty(max(limit, 4 + codec.bytes_per_pixel), np.uint8)
        n = _rre.encode(rect.values, bg, codec.pixel, out, max(limit, 4 + codec.bytes_per_pixel))
        if n < 0:
            return None
        return out[:n].tobytes()

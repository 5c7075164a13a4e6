"""Hextile encoding (RFC 6143 7.7.4): 16x16 tiles of background, foreground and subrects.

Never much worse than Raw (each tile falls back to raw pixels), so it is a
safe choice for clients whose best offer it is.
"""
from __future__ import annotations

import numpy as np

from agent._native import hextile as _hextile
from agent.encode.base import Encoder, RectInput
from agent.rfb.constants import ENC_HEXTILE


class HextileEncoder(Encoder):
    encoding = ENC_HEXTILE
    name = "Hextile"

    def encode(self, rect: RectInput) -> bytes:
        codec = rect.codec
        out = np.empty(_hextile.bound(rect.w, rect.h, codec.bytes_per_pixel), np.uint8)
        n = _hextile.encode(rect.values, codec.pixel, out)
        return out[:n].tobytes()

"""Raw encoding (RFC 6143 7.7.1): every pixel, in the client's format. Every client takes it."""
from __future__ import annotations

from agent.encode.base import Encoder, RectInput
from agent.rfb.constants import ENC_RAW


class RawEncoder(Encoder):
    encoding = ENC_RAW
    name = "Raw"

    def encode(self, rect: RectInput) -> bytes:
        return rect.codec.pack(rect.values)

"""RFB encoders built on the agent._native kernels, and the manager that chooses among them.

Most code needs only ``EncodeManager`` (one per viewer connection); the
encoders are public for tests and benchmarks.
"""
from agent.encode.base import Encoder, EncoderError, RectInput
from agent.encode.hextile import HextileEncoder
from agent.encode.jpeg import TightJPEGEncoder
from agent.encode.manager import EncodedUpdate, EncodeManager, Kind
from agent.encode.raw import RawEncoder
from agent.encode.rre import RREEncoder
from agent.encode.tight import TightEncoder, compact_length
from agent.encode.zrle import ZRLEEncoder
from agent.rfb.pixels import PixelCodec, codec_for, quantize

__all__ = [
    "EncodeManager", "EncodedUpdate", "EncoderError", "Encoder", "RectInput", "Kind",
    "RawEncoder", "RREEncoder", "HextileEncoder", "ZRLEEncoder", "TightEncoder", "TightJPEGEncoder",
    "PixelCodec", "codec_for", "quantize", "compact_length",
]

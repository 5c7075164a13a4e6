"""RFB rectangle decoders for the sans-IO client (agent.rfb), and ``quantize`` for tests.

``decode_rect`` decodes one rectangle's payload into a BGRA framebuffer
(alpha always 255) and says how many bytes it used, or None when the bytes
so far do not hold the whole payload: the client calls again with more, and
nothing was consumed or changed meanwhile. Malformed data raises DecodeError,
never another exception.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from agent.rfb.decode.base import MAX_COMPRESSED, DecodeError, DecoderState
from agent.rfb.decode.cursor import decode_cursor_payload
from agent.rfb.decode.simple import decode_copyrect, decode_hextile, decode_raw, decode_rre
from agent.rfb.decode.tight import decode_tight
from agent.rfb.decode.zrle import decode_zrle
from agent.rfb.pixels import PixelCodec, codec_for, quantize
from agent.rfb import constants as C
from agent.rfb.pixelformat import PixelFormat, PixelFormatError

__all__ = ["DecodeError", "DecoderState", "decode_rect", "decode_cursor", "quantize", "MAX_COMPRESSED"]

_Decoder = Callable[[DecoderState, memoryview, int, int, int, int, np.ndarray, PixelCodec], "int | None"]

_DECODERS: dict[int, _Decoder] = {
    C.ENC_RAW: decode_raw,
    C.ENC_COPYRECT: decode_copyrect,
    C.ENC_RRE: decode_rre,
    C.ENC_HEXTILE: decode_hextile,
    C.ENC_ZRLE: decode_zrle,
    C.ENC_TIGHT: decode_tight,
}


def _codec(pf: PixelFormat) -> PixelCodec:
    try:
        return codec_for(pf)
    except PixelFormatError as exc:
        raise DecodeError(f"cannot decode pixels in this format: {exc}") from None


def decode_rect(state: DecoderState, encoding: int, data: memoryview, x: int, y: int, w: int, h: int,
                fb: np.ndarray, pf: PixelFormat) -> int | None:
    """Decode one rectangle into fb[y:y+h, x:x+w]; bytes consumed, or None if ``data`` is short."""
    decoder = _DECODERS.get(encoding)
    if decoder is None:
        raise DecodeError(f"rectangle in encoding {encoding}, which this client does not decode")
    if fb.ndim != 3 or fb.shape[2] != 4 or fb.dtype != np.uint8:
        raise DecodeError("the framebuffer must be an (H, W, 4) uint8 array")
    if x < 0 or y < 0 or w < 0 or h < 0 or x + w > fb.shape[1] or y + h > fb.shape[0]:
        raise DecodeError(f"rectangle {w}x{h} at ({x}, {y}) is outside the {fb.shape[1]}x{fb.shape[0]} framebuffer")
    return decoder(state, memoryview(data).cast("B"), x, y, w, h, fb, _codec(pf))


def decode_cursor(data: memoryview, w: int, h: int, pf: PixelFormat) -> tuple[np.ndarray, int] | None:
    """The Cursor pseudo-encoding: (BGRA image, alpha from the bitmask, bytes consumed) or None."""
    if w < 0 or h < 0:
        raise DecodeError(f"cursor of {w}x{h}")
    return decode_cursor_payload(memoryview(data).cast("B"), w, h, _codec(pf))

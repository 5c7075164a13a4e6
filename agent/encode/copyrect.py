"""CopyRect encoding (RFC 6143 7.7.2): the client copies pixels it already has."""
from __future__ import annotations

import struct

from agent.encode.base import EncoderError
from agent.models import Copy
from agent.rfb.constants import ENC_COPYRECT
from agent.rfb.server_messages import write_rect_header

NAME = "CopyRect"
_SRC = struct.Struct(">HH")


def copyrect_rect(copy: Copy, width: int, height: int) -> bytes:
    """A complete CopyRect rectangle (header + source position) for a framebuffer of width x height.

    Copies are never split: a copy of overlapping areas is only right as one
    operation, and CopyRect has no size limit of its own.
    """
    sx, sy, x, y, w, h = copy
    if w <= 0 or h <= 0:
        raise EncoderError(f"copy of an empty area {w}x{h}")
    for px, py in ((sx, sy), (x, y)):
        if px < 0 or py < 0 or px + w > width or py + h > height:
            raise EncoderError(f"copy {copy} reaches outside the {width}x{height} framebuffer")
    return write_rect_header(x, y, w, h, ENC_COPYRECT) + _SRC.pack(sx, sy)

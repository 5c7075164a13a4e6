"""Pixels for the page: changed rectangles of the decoded framebuffer as raw RGBA (sans-IO).

Why raw RGBA and not PNG/JPEG: the console is served on loopback only, where bytes are free and
CPU is not. Raw rectangles are lossless, cost the bridge a numpy channel swap instead of an image
encoder, and cost the page a ``putImageData`` instead of an image decoder, which keeps the echo of
a keystroke within a millisecond or two of a VNC viewer's. The page code stays tiny
(Guacamole's split: the server decides what to draw, the page draws it).

Binary WebSocket messages, big-endian:

    kind u8 = 1 (RECT)   x u16 | y u16 | w u16 | h u16 | w*h*4 bytes RGBA, row by row
    kind u8 = 2 (SIZE)   w u16 | h u16                   the screen is now w x h (clear the canvas)

A page that falls behind does not queue frames: each page has a ``Dirty`` region that collects
changed rectangles while its previous message is being written, and the next message is cut from
the framebuffer as it is then (like an RFB viewer's pending update).
"""
from __future__ import annotations

import struct

import numpy as np

RECT = 1
SIZE = 2
_RECT_HEADER = struct.Struct(">BHHHH")
_SIZE_HEADER = struct.Struct(">BHH")
MAX_RECTS = 48              # more pending rectangles than this are sent as their bounding box
STRIP_BYTES = 1 << 20       # a large rectangle goes in row strips of at most this many bytes
_BGRA_TO_RGBA = [2, 1, 0, 3]

Rect = tuple[int, int, int, int]


def pack_size(width: int, height: int) -> bytes:
    return _SIZE_HEADER.pack(SIZE, width, height)


def clip(rect: Rect, width: int, height: int) -> Rect | None:
    x, y, w, h = rect
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(width, x + w), min(height, y + h)
    if x1 <= x0 or y1 <= y0:
        return None
    return (x0, y0, x1 - x0, y1 - y0)


def strips(rect: Rect) -> list[Rect]:
    """``rect`` cut into row strips of at most STRIP_BYTES of pixels each."""
    x, y, w, h = rect
    rows = max(1, STRIP_BYTES // (4 * w))
    return [(x, top, w, min(rows, y + h - top)) for top in range(y, y + h, rows)]


def pack_rect(framebuffer: np.ndarray, rect: Rect) -> bytes:
    """One RECT message for ``rect`` of a (H, W, 4) BGRA framebuffer (alpha forced opaque)."""
    x, y, w, h = rect
    rgba = framebuffer[y:y + h, x:x + w, _BGRA_TO_RGBA]  # fancy indexing: a fresh C-contiguous copy
    rgba[:, :, 3] = 255
    return _RECT_HEADER.pack(RECT, x, y, w, h) + rgba.tobytes()


def bounding_box(rects: list[Rect]) -> Rect:
    x0 = min(r[0] for r in rects)
    y0 = min(r[1] for r in rects)
    x1 = max(r[0] + r[2] for r in rects)
    y1 = max(r[1] + r[3] for r in rects)
    return (x0, y0, x1 - x0, y1 - y0)


class Dirty:
    """What one page has not been sent yet: nothing, some rectangles, or everything (and the size)."""

    def __init__(self) -> None:
        self.everything = True  # a new page has seen nothing
        self.rects: list[Rect] = []

    def add(self, rects: list[Rect]) -> None:
        if not self.everything:
            self.rects.extend(rects)

    def mark_all(self) -> None:
        self.everything = True
        self.rects.clear()

    def __bool__(self) -> bool:
        return self.everything or bool(self.rects)

    def take(self, framebuffer: np.ndarray) -> list[bytes]:
        """The messages that bring the page up to ``framebuffer``; the region is empty afterwards."""
        height, width = framebuffer.shape[:2]
        if self.everything:
            self.everything = False
            self.rects.clear()
            out = [pack_size(width, height)]
            if width and height:
                out += [pack_rect(framebuffer, strip) for strip in strips((0, 0, width, height))]
            return out
        rects = [c for c in (clip(r, width, height) for r in self.rects) if c is not None]
        self.rects.clear()
        if len(rects) > MAX_RECTS:
            rects = [bounding_box(rects)]
        return [pack_rect(framebuffer, strip) for rect in rects for strip in strips(rect)]

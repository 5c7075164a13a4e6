"""The plain values every part of the agent passes around: rectangles (with the one set of geometry
helpers), the cursor shape, and HOST:PORT addresses (one parser for every command).

Tuples rather than classes for geometry: millions are made per second on busy
screens and they cross into Cython kernels cheaply. Two shapes of rectangle
exist because two kinds of code want them: ``Rect`` (x, y, w, h) is what RFB
puts on the wire and what detection reports; ``Box`` (x0, y0, x1, y1,
end-exclusive) is what clipping and subtraction arithmetic wants.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Optional, Tuple

import numpy as np

from agent.errors import UsageError

Rect = Tuple[int, int, int, int]
"""(x, y, w, h) in framebuffer pixels; w and h are > 0."""

Box = Tuple[int, int, int, int]
"""(x0, y0, x1, y1), end-exclusive."""

Copy = Tuple[int, int, int, int, int, int]
"""(src_x, src_y, x, y, w, h): copy the w x h block at (src_x, src_y) to (x, y)."""

Matrix = Tuple[int, int, int, int, int]
"""(offset, width, rows, stripe, first): ``rows`` rows of ``width`` bytes at ``offset`` in the bytes sent,
which the secure channel may send in vertical stripes ``stripe`` bytes wide, the first of them ``first``
wide (0: as wide as the rest) (agent.secure.stripes; the encoders say where their matrices are)."""


def shift_matrices(matrices: Iterable[Matrix], by: int) -> list[Matrix]:
    """``matrices`` with their offsets moved ``by`` bytes (what is written in front of them)."""
    if not matrices:  # most updates carry none: no comprehension set up for nothing
        return []
    return [(offset + by, width, rows, stripe, first) for offset, width, rows, stripe, first in matrices]

# RFB and Tight limits every emitted rectangle respects.
MAX_RECT_WIDTH = 2048
MAX_RECT_AREA = 65536
# Oversized rectangles are cut on tile lines, so the pieces line up with the detector's tiles.
SPLIT_TILE = 64
SPLIT_WIDE_WIDTH = MAX_RECT_AREA // SPLIT_TILE  # 1024 wide x 64 high


@dataclass(frozen=True)
class CursorShape:
    """A cursor image for the RFB Cursor pseudo-encoding: BGRA pixels and hotspot."""

    pixels: np.ndarray  # (h, w, 4) uint8 BGRA; alpha > 0 means visible
    hot_x: int
    hot_y: int
    serial: int  # changes whenever the shape changes


def rect_box(x: int, y: int, w: int, h: int) -> Box:
    return (x, y, x + w, y + h)


def box_rect(box: Box) -> Rect:
    return (box[0], box[1], box[2] - box[0], box[3] - box[1])


def box_area(box: Box) -> int:
    return (box[2] - box[0]) * (box[3] - box[1])


def rects_area(rects: Iterable[Rect]) -> int:
    """Pixels of ``rects`` added up (overlaps count twice): what an update or a grab costs."""
    total = 0
    for _, _, w, h in rects:  # a loop, not sum() over a generator: asked several times a typed key
        total += w * h
    return total


def intersect(a: Box, b: Box) -> Optional[Box]:
    """The common part of two boxes, or None when they do not overlap."""
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    return (x0, y0, x1, y1) if x0 < x1 and y0 < y1 else None


def subtract(a: Box, b: Optional[Box]) -> list[Box]:
    """``a`` minus ``b`` as up to four disjoint boxes (bands above, below, left, right)."""
    inner = intersect(a, b) if b is not None else None
    if inner is None:
        return [a] if a[0] < a[2] and a[1] < a[3] else []
    out = []
    if a[1] < inner[1]:
        out.append((a[0], a[1], a[2], inner[1]))
    if inner[3] < a[3]:
        out.append((a[0], inner[3], a[2], a[3]))
    if a[0] < inner[0]:
        out.append((a[0], inner[1], inner[0], inner[3]))
    if inner[2] < a[2]:
        out.append((inner[2], inner[1], a[2], inner[3]))
    return out


def rect_intersect(a: Rect, b: Rect) -> Optional[Rect]:
    """The common part of two rectangles, or None."""
    box = intersect(rect_box(*a), rect_box(*b))
    return None if box is None else box_rect(box)


def tile_span(rect: Rect, width: int, height: int, tile: int) -> Optional[tuple[slice, slice]]:
    """The rows and columns of ``tile``-sized tiles that ``rect``, clipped to a ``width`` x ``height``
    screen, meets; None when nothing of it is on the screen."""
    x, y, w, h = rect
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(width, x + w), min(height, y + h)
    if x1 <= x0 or y1 <= y0:
        return None
    return slice(y0 // tile, -(-y1 // tile)), slice(x0 // tile, -(-x1 // tile))


def rect_union(a: Optional[Rect], b: Optional[Rect]) -> Optional[Rect]:
    """The bounding rectangle of two (either may be None)."""
    if a is None:
        return b
    if b is None:
        return a
    x0, y0 = min(a[0], b[0]), min(a[1], b[1])
    x1, y1 = max(a[0] + a[2], b[0] + b[2]), max(a[1] + a[3], b[1] + b[3])
    return (x0, y0, x1 - x0, y1 - y0)


def split_rect(x: int, y: int, w: int, h: int) -> list[Rect]:
    """Cut a rectangle to at most MAX_RECT_WIDTH wide and MAX_RECT_AREA pixels, on 64-pixel tile lines."""
    if w <= MAX_RECT_WIDTH and w * h <= MAX_RECT_AREA:
        return [(x, y, w, h)]
    if w > SPLIT_WIDE_WIDTH:
        sw, sh = SPLIT_WIDE_WIDTH, SPLIT_TILE
    else:
        sw = w
        sh = MAX_RECT_AREA // w
        sh -= sh % SPLIT_TILE
    return [(x + dx, y + dy, min(sw, w - dx), min(sh, h - dy))
            for dy in range(0, h, sh) for dx in range(0, w, sw)]


_ADDRESS = re.compile(r"\[([0-9A-Fa-f:.]+)\](?::(\d+))?|([^:\[\]\s]+)(?::(\d+))?")


class AddressError(UsageError):
    """A HOST:PORT argument could not be understood."""


def parse_address(text: str, default_port: int | None = None, *, allow_port_zero: bool = False) -> tuple[str, int]:
    """``HOST:PORT``, ``[IPv6]:PORT`` or, with a default port, ``HOST`` -> (host, port).

    Port 0 ("pick a free one") is only meaningful for addresses we listen on.
    """
    match = _ADDRESS.fullmatch(text.strip())
    if match is None:
        raise AddressError(f"invalid address {text!r}: expected HOST:PORT")
    host = match.group(1) or match.group(3)
    port_text = match.group(2) or match.group(4)
    if port_text is None and default_port is None:
        raise AddressError(f"invalid address {text!r}: expected HOST:PORT (the port is required)")
    port = int(port_text) if port_text else default_port
    assert port is not None
    if not (0 if allow_port_zero else 1) <= port < 65536:
        raise AddressError(f"invalid port in {text!r}: expected 1-65535")
    return host, port

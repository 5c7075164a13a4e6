"""Plain geometry types shared by detection, tracking and encoding.

Tuples rather than classes: millions are made per second on busy screens and
they cross into Cython kernels cheaply.
"""
from __future__ import annotations

from typing import Tuple

Rect = Tuple[int, int, int, int]
"""(x, y, w, h) in framebuffer pixels; w and h are > 0."""

Copy = Tuple[int, int, int, int, int, int]
"""(src_x, src_y, x, y, w, h): copy the w x h block at (src_x, src_y) to (x, y)."""

# RFB and Tight limits every emitted rectangle respects.
MAX_RECT_WIDTH = 2048
MAX_RECT_AREA = 65536

"""Per-tile change boxes (x0, y0, x1, y1, as ``tiles.diff_tiles`` leaves them) as rectangles to send.

Split from agent.changes.detector: the tracker turns its own tile boxes into rectangles the same way.
"""
from __future__ import annotations

import numpy as np

from agent._native import rects as _rects
from agent.models import MAX_RECT_AREA, MAX_RECT_WIDTH, Rect, split_rect

# What a rect costs, in unchanged pixels worth merging into a neighbour to save it. On the wire a
# rect is a 12-byte header and ~20 bytes of framing, and below the channel's long-window zstd an
# unchanged pixel sent again costs almost nothing; on the customer's CPU each rect is ~0.1 ms of
# encoding (palette, cells, stored blocks) and more per rect downstream. 22 pages of the link
# benchmark's paging and 60 frames of its churn, replayed (detector, encoder, mux, zstd):
#   64 (a rect's bytes alone): 46.9 rects a page, 136.2 kB, encoding 5.8 ms a page; churn 143.1 kB, 1.7 ms
#   256: 33.0, 127.7 kB, 4.9 ms; churn 130.5 kB, 1.3 ms
#   1024: 20.1, 119.7 kB, 4.0 ms; churn 123.0 kB, 1.0 ms
#   4096: 10.3, 130.3 kB, 3.7 ms; churn 120.3 kB, 1.0 ms
RECT_OVERHEAD_PIXELS = 1024
SMALL_PART_TILES = 16  # a part of the tile grid up to this many tiles is summed in Python (box_area)


def boxes_to_rects(boxes: np.ndarray, overhead: int = RECT_OVERHEAD_PIXELS) -> tuple[list[Rect], np.ndarray]:
    """Merge per-tile boxes by cost; returns the rects split to the limits and the merged (n, 4) array."""
    merged = np.empty((boxes.shape[0] * boxes.shape[1], 4), np.int32)
    n = _rects.merge_boxes(boxes, overhead, merged)
    merged = merged[:n]
    out: list[Rect] = []
    for x, y, w, h in merged.tolist():
        if w <= MAX_RECT_WIDTH and w * h <= MAX_RECT_AREA:
            out.append((x, y, w, h))
        else:
            out.extend(split_rect(x, y, w, h))
    return out, merged


def box_area(boxes: np.ndarray) -> int:
    """Pixels in the tile ``boxes``; a glyph's few tiles in Python (a numpy call costs microseconds cold)."""
    if boxes.shape[0] * boxes.shape[1] <= SMALL_PART_TILES:
        total = 0
        for row in boxes.tolist():
            for x0, y0, x1, y1 in row:
                total += (x1 - x0) * (y1 - y0)
        return total
    return int(((boxes[:, :, 2] - boxes[:, :, 0]) * (boxes[:, :, 3] - boxes[:, :, 1])).sum())

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


_ANY_AREA = 1 << 62  # rects.merge_part's limit when the rectangles are wanted whatever their area


def boxes_to_rects(boxes: np.ndarray, overhead: int = RECT_OVERHEAD_PIXELS) -> list[Rect]:
    """Merge per-tile boxes by cost; the rects split to the limits."""
    return within_limits(merged_boxes(boxes, overhead))


def merged_boxes(boxes: np.ndarray, overhead: int = RECT_OVERHEAD_PIXELS) -> list[Rect]:
    """Per-tile boxes (the whole grid) merged by cost, before any split to the limits."""
    return _rects.merge_part(boxes, 0, boxes.shape[0], 0, boxes.shape[1], overhead, _ANY_AREA)[1]


def within_limits(rects: list[Rect]) -> list[Rect]:
    """``rects`` with those wider or larger than an RFB/Tight rectangle may be split (on tile lines)."""
    out: list[Rect] = []
    for x, y, w, h in rects:
        if w <= MAX_RECT_WIDTH and w * h <= MAX_RECT_AREA:
            out.append((x, y, w, h))
        else:
            out.extend(split_rect(x, y, w, h))
    return out


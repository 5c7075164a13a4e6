"""Geometry of the detector's copies: grouping matched cells into boxes, joining them, ordering them.

Kept apart from agent.changes.detector (which finds and verifies moves) because
these are plain functions on boxes, testable alone. ``ordered`` also carries
the guarantee the detector's re-check relies on: no copy reads pixels an
earlier one wrote.
"""
from __future__ import annotations

import numpy as np

__all__ = ["MAX_COPIES", "MIN_COPY_AREA", "join", "label_boxes", "ordered", "peel"]

# Copies of one vector are joined pairwise only up to this many (quadratic, and rare).
MAX_JOIN = 256
# Copies kept per frame: the largest, and none smaller than MIN_COPY_AREA pixels.
MAX_COPIES = 64
MIN_COPY_AREA = 64


def peel(block: np.ndarray) -> tuple[int, int, int, int] | None:
    """A large all-True box ``(r0, c0, r1, c1)`` in ``block``, by peeling the emptiest side off."""
    r0, c0, (r1, c1) = 0, 0, block.shape
    while r0 < r1 and c0 < c1:
        sub = block[r0:r1, c0:c1]
        if sub.all():
            return r0, c0, r1, c1
        gaps = [np.count_nonzero(~sub[0]) / (c1 - c0), np.count_nonzero(~sub[-1]) / (c1 - c0),
                np.count_nonzero(~sub[:, 0]) / (r1 - r0), np.count_nonzero(~sub[:, -1]) / (r1 - r0)]
        side = gaps.index(max(gaps))
        if side == 0:
            r0 += 1
        elif side == 1:
            r1 -= 1
        elif side == 2:
            c0 += 1
        else:
            c1 -= 1
    return None


def join(rects: list[list[int]]) -> list[list[int]]:
    """Join disjoint boxes two by two while two share a whole edge (their union is then exact)."""
    rects = list(rects)
    i = 0
    while i < len(rects) and len(rects) <= MAX_JOIN:
        a = rects[i]
        for j in range(i + 1, len(rects)):
            b = rects[j]
            if ((a[0], a[2]) == (b[0], b[2]) and (a[3] == b[1] or b[3] == a[1])) or \
                    ((a[1], a[3]) == (b[1], b[3]) and (a[2] == b[0] or b[2] == a[0])):
                rects[i] = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]
                del rects[j]
                break
        else:
            i += 1
    return rects


def label_boxes(labels: np.ndarray, groups: int) -> list[tuple[int, int, int, int]]:
    """Bounding box ``(y0, x0, y1, x1)`` (end exclusive) of each label 1..groups, in label order."""
    if groups == 0:
        return []
    ys, xs = np.nonzero(labels)
    which = labels[ys, xs]
    lo_y, lo_x = np.full(groups + 1, labels.shape[0]), np.full(groups + 1, labels.shape[1])
    hi_y, hi_x = np.zeros(groups + 1, int), np.zeros(groups + 1, int)
    np.minimum.at(lo_y, which, ys)
    np.minimum.at(lo_x, which, xs)
    np.maximum.at(hi_y, which, ys + 1)
    np.maximum.at(hi_x, which, xs + 1)
    return list(zip(lo_y[1:].tolist(), lo_x[1:].tolist(), hi_y[1:].tolist(), hi_x[1:].tolist()))


def ordered(moves: list[tuple[int, int, int, int, int, int]]) -> list[tuple[int, int, int, int, int, int]]:
    """Order copies so none reads pixels an earlier one overwrote; copies caught in a cycle are dropped.

    Copy i must precede copy j when j's destination overlaps i's source. Only
    the MAX_COPIES largest copies of at least MIN_COPY_AREA pixels are kept:
    smaller ones save less than they cost the viewer.
    """
    moves = sorted((m for m in moves if (m[2] - m[0]) * (m[3] - m[1]) >= MIN_COPY_AREA),
                   key=lambda m: -(m[2] - m[0]) * (m[3] - m[1]))[:MAX_COPIES]
    n = len(moves)
    before: list[list[int]] = [[] for _ in range(n)]  # before[i]: copies that must wait for i
    waiting = [0] * n
    for i, (sx0, sy0, sx1, sy1, dx, dy) in enumerate(moves):
        sx0, sy0, sx1, sy1 = sx0 - dx, sy0 - dy, sx1 - dx, sy1 - dy
        for j, (x0, y0, x1, y1, _, _) in enumerate(moves):
            if i != j and x0 < sx1 and sx0 < x1 and y0 < sy1 and sy0 < y1:
                before[i].append(j)
                waiting[j] += 1
    out = []
    alive = set(range(n))
    while alive:
        ready = [i for i in sorted(alive) if waiting[i] == 0]
        if not ready:  # a cycle (two regions swapped): drop the smallest copy, its pixels go as rects
            ready_drop = max(alive)  # sorted by size, so the highest index is the smallest
            alive.discard(ready_drop)
            for j in before[ready_drop]:
                waiting[j] -= 1
            continue
        for i in ready:
            alive.discard(i)
            out.append(moves[i])
            for j in before[i]:
                waiting[j] -= 1
    return out

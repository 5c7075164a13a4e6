"""Where the viewer shows lossy (JPEG) pixels, kept as disjoint rectangles.

The update logic asks for it to schedule a lossless refresh once the screen
is quiet. Exactness matters in one direction only: claiming too much costs a
redundant refresh, claiming too little leaves artefacts on screen. So the
list is merged exactly where rectangles line up and, if it still grows long,
coarsened to bounding boxes, never trimmed. Operations are vectorised over
the list (numpy, (n, 4) arrays of x0, y0, x1, y1): a full-screen JPEG frame
leaves hundreds of pieces and every copy and lossless rectangle visits them.
"""
from __future__ import annotations

import numpy as np

from agent.models import Copy, Rect

MAX_LOSSY_RECTS = 256
MERGE_ABOVE = 32  # try exact merging once the list is this long


def _box(r: Rect) -> np.ndarray:
    x, y, w, h = r
    return np.array([[x, y, x + w, y + h]], np.int64)


def _minus(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Boxes ``a`` minus the single box ``b``, as disjoint boxes."""
    if not len(a):
        return a
    bx0, by0, bx1, by1 = b[0]
    ix0 = np.maximum(a[:, 0], bx0)
    iy0 = np.maximum(a[:, 1], by0)
    ix1 = np.minimum(a[:, 2], bx1)
    iy1 = np.minimum(a[:, 3], by1)
    hit = (ix0 < ix1) & (iy0 < iy1)
    if not hit.any():
        return a
    h = a[hit]
    ix0, iy0, ix1, iy1 = ix0[hit], iy0[hit], ix1[hit], iy1[hit]
    top = np.stack([h[:, 0], h[:, 1], h[:, 2], iy0], 1)[iy0 > h[:, 1]]
    bottom = np.stack([h[:, 0], iy1, h[:, 2], h[:, 3]], 1)[iy1 < h[:, 3]]
    left = np.stack([h[:, 0], iy0, ix0, iy1], 1)[ix0 > h[:, 0]]
    right = np.stack([ix1, iy0, h[:, 2], iy1], 1)[ix1 < h[:, 2]]
    return np.concatenate([a[~hit], top, bottom, left, right])


def _merge_exact(a: np.ndarray) -> np.ndarray:
    """Join boxes that share a whole edge (same columns stacked, then same rows side by side)."""
    for cols, rows in ((0, 1), (1, 0)):
        # cols: the axis whose extent must match; rows: the axis along which boxes touch
        order = np.lexsort((a[:, rows], a[:, cols + 2], a[:, cols]))
        out: list[list[int]] = []
        for box in a[order].tolist():
            if out and out[-1][cols] == box[cols] and out[-1][cols + 2] == box[cols + 2] \
                    and out[-1][rows + 2] == box[rows]:
                out[-1][rows + 2] = box[rows + 2]
            else:
                out.append(box)
        a = np.array(out, np.int64).reshape(-1, 4)
    return a


class LossyRegion:
    """A set of framebuffer pixels."""

    def __init__(self) -> None:
        self._boxes = np.empty((0, 4), np.int64)

    def __bool__(self) -> bool:
        return len(self._boxes) > 0

    def rects(self) -> list[Rect]:
        return [(x0, y0, x1 - x0, y1 - y0) for x0, y0, x1, y1 in self._boxes.tolist()]

    def clear(self) -> None:
        self._boxes = np.empty((0, 4), np.int64)

    def subtract(self, r: Rect) -> None:
        if len(self._boxes):  # (nothing lossy: every lossless rectangle of a session without JPEG)
            self._boxes = _minus(self._boxes, _box(r))

    def add(self, r: Rect) -> None:
        b = _box(r)
        self._boxes = np.concatenate([_minus(self._boxes, b), b])
        self._tidy()

    def copy(self, copy: Copy) -> None:
        """The viewer copied (sx, sy, w, h) to (x, y): lossy pixels move, the target is replaced."""
        sx, sy, x, y, w, h = copy
        a = self._boxes
        moved = np.empty((0, 4), np.int64)
        if len(a):
            src = np.stack([np.maximum(a[:, 0], sx), np.maximum(a[:, 1], sy),
                            np.minimum(a[:, 2], sx + w), np.minimum(a[:, 3], sy + h)], 1)
            src = src[(src[:, 0] < src[:, 2]) & (src[:, 1] < src[:, 3])]
            moved = src + np.array([x - sx, y - sy, x - sx, y - sy], np.int64)
        self._boxes = np.concatenate([_minus(a, _box((x, y, w, h))), moved])
        self._tidy()

    def _tidy(self) -> None:
        if len(self._boxes) > MERGE_ABOVE:
            self._boxes = _merge_exact(self._boxes)
        if len(self._boxes) > MAX_LOSSY_RECTS:
            self._coarsen()

    def _coarsen(self) -> None:
        """Bounding boxes of runs of boxes in reading order (a superset), made disjoint again."""
        a = self._boxes[np.lexsort((self._boxes[:, 0], self._boxes[:, 1]))]
        group = -(-len(a) // (MAX_LOSSY_RECTS // 4))
        out = np.empty((0, 4), np.int64)
        for i in range(0, len(a), group):
            g = a[i:i + group]
            box = np.array([[g[:, 0].min(), g[:, 1].min(), g[:, 2].max(), g[:, 3].max()]], np.int64)
            out = np.concatenate([_minus(out, box), box])
        if len(out) > MAX_LOSSY_RECTS:
            out = np.array([[a[:, 0].min(), a[:, 1].min(), a[:, 2].max(), a[:, 3].max()]], np.int64)
        self._boxes = out

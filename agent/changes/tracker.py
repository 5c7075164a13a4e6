"""Per-viewer update tracking: what one viewer still lacks, as copies and changed regions.

RFB is pull-based: each viewer asks for an update when it is ready, and a slow
one skips frames. Every viewer therefore has its own UpdateTracker that
accumulates the detector's output until the viewer asks (TigerVNC's
UpdateTracker / ComparingUpdateTracker are the model).

State, per viewer: ``copies``, a list of pending copies in order, and a
pixel-exact dirty mask, such that applying the copies to what the viewer shows
makes it equal the current frame everywhere outside the mask. That invariant
gives every operation its rule:

* changed pixels set mask bits;
* a copy is appended and the mask bits of its source travel to its
  destination (stale pixels stay stale where they are copied to); a copy is
  thus always replayed on the state the viewer will really have;
* a copy whose source is mostly stale is not worth sending: its destination
  becomes changed pixels instead;
* a copy that reads only what the previous pending copy wrote (a scroll that
  goes on) is folded into it, when the pixels the fold gives up are stale
  anyway, so a slow viewer still gets one copy per moving region;
* dropping every pending copy is always allowed by marking their destinations.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from agent._native import rects as _rects
from agent.changes.detector import Changes, boxes_to_rects, check_screen_size
from agent.models import Box, Copy, Rect, box_area, intersect, subtract

__all__ = ["UpdateTracker"]

# Tile of the dirty-mask scan: boxes are exact per tile, so smaller tiles fit
# odd shapes (L-shaped exposures of a dragged window) more tightly.
TRACK_TILE = 32
# Beyond this many pending copies they are turned into changed pixels.
MAX_PENDING_COPIES = 64
# A copy whose source is stale for more than this share becomes changed pixels.
MAX_STALE_SOURCE = 0.5



class UpdateTracker:
    """What one viewer lacks: pending copies (in order) plus a pixel-exact changed mask."""

    def __init__(self, width: int, height: int) -> None:
        self.resize(width, height)

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    # -- feeding -----------------------------------------------------------------------------

    def add_changes(self, changes: Changes) -> None:
        """Add one frame's detector output: its copies first, then its rects."""
        for copy in changes.copies:
            self._add_copy(copy, changes.rects)
        self.add_changed(changes.rects)

    def add_changed(self, rects: Iterable[Rect]) -> None:
        """Mark rectangles (clipped to the screen) as changed."""
        for x, y, w, h in rects:
            box = intersect((x, y, x + w, y + h), (0, 0, self.width, self.height))
            if box is not None:
                self._mark(box)

    def add_copied(self, copy: Copy) -> None:
        """Record that the screen content at ``(src_x, src_y)`` moved to ``(x, y)``."""
        self._add_copy(copy, ())

    def mark_all(self) -> None:
        """The viewer needs everything (a full refresh, or it just connected)."""
        self._copies.clear()
        self._mask[:] = 1
        self._bbox = (0, 0, self.width, self.height)

    def resize(self, width: int, height: int) -> None:
        """Adopt a new screen size; everything pending becomes the whole screen."""
        width, height = check_screen_size(width, height)
        self.width, self.height = width, height
        self._mask = np.ones((height, width), np.uint8)
        self._bbox: Box | None = (0, 0, width, height)
        self._copies: list[Copy] = []

    # -- reading -----------------------------------------------------------------------------

    def is_empty(self) -> bool:
        """Whether the viewer already has the current frame."""
        return not self._copies and not self._any_dirty()

    def take(self, region: Rect | None = None) -> Changes:
        """What to send now, and forget it: pending copies, then changed rects.

        With ``region`` (a FramebufferUpdateRequest's), only changes inside it
        are taken; pending copies are sent only if they all land inside it,
        otherwise they become changed pixels. The rest stays pending.
        """
        screen = (0, 0, self.width, self.height)
        if region is None:
            box: Box | None = screen
        else:
            x, y, w, h = region
            box = intersect((x, y, x + w, y + h), screen)
        if box is None:
            return Changes()
        copies: list[Copy] = []
        if self._copies:
            if all(intersect((c[2], c[3], c[2] + c[4], c[3] + c[5]), box) == (c[2], c[3], c[2] + c[4], c[3] + c[5])
                   for c in self._copies):
                copies, self._copies = self._copies, []
            else:
                self._flatten()
        return Changes(copies, self._take_rects(box))

    # -- internals ---------------------------------------------------------------------------

    def _mark(self, box: Box) -> None:
        x0, y0, x1, y1 = box
        self._mask[y0:y1, x0:x1] = 1
        b = self._bbox
        self._bbox = box if b is None else (min(b[0], x0), min(b[1], y0), max(b[2], x1), max(b[3], y1))

    def _dirty_count(self, box: Box) -> int:
        if self._bbox is None or intersect(box, self._bbox) is None:
            return 0
        x0, y0, x1, y1 = box
        return int(np.count_nonzero(self._mask[y0:y1, x0:x1]))

    def _any_dirty(self) -> bool:
        if self._bbox is not None and self._dirty_count(self._bbox) == 0:
            self._bbox = None
        return self._bbox is not None

    def _add_copy(self, copy: Copy, soon: Sequence[Rect]) -> None:
        sx, sy, x, y, w, h = copy
        if w <= 0 or h <= 0 or not (0 <= sx and sx + w <= self.width and 0 <= x and x + w <= self.width
                                    and 0 <= sy and sy + h <= self.height and 0 <= y and y + h <= self.height):
            raise ValueError(f"copy {copy!r} does not fit the {self.width}x{self.height} screen")
        if (sx, sy) == (x, y):
            return
        src, dst = (sx, sy, sx + w, sy + h), (x, y, x + w, y + h)
        stale = self._dirty_count(src)
        if stale > MAX_STALE_SOURCE * w * h:
            self._mark(dst)
            return
        fold = self._fold_target(src, stale)
        self._move_mask(src, dst)
        if fold is not None and self._fold(fold, src, dst, soon):
            return
        self._copies.append((sx, sy, x, y, w, h))
        if len(self._copies) > MAX_PENDING_COPIES:
            self._flatten()

    def _fold_target(self, src: Box, stale: int) -> Box | None:
        """The part of ``src`` the last pending copy wrote, if every other source pixel is stale."""
        if not self._copies:
            return None
        lx, ly, lw, lh = self._copies[-1][2:]
        inner = intersect(src, (lx, ly, lx + lw, ly + lh))
        if inner is None:
            return None
        outside = box_area(src) - box_area(inner)
        if outside and stale - self._dirty_count(inner) != outside:
            return None
        return inner

    def _fold(self, inner: Box, src: Box, dst: Box, soon: Sequence[Rect]) -> bool:
        """Replace the last copy L and this one by one copy of ``inner`` straight from L's source.

        Exact where the new copy read L's output; the part of L's destination
        the new copy does not cover loses L's pixels, so it must already be
        stale (or about to be changed by ``soon``). Returns False to leave it.
        """
        lsx, lsy, lx, ly, lw, lh = self._copies[-1]
        given_up = subtract((lx, ly, lx + lw, ly + lh), dst)
        for part in given_up:
            if self._dirty_count(part) != box_area(part) and not self._covered(part, soon):
                return False
        for part in given_up:
            self._mark(part)
        ldx, ldy = lx - lsx, ly - lsy
        ndx, ndy = dst[0] - src[0], dst[1] - src[1]
        x0, y0, x1, y1 = inner
        self._copies.pop()
        if (ldx + ndx, ldy + ndy) != (0, 0):
            self._copies.append((x0 - ldx, y0 - ldy, x0 + ndx, y0 + ndy, x1 - x0, y1 - y0))
        return True

    def _covered(self, part: Box, soon: Sequence[Rect]) -> bool:
        """Whether every pixel of ``part`` is stale or inside one of ``soon``."""
        x0, y0, x1, y1 = part
        have = self._mask[y0:y1, x0:x1].astype(bool)
        for x, y, w, h in soon:
            i = intersect((x, y, x + w, y + h), part)
            if i is not None:
                have[i[1] - y0:i[3] - y0, i[0] - x0:i[2] - x0] = True
        return bool(have.all())

    def _move_mask(self, src: Box, dst: Box) -> None:
        """Stale pixels travel with the copy; the destination is otherwise up to date afterwards."""
        b = self._bbox
        if b is None:
            return
        sx0, sy0, sx1, sy1 = src
        dx0, dy0, dx1, dy1 = dst
        if intersect(src, b) is not None:
            self._mask[dy0:dy1, dx0:dx1] = self._mask[sy0:sy1, sx0:sx1]
            self._bbox = (min(b[0], dx0), min(b[1], dy0), max(b[2], dx1), max(b[3], dy1))
        elif intersect(dst, b) is not None:
            self._mask[dy0:dy1, dx0:dx1] = 0

    def _flatten(self) -> None:
        """Drop all pending copies: whatever they would have written becomes changed pixels."""
        for sx, sy, x, y, w, h in self._copies:
            self._mark((x, y, x + w, y + h))
        self._copies.clear()

    def _take_rects(self, box: Box) -> list[Rect]:
        b = self._bbox and intersect(self._bbox, box)
        if b is None:
            return []
        x0, y0, x1, y1 = b
        boxes = np.empty((-(-(y1 - y0) // TRACK_TILE), -(-(x1 - x0) // TRACK_TILE), 4), np.int32)
        if _rects.mask_boxes(self._mask, TRACK_TILE, boxes, x0, y0, x1, y1) == 0:
            rects: list[Rect] = []
        else:
            rects = boxes_to_rects(boxes)[0]
        self._mask[y0:y1, x0:x1] = 0
        if b == self._bbox:
            self._bbox = None
        return rects

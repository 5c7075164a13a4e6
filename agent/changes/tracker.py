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
* a copy whose source is almost all stale (MAX_STALE_SOURCE) is not worth
  sending: its destination becomes changed pixels instead;
* a copy that reads only what the previous pending copy wrote (a scroll that
  goes on) is folded into it, when the pixels the fold gives up are stale
  anyway, so a slow viewer still gets one copy per moving region;
* dropping every pending copy is always allowed by marking their destinations.

The mask holds one bit per pixel (DirtyBits): 1 MB at 3840x2160, where a byte
per pixel took 8.3 MB, per viewer, for the whole session.
"""
from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence

import numpy as np

from agent._native import rects as _rects
from agent.changes.detector import Changes, check_screen_size
from agent.changes.tile_boxes import boxes_to_rects
from agent.models import Box, Copy, Rect, box_area, intersect, subtract

__all__ = ["DirtyBits", "UpdateTracker"]

# Tile of the dirty-mask scan: boxes are exact per tile, so smaller tiles fit
# odd shapes (L-shaped exposures of a dragged window) more tightly. It is also
# the width of one mask word (DirtyBits), so a tile column is a word column.
TRACK_TILE = 32
# Beyond this many pending copies they are turned into changed pixels.
MAX_PENDING_COPIES = 64
# A copy whose source is stale for more than this share becomes changed pixels. A log that scrolls
# again before a slow link carried its last lines has most of its source stale; kept, the copy still
# moves the rest (the stale part is sent at its new place either way). At 0.5 the link benchmark's
# churn sent 528-537 kB in three runs, at 0.9 449-500 kB.
MAX_STALE_SOURCE = 0.9


# rows of mask words handled at a time by a move: bounds its temporaries (~250 kB at 3840 wide)
_MOVE_STRIP = 256
_WORD_BITS = 32
_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], np.uint8)
_BITWISE_COUNT = getattr(np, "bitwise_count", None)


@functools.lru_cache(maxsize=4096)
def _column_masks(x0: int, x1: int) -> tuple[int, int, np.ndarray]:
    t0, t1 = x0 // _WORD_BITS, -(-x1 // _WORD_BITS)
    masks = np.full(t1 - t0, 0xFFFFFFFF, np.uint32)
    masks[0] &= np.uint32((0xFFFFFFFF << (x0 - t0 * _WORD_BITS)) & 0xFFFFFFFF)
    masks[-1] &= np.uint32(0xFFFFFFFF >> (t1 * _WORD_BITS - x1))
    masks.setflags(write=False)
    return t0, t1, masks


def _popcount(words: np.ndarray) -> int:
    """Set bits in ``words`` (numpy >= 2 counts them in one pass; older ones through a byte table)."""
    if _BITWISE_COUNT is not None:
        return int(_BITWISE_COUNT(words).sum(dtype=np.int64))
    return int(_POPCOUNT8[words.view(np.uint8)].sum(dtype=np.int64))


class DirtyBits:
    """A pixel-exact dirty mask, one bit per pixel: bit ``x % 32`` of word ``[y, x // 32]`` is pixel (x, y).

    Why bits: a byte per pixel is 8.3 MB per viewer at 3840x2160 for what is
    one bit of information; this is 1 MB. Why 32-bit words: a word is one
    row of one TRACK_TILE-wide tile, so the per-tile boxes that ``take`` needs
    come from OR-ing a tile's 32 words (numpy, no per-pixel work). Every
    operation works on whole word columns with a per-column bit mask for the
    box's edges, so bits outside the box (and beyond the width, which stay 0)
    are never touched. Temporaries are at most a region's words (1 MB for
    the whole 4K screen), a move's a strip of ``_MOVE_STRIP`` rows.
    """

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.words = np.zeros((height, -(-width // _WORD_BITS)), np.uint32)

    @property
    def nbytes(self) -> int:
        return self.words.nbytes

    @staticmethod
    def column_masks(x0: int, x1: int) -> tuple[int, int, np.ndarray]:
        """Word columns ``[t0, t1)`` covering pixels ``[x0, x1)`` (x0 < x1) and, per column, its bits among them.

        Read-only and cached: the same spans come back frame after frame (a terminal's lines, a window)."""
        return _column_masks(x0, x1)

    def fill(self, box: Box, value: bool) -> None:
        """Set (``value``) or clear every bit of ``box`` (inside the screen, possibly empty)."""
        x0, y0, x1, y1 = box
        if x0 >= x1 or y0 >= y1:
            return
        t0, t1, m = self.column_masks(x0, x1)
        view = self.words[y0:y1, t0:t1]
        if value:
            view |= m
        else:
            view &= ~m

    def _region(self, box: Box) -> np.ndarray:
        """A copy of the words of ``box`` with the bits outside it cleared."""
        x0, y0, x1, y1 = box
        t0, t1, m = self.column_masks(x0, x1)
        return self.words[y0:y1, t0:t1] & m

    def count(self, box: Box) -> int:
        """Set bits in ``box``."""
        x0, y0, x1, y1 = box
        if x0 >= x1 or y0 >= y1:
            return 0
        return _popcount(self._region(box))

    def any(self, box: Box) -> bool:
        """Whether any bit of ``box`` is set."""
        x0, y0, x1, y1 = box
        # the ufunc's own reduce: ndarray.any() goes through a Python wrapper, and this is asked on every request
        return x0 < x1 and y0 < y1 and bool(np.logical_or.reduce(self._region(box), axis=None))

    def covered(self, box: Box, extra: Iterable[Box]) -> bool:
        """Whether every pixel of ``box`` is set or inside one of ``extra`` (boxes, clipped to ``box``)."""
        x0, y0, x1, y1 = box
        if x0 >= x1 or y0 >= y1:
            return True
        t0, t1, m = self.column_masks(x0, x1)
        have = self.words[y0:y1, t0:t1] & m
        for other in extra:
            i = intersect(other, box)
            if i is not None:
                u0, u1, um = self.column_masks(i[0], i[2])
                have[i[1] - y0:i[3] - y0, u0 - t0:u1 - t0] |= um
        return bool((have == m).all())

    def move(self, src: Box, dst: Box) -> None:
        """The bits of ``dst`` become those ``src`` had (same size; they may overlap), as a copy moves pixels."""
        sx0, sy0, sx1, sy1 = src
        x0, y0, x1, y1 = dst
        if x0 >= x1 or y0 >= y1:
            return
        dx, dy = x0 - sx0, y0 - sy0
        t0, t1, m = self.column_masks(x0, x1)
        keep = ~m
        # dst word t holds source pixels from 32 t - dx on: word q and the next, shifted right by r
        start = np.arange(t0, t1, dtype=np.int64) * _WORD_BITS - dx
        q = start // _WORD_BITS + 1  # +1: the padded source below has a zero column in front
        r = (start % _WORD_BITS).astype(np.uint64)
        words, ncols = self.words, self.words.shape[1]
        strips = [(a, min(a + _MOVE_STRIP, y1)) for a in range(y0, y1, _MOVE_STRIP)]
        if dy > 0:  # as memmove: never overwrite a source row that is still to be read
            strips.reverse()
        for a, b in strips:
            padded = np.zeros((b - a, ncols + 2), np.uint64)
            padded[:, 1:ncols + 1] = words[a - dy:b - dy]
            moved = ((padded[:, q] | (padded[:, q + 1] << np.uint64(32))) >> r).astype(np.uint32)
            view = words[a:b, t0:t1]
            view &= keep
            view |= moved & m

    def tile_boxes(self, box: Box) -> np.ndarray:
        """Per TRACK_TILE tile meeting ``box`` (grid aligned to the screen), the box of its set bits within ``box``.

        Laid out as ``tiles.diff_tiles`` lays out its boxes: shape (tile rows,
        tile columns, 4), ``(x0, y0, x1, y1)`` in screen coordinates, all zeros
        for a clean tile; the input of ``rects.merge_boxes``. A tile is a
        word column, so the kernel ORs its rows' words (``rects.bit_boxes``).
        """
        x0, y0, x1, y1 = box
        top = y0 // TRACK_TILE * TRACK_TILE
        boxes = np.empty((-(-(y1 - top) // TRACK_TILE), -(-x1 // _WORD_BITS) - x0 // _WORD_BITS, 4), np.int32)
        _rects.bit_boxes(self.words, x0, y0, x1, y1, TRACK_TILE, boxes)
        return boxes


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
        self._mark((0, 0, self.width, self.height))

    def resize(self, width: int, height: int) -> None:
        """Adopt a new screen size; everything pending becomes the whole screen."""
        width, height = check_screen_size(width, height)
        self.width, self.height = width, height
        self._mask = DirtyBits(width, height)
        self._bbox: Box | None = None
        self._version = 0  # bumped by every change to the mask: what _rects_in's cache is valid for
        self._seen_dirty = -1  # the version at which a bit in the bounding box was last seen set
        self._rects_cache: tuple[Box, int, list[Rect]] | None = None
        self._mark((0, 0, width, height))
        self._copies: list[Copy] = []

    # -- reading -----------------------------------------------------------------------------

    def has_copies(self) -> bool:
        """Whether moves are pending (they go whatever the link's budget says: a few bytes each)."""
        return bool(self._copies)

    def is_empty(self) -> bool:
        """Whether the viewer already has the current frame."""
        return not self._copies and not self._any_dirty()

    def take(self, region: Rect | None = None) -> Changes:
        """What to send now, and forget it: pending copies, then changed rects.

        With ``region`` (a FramebufferUpdateRequest's), only changes inside it
        are taken; pending copies are sent only if they all land inside it,
        otherwise they become changed pixels. The rest stays pending.
        """
        box, changes = self._pending(region)
        if box is not None:
            del self._copies[:len(changes.copies)]
            self._clear(box)
        return changes

    def peek(self, region: Rect | None = None) -> Changes:
        """What ``take`` would take, left pending: ``forget`` then what an update carries of it.

        An update that carries only part (the echo, a slice of the bulk while
        the technician types) forgets that part, and the rest stays exactly as
        it was: given back as rectangles, it would grow by the clean pixels
        they were merged over, and cost a second pass to mark.
        """
        return self._pending(region)[1]

    def forget(self, copies: int, rects: Iterable[Rect]) -> None:
        """The viewer gets the first ``copies`` pending copies, then ``rects``, now (both from ``peek``)."""
        del self._copies[:copies]
        for x, y, w, h in rects:
            self._clear((x, y, x + w, y + h))
        # Whether anything is left is asked next when the viewer's request comes, a round trip later, with
        # the customer's caches cold again (a numpy call then costs ~30 us): learn it now, while warm.
        self._any_dirty()

    # -- internals ---------------------------------------------------------------------------

    def _mark(self, box: Box) -> None:
        x0, y0, x1, y1 = box
        self._mask.fill(box, True)
        self._version += 1
        b = self._bbox
        self._bbox = box if b is None else (min(b[0], x0), min(b[1], y0), max(b[2], x1), max(b[3], y1))

    def _dirty_count(self, box: Box) -> int:
        if self._bbox is None or intersect(box, self._bbox) is None:
            return 0
        return self._mask.count(box)

    def _any_dirty(self) -> bool:
        """Asked on every request and frame: the mask is read again only after it changed."""
        if self._bbox is not None and self._seen_dirty != self._version:
            if self._mask.any(self._bbox):
                self._seen_dirty = self._version
            else:
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
            self.flatten()

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
        return self._mask.covered(part, ((x, y, x + w, y + h) for x, y, w, h in soon))

    def _move_mask(self, src: Box, dst: Box) -> None:
        """Stale pixels travel with the copy; the destination is otherwise up to date afterwards."""
        b = self._bbox
        if b is None:
            return
        dx0, dy0, dx1, dy1 = dst
        self._version += 1
        if intersect(src, b) is not None:
            self._mask.move(src, dst)
            self._bbox = (min(b[0], dx0), min(b[1], dy0), max(b[2], dx1), max(b[3], dy1))
        elif intersect(dst, b) is not None:
            self._mask.fill(dst, False)

    def flatten(self) -> None:
        """Drop all pending copies: whatever they would have written becomes changed pixels (for a viewer
        without CopyRect, or a region that does not hold them all)."""
        for sx, sy, x, y, w, h in self._copies:
            self._mark((x, y, x + w, y + h))
        self._copies.clear()

    def _pending(self, region: Rect | None) -> tuple[Box | None, Changes]:
        """The screen box of ``region`` and what is pending in it (flattening copies that leave it)."""
        screen = (0, 0, self.width, self.height)
        if region is None:
            box: Box | None = screen
        else:
            x, y, w, h = region
            box = intersect((x, y, x + w, y + h), screen)
        if box is None:
            return None, Changes()
        copies: list[Copy] = []
        if self._copies:
            if all(intersect((c[2], c[3], c[2] + c[4], c[3] + c[5]), box) == (c[2], c[3], c[2] + c[4], c[3] + c[5])
                   for c in self._copies):
                copies = list(self._copies)
            else:
                self.flatten()
        return box, Changes(copies, self._rects_in(box))

    def _rects_in(self, box: Box) -> list[Rect]:
        """The changed pixels inside ``box`` as merged rectangles; asked again before anything changed
        (each update request and pushed echo plans from them), the same list without a second pass."""
        b = self._bbox and intersect(self._bbox, box)
        if b is None:
            return []
        if self._rects_cache is not None and self._rects_cache[:2] == (b, self._version):
            return self._rects_cache[2]
        boxes = self._mask.tile_boxes(b)
        rects = boxes_to_rects(boxes)  # (none from empty boxes: no numpy reduction to ask first)
        self._rects_cache = (b, self._version, rects)
        return rects

    def _clear(self, box: Box) -> None:
        """Nothing in ``box`` is pending any more (what of it lies in the bounding box of what is)."""
        b = self._bbox and intersect(self._bbox, box)
        if b is None:
            return
        self._mask.fill(b, False)
        self._version += 1
        if b == self._bbox:
            self._bbox = None

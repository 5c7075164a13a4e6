"""Change detection: what changed between two frames, as copies and rectangles.

ChangeDetector keeps its own copy of the previous frame, or, with
``frames_immutable`` (a capture loop that never writes a frame it handed out),
a reference to it: 33 MB less at 3840x2160. Each update:

1. ``tiles.diff_tiles`` compares the new frame with it row by row (memcmp
   speed) and yields, per tile, the exact box of the changed pixels: typing a
   character gives a glyph-sized box, not a tile. Given ``damage`` (what X
   DAMAGE says was drawn), only the tiles it touches are compared.
2. Large changes are searched for moves (``_native.scroll``): vertical shifts
   voted by row hashes, then 2D moves voted by sampled pixel runs; every
   candidate is verified exactly cell by cell and grown to the pixel.
3. The copies are applied to the kept frame, exactly as a viewer will apply
   them, and the tiles are compared again: what still differs becomes
   rectangles, merged by cost (``rects.merge_boxes``) and split to the RFB and
   Tight limits. A kept copy is then patched from those rectangles.

Because step 3 re-checks the result of the copies, the invariant "copies on the
previous frame, then the rects from the new one, give the new frame" holds by
construction, whatever the move search found.
"""
from __future__ import annotations

import operator
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from agent._native import rects as _rects
from agent._native import scroll as _scroll
from agent._native import tiles as _tiles
from agent.changes.copy_geometry import join as _join, label_boxes as _label_boxes
from agent.changes.copy_geometry import ordered as _ordered, peel as _peel
from agent.changes.tile_boxes import RECT_OVERHEAD_PIXELS, boxes_to_rects, merged_boxes, within_limits
from agent.models import Copy, Rect, split_rect

__all__ = ["ChangeDetector", "Changes", "DetectStats", "FrameSizeError", "split_rect", "boxes_to_rects"]

MIN_TILE = 16
MAX_TILE = 128
MOVE_MIN_AREA = 4096  # changes smaller than this (typing, a blinking cursor) skip the move search
# Vertical shifts: rows agreeing on a shift, a row hash seen more often than
# MAX_ROW_REPEAT times in a column (blank lines) does not vote.
MIN_SHIFT_VOTES = 8
MAX_ROW_REPEAT = 4
MAX_SHIFT_CANDIDATES = 2
RUNNER_UP_SHARE = 4
# A scroll moves many columns alike: voting on a few spread columns, over the middle VOTE_WIDTH pixels of each.
MAX_VOTE_COLUMNS = 8
VOTE_WIDTH = 32
# 2D moves: sampled runs of KEY_LENGTH pixels, looked up in the previous frame.
KEY_LENGTH = 32
MAX_KEYS = 16
MAX_KEY_HITS = 8
MAX_PLANAR_CANDIDATES = 3
# A key is KEY_ROWS runs one above another; the previous frame is scanned on every KEY_ROWS-th row (one of
# them lands on one wherever a block moved). Every row: 1.6-2.0 ms a less page (1008x1080, nothing moved).
KEY_ROWS = 4
# The 2D search runs only while this share of the changed cells is unexplained.
PLANAR_MIN_SHARE = 0.25
# ...and no vertical move explained this share: then the rest is what the scroll exposed. A log
# scrolling 24 of its 44 lines between grabs (agent.service.churn_damage holds it to 5 grabs a
# second) has 35-43% explained; at 0.5 the 2D search ran on each such grab (1.5-2.9 ms) and found
# only coincidences in the fresh text.
VERTICAL_ENOUGH = 0.25


class FrameSizeError(ValueError):
    """The frame's size is not the detector's: call resize() when the screen size changes."""


@dataclass
class Changes:
    """One frame's changes: apply ``copies`` in order to the previous frame, then the pixels of ``rects``."""

    copies: list[Copy] = field(default_factory=list)
    rects: list[Rect] = field(default_factory=list)
    churn: list[Rect] = field(default_factory=list)  # where X keeps drawing: never a key's echo (churn_damage)

    def is_empty(self) -> bool:
        return not self.copies and not self.rects


@dataclass
class DetectStats:
    """Figures of the last update, for the probe command and benchmarks."""

    seconds: float = 0.0
    compare_seconds: float = 0.0
    move_seconds: float = 0.0
    dirty_tiles: int = 0
    rect_pixels: int = 0
    copy_pixels: int = 0
    rects: int = 0
    copies: int = 0



def _integer(value: object, what: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(f"{what} must be an integer, got {value!r}") from None


def check_screen_size(width: object, height: object) -> tuple[int, int]:
    """The size as two ints, or ValueError: RFB sizes are u16 and a screen has at least one pixel."""
    w, h = _integer(width, "screen width"), _integer(height, "screen height")
    if not (1 <= w <= 65535 and 1 <= h <= 65535):
        raise ValueError(f"screen size {w}x{h} is outside 1x1..65535x65535 (the RFB limit)")
    return w, h


class ChangeDetector:
    """Finds what changed between consecutive BGRA frames of one screen."""

    def __init__(self, width: int, height: int, tile: int = 64, *, frames_immutable: bool = False) -> None:
        tile = _integer(tile, "tile")
        # True: the caller never writes a frame whose update reported changes, so the detector keeps a
        # reference to it as the previous frame instead of a copy of its own.
        self.frames_immutable = frames_immutable
        if not MIN_TILE <= tile <= MAX_TILE:
            raise ValueError(f"tile must be in {MIN_TILE}..{MAX_TILE}, got {tile}")
        self.tile = tile
        # Moves are verified on cells finer than tiles so small windows still match;
        # a cell is a whole fraction of a tile so tile marks map onto cells.
        self.cell = tile // 2 if tile >= 32 and tile % 2 == 0 else tile
        self.stats = DetectStats()
        self.resize(width, height)

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    def resize(self, width: int, height: int) -> None:
        """Adopt a new screen size; the next update reports the whole screen."""
        width, height = check_screen_size(width, height)
        self.width, self.height = width, height
        t, c = self.tile, self.cell
        self._prev = np.zeros((0 if self.frames_immutable else height, width, 4), np.uint8)
        self._boxes = np.zeros((-(-height // t), -(-width // t), 4), np.int32)
        self._cells = (-(-height // c), -(-width // c))
        self._votes = np.zeros(2 * height - 1, np.int32)
        # Row hashes of the vote spans, per tile column: ``_held`` of the kept previous frame, ``_fresh`` of
        # the frame being compared, each with a (tile row, tile column) mask of what it holds. The new
        # frame's hashes are the next update's previous-frame hashes (what stayed on screen, a scrolling
        # terminal, is hashed once instead of twice): half the hashing of a search that recurs.
        grid = self._boxes.shape[:2]
        self._held, self._fresh = np.empty((grid[1], height), np.uint64), np.empty((grid[1], height), np.uint64)
        self._held_ok, self._fresh_ok = np.zeros(grid, bool), np.zeros(grid, bool)
        self._whole = True
        self._recent_vectors: list[tuple[int, int]] = []  # the last changed frame's move vectors

    def update(self, frame: np.ndarray, damage: Optional[Sequence[Rect]] = None, *,
               keep: Optional[np.ndarray] = None) -> Changes:
        """Changes from the previous frame to ``frame`` ((H, W, 4) uint8 BGRA).

        ``damage``: rectangles outside which ``frame`` is known to equal the
        previous frame; only tiles they touch are compared. With
        ``frames_immutable`` a frame with changes is kept by reference (one
        without changes equals the kept one and is not kept); ``keep`` is
        kept instead: the buffer the caller makes equal to ``frame`` before
        the next update (a one-frame capture's current frame, which is the
        previous frame until the caller writes the changes back into it).
        """
        start = time.perf_counter()
        frame = self._checked(frame)
        stats = DetectStats()
        kept = frame if keep is None else self._checked(keep)
        if self._whole:
            if self.frames_immutable:
                self._prev = kept
            else:
                np.copyto(self._prev, frame)
            self._whole = False
            changes = Changes([], split_rect(0, 0, self.width, self.height))
            stats.rect_pixels = self.width * self.height
        else:
            changes = self._diff(frame, stats, damage)
            if self.frames_immutable and not changes.is_empty():
                self._prev = kept
        self._keep_hashes(not changes.is_empty())
        stats.rects, stats.copies = len(changes.rects), len(changes.copies)
        stats.seconds = time.perf_counter() - start
        self.stats = stats
        return changes

    def _keep_hashes(self, replaced: bool) -> None:
        """After an update: the new frame's row hashes become the kept frame's when it was replaced.

        After every update the kept frame equals the new one where compared (a
        kept copy is patched to it), so hashes of the new frame serve as the
        previous frame's next time. They only nominate shifts: every shift is
        verified pixel by pixel (``match_cells``), so a stale hash costs a
        candidate, never a wrong copy. Unchanged: the held hashes stay valid.
        """
        if replaced:
            self._held, self._fresh = self._fresh, self._held
            self._held_ok, self._fresh_ok = self._fresh_ok, self._held_ok
        self._fresh_ok[:] = False

    def _checked(self, frame: np.ndarray) -> np.ndarray:
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 4:
            raise ValueError("frame must be a (H, W, 4) uint8 BGRA numpy array")
        if frame.shape[:2] != (self.height, self.width):
            raise FrameSizeError(
                f"frame is {frame.shape[1]}x{frame.shape[0]} but the detector is {self.width}x{self.height}; "
                "call resize() first")
        return np.ascontiguousarray(frame)

    def _diff(self, frame: np.ndarray, stats: DetectStats, damage: Optional[Sequence[Rect]]) -> Changes:
        """``damage``: X's rectangles, outside which nothing changed (None: compare everything). Only the
        tiles they meet are compared, and a small change (a typed glyph) is merged from the part of the tile
        grid around them, in two kernel calls."""
        t0 = time.perf_counter()
        boxes = self._boxes
        if damage is None:
            ndirty = _tiles.diff_tiles(self._prev, frame, self.tile, boxes)
            part = (0, boxes.shape[0], 0, boxes.shape[1])
        else:
            ndirty, *part = _tiles.diff_damage(self._prev, frame, self.tile, boxes, damage)
        stats.dirty_tiles = ndirty
        stats.compare_seconds = time.perf_counter() - t0
        if ndirty == 0:
            return Changes()
        _, merged = _rects.merge_part(boxes, *part, RECT_OVERHEAD_PIXELS, MOVE_MIN_AREA)
        if merged is not None:  # typing, a blinking cursor: no move search, the boxes near the damage
            self._recent_vectors = []
            return Changes([], self._take_merged(merged, frame, stats))
        dirty = boxes[:, :, 2] > 0
        t1 = time.perf_counter()
        copies = _ordered(self._find_moves(frame, dirty))
        stats.move_seconds = time.perf_counter() - t1
        self._recent_vectors = list(dict.fromkeys((c[4], c[5]) for c in copies))[:MAX_PLANAR_CANDIDATES]
        if copies:
            t = self.tile
            select = dirty.copy()
            for x0, y0, x1, y1, dx, dy in copies:
                select[y0 // t:-(-y1 // t), x0 // t:-(-x1 // t)] = True
                stats.copy_pixels += (x1 - x0) * (y1 - y0)
            for x0, y0, x1, y1, _, _ in copies:
                # A tile wholly inside a verified copy already equals the new frame (destinations are
                # disjoint, and the order guarantees each copy read unmodified pixels).
                tx0, ty0 = -(-x0 // t), -(-y0 // t)
                tx1 = x1 // t if x1 < self.width else -(-x1 // t)
                ty1 = y1 // t if y1 < self.height else -(-y1 // t)
                select[ty0:ty1, tx0:tx1] = False
            self._recheck(frame, copies, select)
        rects = self._rects_from(boxes, frame, stats)
        return Changes([(x0 - dx, y0 - dy, x0, y0, x1 - x0, y1 - y0) for x0, y0, x1, y1, dx, dy in copies], rects)

    def _rects_from(self, boxes: np.ndarray, frame: np.ndarray, stats: DetectStats) -> list[Rect]:
        """The changed rectangles of the tile ``boxes`` (merged by cost); a kept copy is patched to ``frame``."""
        return self._take_merged(merged_boxes(boxes), frame, stats)

    def _take_merged(self, merged: list[Rect], frame: np.ndarray, stats: DetectStats) -> list[Rect]:
        """The merged rectangles within the RFB limits; a kept copy is patched to ``frame`` there."""
        for x, y, w, h in merged:
            if not self.frames_immutable:
                self._prev[y:y + h, x:x + w] = frame[y:y + h, x:x + w]
            stats.rect_pixels += w * h
        return within_limits(merged)

    def _recheck(self, frame: np.ndarray, copies: list[tuple[int, int, int, int, int, int]],
                 select: np.ndarray) -> None:
        """Compare the ``select``ed tiles again, against the previous frame with the copies applied.

        ``tiles.diff_tiles_after_copies`` reads each copy's source where the
        copy lands, so the shifted frame is never built (a referenced frame is
        never written, and no scratch frame is allocated). A kept copy of the
        previous frame is then brought forward by applying the copies to it, in
        order: each reads pixels no earlier one wrote (``_ordered``).
        """
        _tiles.diff_tiles_after_copies(self._prev, frame, self.tile, self._boxes, select.view(np.uint8),
                                       np.array(copies, np.int32).reshape(-1, 6))
        if not self.frames_immutable:
            for x0, y0, x1, y1, dx, dy in copies:
                _scroll.apply_copy(self._prev, x0 - dx, y0 - dy, x0, y0, x1 - x0, y1 - y0)

    # -- moves ------------------------------------------------------------------------------

    def _find_moves(self, frame: np.ndarray, dirty: np.ndarray) -> list[tuple[int, int, int, int, int, int]]:
        """Verified moved rectangles ``(x0, y0, x1, y1, dx, dy)`` with disjoint destinations."""
        c, t = self.cell, self.tile
        ch, cw = self._cells
        # Cell grid: a cell changed when it meets its tile's box of changed pixels.
        k = t // c
        box = np.repeat(np.repeat(self._boxes, k, axis=0), k, axis=1)[:ch, :cw]
        cx = np.arange(cw)[None, :] * c
        cy = np.arange(ch)[:, None] * c
        cell_dirty = ((box[:, :, 0] < cx + c) & (cx < box[:, :, 2]) & (box[:, :, 1] < cy + c) & (cy < box[:, :, 3]))
        # Groups of changed tiles, and the box around each: unchanged cells inside a box (the blank
        # parts of a scrolled page) may join a copy, so a moved region becomes a few large copies.
        labels = np.zeros(dirty.shape, np.int32)
        groups = _rects.label_tiles(dirty.view(np.uint8), labels)
        boxed = np.zeros(dirty.shape, bool)
        for y0, x0, y1, x1 in _label_boxes(labels, groups):
            boxed[y0:y1, x0:x1] = True
        candidates = cell_dirty | np.repeat(np.repeat(boxed, k, axis=0), k, axis=1)[:ch, :cw]
        select = candidates.view(np.uint8)
        matches: dict[tuple[int, int], np.ndarray] = {}
        # the last frame's moves first: a dragged window keeps its step, and a vector that explains
        # most of the change spares the 2D search below
        for vector in self._shift_candidates(frame, dirty) + self._recent_vectors:
            if vector not in matches:
                matches[vector] = self._match(frame, vector, select)
        explained = np.zeros((ch, cw), bool)
        for m in matches.values():
            explained |= m
        remaining = cell_dirty & ~explained
        left, changed = int(remaining.sum()), int(cell_dirty.sum())
        # Search 2D moves when much is unexplained, unless a vertical move explained a good share
        # (then the rest is the content a scroll exposed).
        if left * c * c >= MOVE_MIN_AREA and left >= PLANAR_MIN_SHARE * changed \
                and int((explained & cell_dirty).sum()) < VERTICAL_ENOUGH * changed:
            for vector in self._planar_candidates(frame, labels, remaining):
                if vector not in matches:
                    matches[vector] = self._match(frame, vector, select)
        # The vector that explains most changed cells claims its cells first.
        taken = np.zeros((ch, cw), bool)
        found: list[tuple[int, int, int, int, int, int]] = []
        for vector in sorted(matches, key=lambda v: -int(np.count_nonzero(matches[v] & cell_dirty))):
            self._take_matches(frame, vector, matches[vector] & ~taken, cell_dirty, taken, found)
        return found

    def _match(self, frame: np.ndarray, vector: tuple[int, int], select: np.ndarray) -> np.ndarray:
        matched = np.zeros(select.shape, np.uint8)
        _scroll.match_cells(self._prev, frame, self.cell, vector[0], vector[1], select, matched)
        return matched.view(bool)

    def _shift_candidates(self, frame: np.ndarray, dirty: np.ndarray) -> list[tuple[int, int]]:
        """Vertical shifts voted by row hashes, per run of dirty tiles down a few tile columns."""
        t, h, w = self.tile, self.height, self.width
        votes = self._votes
        votes[:] = 0
        padded = np.zeros((dirty.shape[0] + 2, dirty.shape[1]), bool)
        padded[1:-1] = dirty
        cols, rows = np.nonzero((padded[1:] != padded[:-1]).T)  # run edges, column by column
        run_cols, starts, ends = cols[0::2], rows[0::2], rows[1::2]
        if not len(run_cols):
            return []
        # Columns with a run of two tiles or more vote; a scroll moves many columns alike.
        tall = np.unique(run_cols[ends - starts >= 2])
        if not len(tall):
            tall = np.unique(run_cols)
        picks = set(tall[np.linspace(0, len(tall) - 1, min(MAX_VOTE_COLUMNS, len(tall))).astype(int)].tolist())
        for tx, ty0, ty1 in zip(run_cols.tolist(), starts.tolist(), ends.tolist()):
            y0, y1 = ty0 * t, min(ty1 * t, h)
            if tx not in picks or y1 - y0 < 2:
                continue
            # The middle of the tile column: a cache line or two per row is enough to vote.
            x0, x1 = tx * t, min(tx * t + t, w)
            x0 = max(x0, (x0 + x1 - VOTE_WIDTH) // 2)
            x1 = min(x1, x0 + VOTE_WIDTH)
            hp, hc = self._held[tx, y0:y1], self._fresh[tx, y0:y1]
            if not self._held_ok[ty0:ty1, tx].all():
                _scroll.row_hashes(self._prev, x0, x1, y0, y1, hp)
                self._held_ok[ty0:ty1, tx] = True
            _scroll.row_hashes(frame, x0, x1, y0, y1, hc)
            self._fresh_ok[ty0:ty1, tx] = True
            _scroll.vote_shifts(hp, hc, h - 1, MAX_ROW_REPEAT, votes)
        # numpy's default (quick)sort is pathological on this mostly-zero array (~0.3 ms a frame, more
        # than the hashing); the stable sort takes microseconds
        best = np.argsort(votes, kind="stable")[::-1][:MAX_SHIFT_CANDIDATES].tolist()
        # A runner-up far behind the winner is rows that repeat (rules, blank lines), not a second scroll.
        floor = max(MIN_SHIFT_VOTES, int(votes[best[0]]) // RUNNER_UP_SHARE)
        return [(0, i - (h - 1)) for i in best if votes[i] >= floor]

    def _planar_candidates(self, frame: np.ndarray, labels: np.ndarray, remaining: np.ndarray) -> list[tuple[int, int]]:
        """2D vectors voted by runs sampled from the unexplained cells, found in the previous frame."""
        c, t, w, h = self.cell, self.tile, self.width, self.height
        if w < KEY_LENGTH:
            return []
        # Sample inside regions rather than on their edges (a run straddling a window's edge is found
        # nowhere), spread by the golden ratio so the picks do not alias with rows of cells.
        inner = remaining.copy()
        inner[1:] &= remaining[:-1]
        inner[:-1] &= remaining[1:]
        inner[:, 1:] &= remaining[:, :-1]
        inner[:, :-1] &= remaining[:, 1:]
        cells = np.argwhere(inner if np.count_nonzero(inner) >= MAX_KEYS else remaining)
        spread = (np.arange(min(MAX_KEYS, len(cells))) * 0.6180339887498949) % 1.0
        picks = cells[np.sort((spread * len(cells)).astype(int))]
        keys: list[tuple[int, int]] = []  # the runs, each (x, y)
        owners: list[int] = []  # the pick each run belongs to
        for pick, (cy, cx) in enumerate(picks.tolist()):
            x = min(max(cx * c + c // 2 - KEY_LENGTH // 2, 0), w - KEY_LENGTH)
            y_top, y_end = cy * c, min(cy * c + c, h)
            for y in dict.fromkeys((y_top + (y_end - y_top) // 2, y_top + (y_end - y_top) // 4,
                                    y_top + 3 * (y_end - y_top) // 4)):
                run = frame[y, x:x + KEY_LENGTH].view(np.uint32).ravel()
                if (np.count_nonzero(run[1:] != run[:-1]) >= 2
                        and not np.array_equal(run, self._prev[y, x:x + KEY_LENGTH].view(np.uint32).ravel())):
                    # this run and the ones below it; a run of one colour would match everywhere
                    block = frame[y:min(y + KEY_ROWS, h), x:x + KEY_LENGTH].view(np.uint32)[:, :, 0]
                    varied = np.flatnonzero(np.count_nonzero(block[:, 1:] != block[:, :-1], axis=1) >= 2).tolist()
                    keys += [(x, y + row) for row in varied]
                    owners += [pick] * len(varied)
                    break
        if not keys:
            return []
        # Search the groups of changed tiles that hold unexplained cells: a moved window's old
        # place changed too, and touches or overlaps its new place.
        k = t // c
        groups = np.unique(labels[np.nonzero(remaining)[0] // k, np.nonzero(remaining)[1] // k])
        rows, cols = np.nonzero(np.isin(labels, groups[groups > 0]))
        region = (int(cols.min()) * t, int(rows.min()) * t, min(int(cols.max()) * t + t, w),
                  min(int(rows.max()) * t + t, h))
        key_arr = np.array(keys, np.int32)
        hits = np.zeros((len(keys), MAX_KEY_HITS, 2), np.int32)
        counts = np.zeros(len(keys), np.int32)
        _scroll.find_segments(self._prev, frame, key_arr, KEY_LENGTH, *region, hits, counts, KEY_ROWS)
        votes: dict[int, set[tuple[int, int]]] = {p: set() for p in owners}  # a pick votes once for a vector
        for (kx, ky), pick, n, found in zip(keys, owners, counts.tolist(), hits.tolist()):
            if 0 < n <= MAX_KEY_HITS:
                votes[pick].update((kx - px, ky - py) for px, py in found[:n])
        tally = Counter(v for vectors in votes.values() for v in vectors - {(0, 0)})
        return [v for v, _ in tally.most_common(MAX_PLANAR_CANDIDATES)]

    def _take_matches(self, frame: np.ndarray, vector: tuple[int, int], matched: np.ndarray, changed: np.ndarray,
                      taken: np.ndarray, found: list[tuple[int, int, int, int, int, int]]) -> None:
        """Turn the cells matching ``vector`` into copies, grown to the pixel, and mark their cells taken.

        Changed cells that match seed the copies; around each group of seeds the box of matching
        cells (unchanged ones included) becomes one copy when every cell in it matches, so a moved
        region is one copy, not a patchwork.
        """
        c, (dx, dy) = self.cell, vector
        labels = np.zeros(matched.shape, np.int32)
        groups = _rects.label_tiles((matched & changed).view(np.uint8), labels)
        placed = [list(f[:4]) for f in found]
        free = matched.copy()  # matching cells no copy touches yet
        new: list[list[int]] = []

        def place(cx0: int, cy0: int, cx1: int, cy1: int) -> None:
            if not free[cy0:cy1, cx0:cx1].all():
                return  # an earlier piece grew into these cells: they go as pixels
            # Grow to the exact edge of the moved region, clear of every copy placed so far.
            rect = np.array([cx0 * c, cy0 * c, min(cx1 * c, self.width), min(cy1 * c, self.height)], np.int32)
            _scroll.grow_copy(self._prev, frame, dx, dy, rect, 2 * c, np.array(placed, np.int32).reshape(-1, 4))
            x0, y0, x1, y1 = rect.tolist()
            placed.append([x0, y0, x1, y1])
            new.append([x0, y0, x1, y1])
            free[y0 // c:-(-y1 // c), x0 // c:-(-x1 // c)] = False

        for y0, x0, y1, x1 in _label_boxes(labels, groups):
            core = _peel(free[y0:y1, x0:x1])
            if core is not None:
                place(x0 + core[1], y0 + core[0], x0 + core[3], y0 + core[2])
            # The group's changed cells still free: an exact partition (zero overhead joins only
            # exact unions).
            left = (labels[y0:y1, x0:x1] > 0) & free[y0:y1, x0:x1]
            if left.any():
                ys, xs = np.nonzero(left)
                boxes = np.zeros(left.shape + (4,), np.int32)
                boxes[ys, xs] = np.stack([xs, ys, xs + 1, ys + 1], axis=1)
                parts = np.empty((len(ys), 4), np.int32)
                for x, y, pw, ph in parts[:_rects.merge_boxes(boxes, 0, parts)].tolist():
                    place(x0 + x, y0 + y, x0 + x + pw, y0 + y + ph)
        for x0, y0, x1, y1 in _join(new):
            found.append((x0, y0, x1, y1, dx, dy))
            taken[y0 // c:-(-y1 // c), x0 // c:-(-x1 // c)] = True

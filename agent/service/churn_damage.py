"""Sans-IO: damage in areas that churn is grabbed a few times a second, not at every frame.

A terminal printing a build log, a progress animation or a video redraws its
area 20-50 times a second. Grabbing, comparing, tracking and encoding it at
the capture's full rate (30 frames a second) cost the customer's PC about
three times what TigerVNC spends on the same screen, for frames nobody can
read at that pace and that a slow link could not carry anyway. So the capture
loop passes every batch of X DAMAGE through a ChurnDamage first:

- a TILE x TILE tile is **busy** once X has reported it drawn again and again,
  never more than BUSY_GAP apart, for at least BUSY_FOR seconds. Typing (6.5
  keys a second), paging and a window dragged at 10 moves a second leave
  longer gaps and are never busy;
- a damage rectangle that lies wholly on busy tiles is **held**: not grabbed
  now, but remembered, and grabbed with every other held rectangle once
  HELD_INTERVAL has passed since the held damage was last grabbed. Everything
  else (the echo of a key in another window, a dialog that opened) is grabbed
  at once, as before;
- a large held area waits longer: HELD_INTERVAL for each HELD_PIXELS it
  covers, so churn costs at most HELD_PIXELS pixels grabbed, compared,
  encoded and compressed per HELD_INTERVAL, whatever its size. A log filling
  a terminal beside the typed one (the link benchmark's ``churn``, 87x44
  cells, 0.7 Mpx) is grabbed every 0.46 s instead of every 0.2 s: fresh
  text replaces it faster than either, so the technician sees whole screens
  of it either way, and the agent's CPU on that workload fell 1.40-1.57 s ->
  1.17-1.30 s, its bytes 483-507 kB -> 404-431 kB (six interleaved pairs);
- what a grab takes of held (or just released) areas is reported with its
  changes (``churning``, Changes.churn): grabbed this rarely, a log would
  otherwise look like the echo of the keys typed beside it to the viewers'
  ActivityMaps (agent.service.priority) and go whole, at once, in front of
  the typed glyph;
- when held tiles stop being drawn, what is held goes HELD_SETTLE later,
  however large: the last state of a log that stopped arrives at once;
- damage of at most SMALL_DAMAGE pixels in all, while nothing is held, is
  grabbed without being weighed: a typed key costs no bookkeeping, and an
  area that small costs little to send at the full rate;
- while the technician moves the pointer (POINTER_HOLD seconds after a pointer
  event) nothing is held: a window they drag, or scroll, moves at the full
  rate everywhere, not in pieces.

Held damage is never lost: it is grabbed by ``due`` (the caller sleeps until then), a whole grab
covers it (``clear``), and when drawing stops the tile is no longer busy. The
viewers' trackers and ActivityMaps see fewer, larger changes of the churning
area; what they carry is still the exact screen.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from agent.models import Rect, rects_area, tile_span

TILE = 32
BUSY_GAP = 0.06       # seconds: damage again within this keeps a tile busy (more than a 30 fps frame apart)
BUSY_FOR = 0.5        # seconds a tile must be busy before its damage is held
HELD_INTERVAL = 0.2   # seconds: held damage is grabbed this often (5 frames a second)...
HELD_PIXELS = 300_000  # ...if it covers at most this many pixels (a 640x480 video, a small terminal)
HELD_SETTLE = 0.1     # seconds without drawing on held tiles after which what is held goes
POINTER_HOLD = 1.0    # seconds after a pointer event during which nothing is held
SMALL_DAMAGE = 64 * 64  # pixels: damage this small, with nothing held, is grabbed without a look


class ChurnDamage:
    """Which of X's damage rectangles to grab now; see the module docstring."""

    def __init__(self, width: int, height: int, held_interval: float = HELD_INTERVAL) -> None:
        """``held_interval``: seconds between grabs of held damage (``--churn-fps``'s inverse)."""
        if not held_interval > 0:
            raise ValueError(f"held_interval must be > 0 seconds, got {held_interval!r}")
        self.held_interval = held_interval
        self.resize(width, height)
        self._pointer_until = -math.inf

    def resize(self, width: int, height: int) -> None:
        """A new screen size: nothing is busy or held."""
        self.width, self.height = width, height
        shape = (-(-height // TILE), -(-width // TILE))
        self._last = np.full(shape, -math.inf)   # when X last reported the tile drawn
        self._since = np.full(shape, math.inf)   # when its current run of drawing began
        self._held = np.zeros(shape, bool)
        self._holding = False  # any tile held (asked on every capture tick)
        self._held_pixels: int | None = 0         # the held tiles' area (None: not counted since they grew)
        self._held_drawn = -math.inf              # when held tiles were last drawn
        self._released_at = -math.inf             # when held damage was last grabbed
        self.released_rects: list[Rect] = []  # what the last split handed over of the held damage

    @property
    def released(self) -> bool:
        """Whether the last split handed the held damage over (``released_rects``)."""
        return bool(self.released_rects)

    def churning(self) -> list[Rect]:
        """Where X keeps drawing: what the last split released, and what is held now (Changes.churn)."""
        return self.released_rects + self._held_rects() if self._holding else self.released_rects

    @property
    def due(self) -> float:
        """When the held damage must be grabbed (inf: none is held): ``held_interval`` after the last
        release for each HELD_PIXELS it covers, or HELD_SETTLE after the drawing on it stopped."""
        if not self._holding:
            return math.inf
        if self._held_pixels is None:
            self._held_pixels = int(np.count_nonzero(self._held)) * TILE * TILE
        interval = self.held_interval * max(1.0, self._held_pixels / HELD_PIXELS)
        return min(self._released_at + interval, self._held_drawn + HELD_SETTLE)

    def note_pointer(self, now: float) -> None:
        """The technician moved the pointer (or clicked, or scrolled): hold nothing for a while."""
        self._pointer_until = now + POINTER_HOLD

    def clear(self) -> None:
        """Everything is being grabbed (a whole grab): nothing stays held."""
        self._held[:] = False
        self._holding = False
        self._held_pixels = 0

    def split(self, now: float, damage: Optional[Sequence[Rect]]) -> Optional[list[Rect]]:
        """Of ``damage`` (X's rectangles; None: X cannot say), what to grab now, held rectangles due included.

        None stays None (grab everything) and clears what is held.
        """
        self.released_rects = []
        if damage is None:
            self.clear()
            return None
        if not self._holding and rects_area(damage) <= SMALL_DAMAGE:
            return list(damage)  # a few glyphs: cheaper to grab than to weigh
        holding = now >= self._pointer_until
        grab: list[Rect] = []
        for rect in damage:
            tiles = self._tiles(rect)
            if tiles is None:
                continue
            if self._drawn(now, tiles) and holding:
                self._held[tiles] = True
                self._holding = True
                self._held_pixels = None
                self._held_drawn = now
            else:
                grab.append(rect)
        if self._holding and (now >= self.due or not holding):
            self.released_rects = self._take_held()
            grab.extend(self.released_rects)
            self._released_at = now
        return grab

    # -- internals -----------------------------------------------------------------------------

    def _drawn(self, now: float, tiles: tuple[slice, slice]) -> bool:
        """Record that ``tiles`` were drawn at ``now``; whether every one of them is busy now."""
        last, since = self._last[tiles], self._since[tiles]
        since[now - last > BUSY_GAP] = now
        last[...] = now
        return bool((since <= now - BUSY_FOR).all())

    def _tiles(self, rect: Rect) -> Optional[tuple[slice, slice]]:
        return tile_span(rect, self.width, self.height, TILE)

    def _take_held(self) -> list[Rect]:
        """The held tiles as rectangles; clears them."""
        rects = self._held_rects()
        self.clear()
        return rects

    def _held_rects(self) -> list[Rect]:
        """The held tiles as rectangles (runs along each tile row, stacked where rows agree)."""
        rows, cols = self._held.shape
        padded = np.zeros((rows, cols + 2), np.int8)
        padded[:, 1:-1] = self._held
        edges = np.diff(padded, axis=1)
        starts, ends = np.nonzero(edges == 1), np.nonzero(edges == -1)  # row-major: they pair up in order
        rects: list[Rect] = []
        above: dict[tuple[int, int], int] = {}  # runs of the row above: (first, end) tile column -> rect index
        here: dict[tuple[int, int], int] = {}
        current = -1
        for row, a, b in zip(starts[0].tolist(), starts[1].tolist(), ends[1].tolist()):
            if row != current:
                above, here = (here if row == current + 1 else {}), {}
                current = row
            y1 = min(self.height, (row + 1) * TILE)
            index = above.get((a, b))
            if index is not None:  # the same run as the row above: that rectangle grows down
                x, y, w, _ = rects[index]
                rects[index] = (x, y, w, y1 - y)
            else:
                index = len(rects)
                x0, x1 = a * TILE, min(self.width, b * TILE)
                rects.append((x0, row * TILE, x1 - x0, y1 - row * TILE))
            here[(a, b)] = index
        return rects

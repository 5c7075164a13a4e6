"""Sans-IO: what the technician interacts with goes first, and no update holds a slow link for long.

On a link that cannot carry everything, an update that takes all that changed
puts the echo of a keystroke behind a whole window of scrolling log output:
the technician waits most of a second per key. The ActivityMap watches, per
32-pixel tile, what changed when:

- **interactive**: a tile that was quiet just before an input event and
  changed right after it (the typed glyph, the moved text cursor, the menu
  that opened), or that lies near the pointer after it moved. It stays
  interactive for HOT_HOLD seconds;
- **churning**: a tile that keeps changing on its own (several times a
  second, and not because of input): log output, a clock, a video;
- **calm**: everything else.

``plan_update`` orders what is pending (interactive, calm, churning), holds
churning areas back to one update per CHURN_INTERVAL while the technician is
interacting, and stops once the estimated bytes would occupy the link for
more than UPDATE_SLICE seconds (a rectangle larger than that is cut into
bands). What is not taken stays pending in the viewer's tracker, so every area
still converges to the exact screen; only the order and the pace change.

The map also keeps, per tile, when its oldest unsent change was captured, so
each update reports its change-to-update latency: the age of the oldest change
it carries when it leaves the agent.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from agent.models import Copy, Rect

TILE = 32
ECHO_WINDOW = 0.25      # a change this soon after input is its echo (a page redraw takes a while)
QUIET_BEFORE = 0.06     # ...if the tile did not change in this long (or two frame intervals) before the input
HOT_HOLD = 1.0          # seconds a tile stays interactive after its last echo
POINTER_REACH = 64      # pixels around the pointer that are interactive after a pointer event
CHURN_TAU = 1.0         # seconds: decay of the per-tile change rate
CHURN_RATE = 4.0        # changes per second above which a tile that is not interactive is churning
INTERACTING_FOR = 2.0   # the technician is interacting for this long after any input
CHURN_INTERVAL = 0.25   # while interacting, churning areas go at most this often
UPDATE_SLICE = 0.1      # seconds of the estimated link rate one update may take
MIN_BUDGET = 4096       # bytes: the smallest update budget (a few glyphs with their headers)
MIN_BAND_ROWS = 16      # a cut rectangle's band is at least this tall
INITIAL_BYTES_PER_PIXEL = 0.5
BPP_GAIN = 0.3          # smoothing of the bytes-per-pixel estimate

INTERACTIVE, CALM, CHURNING = 0, 1, 2


@dataclass
class Plan:
    """One update's share of what is pending."""

    rects: list[Rect] = field(default_factory=list)  # to send now, most urgent first
    later: list[Rect] = field(default_factory=list)  # back to the tracker
    held_churn: bool = False  # churning areas wait for their next turn (see ``churn_due``)


class ActivityMap:
    """Per-tile change history of one screen; see the module docstring."""

    def __init__(self, width: int, height: int) -> None:
        self.resize(width, height)
        self.bytes_per_pixel = INITIAL_BYTES_PER_PIXEL
        self.last_input = -math.inf
        self._last_churn_sent = -math.inf
        self._last_frame: Optional[float] = None
        self._frame_gap = 1 / 30

    def resize(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        shape = (-(-height // TILE), -(-width // TILE))
        self._rate = np.zeros(shape, np.float32)         # changes per second, decaying
        self._rate_at = 0.0
        self._changed = np.full(shape, -math.inf)       # when each tile last changed
        self._hot_until = np.full(shape, -math.inf)     # interactive until
        self._pending = np.full(shape, math.inf)        # capture time of the oldest unsent change

    # -- feeding -------------------------------------------------------------------------------

    def note_input(self, now: float, pointer: Optional[tuple[int, int]] = None) -> None:
        self.last_input = now
        if pointer is not None:
            x, y = pointer
            self._slice((x - POINTER_REACH, y - POINTER_REACH, 2 * POINTER_REACH, 2 * POINTER_REACH),
                        self._hot_until, now + HOT_HOLD)

    def note_changes(self, now: float, copies: Sequence[Copy], rects: Sequence[Rect]) -> None:
        """One captured frame's changes (copies land on their destinations), captured at ``now``."""
        if self._last_frame is not None and now > self._last_frame:
            self._frame_gap += 0.2 * (min(now - self._last_frame, 1.0) - self._frame_gap)
        self._last_frame = now
        touched = np.zeros(self._rate.shape, bool)
        for x, y, w, h in list(rects) + [c[2:] for c in copies]:
            self._slice((x, y, w, h), touched, True)
        if not touched.any():
            return
        self._decay(now)
        self._rate[touched] += 1.0
        if now - self.last_input <= ECHO_WINDOW:
            quiet_since = self.last_input - max(QUIET_BEFORE, 2 * self._frame_gap)
            echo = touched & (self._changed < quiet_since)
            self._hot_until[echo] = now + HOT_HOLD
        self._changed[touched] = now
        np.minimum(self._pending, np.where(touched, now, math.inf), out=self._pending)

    def mark_all_pending(self, now: float) -> None:
        """Everything is owed (a new viewer, a refresh): it has been waiting since ``now`` at the latest."""
        np.minimum(self._pending, now, out=self._pending)

    # -- reading -------------------------------------------------------------------------------

    def interacting(self, now: float) -> bool:
        return now - self.last_input <= INTERACTING_FOR

    def classify(self, rect: Rect, now: float) -> int:
        tiles = self._tiles(rect)
        if tiles is None:
            return CALM
        ys, xs = tiles
        if (self._hot_until[ys, xs] > now).any():
            return INTERACTIVE
        self._decay(now)
        return CHURNING if float(self._rate[ys, xs].max()) >= CHURN_RATE else CALM

    def churn_due(self, now: float) -> float:
        """When held-back churning areas may go next."""
        return self._last_churn_sent + CHURN_INTERVAL

    def budget(self, link_rate: Optional[float]) -> Optional[int]:
        """Bytes one update may carry at ``link_rate`` (bytes/s); None: no estimate, no limit."""
        if link_rate is None or link_rate <= 0:
            return None
        return max(MIN_BUDGET, int(link_rate * UPDATE_SLICE))

    # -- planning ------------------------------------------------------------------------------

    def plan_update(self, rects: Sequence[Rect], now: float, link_rate: Optional[float]) -> Plan:
        """Which of ``rects`` go in this update; see the module docstring.

        Only while the technician interacts: then an echo is expected at any moment, and whatever
        else is pending must not stand in front of it. Otherwise everything goes, as it always did.
        Interactive areas always go whole: they are what the technician is waiting to see."""
        budget = self.budget(link_rate)
        if budget is None or not self.interacting(now):
            return Plan(list(rects))
        plan = Plan()
        hold = now < self.churn_due(now)
        spent = 0.0
        bulk_started = False
        for kind, _, rect in sorted((self.classify(r, now), i, r) for i, r in enumerate(rects)):
            cost = rect[2] * rect[3] * self.bytes_per_pixel
            if kind == INTERACTIVE:
                plan.rects.append(rect)
                spent += cost
                continue
            if kind == CHURNING and hold:
                plan.later.append(rect)
                plan.held_churn = True
                continue
            if spent + cost > budget:
                if bulk_started or spent >= budget:
                    plan.later.append(rect)
                    continue
                # the first bulk rectangle alone is too big: send a band of it, the rest later
                rect, rest = self._band(rect, budget - spent)
                if rest is not None:
                    plan.later.append(rest)
                cost = rect[2] * rect[3] * self.bytes_per_pixel
            plan.rects.append(rect)
            spent += cost
            bulk_started = True
            if kind == CHURNING:
                self._last_churn_sent = now
        return plan

    def sent(self, now: float, copies: Sequence[Copy], rects: Sequence[Rect], later: Sequence[Rect],
             encoded_bytes: int) -> Optional[float]:
        """An update left: returns its change-to-update latency (None if it carried no pixels) and learns
        the bytes per pixel of what was encoded."""
        areas = list(rects) + [c[2:] for c in copies]
        if not areas:
            return None
        touched = np.zeros(self._pending.shape, bool)
        for area in areas:
            self._slice(area, touched, True)
        oldest = float(self._pending[touched].min()) if touched.any() else math.inf
        keep = np.full(self._pending.shape, math.inf)
        for area in later:  # still owed: they keep their age
            tiles = self._tiles(area)
            if tiles is not None:
                keep[tiles] = self._pending[tiles]
        self._pending[touched] = math.inf
        np.minimum(self._pending, keep, out=self._pending)
        pixels = sum(w * h for _, _, w, h in rects)
        if pixels >= 256 and encoded_bytes > 0:
            self.bytes_per_pixel += BPP_GAIN * (encoded_bytes / pixels - self.bytes_per_pixel)
        return None if math.isinf(oldest) else max(0.0, now - oldest)

    # -- internals -----------------------------------------------------------------------------

    def _band(self, rect: Rect, budget: int) -> tuple[Rect, Optional[Rect]]:
        x, y, w, h = rect
        rows = max(MIN_BAND_ROWS, int(budget / max(w * self.bytes_per_pixel, 1e-9)))
        if rows >= h:
            return rect, None
        return (x, y, w, rows), (x, y + rows, w, h - rows)

    def _decay(self, now: float) -> None:
        dt = now - self._rate_at
        if dt > 0:
            self._rate *= math.exp(-dt / CHURN_TAU)
            self._rate_at = now

    def _tiles(self, rect: Rect) -> Optional[tuple[slice, slice]]:
        x, y, w, h = rect
        x0, y0 = max(0, x), max(0, y)
        x1, y1 = min(self.width, x + w), min(self.height, y + h)
        if x1 <= x0 or y1 <= y0:
            return None
        return slice(y0 // TILE, -(-y1 // TILE)), slice(x0 // TILE, -(-x1 // TILE))

    def _slice(self, rect: Rect, grid: np.ndarray, value: object) -> None:
        tiles = self._tiles(rect)
        if tiles is not None:
            grid[tiles] = value

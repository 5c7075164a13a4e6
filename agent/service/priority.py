"""Sans-IO: what the technician interacts with goes first, and no update holds a slow link for long.

On a link that cannot carry everything, an update that takes all that changed
puts the echo of a keystroke behind a whole window of scrolling log output:
the technician waits most of a second per key. The ActivityMap watches, per
32-pixel tile, what changed when:

- **interactive**: a tile that changed right after an input event and hardly
  ever changes otherwise (the typed glyph, the moved text cursor, the menu
  that opened), or that lies near the pointer after it moved. It stays
  interactive for HOT_HOLD seconds;
- **churning**: a tile that keeps changing on its own (several times a
  second, and not because of input): log output, a clock, a video;
- **calm**: everything else.

While the technician interacts, ``plan_update`` sends interactive areas whole
and at once, and the rest (calm first, churning last) only as a token bucket
allows: filled at BULK_SHARE of the link's estimated rate, at most UPDATE_SLICE
seconds of it deep, however often the viewer asks (a rectangle larger than
what is left is cut into bands, once at least half a slice is there: every
update costs the customer's PC about a millisecond, whatever it carries). The
link therefore always has room for the next echo. What is not taken stays
pending in the viewer's tracker, so every area still converges to the exact
screen; only the order and the pace change.

The map also keeps, per tile, when its oldest unsent change was captured, so
each update reports its change-to-update latency: the age of the oldest change
it carries when it leaves the agent.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from agent.models import Copy, Rect, tile_span

TILE = 32
ECHO_WINDOW = 0.1       # a change this soon after input may be its echo (xterm, vim, less: 5-30 ms)
SPONTANEOUS_MAX = 1.0   # ...if the tile changes less often than this (per second) outside those windows
HOT_HOLD = 1.0          # seconds a tile stays interactive after its last echo
POINTER_REACH = 64      # pixels around the pointer that are interactive after a pointer event
CHURN_TAU = 1.0         # seconds: decay of the per-tile change rate
CHURN_RATE = 4.0        # changes per second above which a tile that is not interactive is churning
INTERACTING_FOR = 2.0   # the technician is interacting for this long after any input
UPDATE_SLICE = 0.05     # seconds of the estimated link rate the non-interactive areas may take at once
BULK_SHARE = 0.25       # while interacting, share of the link the non-interactive areas may use
# The agent grabs, encodes and compresses only what it sends, so this share is most of the customer's
# CPU while the technician types beside a churning area. On the link benchmark's churn (a log beside
# the typed window, three interleaved pairs each): 0.5 -> 0.35 cut the agent's CPU 1.19-1.29 ->
# 1.09-1.15 s, bytes 344-366 -> 266-280 kB, the echo's p95 101-104 -> 89-95 ms; 0.35 -> 0.25 cut the CPU
# 1.09-1.24 -> 0.94-1.04 s, bytes 275-306 -> 216-223 kB, the echo's p95 the same (88-99 ms). A log
# screen of fresh text is ~21 kB: a quarter of 1 Mbit/s still shows 1.5 of them a second, more than
# anyone reads while typing; when the technician pauses (2 s), everything goes.
MIN_WAIT = 0.02         # seconds: the shortest wait for the bucket
MIN_BUDGET = 4096       # bytes: the smallest update budget (a few glyphs with their headers)
MIN_BAND_ROWS = 16      # a cut rectangle's band is at least this tall
INITIAL_BYTES_PER_PIXEL = 0.25  # link bytes per changed pixel before the first measurement
BPP_GAIN = 0.3          # smoothing of the link-bytes-per-pixel estimate

FEW_AREAS = 32          # up to this many rectangles, tiles are marked one at a time (fewer numpy calls)
RESCALE_BELOW = 1e-6    # the rates' decay is a common factor (_decay), folded into them when this small

INTERACTIVE, CALM, CHURNING = 0, 1, 2


@dataclass
class LinkState:
    """What the session's flow control knows of the link now (agent.session.flow)."""

    rate: float                # link bytes per second (the bottleneck's estimated rate)
    in_flight: int = 0         # link bytes sent and not acknowledged yet
    rtt: float = 0.1           # the smallest round trip seen, seconds
    sent: int = 0              # link bytes sent so far: what an update cost is learnt from

    @property
    def backlogged(self) -> bool:
        """More is in flight than one round trip and one update slice carry: a queue builds up."""
        return self.in_flight > self.rate * (self.rtt + UPDATE_SLICE)


@dataclass
class Plan:
    """One update's share of what is pending."""

    rects: list[Rect] = field(default_factory=list)  # to send now, most urgent first
    later: list[Rect] = field(default_factory=list)  # back to the tracker
    held: bool = False  # areas wait for the token bucket to refill (see ``bulk_due``)


class ActivityMap:
    """Per-tile change history of one screen; see the module docstring."""

    def __init__(self, width: int, height: int) -> None:
        self.resize(width, height)
        self.bytes_per_pixel = INITIAL_BYTES_PER_PIXEL
        self._cost_bytes = self._cost_pixels = 0.0  # recent updates' link bytes and pixels, decaying
        self.last_input = -math.inf
        self._tokens = 0.0  # bytes the non-interactive areas may still take (while interacting)
        self._bulk_at: Optional[float] = None
        self._bulk_rate = 0.0
        self._bulk_depth = 0.0

    def resize(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        shape = (-(-height // TILE), -(-width // TILE))
        # Changes per second, decaying, and the same counting only changes not right after input; both
        # times ``_scale``, the decay since they were last rescaled (a scalar per frame, not two grids).
        self._rate = np.zeros(shape, np.float32)
        self._spontaneous = np.zeros(shape, np.float32)
        self._scale = 1.0
        self._rate_at = 0.0
        self._hot_until = np.full(shape, -math.inf)     # interactive until
        self._hot_ends = -math.inf                       # the latest of those
        self._pending = np.full(shape, math.inf)        # capture time of the oldest unsent change

    # -- feeding -------------------------------------------------------------------------------

    def note_input(self, now: float, pointer: Optional[tuple[int, int]] = None) -> None:
        self.last_input = now
        if pointer is not None:
            x, y = pointer
            self._slice((x - POINTER_REACH, y - POINTER_REACH, 2 * POINTER_REACH, 2 * POINTER_REACH),
                        self._hot_until, now + HOT_HOLD)
            self._hot_ends = now + HOT_HOLD

    def note_changes(self, now: float, copies: Sequence[Copy], rects: Sequence[Rect],
                     churn: Sequence[Rect] = ()) -> None:
        """One captured frame's changes (copies land on their destinations), captured at ``now``.

        An echo is a tile that changed within ECHO_WINDOW after the input and hardly ever changes
        outside such windows: log output changes whether anyone types or not (its spontaneous rate
        is high, even while the technician types, in the gaps between the keys' windows); a typed
        glyph changes only after a key. ``churn``: areas the capture held back because X kept drawing
        them (Changes.churn), never an echo. They come a few times a second, or less on a large area
        (agent.service.churn_damage), so at 6.5 keys a second most of them land inside a key's
        window and their spontaneous rate falls below SPONTANEOUS_MAX: a whole log would go as the
        echo, at once, and the typed glyph with it behind 15 kB on a 1 Mbit/s link."""
        area = self._one_area(copies, rects)
        if area is not None and not churn:  # a typed glyph: its tiles as views, a few numpy calls fewer
            self._decay(now)
            one = 1.0 / self._scale
            if now - self.last_input <= ECHO_WINDOW:
                echo = self._spontaneous[area] < SPONTANEOUS_MAX * one
                if echo.any():
                    self._hot_until[area][echo] = now + HOT_HOLD
                    self._hot_ends = now + HOT_HOLD
            else:
                self._spontaneous[area] += one
            self._rate[area] += one
            pending = self._pending[area]
            np.minimum(pending, now, out=pending)
            return
        touched = self._touched(copies, rects)
        if not touched.any():
            return
        self._decay(now)
        one = 1.0 / self._scale
        if now - self.last_input <= ECHO_WINDOW:
            echo = touched & (self._spontaneous < SPONTANEOUS_MAX * one)
            if churn:
                drawn = touched & self._touched((), churn)
                echo &= ~drawn
                self._spontaneous[drawn] += one
            self._hot_until[echo] = now + HOT_HOLD
            if echo.any():
                self._hot_ends = now + HOT_HOLD
        else:
            self._spontaneous[touched] += one
        self._rate[touched] += one
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
        return CHURNING if float(self._rate[ys, xs].max()) * self._scale >= CHURN_RATE else CALM

    def classify_all(self, rects: Sequence[Rect], now: float) -> list[int]:
        """``classify`` for each of ``rects``; a page of them in a few numpy calls (any hot tile, any
        churning tile: counts over summed-area tables of the two grids)."""
        if len(rects) <= FEW_AREAS:
            return [self.classify(rect, now) for rect in rects]
        self._decay(now)
        spans = _tile_spans(rects, self.width, self.height)
        hot = _any_in(self._hot_until > now, spans)
        churning = _any_in(self._rate >= CHURN_RATE / self._scale, spans)
        return np.where(hot, INTERACTIVE, np.where(churning, CHURNING, CALM)).tolist()

    def bulk_due(self, now: float) -> float:
        """When held-back areas may go next: the bucket holds half a slice again."""
        if self._bulk_rate <= 0:
            return now
        return now + max(MIN_WAIT, (0.5 * self._bulk_depth - self._tokens) / self._bulk_rate)

    def budget(self, link: Optional[LinkState]) -> Optional[int]:
        """Link bytes the bulk may take at once on ``link``; None: no estimate, no limit."""
        if link is None or link.rate <= 0:
            return None
        return max(MIN_BUDGET, int(link.rate * UPDATE_SLICE))

    # -- planning ------------------------------------------------------------------------------

    def interactive_pending(self, now: float) -> bool:
        """Whether an interactive area has a change not sent yet (worth an update of its own)."""
        if now >= self._hot_ends:
            return False  # asked on every frame and ACK: most of the time nothing is interactive at all
        return bool(np.any((self._hot_until > now) & (self._pending < math.inf)))

    def forget_interactive(self, now: float) -> None:
        """Nothing interactive is owed after all (a copy or an earlier update carried it)."""
        self._pending[self._hot_until > now] = math.inf

    def plan_update(self, rects: Sequence[Rect], now: float, link: Optional[LinkState], *,
                    only_interactive: bool = False) -> Plan:
        """Which of ``rects`` go in this update; see the module docstring.

        Only while the technician interacts: then an echo is expected at any moment, and whatever
        else is pending must not stand in front of it. Otherwise everything goes, as it always did.
        Interactive areas always go whole: they are what the technician is waiting to see; the rest
        spends a token bucket filled at BULK_SHARE of the link, at most one UPDATE_SLICE deep, however
        often the viewer asks, and waits while the link is backlogged (the bucket counts link bytes at
        the link bytes per pixel learnt from earlier updates; the backlog is measured).
        ``only_interactive``: an update nobody asked for (an echo pushed at once) carries nothing else."""
        if only_interactive:
            plan = Plan()
            for rect, kind in zip(rects, self.classify_all(rects, now)):
                (plan.rects if kind == INTERACTIVE else plan.later).append(rect)
            return plan
        budget = self.budget(link)
        if budget is None or link is None or not self.interacting(now):
            self._bulk_at = None  # the bucket is full when interaction begins
            return Plan(list(rects))
        self._refill(now, link.rate * BULK_SHARE, budget)
        plan = Plan()
        for kind, _, rect in sorted(zip(self.classify_all(rects, now), range(len(rects)), rects)):
            if kind == INTERACTIVE:
                plan.rects.append(rect)
                continue
            if link.backlogged:
                plan.later.append(rect)
                plan.held = True
                continue
            if self._cost(rect) > self._tokens:
                plan.held = True
                if self._tokens + 1 < 0.5 * budget:  # a band worth an update: each costs ~1 ms of the customer's
                    # CPU (the byte of slack: bulk_due's refill, recomputed, may land a rounding error short)
                    plan.later.append(rect)
                    continue
                band, rest = self._band(rect, self._tokens)
                if rest is None or self._cost(band) > self._tokens:
                    plan.later.append(rect)
                    continue
                plan.later.append(rest)
                rect = band
            plan.rects.append(rect)
            self._tokens -= self._cost(rect)
        return plan

    def _refill(self, now: float, rate: float, depth: float) -> None:
        if self._bulk_at is None:
            self._tokens = depth  # interaction begins: one slice may go at once
        else:
            self._tokens = min(depth, self._tokens + max(0.0, now - self._bulk_at) * rate)
        self._bulk_at, self._bulk_rate, self._bulk_depth = now, rate, depth

    def sent(self, now: float, copies: Sequence[Copy], rects: Sequence[Rect], later: Sequence[Rect]) -> Optional[float]:
        """An update left: returns its change-to-update latency (None if it carried no pixels)."""
        if not (rects or copies):
            return None
        touched = self._one_area(copies, rects)  # (a typed glyph's tiles: slices, no mask)
        if touched is None:
            touched = self._touched(copies, rects)
        ages = self._pending[touched]
        oldest = float(np.minimum.reduce(ages, axis=None)) if ages.size else math.inf  # (not ndarray.min's wrapper)
        keep = None
        if later:  # still owed: they keep their age
            keep = np.full(self._pending.shape, math.inf)
            for owed in later:
                tiles = self._tiles(owed)
                if tiles is not None:
                    keep[tiles] = self._pending[tiles]
        self._pending[touched] = math.inf
        if keep is not None:
            np.minimum(self._pending, keep, out=self._pending)
        return None if math.isinf(oldest) else max(0.0, now - oldest)

    def learn_cost(self, pixels: int, link_bytes: int) -> None:
        """An update of ``pixels`` changed pixels took ``link_bytes`` on the link (compressed, framed,
        encrypted): the bucket's price per pixel follows it, weighted by pixels. Echoes (a glyph: 342
        pixels, ~30 bytes, 0.09 a pixel) come between the bulk's bands (100,000 pixels or more, 0.03 a
        pixel on the churn workload's log): counted per update they priced the bands a third too high,
        and the bulk got a third less of the link than BULK_SHARE means."""
        if pixels >= 256 and link_bytes > 0:
            keep = 1.0 - BPP_GAIN
            self._cost_bytes = keep * self._cost_bytes + link_bytes
            self._cost_pixels = keep * self._cost_pixels + pixels
            self.bytes_per_pixel = self._cost_bytes / self._cost_pixels

    # -- internals -----------------------------------------------------------------------------

    def _cost(self, rect: Rect) -> float:
        """Estimated link bytes of sending ``rect``."""
        return rect[2] * rect[3] * self.bytes_per_pixel

    def _band(self, rect: Rect, budget: float) -> tuple[Rect, Optional[Rect]]:
        x, y, w, h = rect
        rows = max(MIN_BAND_ROWS, int(budget / max(w * self.bytes_per_pixel, 1e-9)))
        if rows >= h:
            return rect, None
        return (x, y, w, rows), (x, y + rows, w, h - rows)

    def _decay(self, now: float) -> None:
        dt = now - self._rate_at
        if dt > 0:
            self._scale *= math.exp(-dt / CHURN_TAU)
            self._rate_at = now
            if self._scale < RESCALE_BELOW:
                self._rate *= self._scale
                self._spontaneous *= self._scale
                self._scale = 1.0

    def _tiles(self, rect: Rect) -> Optional[tuple[slice, slice]]:
        return tile_span(rect, self.width, self.height, TILE)

    def _one_area(self, copies: Sequence[Copy], rects: Sequence[Rect]) -> Optional[tuple[slice, slice]]:
        """The tiles of the only area among ``rects`` and the copies' destinations, if there is just one."""
        if len(rects) + len(copies) != 1:
            return None
        return self._tiles(rects[0] if rects else copies[0][2:])

    def _touched(self, copies: Sequence[Copy], rects: Sequence[Rect]) -> np.ndarray:
        """The tiles that ``rects`` and the copies' destinations cover."""
        areas = list(rects) + [c[2:] for c in copies]
        if len(areas) > FEW_AREAS:  # a page of text: hundreds of rects, marked in one go
            return _cover(self._pending.shape, areas, self.width, self.height)
        touched = np.zeros(self._pending.shape, bool)
        for area in areas:
            self._slice(area, touched, True)
        return touched

    def _slice(self, rect: Rect, grid: np.ndarray, value: object) -> None:
        tiles = self._tiles(rect)
        if tiles is not None:
            grid[tiles] = value


def _tile_spans(areas: Sequence[Rect], width: int, height: int) -> np.ndarray:
    """Per area, clipped to the screen, its TILE tiles ``[ty0, ty1) x [tx0, tx1)`` as rows
    ``(ty0, tx0, ty1, tx1)``; an area off the screen gets an empty span."""
    a = np.asarray(areas, np.int64).reshape(-1, 4)
    x0, y0 = np.clip(a[:, 0], 0, width), np.clip(a[:, 1], 0, height)
    x1, y1 = np.clip(a[:, 0] + a[:, 2], 0, width), np.clip(a[:, 1] + a[:, 3], 0, height)
    empty = (x1 <= x0) | (y1 <= y0)
    spans = np.stack([y0 // TILE, x0 // TILE, -(-y1 // TILE), -(-x1 // TILE)], axis=1)
    spans[empty] = 0
    return spans


def _any_in(grid: np.ndarray, spans: np.ndarray) -> np.ndarray:
    """Per span, whether any tile of ``grid`` (bool) in it is set (a summed-area table)."""
    table = np.zeros((grid.shape[0] + 1, grid.shape[1] + 1), np.int32)
    np.cumsum(np.cumsum(grid, axis=0, dtype=np.int32), axis=1, out=table[1:, 1:])
    ty0, tx0, ty1, tx1 = spans.T
    return table[ty1, tx1] - table[ty0, tx1] - table[ty1, tx0] + table[ty0, tx0] > 0


def _cover(shape: tuple[int, int], areas: Sequence[Rect], width: int, height: int) -> np.ndarray:
    """The TILE tiles ``areas`` cover, clipped to the screen (a 2-D difference array summed up)."""
    spans = _tile_spans(areas, width, height)
    spans = spans[(spans[:, 2] > spans[:, 0]) & (spans[:, 3] > spans[:, 1])]
    ty0, tx0, ty1, tx1 = spans.T
    cols = shape[1] + 1
    corners = np.concatenate((ty0 * cols + tx0, ty1 * cols + tx1, ty0 * cols + tx1, ty1 * cols + tx0))
    signs = np.repeat(np.array([1.0, -1.0]), 2 * len(tx0))
    diff = np.bincount(corners, signs, (shape[0] + 1) * cols).reshape(shape[0] + 1, cols)
    return diff.cumsum(0).cumsum(1)[:shape[0], :shape[1]] > 0.5

"""Where the character cells of on-screen text are, from palette indices: the stripes' layout.

Below the channel's zstd, text goes as palette indices in vertical stripes
(agent.secure.stripes). A stripe that is exactly one character cell wide and
starts where the cells start holds one glyph after another, each whole, so a
glyph seen before anywhere in the last screens is one match, whatever text
surrounds it. A stripe of any other width cuts glyphs at a phase that changes
along the line, and random text (a log scrolling by) hardly repeats.

A terminal's font has a fixed pitch, and nearly every glyph leaves a column of
its cell blank: counted per column, the pixels that differ from the
background fall to almost nothing once per cell. ``CellGrid`` finds that
pitch and where each window's cells start, uses them while most recent
rectangles agree on the pitch (for rectangles too small to tell as well),
and otherwise lays STRIPE_WIDTH stripes.

Captured frames of the link benchmark, replayed through the detector, the
encoder, the mux and the channel's zstd: 22 pages of a log in ``less`` 296.0
kB in rows, 135.5 kB on the cells (9 pixels wide there); 60 frames of the
churn workload (fresh random text) 405.2 and 151.0 kB. Stripes a fixed 8 wide
gave 191.5 and 309.4. Live (``python -m benchmarks.linkbench --workloads
paging,churn``): paging 309.7 -> 150.3 kB, churn 774.5 -> 430-600 kB (churn's
bytes vary from run to run with which frames are caught).
Proportional text finds no grid and keeps 8-wide stripes: 12 pages of
DejaVu Sans 13 rendered by Pillow, replayed, 193.8 kB in rows, 138.8 kB in
stripes (and Serif 15: 214.4 and 138.2). Monospace at a fractional advance
(DejaVu Sans Mono 13 from Pillow, 7.8 pixels; browsers do this, terminals do
not) looks like a pitch of 8 whose start drifts: 147.6 kB, against 137.8 in
plain 8-wide stripes and 211.3 in rows.
"""
from __future__ import annotations

from collections import Counter, deque

import numpy as np

from agent._native import cells as _cells
from agent.models import Rect

MIN_PITCH, MAX_PITCH = 5, 12  # terminal fonts from 5x8 to 12x24
STRIPE_WIDTH = 8  # stripes while no grid is known (agent.secure.stripes measured 8 best among fixed widths)
BLANK_SHARE = 0.2  # a cell's emptiest column holds under this share of an average column's ink
MIN_CELLS = 5  # the narrowest rectangle that can tell a pitch: this many cells of the widest pitch
MIN_INK_ROWS = 4  # and at least this many rows' worth of ink
VOTES = 9  # pitches found in the last rectangles, remembered
AGREE = 2 / 3  # the share of them (and at least MIN_AGREE) that must be the same pitch for it to be used
PLACES = 16  # grids found lately, with where: a rectangle too small to tell takes the latest that covers it
MIN_AGREE = 3
Grid = tuple[int, int]  # (pitch, screen column modulo the pitch where cells start)


def find_cells(indices: np.ndarray, x: int, likely: int | None = None) -> Grid | None:
    """(pitch, where cells start modulo the pitch, in screen columns) of text in ``indices`` (rows of palette
    indices of a rectangle at screen column ``x``); None when it shows no fixed pitch or is too small to
    tell. The ``likely`` pitch is tried first: on a screen of one font, one try.

    Per column, the pixels that differ from the background (the commonest index); a pitch fits when
    the emptiest phase of columns holds under BLANK_SHARE of an average phase's ink, and a cell starts
    after that blank column. The smallest pitch that fits wins (a multiple fits too). A rectangle
    narrower than MIN_CELLS cells of MAX_PITCH, or with under MIN_INK_ROWS rows' worth of ink, cannot
    tell. The kernel (agent._native.cells) does it; tests/support/reference.py holds it in numpy.
    """
    return _cells.find_cells(indices, x, likely or 0, MIN_PITCH, MAX_PITCH, BLANK_SHARE, MIN_CELLS, MIN_INK_ROWS)


class CellGrid:
    """The text grids of the last rectangles that could tell; ``layout`` gives each rectangle's stripes.

    The pitch is used only while most of the last VOTES pitches found agree on it: a proportional font
    (a browser, a document) now and then looks like a grid in one rectangle, each time another, and
    stripes laid on such grids cost more than plain 8-wide ones (text rendered in DejaVu Sans 13,
    replayed: 171.1 kB against 138.8). Where the cells start differs from window to window (each has
    its own left edge), so a rectangle takes its own, or else that of the latest grid found where it
    lies (the churn workload's two xterms: 640 kB a run with one start for the screen, 440-600 kB so).
    A rectangle that shows no grid does not vote: in a terminal most wide ones show it, but many hold
    too little text to (random text: a third of them).
    """

    def __init__(self) -> None:
        self._pitches: deque[int] = deque(maxlen=VOTES)
        self._found: deque[tuple[Rect, Grid]] = deque(maxlen=PLACES)  # newest first
        self.pitch: int | None = None

    def layout(self, indices: np.ndarray, x: int, y: int = 0) -> tuple[int, int]:
        """(stripe, first) for the rows of ``indices`` at screen column ``x``, row ``y`` (agent.models.Matrix)."""
        rows, width = indices.shape
        place = (x, y, width, rows)
        found = find_cells(indices, x, self.pitch)
        if found is not None:
            self._pitches.append(found[0])
            self._found.appendleft((place, found))
            pitch, count = Counter(self._pitches).most_common(1)[0]
            self.pitch = pitch if count >= max(MIN_AGREE, AGREE * len(self._pitches)) else None
        if self.pitch is None:
            return STRIPE_WIDTH, 0
        if found is None or found[0] != self.pitch:
            found = self._nearest(place)
        return self.pitch, (found[1] - x) % self.pitch

    def _nearest(self, place: Rect) -> Grid:
        """The latest grid of the pitch in use found where ``place`` lies, else the latest of that pitch."""
        x, y, w, h = place
        latest: Grid | None = None
        for (gx, gy, gw, gh), grid in self._found:  # newest first
            if grid[0] != self.pitch:
                continue
            if gx < x + w and x < gx + gw and gy < y + h and y < gy + gh:
                return grid
            latest = latest or grid
        assert latest is not None  # the pitch in use was found in one of the last VOTES < PLACES rectangles
        return latest

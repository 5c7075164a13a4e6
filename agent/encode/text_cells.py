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
pitch and the blank column's place on the screen, keeps them for rectangles
too small to tell, and falls back to STRIPE_WIDTH stripes until it knows.

Captured frames of the link benchmark, replayed through the detector, the
encoder, the mux and the channel's zstd: 22 pages of a log in ``less`` 296.0
kB in rows, 135.5 kB on the cells (9 pixels wide there); 60 frames of the
churn workload (fresh random text) 405.2 and 151.0 kB. Stripes a fixed 8 wide
gave 191.5 and 309.4. Live (``python -m benchmarks.linkbench --workloads
paging,churn``): paging 309.7 -> 150.6 kB, churn 774.5 -> 522.5 kB.
"""
from __future__ import annotations

import numpy as np

MIN_PITCH, MAX_PITCH = 5, 12  # terminal fonts from 5x8 to 12x24
STRIPE_WIDTH = 8  # stripes while no grid is known (agent.secure.stripes measured 8 best among fixed widths)
BLANK_SHARE = 0.2  # a cell's emptiest column holds under this share of an average column's ink
MIN_CELLS = 5  # the narrowest rectangle that can tell a pitch: this many cells of the widest pitch
MIN_INK_ROWS = 4  # and at least this many rows' worth of ink


def find_cells(indices: np.ndarray, x: int, likely: int | None = None) -> tuple[int, int] | None:
    """(pitch, where cells start modulo the pitch, in screen columns) of text in ``indices`` (rows of palette
    indices of a rectangle at screen column ``x``); None when it shows no fixed pitch. The ``likely`` pitch
    (the last one found) is tried first: on a screen of one font, one try."""
    rows, width = indices.shape
    if width < MIN_CELLS * MAX_PITCH or rows < MIN_PITCH:
        return None
    background = np.bincount(indices[::4, ::4].ravel(), minlength=256).argmax()
    ink = np.count_nonzero(indices != background, axis=0)
    if ink.sum() < MIN_INK_ROWS * rows:
        return None
    columns = np.arange(x, x + width)
    pitches = range(MIN_PITCH, MAX_PITCH + 1)  # the smallest pitch that fits (a multiple fits too)
    for pitch in ([likely] if likely else []) + list(pitches):
        whole = width // pitch * pitch
        per_phase = np.bincount(columns[:whole] % pitch, weights=ink[:whole], minlength=pitch)
        blank = int(per_phase.argmin())
        if per_phase[blank] < BLANK_SHARE * per_phase.mean():
            return pitch, (blank + 1) % pitch  # a cell starts after its blank column
    return None


class CellGrid:
    """The text grid last seen on screen; ``layout`` gives each rectangle's stripes."""

    def __init__(self) -> None:
        self.pitch: int | None = None
        self.start = 0  # screen column, modulo the pitch, where cells start

    def layout(self, indices: np.ndarray, x: int) -> tuple[int, int]:
        """(stripe, first) for the rows of ``indices`` at screen column ``x`` (agent.models.Matrix)."""
        found = find_cells(indices, x, self.pitch)
        if found is not None:
            self.pitch, self.start = found
        if self.pitch is None:
            return STRIPE_WIDTH, 0
        return self.pitch, (self.start - x) % self.pitch

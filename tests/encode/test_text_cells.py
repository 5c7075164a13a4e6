"""Text's character cells from palette indices (agent.encode.text_cells): the pitch and where cells start,
kept for rectangles too small to tell, and no grid where there is no text."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent._native import cells as _cells
from agent.encode.text_cells import (BLANK_SHARE, MAX_PITCH, MIN_CELLS, MIN_INK_ROWS, MIN_PITCH, STRIPE_WIDTH,
                                     CellGrid, find_cells)
from tests.support import reference as ref


def text(pitch: int, cells: int, lines: int = 3, height: int = 13, seed: int = 0, lead: int = 0) -> np.ndarray:
    """Palette indices of ``lines`` lines of random glyphs, each leaving its cell's last column blank (as
    fixed-pitch fonts do), behind ``lead`` background columns; index 0 is the background."""
    rng = np.random.default_rng(seed)
    glyphs = rng.integers(0, 6, (40, height, pitch)) * (rng.random((40, height, pitch)) < 0.5)
    glyphs[:, :, -1] = 0
    out = np.zeros((lines * height, lead + cells * pitch), np.uint8)
    for line in range(lines):
        chosen = glyphs[rng.integers(0, 40, cells)]
        out[line * height:(line + 1) * height, lead:] = np.concatenate(list(chosen), axis=1)
    return out


@pytest.mark.parametrize("pitch", [5, 6, 7, 9, 12])
@pytest.mark.parametrize("x, lead", [(0, 0), (123, 0), (40, 3)])
def test_the_pitch_and_where_cells_start_on_screen(pitch: int, x: int, lead: int) -> None:
    found = find_cells(text(pitch, 30, lead=lead), x)
    assert found == (pitch, (x + lead) % pitch)


def test_no_grid_in_noise_a_photo_or_a_blank_area() -> None:
    rng = np.random.default_rng(1)
    assert find_cells(rng.integers(0, 200, (40, 300)).astype(np.uint8), 0) is None
    assert find_cells(np.zeros((40, 300), np.uint8), 0) is None
    assert find_cells(text(9, 3), 0) is None  # too narrow to tell


def test_a_grid_is_used_once_rectangles_agree_and_kept_for_small_ones() -> None:
    grid = CellGrid()
    assert grid.layout(text(9, 2), 50) == (STRIPE_WIDTH, 0)  # too small to tell, nothing known: fixed stripes
    assert grid.layout(text(9, 40), 100) == (STRIPE_WIDTH, 0)  # one rectangle is not enough
    assert grid.layout(text(9, 40, seed=1), 10) == (STRIPE_WIDTH, 0)
    assert grid.layout(text(9, 40, seed=2), 100) == (9, 0)  # three agree: cells start at 100, 109, ...
    assert grid.layout(text(9, 2, seed=3), 104) == (9, 5)  # a glyph's worth: the grid seen before; 104 + 5 = 109
    assert grid.layout(np.zeros((13, 400), np.uint8), 0) == (9, 1)  # a blank one does not vote; 0 + 1 = 100 - 11 * 9


def test_another_font_takes_over_once_most_recent_grids_show_it() -> None:
    grid = CellGrid()
    for seed in range(3):
        grid.layout(text(9, 40, seed=seed), 100)
    layouts = [grid.layout(text(7, 40, lead=2, seed=seed), 0) for seed in range(6)]
    assert layouts[0] == (9, 1) and (STRIPE_WIDTH, 0) in layouts[1:5] and layouts[-1] == (7, 2)


def test_grids_that_keep_changing_are_not_used() -> None:
    """A proportional font now and then looks like a grid, each time another: fixed stripes stay."""
    grid = CellGrid()
    layouts = [grid.layout(text(pitch, 30, seed=pitch), x) for pitch, x in zip([6, 9, 7, 11, 6, 10, 8, 12], range(0, 80, 10))]
    assert set(layouts) == {(STRIPE_WIDTH, 0)}


def test_each_window_keeps_where_its_own_cells_start() -> None:
    """Two terminals side by side, their cells starting at different columns (100 + 9k on the left,
    705 + 9k on the right): each rectangle takes the grid of the window it lies in."""
    grid = CellGrid()
    for seed in range(3):
        grid.layout(text(9, 40, seed=seed), 100, 0)
        grid.layout(text(9, 40, seed=seed + 3), 705, 400)
    assert grid.layout(text(9, 40, seed=9), 100, 0) == (9, 0)
    assert grid.layout(text(9, 40, seed=9), 705, 400) == (9, 0)
    assert grid.layout(text(9, 2), 109, 13) == (9, 0)  # too small to tell, in the left window: 109 is a cell
    assert grid.layout(text(9, 2), 709, 413) == (9, 5)  # in the right one: 709 + 5 = 714 = 705 + 9


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), pitch=st.integers(3, 14), cells=st.integers(1, 40), lines=st.integers(1, 4),
       lead=st.integers(0, 12), x=st.integers(0, 3000), likely=st.sampled_from([0, 5, 7, 9, 12]),
       noise=st.sampled_from([0.0, 0.01, 0.2]), step=st.sampled_from([1, 2]))
def test_the_kernel_matches_numpy(seed: int, pitch: int, cells: int, lines: int, lead: int, x: int, likely: int,
                                  noise: float, step: int) -> None:
    """Text of any pitch (some outside the range, some with ink in the blank column), strided views included."""
    indices = text(pitch, cells, lines=lines, seed=seed % 1000, lead=lead)
    rng = np.random.default_rng(seed)
    indices[rng.random(indices.shape) < noise] = rng.integers(0, 8)
    indices = indices[:, ::step]
    args = (x, likely, MIN_PITCH, MAX_PITCH, BLANK_SHARE, MIN_CELLS, MIN_INK_ROWS)
    assert _cells.find_cells(indices, *args) == ref.find_cells(indices, *args)


def test_the_kernel_refuses_pitches_it_cannot_hold() -> None:
    with pytest.raises(ValueError):
        _cells.find_cells(np.zeros((13, 400), np.uint8), 0, 0, 5, 65, 0.2, 5, 4)
    with pytest.raises(ValueError):
        _cells.find_cells(np.zeros((13, 400), np.uint8), -1, 0, 5, 12, 0.2, 5, 4)

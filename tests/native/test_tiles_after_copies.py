"""tiles.diff_tiles_after_copies equals its numpy reference: apply the copies to a copy of the previous
frame (each reading the frame as it was), then compare tile by tile (tests/support/reference.diff_tiles)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent._native import tiles
from tests.support.gil import assert_releases_gil
from tests.support import reference as ref


def _frame(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    palette = rng.integers(0, 256, (int(rng.integers(1, 5)), 4), dtype=np.uint8)
    return palette[rng.integers(0, len(palette), (h, w))]


def _copies(rng: np.random.Generator, h: int, w: int, n: int) -> np.ndarray:
    """Up to ``n`` copies with disjoint destinations and sources inside the frame."""
    out: list[tuple[int, int, int, int, int, int]] = []
    for _ in range(4 * n):
        if len(out) == n:
            break
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = int(rng.integers(x0 + 1, w + 1)), int(rng.integers(y0 + 1, h + 1))
        dx, dy = int(rng.integers(-x0, w - x1 + 1)), int(rng.integers(-y0, h - y1 + 1))
        # (dx, dy) moves the source box onto the destination: new[y, x] = prev[y - dy, x - dx]
        dx, dy = -dx, -dy
        if any(x0 < b[2] and b[0] < x1 and y0 < b[3] and b[1] < y1 for b in out):
            continue
        out.append((x0, y0, x1, y1, dx, dy))
    return np.array(out, np.int32).reshape(-1, 6)


def _reference(prev, cur, tile, select, copies):
    shown = prev.copy()
    for x0, y0, x1, y1, dx, dy in copies.tolist():
        shown[y0:y1, x0:x1] = prev[y0 - dy:y1 - dy, x0 - dx:x1 - dx]
    return ref.diff_tiles(shown, cur, tile, select)


def _run(prev, cur, tile, select, copies):
    th, tw = -(-prev.shape[0] // tile), -(-prev.shape[1] // tile)
    boxes = np.full((th, tw, 4), -7, np.int32)
    n = tiles.diff_tiles_after_copies(prev, cur, tile, boxes, select, copies)
    return n, boxes


@settings(max_examples=150, deadline=None)
@given(w=st.integers(1, 90), h=st.integers(1, 70), tile=st.sampled_from([1, 3, 8, 16, 17, 32]),
       ncopies=st.integers(0, 5), seed=st.integers(0, 2**32 - 1), moved=st.booleans())
def test_equals_the_numpy_reference(w, h, tile, ncopies, seed, moved):
    rng = np.random.default_rng(seed)
    prev = _frame(rng, h, w)
    copies = _copies(rng, h, w, ncopies)
    cur = prev.copy()
    if moved:  # the new frame really shows the copies, plus some edits: most compares are equal
        for x0, y0, x1, y1, dx, dy in copies.tolist():
            cur[y0:y1, x0:x1] = prev[y0 - dy:y1 - dy, x0 - dx:x1 - dx]
    for _ in range(int(rng.integers(0, 4))):
        cur[int(rng.integers(0, h)), int(rng.integers(0, w))] = rng.integers(0, 256, 4, dtype=np.uint8)
    th, tw = -(-h // tile), -(-w // tile)
    select = (rng.random((th, tw)) < 0.7).astype(np.uint8)
    n, boxes = _run(prev, cur, tile, select, copies)
    expected = _reference(prev, cur, tile, select, copies)
    np.testing.assert_array_equal(boxes, expected)
    assert n == int((expected[:, :, 2] > 0).sum())


def test_a_scroll_shown_exactly_is_no_change_and_reads_read_only_frames():
    rng = np.random.default_rng(1)
    prev = _frame(rng, 64, 48)
    cur = prev.copy()
    cur[8:64] = prev[0:56]  # scrolled down by 8, new content above
    cur[0:8] = 255
    copies = np.array([[0, 8, 48, 64, 0, 8]], np.int32)
    prev.flags.writeable = cur.flags.writeable = False
    n, boxes = _run(prev, cur, 16, np.ones((4, 3), np.uint8), copies)
    assert n == 3 and (boxes[0] == [[0, 0, 16, 8], [16, 0, 32, 8], [32, 0, 48, 8]]).all()  # the exposed rows
    assert (boxes[1:] == 0).all()


def test_rejects_copies_outside_the_frame():
    a = np.zeros((16, 16, 4), np.uint8)
    with pytest.raises(ValueError):
        _run(a, a, 8, np.ones((2, 2), np.uint8), np.array([[0, 0, 8, 8, 1, 0]], np.int32))


def test_releases_the_gil():
    """Another thread runs while the kernel compares a 4K frame pair many times."""
    prev = np.zeros((2160, 3840, 4), np.uint8)
    cur = prev.copy()
    cur[::7, ::5] = 1
    select = np.ones((34, 60), np.uint8)
    copies = np.array([[0, 64, 3840, 2160, 0, 64]], np.int32)

    def work() -> None:
        for _ in range(5):
            _run(prev, cur, 64, select, copies)

    assert_releases_gil(work)

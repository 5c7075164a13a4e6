"""tiles.copy_changed_rows equals a plain numpy assignment, writes (and marks) only the rows that differ
from the destination or a base, and releases the GIL."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent._native import tiles
from tests.support.gil import assert_releases_gil


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 40), st.integers(1, 40), st.data())
def test_equals_a_numpy_assignment_and_writes_only_differing_rows(seed, fh, fw, data):
    rng = np.random.default_rng(seed)
    dst = rng.integers(0, 3, (fh, fw, 4), dtype=np.uint8)  # few values: equal rows are common
    h, w = data.draw(st.integers(0, fh)), data.draw(st.integers(0, fw))
    y, x = data.draw(st.integers(0, fh - h)), data.draw(st.integers(0, fw - w))
    src = rng.integers(0, 3, (h, w, 4), dtype=np.uint8)
    equal = rng.random(h) < 0.5
    src[equal] = dst[y:y + h, x:x + w][equal]
    expected = dst.copy()
    expected[y:y + h, x:x + w] = src
    differing = int(sum(not np.array_equal(dst[y + r, x:x + w], src[r]) for r in range(h)))
    assert tiles.copy_changed_rows(dst, src, x, y) == differing
    assert np.array_equal(dst, expected)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 30), st.integers(1, 30), st.data())
def test_compared_with_a_base_it_marks_and_writes_the_rows_that_differ_from_the_base(seed, fh, fw, data):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 3, (fh, fw, 4), dtype=np.uint8)
    dst = base.copy()  # a scratch frame: equal to the base where nothing is written
    h, w = data.draw(st.integers(0, fh)), data.draw(st.integers(0, fw))
    y, x = data.draw(st.integers(0, fh - h)), data.draw(st.integers(0, fw - w))
    src = rng.integers(0, 3, (h, w, 4), dtype=np.uint8)
    equal = rng.random(h) < 0.5
    src[equal] = base[y:y + h, x:x + w][equal]
    changed = np.full(h + 2, 7, np.uint8)
    expected = base.copy()
    expected[y:y + h, x:x + w] = src
    differs = np.array([not np.array_equal(base[y + r, x:x + w], src[r]) for r in range(h)], bool)
    assert tiles.copy_changed_rows(dst, src, x, y, base, changed) == int(differs.sum())
    assert np.array_equal(dst, expected)
    assert np.array_equal(changed[:h].astype(bool), differs) and (changed[h:] == 7).all()


def test_rejects_a_source_that_does_not_fit():
    dst = np.zeros((8, 8, 4), np.uint8)
    with pytest.raises(ValueError):
        tiles.copy_changed_rows(dst, np.zeros((4, 4, 4), np.uint8), 5, 0)
    with pytest.raises(ValueError):
        tiles.copy_changed_rows(dst, np.zeros((4, 4, 4), np.uint8), 0, -1)
    with pytest.raises(ValueError):
        tiles.copy_changed_rows(dst, np.zeros((4, 4, 4), np.uint8), 0, 0, np.zeros((8, 7, 4), np.uint8))
    with pytest.raises(ValueError):
        tiles.copy_changed_rows(dst, np.zeros((4, 4, 4), np.uint8), 0, 0, None, np.zeros(3, np.uint8))


def test_releases_the_gil():
    dst = np.zeros((2160, 3840, 4), np.uint8)
    src = np.ones((2160, 3840, 4), np.uint8)

    def work() -> None:
        for _ in range(10):
            dst[:] = 0
            tiles.copy_changed_rows(dst, src, 0, 0)

    assert_releases_gil(work)

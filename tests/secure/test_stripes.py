"""Byte matrices in vertical stripes (agent.secure.stripes): exact round trips, and the layout's point."""
from __future__ import annotations

import random

import numpy as np
import pytest
import zstandard
from hypothesis import given, strategies as st

from agent._native import stripes as _stripes
from agent.secure.stripes import from_stripes, to_stripes
from tests.support import reference
from tests.support.gil import assert_releases_gil


@given(st.integers(1, 70), st.integers(1, 30), st.integers(1, 20), st.data())
def test_stripes_round_trip_exactly(width: int, rows: int, stripe: int, data: st.DataObject) -> None:
    matrix = data.draw(st.binary(min_size=width * rows, max_size=width * rows))
    first = data.draw(st.integers(0, stripe - 1))
    striped = to_stripes(matrix, width, stripe, first)
    assert len(striped) == len(matrix)
    assert from_stripes(striped, width, stripe, first) == matrix


@given(st.integers(1, 70), st.integers(0, 30), st.integers(1, 20), st.data())
def test_the_kernel_lays_out_what_numpy_does(width: int, rows: int, stripe: int, data: st.DataObject) -> None:
    matrix = data.draw(st.binary(min_size=width * rows, max_size=width * rows))
    first = min(data.draw(st.integers(0, stripe - 1)), width)
    for given_as in (matrix, bytearray(matrix), memoryview(matrix)):
        assert _stripes.to_stripes(given_as, width, stripe, first) == reference.to_stripes(matrix, width, stripe, first)


def test_the_kernel_releases_the_gil() -> None:
    matrix = bytes(range(256)) * (1 << 15)  # 8 MiB, 4096 wide

    def work() -> None:
        for _ in range(5):
            _stripes.to_stripes(matrix, 4096, 8, 3)

    assert_releases_gil(work)


def test_the_layout_is_columns_top_to_bottom_then_the_leftover() -> None:
    matrix = np.arange(5 * 3, dtype=np.uint8).reshape(3, 5)  # 3 rows, 5 wide, stripes of 2
    assert list(to_stripes(matrix.tobytes(), 5, 2)) == [0, 1, 5, 6, 10, 11, 2, 3, 7, 8, 12, 13, 4, 9, 14]
    # the first stripe 1 wide: the cells start at the second column
    assert list(to_stripes(matrix.tobytes(), 5, 2, 1)) == [0, 5, 10, 1, 2, 6, 7, 11, 12, 3, 4, 8, 9, 13, 14]


@pytest.mark.parametrize("size,width,stripe,first", [(10, 3, 2, 0), (10, 0, 2, 0), (10, 5, 0, 0), (0, 0, 1, 0),
                                                     (10, 5, 2, 2), (10, 5, 2, -1)])
def test_what_is_not_a_matrix_is_refused(size: int, width: int, stripe: int, first: int) -> None:
    with pytest.raises(ValueError):
        from_stripes(bytes(size), width, stripe, first)
    with pytest.raises(ValueError):
        to_stripes(bytes(size), width, stripe, first)


def test_glyphs_seen_before_are_whole_matches_in_stripes() -> None:
    """A page of text in 8x12 "glyphs": row by row zstd sees each character as 12 pieces of 8 bytes among
    its neighbours' pieces; in stripes (8 wide, the glyph's width) a character is 96 contiguous bytes, and
    a glyph seen on the page before is one match."""
    rng = random.Random(5)
    glyphs = [rng.randbytes(8 * 12) for _ in range(60)]

    def page() -> bytes:
        lines = [[rng.randrange(60) for _ in range(40)] for _ in range(30)]
        return b"".join(glyphs[c][y * 8:(y + 1) * 8] for chars in lines for y in range(12) for c in chars)

    first, second = page(), page()
    width = 40 * 8

    def cost(layout) -> int:
        compressor = zstandard.ZstdCompressor(level=8).compressobj()
        compressor.compress(layout(first))
        compressor.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
        return len(compressor.compress(layout(second)) + compressor.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK))

    rows, striped = cost(lambda m: m), cost(lambda m: to_stripes(m, width, 8))
    print(f"the second page: {rows} bytes row by row, {striped} in stripes")
    assert striped * 3 < rows

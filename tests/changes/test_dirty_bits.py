"""DirtyBits, the tracker's one-bit-per-pixel mask, held equal to a plain boolean mask on every operation."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from agent._native import rects
from agent.changes.tracker import TRACK_TILE, DirtyBits, UpdateTracker
from tests.support import reference as ref


def _unpack(bits: DirtyBits) -> np.ndarray:
    """The mask as booleans, (height, width); also checks that no bit beyond the width is ever set."""
    unpacked = np.unpackbits(bits.words.view(np.uint8), axis=1, bitorder="little").astype(bool)
    assert not unpacked[:, bits.width:].any(), "a bit beyond the screen's width is set"
    return unpacked[:, :bits.width]


@st.composite
def boxes(draw: st.DrawFn, w: int, h: int, empty: bool = False) -> tuple[int, int, int, int]:
    x0, y0 = draw(st.integers(0, w if empty else w - 1)), draw(st.integers(0, h if empty else h - 1))
    x1 = draw(st.integers(x0 if empty else x0 + 1, w))
    y1 = draw(st.integers(y0 if empty else y0 + 1, h))
    return x0, y0, x1, y1


@st.composite
def programs(draw: st.DrawFn):
    """A screen size (widths across word boundaries) and a list of mask operations on it."""
    w = draw(st.one_of(st.integers(1, 100), st.sampled_from([31, 32, 33, 64, 65, 97])))
    h = draw(st.integers(1, 80))
    ops = []
    for _ in range(draw(st.integers(1, 10))):
        kind = draw(st.sampled_from(["set", "set", "clear", "move", "move"]))
        if kind == "move":
            src = draw(boxes(w, h))
            bw, bh = src[2] - src[0], src[3] - src[1]
            x, y = draw(st.integers(0, w - bw)), draw(st.integers(0, h - bh))
            ops.append(("move", src, (x, y, x + bw, y + bh)))
        else:
            ops.append((kind, draw(boxes(w, h, empty=True))))
    return w, h, ops


def _run(w: int, h: int, ops) -> tuple[DirtyBits, np.ndarray]:
    bits, mask = DirtyBits(w, h), np.zeros((h, w), bool)
    for op in ops:
        if op[0] == "move":
            (sx0, sy0, sx1, sy1), (x0, y0, x1, y1) = op[1], op[2]
            bits.move(op[1], op[2])
            mask[y0:y1, x0:x1] = mask[sy0:sy1, sx0:sx1].copy()
        else:
            x0, y0, x1, y1 = op[1]
            bits.fill(op[1], op[0] == "set")
            mask[y0:y1, x0:x1] = op[0] == "set"
        np.testing.assert_array_equal(_unpack(bits), mask)
    return bits, mask


@settings(max_examples=300, deadline=None)
@given(programs(), st.data())
@example((70, 40, [("set", (0, 0, 70, 40)), ("move", (3, 0, 70, 30), (0, 5, 67, 35))]), None)
@example((65, 600, [("set", (1, 0, 64, 600)), ("move", (0, 0, 65, 590), (0, 10, 65, 600)),
                    ("move", (0, 20, 60, 600), (5, 0, 65, 580))]), None)  # moves longer than one strip, both ways
def test_operations_match_a_boolean_mask(program, data):
    w, h, ops = program
    bits, mask = _run(w, h, ops)
    if data is None:
        return
    for _ in range(3):
        x0, y0, x1, y1 = box = data.draw(boxes(w, h, empty=True))
        assert bits.count(box) == int(mask[y0:y1, x0:x1].sum())
        assert bits.any(box) == bool(mask[y0:y1, x0:x1].any())
        extra = data.draw(st.lists(boxes(w, h), max_size=3))
        have = mask.copy()
        for ex0, ey0, ex1, ey1 in extra:
            have[ey0:ey1, ex0:ex1] = True
        assert bits.covered(box, extra) == bool(have[y0:y1, x0:x1].all())


@settings(max_examples=300, deadline=None)
@given(programs(), st.data())
def test_tile_boxes_match_the_reference_scan(program, data):
    w, h, ops = program
    bits, mask = _run(w, h, ops)
    x0, y0, x1, y1 = box = data.draw(boxes(w, h))
    inside = np.zeros_like(mask)
    inside[y0:y1, x0:x1] = mask[y0:y1, x0:x1]
    # the grid is the screen's (tiles at multiples of TRACK_TILE), cut to the tiles the box meets
    gx0, gy0 = x0 // TRACK_TILE * TRACK_TILE, y0 // TRACK_TILE * TRACK_TILE
    gx1, gy1 = min(-(-x1 // TRACK_TILE) * TRACK_TILE, w), min(-(-y1 // TRACK_TILE) * TRACK_TILE, h)
    np.testing.assert_array_equal(bits.tile_boxes(box), ref.mask_boxes(inside, TRACK_TILE, gx0, gy0, gx1, gy1))


def test_a_4k_mask_is_a_bit_per_pixel():
    tracker = UpdateTracker(3840, 2160)
    assert tracker._mask.nbytes == 3840 * 2160 // 8
    changes = tracker.take()
    assert sum(w * h for *_, w, h in changes.rects) == 3840 * 2160 and tracker.is_empty()


@pytest.mark.parametrize("dx", [-33, -32, -1, 0, 1, 31, 32, 40])
def test_a_move_carries_every_bit_across_word_boundaries(dx):
    w, h = 160, 8
    rng = np.random.default_rng(dx + 100)
    mask = rng.integers(0, 2, (h, w)).astype(bool)
    bits = DirtyBits(w, h)
    for y, x in zip(*np.nonzero(mask)):
        bits.fill((int(x), int(y), int(x) + 1, int(y) + 1), True)
    src = (40, 0, 110, h)
    dst = (40 + dx, 0, 110 + dx, h)
    bits.move(src, dst)
    mask[:, dst[0]:dst[2]] = mask[:, src[0]:src[2]].copy()
    np.testing.assert_array_equal(_unpack(bits), mask)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_count_is_the_same_with_and_without_numpys_bitwise_count(data) -> None:
    from agent.changes import tracker as T

    w, h = data.draw(st.integers(1, 130)), data.draw(st.integers(1, 40))
    bits, plain = DirtyBits(w, h), np.zeros((h, w), bool)
    for box in data.draw(st.lists(boxes(w, h), min_size=1, max_size=5)):
        bits.fill(box, True)
        plain[box[1]:box[3], box[0]:box[2]] = True
    box = data.draw(boxes(w, h))
    expected = int(plain[box[1]:box[3], box[0]:box[2]].sum())
    assert bits.count(box) == expected
    saved, T._BITWISE_COUNT = T._BITWISE_COUNT, None  # numpy < 2: the byte table
    try:
        assert bits.count(box) == expected
    finally:
        T._BITWISE_COUNT = saved


def test_the_box_kernel_refuses_what_it_cannot_read():
    words = np.zeros((64, 2), np.uint32)
    with pytest.raises(ValueError):  # wider than the mask
        rects.bit_boxes(words, 0, 0, 65, 10, TRACK_TILE, np.zeros((1, 3, 4), np.int32))
    with pytest.raises(ValueError):  # empty
        rects.bit_boxes(words, 5, 5, 5, 10, TRACK_TILE, np.zeros((1, 1, 4), np.int32))
    with pytest.raises(ValueError):  # boxes of the wrong shape
        rects.bit_boxes(words, 0, 0, 64, 64, TRACK_TILE, np.zeros((1, 2, 4), np.int32))
    assert rects.bit_boxes(words, 0, 0, 64, 64, TRACK_TILE, np.zeros((2, 2, 4), np.int32)) == 0

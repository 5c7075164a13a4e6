"""The change-detection kernels equal their plain numpy references (tests/reference.py)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent._native import rects, scroll, tiles
from tests.support import reference as ref

SETTINGS = settings(max_examples=100, deadline=None)
TILES = st.sampled_from([1, 2, 3, 5, 8, 16, 17, 32, 64, 128])


def _frame(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Few colours, so equal rows, equal runs and blank areas are common."""
    palette = rng.integers(0, 256, (int(rng.integers(1, 5)), 4), dtype=np.uint8)
    return palette[rng.integers(0, len(palette), (h, w))]


def _edit(rng: np.random.Generator, frame: np.ndarray, edits: int) -> np.ndarray:
    out = frame.copy()
    h, w = frame.shape[:2]
    for _ in range(edits):
        kind = int(rng.integers(0, 4))
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        if kind == 0:  # one byte of one pixel, alpha included
            out[y, x, int(rng.integers(0, 4))] ^= 1 << int(rng.integers(0, 8))
        else:
            x1, y1 = int(rng.integers(x + 1, w + 1)), int(rng.integers(y + 1, h + 1))
            if kind == 1:
                out[y:y1, x:x1] = rng.integers(0, 256, 4, dtype=np.uint8)
            elif kind == 2:
                out[y:y1, x:x1] = rng.integers(0, 256, (y1 - y, x1 - x, 4), dtype=np.uint8)
            else:  # shift a block within the frame
                dx, dy = int(rng.integers(-x, w - x1 + 1)), int(rng.integers(-y, h - y1 + 1))
                out[y + dy:y1 + dy, x + dx:x1 + dx] = frame[y:y1, x:x1]
    return out


@st.composite
def frame_pairs(draw: st.DrawFn, max_side: int = 72) -> tuple[np.ndarray, np.ndarray]:
    w, h = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    prev = _frame(rng, h, w)
    return prev, _edit(rng, prev, draw(st.integers(0, 6)))


def _grid(shape: tuple[int, ...], tile: int) -> tuple[int, int]:
    return -(-shape[0] // tile), -(-shape[1] // tile)


@SETTINGS
@given(frame_pairs(), TILES, st.booleans(), st.integers(0, 2**32 - 1))
def test_diff_tiles_matches_reference(pair, tile, use_select, seed):
    prev, cur = pair
    grid = _grid(prev.shape, tile)
    select = np.random.default_rng(seed).integers(0, 2, grid).astype(np.uint8) if use_select else None
    boxes = np.full(grid + (4,), -7, np.int32)
    n = tiles.diff_tiles(prev, cur, tile, boxes, select)
    expected = ref.diff_tiles(prev, cur, tile, select)
    np.testing.assert_array_equal(boxes, expected)
    assert n == int((expected[:, :, 2] > 0).sum())


def test_diff_tiles_reads_read_only_frames():
    prev = np.zeros((20, 30, 4), np.uint8)
    cur = prev.copy()
    cur[5, 7, 2] = 9
    prev.flags.writeable = cur.flags.writeable = False
    boxes = np.zeros((1, 1, 4), np.int32)
    assert tiles.diff_tiles(prev, cur, 32, boxes) == 1
    assert boxes[0, 0].tolist() == [7, 5, 8, 6]


@SETTINGS
@given(frame_pairs(), TILES)
def test_tile_hashes_match_reference(pair, tile):
    frame = pair[1]
    out = np.zeros(_grid(frame.shape, tile), np.uint64)
    tiles.tile_hashes(frame, tile, out)
    np.testing.assert_array_equal(out, ref.tile_hashes(frame, tile))


@SETTINGS
@given(frame_pairs(), TILES, st.data())
def test_tile_hash_changes_when_one_byte_changes(pair, tile, data):
    # Each word's mix is a bijection, so a single changed word always changes its tile's sum.
    frame = pair[0]
    h, w = frame.shape[:2]
    y, x, c = data.draw(st.integers(0, h - 1)), data.draw(st.integers(0, w - 1)), data.draw(st.integers(0, 3))
    other = frame.copy()
    other[y, x, c] ^= 1 << data.draw(st.integers(0, 7))
    a = np.zeros(_grid(frame.shape, tile), np.uint64)
    b = np.zeros_like(a)
    tiles.tile_hashes(frame, tile, a)
    tiles.tile_hashes(other, tile, b)
    changed = np.argwhere(a != b).tolist()
    assert changed == [[y // tile, x // tile]]


def test_tile_hash_depends_on_position_within_the_tile():
    frame = np.zeros((16, 16, 4), np.uint8)
    a, b = frame.copy(), frame.copy()
    a[0, 0] = 1
    b[1, 0] = 1
    ha, hb = np.zeros((1, 1), np.uint64), np.zeros((1, 1), np.uint64)
    tiles.tile_hashes(a, 16, ha)
    tiles.tile_hashes(b, 16, hb)
    assert ha[0, 0] != hb[0, 0]


@SETTINGS
@given(frame_pairs(), st.data())
def test_row_hashes_match_reference(pair, data):
    frame = pair[0]
    h, w = frame.shape[:2]
    x0 = data.draw(st.integers(0, w - 1))
    x1 = data.draw(st.integers(x0 + 1, w))
    y0 = data.draw(st.integers(0, h))
    y1 = data.draw(st.integers(y0, h))
    out = np.zeros(max(1, y1 - y0), np.uint64)
    scroll.row_hashes(frame, x0, x1, y0, y1, out)
    np.testing.assert_array_equal(out[:y1 - y0], ref.row_hashes(frame, x0, x1, y0, y1))


@SETTINGS
@given(frame_pairs(), TILES, st.integers(0, 300))
def test_merge_boxes_matches_reference(pair, tile, overhead):
    boxes = ref.diff_tiles(*pair, tile)
    out = np.zeros((boxes.shape[0] * boxes.shape[1], 4), np.int32)
    n = rects.merge_boxes(boxes, overhead, out)
    merged = [tuple(r) for r in out[:n].tolist()]
    assert merged == ref.merge_boxes(boxes, overhead)
    # Every box is inside one rectangle, and merging never raised the total cost.
    for x0, y0, x1, y1 in boxes.reshape(-1, 4).tolist():
        if x1 > x0:
            assert any(x <= x0 and y <= y0 and x1 <= x + w and y1 <= y + h for x, y, w, h in merged)
    areas = (boxes[:, :, 2] - boxes[:, :, 0]) * (boxes[:, :, 3] - boxes[:, :, 1])
    assert sum(w * h + overhead for _, _, w, h in merged) <= int(areas.sum()) + overhead * int((areas > 0).sum())


def _damage_select(grid: tuple[int, int], damage: list[tuple[int, int, int, int]], tile: int) -> np.ndarray:
    """The tiles a damage rectangle meets, in plain numpy (the frame is the grid's, rectangles may overrun it)."""
    select = np.zeros(grid, np.uint8)
    for x, y, w, h in damage:
        if w > 0 and h > 0:
            select[y // tile:-(-(y + h) // tile), x // tile:-(-(x + w) // tile)] = 1
    return select


@st.composite
def damages(draw: st.DrawFn, h: int, w: int) -> list[tuple[int, int, int, int]]:
    """X's damage: rectangles in the frame, some empty, some running past its right or bottom edge."""
    out = []
    for _ in range(draw(st.integers(0, 4))):
        x, y = draw(st.integers(0, w + 8)), draw(st.integers(0, h + 8))
        out.append((x, y, draw(st.integers(0, w + 16)), draw(st.integers(0, h + 16))))
    return out


@SETTINGS
@given(frame_pairs(), TILES, st.data())
def test_diff_damage_matches_diff_tiles_with_the_damage_selected(pair, tile, data):
    prev, cur = pair
    damage = data.draw(damages(*prev.shape[:2]))
    grid = _grid(prev.shape, tile)
    select = _damage_select(grid, damage, tile)
    boxes = np.full(grid + (4,), -7, np.int32)
    n, ty0, ty1, tx0, tx1 = tiles.diff_damage(prev, cur, tile, boxes, damage)
    expected = ref.diff_tiles(prev, cur, tile, select)
    np.testing.assert_array_equal(boxes, expected)
    assert n == int((expected[:, :, 2] > 0).sum())
    # the part returned holds every selected tile, and nothing outside the selection's bounds
    ys, xs = np.nonzero(select)
    if len(ys):
        assert (ty0, ty1, tx0, tx1) == (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1)
    else:
        assert (ty0, ty1, tx0, tx1) == (0, 0, 0, 0)


@SETTINGS
@given(frame_pairs(), TILES, st.integers(0, 300), st.integers(0, 3000), st.data())
def test_merge_part_matches_merge_boxes_on_a_copy_of_the_part(pair, tile, overhead, max_area, data):
    boxes = ref.diff_tiles(*pair, tile)
    th, tw = boxes.shape[:2]
    ty0, ty1 = sorted(data.draw(st.lists(st.integers(-2, th + 2), min_size=2, max_size=2)))
    tx0, tx1 = sorted(data.draw(st.lists(st.integers(-2, tw + 2), min_size=2, max_size=2)))
    part = boxes[max(ty0, 0):max(ty1, 0), max(tx0, 0):max(tx1, 0)]  # (clipped as the kernel clips)
    area = int(((part[:, :, 2] - part[:, :, 0]) * (part[:, :, 3] - part[:, :, 1])).sum())
    got_area, merged = rects.merge_part(boxes, ty0, ty1, tx0, tx1, overhead, max_area)
    assert got_area == area
    if area >= max_area:
        assert merged is None
    else:
        assert merged == (ref.merge_boxes(np.ascontiguousarray(part), overhead) if part.size else [])


def test_diff_damage_and_merge_part_release_the_gil():
    """Another thread runs while they compare and merge a 4K frame pair's damage many times."""
    from tests.support.gil import assert_releases_gil

    prev = np.zeros((2160, 3840, 4), np.uint8)
    cur = prev.copy()
    cur[::7, ::5] = 1
    boxes = np.zeros((34, 60, 4), np.int32)

    def work() -> None:
        for _ in range(5):
            tiles.diff_damage(prev, cur, 64, boxes, [(0, 0, 3840, 2160)])
            rects.merge_part(boxes, 0, 34, 0, 60, 64, 1 << 62)

    assert_releases_gil(work)


def test_merge_boxes_joins_a_full_screen_into_one_rect():
    prev = np.zeros((200, 300, 4), np.uint8)
    boxes = ref.diff_tiles(prev, prev + 1, 64)
    out = np.zeros((boxes.shape[0] * boxes.shape[1], 4), np.int32)
    assert rects.merge_boxes(boxes, 64, out) == 1
    assert out[0].tolist() == [0, 0, 300, 200]


def test_merge_boxes_refuses_a_short_output():
    boxes = ref.diff_tiles(np.zeros((64, 64, 4), np.uint8), np.ones((64, 64, 4), np.uint8), 16)
    with pytest.raises(ValueError):
        rects.merge_boxes(boxes, 0, np.zeros((3, 4), np.int32))


@SETTINGS
@given(st.integers(1, 30), st.integers(1, 30), st.floats(0, 1), st.integers(0, 2**32 - 1))
def test_label_tiles_matches_reference(h, w, density, seed):
    mask = (np.random.default_rng(seed).random((h, w)) < density).astype(np.uint8)
    labels = np.full((h, w), -1, np.int32)
    n = rects.label_tiles(mask, labels)
    expected = ref.label_tiles(mask)
    np.testing.assert_array_equal(labels, expected)
    assert n == int(expected.max())


@SETTINGS
@given(st.lists(st.integers(0, 6), max_size=60), st.lists(st.integers(0, 6), max_size=60),
       st.integers(0, 70), st.integers(0, 5))
def test_vote_shifts_matches_reference(prev, cur, max_shift, max_repeat):
    p, c = np.array(prev, np.uint64), np.array(cur, np.uint64)
    votes = np.zeros(2 * max_shift + 1, np.int32)
    votes[0] = 5  # votes accumulate
    scroll.vote_shifts(p, c, max_shift, max_repeat, votes)
    expected = ref.vote_shifts(p, c, max_shift, max_repeat) if len(p) and len(c) else np.zeros_like(votes)
    expected[0] += 5
    np.testing.assert_array_equal(votes, expected)


@st.composite
def moved_pairs(draw: st.DrawFn, max_side: int = 60):
    """A frame and a copy with a random block moved by a random vector, plus light edits."""
    w, h = draw(st.integers(2, max_side)), draw(st.integers(2, max_side))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    prev = rng.integers(0, 256, (h, w, 4), dtype=np.uint8) if draw(st.booleans()) else _frame(rng, h, w)
    x0, y0 = draw(st.integers(0, w - 1)), draw(st.integers(0, h - 1))
    x1, y1 = draw(st.integers(x0 + 1, w)), draw(st.integers(y0 + 1, h))
    dx, dy = draw(st.integers(-x0, w - x1)), draw(st.integers(-y0, h - y1))
    cur = prev.copy()
    cur[y0 + dy:y1 + dy, x0 + dx:x1 + dx] = prev[y0:y1, x0:x1]
    cur = _edit(rng, cur, draw(st.integers(0, 2)))
    return prev, cur, dx, dy, (x0 + dx, y0 + dy, x1 + dx, y1 + dy)


@SETTINGS
@given(moved_pairs(), st.sampled_from([1, 4, 7, 16, 32]), st.integers(0, 2**32 - 1))
def test_match_cells_matches_reference(moved, cell, seed):
    prev, cur, dx, dy, _ = moved
    grid = _grid(prev.shape, cell)
    select = np.random.default_rng(seed).integers(0, 2, grid).astype(np.uint8)
    out = np.full(grid, 9, np.uint8)
    n = scroll.match_cells(prev, cur, cell, dx, dy, select, out)
    expected = ref.match_cells(prev, cur, cell, dx, dy, select)
    np.testing.assert_array_equal(out, expected)
    assert n == int(expected.sum())


@SETTINGS
@given(moved_pairs(), st.integers(0, 40), st.data())
def test_grow_copy_matches_reference(moved, max_grow, data):
    prev, cur, dx, dy, (x0, y0, x1, y1) = moved
    # Start from a 1x1 piece of the moved block that still matches.
    sx, sy = data.draw(st.integers(x0, x1 - 1)), data.draw(st.integers(y0, y1 - 1))
    if not np.array_equal(cur[sy, sx], prev[sy - dy, sx - dx]):
        return
    h, w = cur.shape[:2]
    avoid = []
    for _ in range(data.draw(st.integers(0, 3))):
        ax, ay = data.draw(st.integers(0, w - 1)), data.draw(st.integers(0, h - 1))
        a = (ax, ay, data.draw(st.integers(ax + 1, w)), data.draw(st.integers(ay + 1, h)))
        if not (a[0] <= sx < a[2] and a[1] <= sy < a[3]):
            avoid.append(a)
    rect = np.array([sx, sy, sx + 1, sy + 1], np.int32)
    scroll.grow_copy(prev, cur, dx, dy, rect, max_grow, np.array(avoid, np.int32).reshape(-1, 4))
    assert tuple(rect.tolist()) == ref.grow_copy(prev, cur, dx, dy, (sx, sy, sx + 1, sy + 1), max_grow, avoid)
    gx0, gy0, gx1, gy1 = rect.tolist()
    assert np.array_equal(cur[gy0:gy1, gx0:gx1], prev[gy0 - dy:gy1 - dy, gx0 - dx:gx1 - dx])


@SETTINGS
@given(moved_pairs(), st.integers(1, 12), st.integers(1, 4), st.sampled_from([1, 1, 2, 3, 4]), st.data())
def test_find_segments_matches_reference(moved, length, max_hits, row_step, data):
    prev, cur, *_ = moved
    h, w = cur.shape[:2]
    if w < length:
        return
    keys = [(data.draw(st.integers(0, w - length)), data.draw(st.integers(0, h - 1)))
            for _ in range(data.draw(st.integers(0, 5)))]
    rx0, ry0 = data.draw(st.integers(0, w)), data.draw(st.integers(0, h))
    region = (rx0, ry0, data.draw(st.integers(rx0, w)), data.draw(st.integers(ry0, h)))
    hits = np.full((len(keys), max_hits, 2), -1, np.int32)
    counts = np.zeros(len(keys), np.int32)
    scroll.find_segments(prev, cur, np.array(keys, np.int32).reshape(-1, 2), length, *region, hits, counts, row_step)
    exp_counts, exp_hits = ref.find_segments(prev, cur, keys, length, region, max_hits, row_step)
    assert counts.tolist() == exp_counts
    for k, found in enumerate(exp_hits):
        assert [tuple(p) for p in hits[k, :len(found)].tolist()] == found


@SETTINGS
@given(st.integers(1, 50), st.integers(1, 50), st.integers(0, 2**32 - 1), st.data())
def test_apply_copy_matches_reference(h, w, seed, data):
    frame = np.random.default_rng(seed).integers(0, 256, (h, w, 4), dtype=np.uint8)
    cw, ch = data.draw(st.integers(0, w)), data.draw(st.integers(0, h))
    sx, sy = data.draw(st.integers(0, w - cw)), data.draw(st.integers(0, h - ch))
    x, y = data.draw(st.integers(0, w - cw)), data.draw(st.integers(0, h - ch))
    expected = frame.copy()
    ref.apply_copies(expected, [(sx, sy, x, y, cw, ch)])
    scroll.apply_copy(frame, sx, sy, x, y, cw, ch)
    np.testing.assert_array_equal(frame, expected)


def test_kernels_reject_mismatched_shapes():
    a = np.zeros((10, 10, 4), np.uint8)
    with pytest.raises(ValueError):
        tiles.diff_tiles(a, np.zeros((10, 11, 4), np.uint8), 4, np.zeros((3, 3, 4), np.int32))
    with pytest.raises(ValueError):
        tiles.diff_tiles(a, a, 4, np.zeros((2, 3, 4), np.int32))
    with pytest.raises(ValueError):
        tiles.tile_hashes(a, 4, np.zeros((3, 2), np.uint64))
    with pytest.raises(ValueError):
        scroll.row_hashes(a, 5, 5, 0, 10, np.zeros(10, np.uint64))
    with pytest.raises(ValueError):
        scroll.vote_shifts(np.zeros(3, np.uint64), np.zeros(3, np.uint64), 2, 1, np.zeros(4, np.int32))
    with pytest.raises(ValueError):
        scroll.grow_copy(a, a, 0, 0, np.array([0, 0, 11, 1], np.int32), 3, np.zeros((0, 4), np.int32))
    with pytest.raises(ValueError):
        scroll.find_segments(a, a, np.array([[8, 0]], np.int32), 4, 0, 0, 10, 10,
                             np.zeros((1, 2, 2), np.int32), np.zeros(1, np.int32))
    with pytest.raises(ValueError):
        scroll.find_segments(a, a, np.array([[0, 0]], np.int32), 4, 0, 0, 10, 10,
                             np.zeros((1, 2, 2), np.int32), np.zeros(1, np.int32), 0)
    with pytest.raises(ValueError):
        scroll.apply_copy(a, 5, 0, 0, 0, 6, 1)

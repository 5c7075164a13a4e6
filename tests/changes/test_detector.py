"""ChangeDetector: the public contract, exact boxes, moves found as copies."""
from __future__ import annotations

import numpy as np
import pytest

from agent.changes.detector import ChangeDetector, Changes, FrameSizeError, split_rect
from agent.models import MAX_RECT_AREA, MAX_RECT_WIDTH
from tests.support import reference as ref


def _check(prev: np.ndarray, frame: np.ndarray, changes: Changes) -> None:
    """The invariant, plus every rectangle inside the screen and the RFB/Tight limits."""
    h, w = frame.shape[:2]
    for x, y, rw, rh in changes.rects:
        assert rw > 0 and rh > 0 and x >= 0 and y >= 0 and x + rw <= w and y + rh <= h
        assert rw <= MAX_RECT_WIDTH and rw * rh <= MAX_RECT_AREA
    for sx, sy, x, y, cw, ch in changes.copies:
        assert cw > 0 and ch > 0
        assert 0 <= sx and sx + cw <= w and 0 <= sy and sy + ch <= h
        assert 0 <= x and x + cw <= w and 0 <= y and y + ch <= h
    np.testing.assert_array_equal(ref.apply_changes(prev, frame, changes.copies, changes.rects), frame)


def _area(rects) -> int:
    return sum(r[-2] * r[-1] for r in rects)


@pytest.mark.parametrize("tile", [15, 129, 0, 64.0, "64"])
def test_tile_out_of_range_is_refused(tile):
    with pytest.raises(ValueError):
        ChangeDetector(100, 100, tile=tile)


@pytest.mark.parametrize("size", [(0, 10), (10, -1), (70000, 10)])
def test_bad_screen_size_is_refused(size):
    with pytest.raises(ValueError):
        ChangeDetector(*size)


def test_first_update_is_the_whole_screen_within_limits():
    frame = ref.desktop(np.random.default_rng(0), 1081, 4097)
    changes = ChangeDetector(4097, 1081).update(frame)
    assert not changes.copies
    _check(np.zeros_like(frame), frame, changes)
    assert _area(changes.rects) == 4097 * 1081  # the pieces tile the screen exactly


def test_unchanged_frame_gives_no_changes():
    frame = ref.desktop(np.random.default_rng(1), 300, 400)
    det = ChangeDetector(400, 300)
    det.update(frame)
    changes = det.update(frame.copy())
    assert changes.is_empty() and changes == Changes()
    assert det.stats.dirty_tiles == 0


def test_typing_a_character_gives_a_glyph_sized_rect():
    rng = np.random.default_rng(2)
    frame = ref.document(rng, 400, 640)
    det = ChangeDetector(640, 400)
    det.update(frame)
    typed = frame.copy()
    # An 8x12 glyph straddling a tile corner (64, 64).
    typed[58:70, 60:68] = np.where(rng.random((12, 8, 1)) < 0.5, 30, 246).astype(np.uint8)
    typed[58:70, 60:68, 3] = 255
    changes = det.update(typed)
    _check(frame, typed, changes)
    ys, xs = np.nonzero((frame != typed).any(axis=2))
    true_box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    assert len(changes.rects) == 1
    x, y, w, h = changes.rects[0]
    assert (x, y, x + w, y + h) == true_box


def test_single_pixel_change_in_alpha_is_found():
    frame = np.zeros((50, 50, 4), np.uint8)
    det = ChangeDetector(50, 50, tile=16)
    det.update(frame)
    changed = frame.copy()
    changed[49, 49, 3] = 1
    assert det.update(changed).rects == [(49, 49, 1, 1)]


def test_frame_of_another_size_needs_resize():
    det = ChangeDetector(64, 48)
    det.update(np.zeros((48, 64, 4), np.uint8))
    bigger = np.ones((60, 80, 4), np.uint8)
    with pytest.raises(FrameSizeError) as info:
        det.update(bigger)
    assert isinstance(info.value, ValueError)
    det.resize(80, 60)
    changes = det.update(bigger)
    assert _area(changes.rects) == 80 * 60
    assert det.update(bigger).is_empty()


def test_resize_to_the_same_size_reports_the_whole_screen_again():
    frame = np.ones((30, 40, 4), np.uint8)
    det = ChangeDetector(40, 30)
    det.update(frame)
    det.resize(40, 30)
    assert det.update(frame).rects == [(0, 0, 40, 30)]


@pytest.mark.parametrize("bad", [np.zeros((48, 64, 3), np.uint8), np.zeros((48, 64, 4), np.float32),
                                 np.zeros((48, 64), np.uint8), [[0]]])
def test_malformed_frames_are_refused(bad):
    with pytest.raises(ValueError):
        ChangeDetector(64, 48).update(bad)


def test_detector_keeps_no_reference_to_the_callers_buffer():
    buffer = ref.desktop(np.random.default_rng(3), 120, 160)
    det = ChangeDetector(160, 120)
    det.update(buffer)
    before = buffer.copy()
    buffer[10:20, 10:20] = 0  # the source reuses its buffer for the next frame
    changes = det.update(buffer)
    _check(before, buffer, changes)
    assert changes.rects == [(10, 10, 10, 10)]


def test_read_only_and_strided_frames_are_accepted():
    frame = ref.desktop(np.random.default_rng(4), 100, 100)
    det = ChangeDetector(50, 100)
    view = frame[:, ::2]  # not contiguous
    det.update(view)
    ro = frame[:, ::2].copy()
    ro[5, 5] = 1
    ro.flags.writeable = False
    _check(np.ascontiguousarray(view), ro, det.update(ro))


def test_vertical_scroll_is_a_copy_plus_the_exposed_strip():
    rng = np.random.default_rng(5)
    doc = ref.document(rng, 1200, 700)
    screen = ref.desktop(rng, 768, 1024)
    prev, cur = screen.copy(), screen.copy()
    prev[100:700, 150:850] = doc[200:800]
    cur[100:700, 150:850] = doc[254:854]  # three lines down
    det = ChangeDetector(1024, 768)
    det.update(prev)
    changes = det.update(cur)
    _check(prev, cur, changes)
    assert [c[:2] for c in changes.copies] == [(150, 154)]
    assert changes.copies[0][2:] == (150, 100, 700, 546)
    # Only the exposed strip (54 rows; fewer where the page was blank anyway) is sent as pixels.
    assert _area(changes.rects) <= 54 * 700


@pytest.mark.parametrize("vector", [(0, -37), (41, 0), (-23, 17), (90, 60)])
def test_window_moves_are_copies(vector):
    rng = np.random.default_rng(6)
    screen = ref.desktop(rng, 600, 800)
    window = ref.document(rng, 230, 310)
    prev, cur = screen.copy(), screen.copy()
    prev[200:430, 250:560] = window
    dx, dy = vector
    cur[200 + dy:430 + dy, 250 + dx:560 + dx] = window
    det = ChangeDetector(800, 600)
    det.update(prev)
    changes = det.update(cur)
    _check(prev, cur, changes)
    assert changes.copies and _area(changes.copies) == 230 * 310
    assert all((c[2] - c[0], c[3] - c[1]) == vector for c in changes.copies)
    # What is sent as pixels is about the uncovered wallpaper, not the window.
    exposed = 230 * 310 - (230 - abs(dy)) * (310 - abs(dx))
    assert _area(changes.rects) <= 1.1 * exposed + 1000


def test_copies_that_depend_on_each_other_are_ordered():
    # Window A moves onto B's old place while B moves away: B must be copied before A overwrites it.
    rng = np.random.default_rng(9)
    screen = ref.desktop(rng, 600, 800)
    a, b = ref.document(rng, 160, 200), ref.desktop(rng, 160, 200)
    prev, cur = screen.copy(), screen.copy()
    prev[100:260, 100:300] = a
    prev[100:260, 350:550] = b
    cur[100:260, 350:550] = a
    cur[300:460, 350:550] = b
    det = ChangeDetector(800, 600)
    det.update(prev)
    changes = det.update(cur)
    _check(prev, cur, changes)
    assert _area(changes.copies) >= 2 * 160 * 200 - 4096


def test_swapped_regions_still_reproduce_the_frame():
    rng = np.random.default_rng(10)
    screen = ref.desktop(rng, 400, 600)
    a, b = ref.desktop(rng, 150, 200), ref.desktop(rng, 150, 200)
    prev, cur = screen.copy(), screen.copy()
    prev[50:200, 50:250], prev[50:200, 300:500] = a, b
    cur[50:200, 50:250], cur[50:200, 300:500] = b, a
    det = ChangeDetector(600, 400)
    det.update(prev)
    changes = det.update(cur)
    _check(prev, cur, changes)
    assert changes.copies  # at least one of the two moves survives the cycle


def test_typing_does_not_search_for_moves():
    frame = ref.document(np.random.default_rng(7), 200, 300)
    det = ChangeDetector(300, 200)
    det.update(frame)
    typed = frame.copy()
    typed[40:52, 100:108] = 0
    det.update(typed)
    assert det.stats.move_seconds == 0 and det.stats.copies == 0


def test_stats_describe_the_last_update():
    frames = ref.scroll_frames(640, 480, 3, seed=8)
    det = ChangeDetector(640, 480)
    det.update(frames[0])
    assert det.stats.rect_pixels == 640 * 480 and det.stats.rects == len(split_rect(0, 0, 640, 480))
    changes = det.update(frames[1])
    s = det.stats
    assert s.copies == len(changes.copies) and s.rects == len(changes.rects)
    assert s.copy_pixels == _area(changes.copies) and s.rect_pixels >= _area(changes.rects) // 2
    assert s.seconds >= s.compare_seconds + s.move_seconds > 0
    assert s.dirty_tiles > 0


@pytest.mark.parametrize("rect", [(0, 0, 1, 1), (3, 5, 2048, 32), (0, 0, 2049, 1), (7, 9, 3840, 2160),
                                  (1, 1, 1, 70000), (0, 0, 65536, 1), (5, 5, 300, 219)])
def test_split_rect_tiles_the_rect_within_limits(rect):
    x, y, w, h = rect
    pieces = split_rect(*rect)
    covered = np.zeros((h, w), np.int32)
    for px, py, pw, ph in pieces:
        assert 0 < pw <= MAX_RECT_WIDTH and pw * ph <= MAX_RECT_AREA
        covered[py - y:py - y + ph, px - x:px - x + pw] += 1
    assert (covered == 1).all()


def test_public_names_are_exported_lazily_from_agent():
    import agent
    from agent.changes import detector

    assert agent.ChangeDetector is detector.ChangeDetector
    assert agent.Changes is detector.Changes


@pytest.mark.parametrize("workload", ["scrolling", "window-drag"])
def test_synthetic_moves_are_found_and_only_exposed_pixels_sent(workload):
    from agent.workloads import synthetic
    src = synthetic.SyntheticSource(workload, 960, 540, seed=0)
    det = ChangeDetector(960, 540)
    det.update(src.grab())
    sent = exposed = 0
    for _ in range(8):
        changes = det.update(src.grab())
        for (x, y, w, h), dx, dy in src.truth.moved:
            assert (dx, dy) in {(c[2] - c[0], c[3] - c[1]) for c in changes.copies}
            exposed += w * abs(dy) + h * abs(dx)
        sent += _area(changes.rects)
    assert sent <= 1.1 * exposed + 8 * 4096

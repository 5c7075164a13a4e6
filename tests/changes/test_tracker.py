"""UpdateTracker: a viewer that takes updates only now and then always ends up with the current frame."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.changes.detector import ChangeDetector, Changes
from agent.changes.tracker import MAX_PENDING_COPIES, UpdateTracker
from agent.models import MAX_RECT_AREA, MAX_RECT_WIDTH
from tests.support import reference as ref


class Viewer:
    """What a VNC viewer holds: it applies copies to its own pixels, then rect pixels of the frame."""

    def __init__(self, width: int, height: int) -> None:
        self.state = np.zeros((height, width, 4), np.uint8)

    def receive(self, changes: Changes, frame: np.ndarray) -> None:
        h, w = frame.shape[:2]
        for x, y, rw, rh in changes.rects:
            assert 0 < rw <= MAX_RECT_WIDTH and rw * rh <= MAX_RECT_AREA and rh > 0
            assert 0 <= x and x + rw <= w and 0 <= y and y + rh <= h
        self.state = ref.apply_changes(self.state, frame, changes.copies, changes.rects)


def _assert_shows(viewer: Viewer, frame: np.ndarray, box=None) -> None:
    x0, y0, x1, y1 = box or (0, 0, frame.shape[1], frame.shape[0])
    diff = (viewer.state[y0:y1, x0:x1] != frame[y0:y1, x0:x1]).any(axis=2)
    if diff.any():
        ys, xs = np.nonzero(diff)
        raise AssertionError(f"viewer wrong at {len(ys)} pixels, first x={xs[0] + x0} y={ys[0] + y0}")


def simulate(frames, every: int, tile: int = 64) -> list[Changes]:
    """Detector on every frame, one tracker, a viewer that takes an update every ``every`` frames."""
    h, w = frames[0].shape[:2]
    det, tracker, viewer = ChangeDetector(w, h, tile), UpdateTracker(w, h), Viewer(w, h)
    sent = []
    for i, frame in enumerate(frames):
        tracker.add_changes(det.update(frame))
        if (i + 1) % every == 0 or i == len(frames) - 1:
            changes = tracker.take()
            viewer.receive(changes, frame)
            _assert_shows(viewer, frame)
            assert tracker.is_empty()
            sent.append(changes)
    return sent


@pytest.mark.parametrize("every", [1, 2, 5])
@pytest.mark.parametrize("make", [ref.scroll_frames, ref.drag_frames])
def test_slow_viewer_follows_generated_sequences(make, every):
    sent = simulate(make(480, 360, 16, seed=every), every)
    assert any(c.copies for c in sent[1:])  # moves did reach the viewer as copies


@pytest.mark.parametrize("every", [1, 2, 5])
@pytest.mark.parametrize("workload", ["scrolling", "window-drag"])
def test_slow_viewer_follows_synthetic_workloads(workload, every):
    from agent.workloads import synthetic
    src = synthetic.SyntheticSource(workload, 640, 480, seed=0)
    simulate([src.grab().copy() for _ in range(16)], every)


def test_continued_scroll_folds_into_one_copy():
    rng = np.random.default_rng(0)
    doc = ref.document(rng, 2000, 300)
    frames = [np.ascontiguousarray(np.broadcast_to(doc[0:1], (400, 300, 4)))]
    tracker, viewer = UpdateTracker(300, 400), Viewer(300, 400)
    viewer.receive(tracker.take(), frames[0])
    top = 0
    for step in (18, 36, 18, 54, 18):
        frame = doc[top + step:top + step + 400].copy()
        # The detector's description: rows move up by `step`, the bottom strip is new.
        tracker.add_changes(Changes([(0, step, 0, 0, 300, 400 - step)], [(0, 400 - step, 300, step)]))
        top += step
        frames.append(frame)
    changes = tracker.take()
    assert changes.copies == [(0, 144, 0, 0, 300, 256)]
    viewer.state = doc[0:400].copy()  # what the viewer showed before the scroll
    viewer.receive(changes, frames[-1])
    _assert_shows(viewer, frames[-1])
    assert sum(w * h for *_, w, h in changes.rects) == 300 * 144


def test_dragged_window_folds_when_the_exposed_area_is_repainted():
    tracker = UpdateTracker(200, 200)
    tracker.take()
    tracker.add_changes(Changes([(10, 10, 20, 15, 50, 40)], [(10, 10, 10, 40), (10, 10, 50, 5)]))
    tracker.add_changes(Changes([(20, 15, 30, 20, 50, 40)], [(20, 15, 10, 40), (20, 15, 50, 5)]))
    changes = tracker.take()
    assert changes.copies == [(10, 10, 30, 20, 50, 40)]


def test_copy_reading_stale_pixels_becomes_changed_pixels():
    tracker = UpdateTracker(100, 100)
    tracker.take()
    tracker.add_changed([(0, 0, 50, 50)])
    tracker.add_copied((0, 0, 50, 50, 40, 40))
    changes = tracker.take()
    assert changes.copies == []
    covered = np.zeros((100, 100), bool)
    for x, y, w, h in changes.rects:
        covered[y:y + h, x:x + w] = True
    assert covered[0:50, 0:50].all() and covered[50:90, 50:90].all()


def test_copy_partly_stale_carries_its_stale_pixels():
    frame0 = ref.desktop(np.random.default_rng(1), 100, 100)
    tracker, viewer = UpdateTracker(100, 100), Viewer(100, 100)
    viewer.receive(tracker.take(), frame0)
    frame1 = frame0.copy()
    frame1[0:10, 0:60] = 7  # not yet sent
    tracker.add_changed([(0, 0, 60, 10)])
    frame2 = frame1.copy()
    frame2[40:90, 30:90] = frame1[0:50, 0:60]  # a copy whose source is 20% stale
    tracker.add_copied((0, 0, 30, 40, 60, 50))
    changes = tracker.take()
    assert changes.copies == [(0, 0, 30, 40, 60, 50)]
    viewer.receive(changes, frame2)
    _assert_shows(viewer, frame2)


def test_a_scroll_over_output_not_sent_yet_stays_a_copy():
    """A log scrolls again before the viewer got its last lines (a slow link): most of the copy's source
    is stale, the rest is on the viewer's screen and moves with the copy instead of being sent again."""
    frame0 = ref.desktop(np.random.default_rng(2), 100, 100)
    tracker, viewer = UpdateTracker(100, 100), Viewer(100, 100)
    viewer.receive(tracker.take(), frame0)
    frame1 = frame0.copy()
    frame1[20:90, 0:100] = 9  # new output, not yet sent: 70% of the next scroll's source
    tracker.add_changed([(0, 20, 100, 70)])
    frame2 = frame1.copy()
    frame2[0:90] = frame1[10:100]  # the log scrolls by 10 rows
    frame2[90:100] = 3  # and prints one more line
    tracker.add_copied((0, 10, 0, 0, 100, 90))
    tracker.add_changed([(0, 90, 100, 10)])
    changes = tracker.take()
    assert changes.copies == [(0, 10, 0, 0, 100, 90)]
    covered = np.zeros((100, 100), bool)
    for x, y, w, h in changes.rects:
        covered[y:y + h, x:x + w] = True
    assert not covered[0:10].any(), "the rows that were on the viewer's screen move by the copy"
    viewer.receive(changes, frame2)
    _assert_shows(viewer, frame2)


def test_partial_request_takes_only_its_region():
    frames = ref.scroll_frames(320, 240, 3, seed=4)
    det, tracker, viewer = ChangeDetector(320, 240), UpdateTracker(320, 240), Viewer(320, 240)
    tracker.add_changes(det.update(frames[0]))
    viewer.receive(tracker.take(), frames[0])
    tracker.add_changes(det.update(frames[1]))
    region = (0, 0, 160, 120)
    changes = tracker.take(region)
    assert not changes.copies  # the scroll lands partly outside the region
    assert all(x + w <= 160 and y + h <= 120 for x, y, w, h in changes.rects)
    viewer.receive(changes, frames[1])
    _assert_shows(viewer, frames[1], (0, 0, 160, 120))
    assert not tracker.is_empty()
    tracker.add_changes(det.update(frames[2]))
    viewer.receive(tracker.take(), frames[2])
    _assert_shows(viewer, frames[2])


def test_partial_request_keeps_copies_that_land_inside_it():
    tracker = UpdateTracker(100, 100)
    tracker.take()
    tracker.add_copied((0, 10, 0, 0, 50, 40))
    changes = tracker.take((0, 0, 60, 60))
    assert changes.copies == [(0, 10, 0, 0, 50, 40)]
    assert tracker.is_empty()


def test_too_many_pending_copies_become_changed_pixels():
    frame = ref.desktop(np.random.default_rng(2), 64, 64)
    tracker, viewer = UpdateTracker(64, 64), Viewer(64, 64)
    viewer.receive(tracker.take(), frame)
    for i in range(MAX_PENDING_COPIES + 5):
        a, b = (i * 7) % 60, (i * 13) % 60
        tracker.add_copied((a, b, b, a, 4, 4))
        frame = frame.copy()
        frame[a:a + 4, b:b + 4] = frame[b:b + 4, a:a + 4].copy()
    changes = tracker.take()
    assert len(changes.copies) <= MAX_PENDING_COPIES
    viewer.receive(changes, frame)
    _assert_shows(viewer, frame)


def test_mark_all_and_resize_send_the_whole_screen():
    tracker = UpdateTracker(300, 200)
    assert not tracker.is_empty()
    tracker.take()
    assert tracker.is_empty() and tracker.take() == Changes()
    tracker.add_copied((0, 0, 10, 10, 20, 20))
    tracker.mark_all()
    changes = tracker.take()
    assert not changes.copies and sum(w * h for *_, w, h in changes.rects) == 300 * 200
    tracker.resize(3000, 100)
    changes = tracker.take()
    assert sum(w * h for *_, w, h in changes.rects) == 3000 * 100
    assert all(w <= MAX_RECT_WIDTH and w * h <= MAX_RECT_AREA for *_, w, h in changes.rects)


def test_changes_outside_the_screen_are_clipped_and_bad_copies_refused():
    tracker = UpdateTracker(50, 50)
    tracker.take()
    tracker.add_changed([(40, 40, 100, 100), (60, 0, 5, 5)])
    assert tracker.take() == Changes(rects=[(40, 40, 10, 10)])
    for bad in [(0, 0, 45, 0, 10, 10), (-1, 0, 0, 0, 5, 5), (0, 0, 1, 1, 0, 5)]:
        with pytest.raises(ValueError):
            tracker.add_copied(bad)
    assert tracker.take((60, 60, 10, 10)) == Changes()


def test_what_an_update_leaves_stays_pending_exactly_not_widened():
    """Two changes far apart in one tile row merge into one rectangle; sending one keeps the other as it was."""
    tracker = UpdateTracker(200, 40)
    tracker.take()
    tracker.add_changed([(0, 0, 4, 4), (100, 0, 4, 4)])
    pending = tracker.peek()
    assert tracker.take() == pending and tracker.is_empty()  # take is peek, then forget it all
    tracker.add_changed([(0, 0, 4, 4), (100, 0, 4, 4)])
    tracker.forget(0, [(0, 0, 4, 4)])  # the echo went; the other change did not
    assert tracker.take() == Changes(rects=[(100, 0, 4, 4)])


def test_peek_answers_again_from_what_it_found_until_something_changes():
    tracker = UpdateTracker(64, 64)
    tracker.take()
    tracker.add_changed([(0, 0, 8, 8)])
    first = tracker.peek()
    assert tracker.peek().rects is first.rects  # the same list: no second pass over the mask
    tracker.add_changed([(32, 32, 8, 8)])
    assert tracker.peek().rects == [(0, 0, 8, 8), (32, 32, 8, 8)]
    tracker.forget(0, [(0, 0, 8, 8)])
    assert tracker.peek().rects == [(32, 32, 8, 8)]
    tracker.add_copied((0, 16, 0, 48, 8, 8))
    assert tracker.peek() == Changes(copies=[(0, 16, 0, 48, 8, 8)], rects=[(32, 32, 8, 8)])
    before = tracker.peek()
    tracker.add_copied((32, 32, 32, 0, 8, 8))  # reads only stale pixels: more changed pixels
    after = tracker.peek()
    assert after != before and after == tracker.take()


@st.composite
def edit_sequences(draw: st.DrawFn):
    w, h = draw(st.integers(1, 90)), draw(st.integers(1, 90))
    steps = draw(st.lists(st.tuples(st.sampled_from(["frame", "frame", "frame", "take", "region", "all", "part"]),
                                    st.integers(0, 2**32 - 1)), min_size=1, max_size=12))
    return w, h, draw(st.integers(1, 5)), steps


@settings(max_examples=100, deadline=None)
@given(edit_sequences())
def test_random_edits_and_moves_reach_a_slow_viewer_exactly(seq):
    w, h, every, steps = seq
    frame = ref.desktop(np.random.default_rng(0), h, w)
    tracker, viewer = UpdateTracker(w, h), Viewer(w, h)
    for n, (kind, seed) in enumerate(steps):
        rng = np.random.default_rng(seed)
        if kind == "frame":
            copies, rects = [], []
            for _ in range(int(rng.integers(0, 3))):  # moves, each reading what the previous left
                cw, ch = int(rng.integers(1, w + 1)), int(rng.integers(1, h + 1))
                sx, sy = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
                x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
                frame = frame.copy()
                frame[y:y + ch, x:x + cw] = frame[sy:sy + ch, sx:sx + cw].copy()
                copies.append((sx, sy, x, y, cw, ch))
            for _ in range(int(rng.integers(0, 3))):
                x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
                rw, rh = int(rng.integers(1, w - x + 1)), int(rng.integers(1, h - y + 1))
                frame = frame.copy()
                frame[y:y + rh, x:x + rw] = rng.integers(0, 256, (rh, rw, 4), dtype=np.uint8)
                rects.append((x, y, rw, rh))
            tracker.add_changes(Changes(copies, rects))
        elif kind == "all":
            tracker.mark_all()
        if kind == "region":
            x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
            box = (x, y, int(rng.integers(x + 1, w + 1)), int(rng.integers(y + 1, h + 1)))
            changes = tracker.take((box[0], box[1], box[2] - box[0], box[3] - box[1]))
            for cx, cy, cw, ch in changes.rects:
                assert box[0] <= cx and cx + cw <= box[2] and box[1] <= cy and cy + ch <= box[3]
            viewer.receive(changes, frame)
            _assert_shows(viewer, frame, box)
        elif kind == "part":
            # an update that carries part of what is pending (the updater's echo or bulk slice): the
            # copies, some of the rects and a band of another; the rest stays pending, exactly
            changes = tracker.peek()
            assert tracker.peek() == changes  # peeking changes nothing
            rects = [r for i, r in enumerate(changes.rects) if rng.integers(0, 2)]
            band = [(x, y, w_, max(1, h_ // 2)) for x, y, w_, h_ in changes.rects[:1]]
            tracker.forget(len(changes.copies), rects + band)
            viewer.receive(Changes(changes.copies, rects + band), frame)
        elif kind == "take" or n % every == every - 1:
            viewer.receive(tracker.take(), frame)
            _assert_shows(viewer, frame)
            assert tracker.is_empty()
    viewer.receive(tracker.take(), frame)
    _assert_shows(viewer, frame)

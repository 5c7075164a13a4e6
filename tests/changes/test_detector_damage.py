"""The detector fed by a capture loop that owns its frames: damage-limited comparisons, kept by reference.

Same invariant as test_detector_properties (copies on the previous frame, then
the new frame's rects, give the new frame), with the two capture-side options
on: ``frames_immutable`` (the previous frame is referenced, never copied, and
must never be written: frames are made read-only here, so a write raises) and
``damage`` (rectangles covering every changed pixel; only their tiles are
compared). The Changes must equal the plain detector's exactly.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from agent.changes.detector import ChangeDetector
from tests.changes.test_detector_properties import EDITS, check, frames_for
from tests.support import reference as ref


def _damage(rng: np.random.Generator, prev: np.ndarray, frame: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Rects covering every changed pixel (strips of their bounding box), plus a few that changed nothing."""
    h, w = frame.shape[:2]
    out = []
    ys, xs = np.nonzero((prev != frame).any(axis=2))
    if len(ys):
        x0, x1, y = int(xs.min()), int(xs.max()) + 1, int(ys.min())
        while y <= ys.max():
            strip = int(rng.integers(1, 40))
            out.append((x0, y, x1 - x0, strip))
            y += strip
    for _ in range(int(rng.integers(0, 3))):
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        out.append((x, y, int(rng.integers(1, w - x + 1)), int(rng.integers(1, h - y + 1))))
    return out


def run_both(frames: list[np.ndarray], tile: int, seed: int) -> None:
    h, w = frames[0].shape[:2]
    plain = ChangeDetector(w, h, tile)
    owned = ChangeDetector(w, h, tile, frames_immutable=True)
    rng = np.random.default_rng(seed)
    shown = np.zeros_like(frames[0])
    previous = None
    for frame in frames:
        frame = frame.copy()
        frame.flags.writeable = False  # a kept-by-reference frame is never written
        expected = plain.update(frame)
        got = owned.update(frame, None if previous is None else _damage(rng, previous, frame))
        check(shown, frame, got)
        assert got == expected
        shown, previous = frame.copy(), frame


@settings(max_examples=80, deadline=None)
@example(w=3840, h=2160, tile=64, seed=1, steps=[["scroll"], ["window", "pixels"], ["same"]])
@example(w=1921, h=1081, tile=16, seed=2, steps=[["move"], ["scroll", "fill"], ["same"], ["full"]])
@example(w=1, h=1, tile=16, seed=4, steps=[["pixels"], ["same"], ["full"]])
@given(w=st.integers(1, 320), h=st.integers(1, 240), tile=st.integers(16, 128), seed=st.integers(0, 2**32 - 1),
       steps=st.lists(st.lists(st.sampled_from(EDITS), min_size=1, max_size=3), min_size=1, max_size=4))
def test_damage_limited_reference_detector_equals_the_plain_one(w, h, tile, seed, steps):
    run_both(frames_for(w, h, seed, steps), tile, seed)


@pytest.mark.parametrize("make", [ref.scroll_frames, ref.drag_frames])
def test_scroll_and_drag_by_reference(make):
    run_both(make(640, 480, 8, seed=7), 64, 7)


def test_damage_limits_what_is_compared():
    """Tiles outside every damage rect are not even read: the caller promises the frame equals the previous
    one there (the capture loop copies those pixels from it and grabs only the damage; its periodic full
    grab, passed without damage, is what catches drawing X did not report)."""
    det = ChangeDetector(256, 128, 32, frames_immutable=True)
    a = np.zeros((128, 256, 4), np.uint8)
    det.update(a)
    b = a.copy()
    b[10, 10] = 255
    b[100, 200] = 255
    assert det.update(b, [(0, 0, 20, 20)]).rects == [(10, 10, 1, 1)]


def test_an_unchanged_frame_is_not_kept():
    """The capture loop recycles a buffer whose update found nothing: the detector must not refer to it."""
    det = ChangeDetector(64, 64, 16, frames_immutable=True)
    first = np.zeros((64, 64, 4), np.uint8)
    det.update(first)
    same = first.copy()
    assert det.update(same, [(0, 0, 64, 64)]).is_empty()
    same[:] = 9  # the loop writes the recycled buffer again
    assert det.update(first.copy()).is_empty(), "still compared against the first frame"

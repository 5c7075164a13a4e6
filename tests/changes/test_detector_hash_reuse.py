"""ChangeDetector keeps the new frame's row hashes for the next update's shift vote (a scrolling
terminal is hashed once per frame, not twice), and a kept hash never outlives the frame it describes."""
from __future__ import annotations

import numpy as np
import pytest

from agent.changes import detector as detector_module
from agent.changes.detector import ChangeDetector
from tests.support import reference as ref


class CountingScroll:
    """agent._native.scroll with row_hashes counted per frame object (the rest passed through)."""

    def __init__(self, real) -> None:
        self._real = real
        self.hashed: list[int] = []  # id() of the frame of each row_hashes call

    def row_hashes(self, frame, *args) -> None:
        self.hashed.append(id(frame))
        self._real.row_hashes(frame, *args)

    def __getattr__(self, name):
        return getattr(self._real, name)


def _terminal(rng: np.random.Generator, lines: int, width: int = 640) -> np.ndarray:
    """``lines`` 16-pixel lines of distinct rows to scroll through."""
    return rng.integers(0, 256, (16 * lines, width, 4), dtype=np.uint8)


def _frames(steps: list[int], height: int = 480, width: int = 640, seed: int = 3) -> list[np.ndarray]:
    """Frames of a terminal (rows 32.. of the screen) scrolled by ``steps`` lines, one frame per step."""
    rng = np.random.default_rng(seed)
    text = _terminal(rng, 200, width)
    screen = ref.desktop(rng, height, width)
    frames, top = [], 0
    for step in [0] + steps:
        top += 16 * step
        frame = screen.copy()
        frame[32:height - 32] = text[top:top + height - 64]
        frames.append(frame)
    return frames


@pytest.mark.parametrize("immutable", [True, False])
def test_a_recurring_scroll_hashes_the_previous_frame_only_once(monkeypatch, immutable):
    counting = CountingScroll(detector_module._scroll)
    monkeypatch.setattr(detector_module, "_scroll", counting)
    steps = [2, 3, 2, 2, 1]
    frames = _frames(steps)
    det = ChangeDetector(640, 480, frames_immutable=immutable)
    det.update(frames[0])
    for i, step in enumerate(steps):
        prev, frame = frames[i], frames[i + 1]
        counting.hashed.clear()
        changes = det.update(frame)
        np.testing.assert_array_equal(ref.apply_changes(prev, frame, changes.copies, changes.rects), frame)
        assert {c[1] - c[3] for c in changes.copies} == {16 * step}, "the scroll is found as a copy"
        if i > 0:
            assert counting.hashed and set(counting.hashed) == {id(frame)}, \
                "the previous frame's hashes were kept from the update before: only the new frame is hashed"


def test_kept_hashes_are_dropped_when_the_frame_changes_without_a_search(monkeypatch):
    counting = CountingScroll(detector_module._scroll)
    monkeypatch.setattr(detector_module, "_scroll", counting)
    frames = _frames([2, 0, 3])
    typed = frames[2].copy()
    typed[40:52, 100:108] = 255  # a typed character: too small to search for moves
    frames[2] = typed
    frames[3][40:52, 100:108] = 255
    det = ChangeDetector(640, 480, frames_immutable=True)
    det.update(frames[0])
    det.update(frames[1])  # scroll: the new frame's hashes are kept
    changes = det.update(frames[2])
    assert not changes.copies and det.stats.move_seconds == 0
    counting.hashed.clear()
    changes = det.update(frames[3])  # scroll again: the kept hashes were of frames[1], not frames[2]
    np.testing.assert_array_equal(ref.apply_changes(frames[2], frames[3], changes.copies, changes.rects), frames[3])
    assert {c[1] - c[3] for c in changes.copies} == {48}
    assert id(frames[2]) in counting.hashed, "the kept frame was hashed afresh"


def test_unchanged_frames_keep_the_hashes_of_the_kept_frame(monkeypatch):
    counting = CountingScroll(detector_module._scroll)
    monkeypatch.setattr(detector_module, "_scroll", counting)
    frames = _frames([2, 2])
    det = ChangeDetector(640, 480, frames_immutable=True)
    det.update(frames[0])
    det.update(frames[1])
    assert det.update(frames[1].copy()).is_empty()  # nothing changed: the kept frame and its hashes stay
    counting.hashed.clear()
    changes = det.update(frames[2])
    assert {c[1] - c[3] for c in changes.copies} == {32}
    assert id(frames[1]) not in counting.hashed


def test_a_drag_beside_a_scrolling_terminal_keeps_its_step():
    """The last frame's vector is matched only where the voted shift explains nothing, and still
    finds the dragged window beside the scroll."""
    rng = np.random.default_rng(11)
    width, height = 640, 480
    text = _terminal(rng, 60, 300)
    window = rng.integers(0, 256, (120, 160, 4), dtype=np.uint8)
    background = ref.desktop(rng, height, width)

    def screen(top: int, left: int) -> np.ndarray:
        frame = background.copy()
        frame[20:460, 0:300] = text[top:top + 440]
        frame[300:420, left:left + 160] = window
        return frame

    frames = [screen(0, 330), screen(0, 362), screen(48, 394)]  # a drag of 32 px, then the same beside a scroll
    det = ChangeDetector(width, height, frames_immutable=True)
    det.update(frames[0])
    first = det.update(frames[1])
    assert (32, 0) in {(c[2] - c[0], c[3] - c[1]) for c in first.copies}
    second = det.update(frames[2])
    np.testing.assert_array_equal(ref.apply_changes(frames[1], frames[2], second.copies, second.rects), frames[2])
    vectors = {(c[2] - c[0], c[3] - c[1]) for c in second.copies}
    assert (0, -48) in vectors and (32, 0) in vectors

"""CaptureLoop with a sub-image source: frames handed out are never written, Changes stay exact,
DAMAGE that misses drawing is caught by the confirming bands, and buffers are recycled; on a big
screen (one frame, written back in place) Changes stay exact and no second frame is allocated."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import pytest

from agent.capture.base import ScreenSource
from agent.capture.shared_frame import SharedFrame
from agent.service.capture_loop import CONFIRM_BANDS, CaptureLoop
from tests.support import reference as ref

Rect = tuple[int, int, int, int]


class FakeDamageScreen(ScreenSource):
    """A numpy 'screen' that reports damage like X (optionally missing some) and writes sub-images."""

    fresh_frames = True
    sub_images = True

    def __init__(self, width: int, height: int, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.screen = self.rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
        self.damage: list[Rect] = []
        self.written = 0  # pixels written by grab_into
        self.full_grabs = 0

    @property
    def size(self) -> tuple[int, int]:
        return self.screen.shape[1], self.screen.shape[0]

    def draw(self, rect: Rect, report: bool = True) -> None:
        x, y, w, h = rect
        self.screen[y:y + h, x:x + w] = self.rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
        if report:
            self.damage.append(rect)

    def scroll(self, dy: int) -> None:
        self.screen[dy:] = self.screen[:-dy].copy()
        self.draw((0, 0, self.size[0], dy), report=False)
        self.damage.append((0, 0) + self.size)

    def damaged(self) -> Optional[bool]:
        return bool(self.damage)

    def grab(self) -> np.ndarray:
        self.full_grabs += 1
        self.damage = []
        return self.screen.copy()

    def grab_into(self, frame: np.ndarray, also: Sequence[Rect] = (),
                  base: Optional[np.ndarray] = None) -> Optional[list[Rect]]:
        rects, self.damage = self.damage + list(also), []
        for x, y, w, h in rects:
            frame[y:y + h, x:x + w] = self.screen[y:y + h, x:x + w]
            self.written += w * h
        return rects if base is None else changed_rows(rects, base, self.screen)


def changed_rows(rects: Sequence[Rect], base: np.ndarray, screen: np.ndarray) -> list[Rect]:
    """The rows of ``rects`` where ``screen`` differs from ``base``, as rects (what MssSource returns)."""
    out = []
    for x, y, w, h in rects:
        for r in range(y, y + h):
            if not np.array_equal(base[r, x:x + w], screen[r, x:x + w]):
                out.append((x, r, w, 1))
    return out


def _loop(source: ScreenSource, one_frame: bool = False) -> CaptureLoop:
    return CaptureLoop(source, 30, on_frame=lambda *a: None, wanted=lambda: True, on_failure=lambda e: None,
                       one_frame_min_bytes=0 if one_frame else 1 << 40)


def _step(loop: CaptureLoop, handed: list, confirm: bool = False) -> None:
    previous = None if loop.frame is None else loop.frame.copy()  # what the viewers were shown
    got = loop._grab(True, confirm)
    assert got is not None
    frame, changes, _ = got
    loop.write_back()  # one frame: the changes go into it now (the run loop does it under the gate)
    if previous is not None:
        shown = ref.apply_changes(previous, frame, changes.copies, changes.rects)
        assert np.array_equal(shown, frame), "copies then rects must give the new frame"
    if frame is not loop.frame:
        handed.append((frame, frame.copy()))
    loop.frame = frame


def _change(source: FakeDamageScreen, rng: np.random.Generator) -> None:
    """One random step on a 200x120 screen: draw a rectangle, scroll, or nothing."""
    kind = rng.integers(0, 3)
    if kind == 0:
        x, y = int(rng.integers(0, 190)), int(rng.integers(0, 110))
        source.draw((x, y, int(rng.integers(1, 200 - x)), int(rng.integers(1, 120 - y))))
    elif kind == 1:
        source.scroll(int(rng.integers(1, 40)))


@pytest.mark.parametrize("seed", range(4))
def test_handed_out_frames_are_never_written_and_changes_are_exact(seed):
    source = FakeDamageScreen(200, 120, seed)
    loop = _loop(source)
    handed: list = []
    _step(loop, handed)
    assert source.full_grabs == 0, "the first frame is a whole sub-image grab, not mss's grab()"
    rng = np.random.default_rng(seed)
    for i in range(40):
        _change(source, rng)
        _step(loop, handed, confirm=i % 5 == 0)
        assert np.array_equal(loop.frame, source.screen)
    for frame, snapshot in handed:  # every viewer may still be encoding any of them
        assert np.array_equal(frame, snapshot), "a frame was written after it was handed out"


def test_only_damage_is_grabbed_and_buffers_are_recycled():
    source = FakeDamageScreen(400, 300)
    loop = _loop(source)
    handed: list = []
    _step(loop, handed)
    source.written = 0
    for i in range(30):
        source.draw((10 + i, 20, 8, 12))  # typing
        _step(loop, handed)
        handed.clear()  # viewers moved on to the latest frame
    assert source.written == 30 * 8 * 12
    assert loop._pool.allocated <= 2, "two buffers alternate (plus the adopted first frame)"


def test_drawing_damage_missed_is_caught_by_the_confirming_bands():
    source = FakeDamageScreen(64, 64)
    loop = _loop(source)
    handed: list = []
    _step(loop, handed)
    source.draw((5, 60, 3, 3), report=False)  # a GL client X did not report
    _step(loop, handed)
    assert not np.array_equal(loop.frame, source.screen), "damage alone cannot see it"
    for _ in range(CONFIRM_BANDS):
        _step(loop, handed, confirm=True)
    assert np.array_equal(loop.frame, source.screen)


def test_grab_now_grabs_the_whole_screen():
    source = FakeDamageScreen(64, 48)
    loop = _loop(source)
    handed: list = []
    _step(loop, handed)
    source.draw((0, 0, 64, 48), report=False)
    frame, changes, _ = loop._grab(True, True, True)
    assert np.array_equal(frame, source.screen) and changes.rects


@pytest.mark.parametrize("seed", range(3))
def test_one_frame_stays_exact_and_is_the_only_frame(seed):
    source = FakeDamageScreen(200, 120, seed)
    loop = _loop(source, one_frame=True)
    handed: list = []
    _step(loop, handed)
    handed.clear()
    frame = loop.frame
    assert isinstance(loop._pool, SharedFrame) and frame is loop._pool.current
    rng = np.random.default_rng(seed)
    for i in range(40):
        _change(source, rng)
        _step(loop, handed, confirm=i % 5 == 0)
        assert loop.frame is frame, "one frame, written in place: no other buffer is handed out"
        assert np.array_equal(loop.frame, source.screen)
    assert handed == []


def test_one_frame_changes_wait_for_write_back():
    source = FakeDamageScreen(64, 48)
    loop = _loop(source, one_frame=True)
    _step(loop, [])
    before = loop.frame.copy()
    source.draw((3, 4, 10, 5))
    frame, changes, _ = loop._grab(True, False)
    assert changes.rects and np.array_equal(frame, before), "viewers may be reading: nothing written yet"
    loop.write_back()
    assert np.array_equal(frame, source.screen)
    shown = frame.copy()
    source.draw((0, 0, 64, 48), report=False)
    loop.frame = None  # a whole grab again (after a full grab()): a new shared frame; viewers keep the old
    frame2, _, _ = loop._grab(True, True, True)
    assert frame2 is not frame and frame2 is loop._pool.current and np.array_equal(frame2, source.screen)
    assert np.array_equal(frame, shown)


def test_one_frame_that_cannot_map_a_scratch_frame_falls_back_to_a_whole_grab(monkeypatch):
    source = FakeDamageScreen(64, 48)
    loop = _loop(source, one_frame=True)
    _step(loop, [])

    def no_mapping(self):
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(SharedFrame, "take", no_mapping)
    source.draw((1, 2, 5, 5))
    _step(loop, [])  # grab() instead: the viewers still get the change, from a frame of two
    assert source.full_grabs == 1 and np.array_equal(loop.frame, source.screen)

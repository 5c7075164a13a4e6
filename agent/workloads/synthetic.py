"""Deterministic synthetic screens: the workloads tests, benchmarks and the demo share.

A ``SyntheticSource`` looks like any other screen source, but each ``grab()``
advances its workload by one frame and ``truth`` says exactly what that frame
drew, so benchmarks can compare a detector's output with the real changed
and scrolled areas instead of guessing.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from agent.capture.base import ScreenSource
from agent.errors import UsageError
from agent.models import Rect
from agent.workloads.catalogue import WORKLOADS, make_scene
from agent.workloads.paint import pixels
from agent.workloads.scenes import Damage, Ui

MAX_SIDE = 8192  # a synthetic screen larger than 8K in either direction is a typo, not a workload


@dataclass
class FrameTruth:
    """What the last ``grab()`` changed, relative to the frame before it.

    ``moved`` holds ``(rect, dx, dy)``: ``rect`` is the destination, and its
    pixels are the previous frame's pixels at ``rect`` offset by ``(-dx, -dy)``
    (moves read the previous frame, all at once). ``changed`` holds the
    bounding boxes of everything the generator drew afresh; where a changed
    rect overlaps a moved one, the drawing wins. Every pixel outside all these
    rects is the same as in the previous frame. Rects are clipped to the
    screen and may overlap one another; use the ``*_area`` helpers for areas.
    The first frame reports the whole screen as changed.
    """

    changed: list[Rect] = field(default_factory=list)
    moved: list[tuple[Rect, int, int]] = field(default_factory=list)

    def changed_area(self) -> int:
        """Pixels covered by at least one changed rect."""
        return union_area(self.changed)

    def moved_area(self) -> int:
        """Pixels covered by at least one moved rect's destination, not redrawn afterwards."""
        return union_area([r for r, _, _ in self.moved] + self.changed) - self.changed_area()


def union_area(rects: list[Rect]) -> int:
    """Exact area of a union of rectangles (coordinate compression; fine for the few rects of a frame)."""
    rects = [r for r in rects if r[2] > 0 and r[3] > 0]
    if not rects:
        return 0
    if len(rects) == 1:
        return rects[0][2] * rects[0][3]
    xs = np.unique([v for x, _, w, _ in rects for v in (x, x + w)])
    ys = np.unique([v for _, y, _, h in rects for v in (y, y + h)])
    covered = np.zeros((len(ys) - 1, len(xs) - 1), dtype=bool)
    for x, y, w, h in rects:
        y0, y1 = np.searchsorted(ys, (y, y + h))
        x0, x1 = np.searchsorted(xs, (x, x + w))
        covered[y0:y1, x0:x1] = True
    return int((np.diff(ys)[:, None] * np.diff(xs)[None, :])[covered].sum())


class SyntheticSource(ScreenSource):
    """A screen source that plays one of ``WORKLOADS``, one frame per ``grab()``.

    ``grab()`` returns the source's own buffer, updated in place: callers that
    keep a frame copy it (as with every ScreenSource). Frames are opaque BGRA.
    """

    def __init__(self, workload: str, width: int = 1280, height: int = 720, seed: int = 0) -> None:
        if workload not in WORKLOADS:
            raise UsageError(f"unknown synthetic workload {workload!r}; valid: {', '.join(WORKLOADS)}")
        if not isinstance(seed, int) or seed < 0:
            raise UsageError(f"the seed of a synthetic workload is a non-negative integer, got {seed!r}")
        if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
            raise UsageError(f"synthetic screen size {width}x{height} is out of range 1x1..{MAX_SIDE}x{MAX_SIDE}")
        self.workload = workload
        self.seed = seed
        self.description = f"synthetic:{workload} {width}x{height} seed={seed}"
        self._width, self._height = width, height
        self._ui = Ui(width, height, seed)
        self._scene = make_scene(workload, self._ui)
        self._frame = np.zeros((height, width, 4), dtype=np.uint8)
        self._px = pixels(self._frame)
        self.frame_number = -1  # index of the last frame grabbed
        self.truth = FrameTruth()

    @property
    def size(self) -> tuple[int, int]:
        return (self._width, self._height)

    def grab(self) -> np.ndarray:
        """Advance one frame and return it (the same buffer every time)."""
        if self.frame_number < 0:
            self._scene.render(self._px, self._ui.screen)
            self.truth = FrameTruth([(0, 0, self._width, self._height)], [])
        else:
            damage = Damage(self._ui.screen)
            self._scene.step(self._px, damage)
            self.truth = FrameTruth(damage.changed, damage.moved)
        self.frame_number += 1
        return self._frame

    def render_full(self) -> np.ndarray:
        """A fresh full render of the current state: what ``grab()`` built incrementally (a test oracle)."""
        frame = np.zeros_like(self._frame)
        self._scene.render(pixels(frame), self._ui.screen)
        return frame

    def close(self) -> None:
        pass

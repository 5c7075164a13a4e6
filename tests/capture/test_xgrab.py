"""The C side of sub-image grabs (agent._native.xgrab) against its numpy reference, on a real Xvfb.

What X holds is read independently (python-xlib's GetImage); random rectangles (off the screen, empty,
overlapping, taller than the shared segment holds) are grabbed into random frames, with and without a
base, through a segment small enough that requests go in bands and in several batches.
"""
from __future__ import annotations

import random

import numpy as np
import pytest

from tests.integration.test_capture_mss import paint_window
from tests.support import reference

pytestmark = pytest.mark.xvfb

W, H = 160, 120
SEGMENT = 4096  # 1,024 pixels: a 160-pixel-wide rectangle goes 6 rows a request


def _screen_via_xlib(d) -> np.ndarray:
    from Xlib import X

    image = d.screen().root.get_image(0, 0, W, H, X.ZPixmap, 0xFFFFFFFF)
    return np.frombuffer(image.data, np.uint8).reshape(H, W, 4)


def _random_rect(rng: random.Random) -> tuple[int, int, int, int]:
    return rng.randint(-20, W), rng.randint(-20, H), rng.randint(0, W + 40), rng.randint(0, H + 40)


def test_grab_equals_the_reference_on_random_rectangles(xvfb_factory) -> None:
    from Xlib import display as xdisplay

    from agent.capture.xshm import XShmGrabber

    name = xvfb_factory(W, H)
    d = xdisplay.Display(name)
    rng = random.Random(7)
    windows = [paint_window(d, rng.randint(0, W - 10), rng.randint(0, H - 10), rng.randint(5, 60),
                            rng.randint(5, 60), rng.randint(0, 0xFFFFFF)) for _ in range(12)]
    grabber = XShmGrabber.open(name, size=SEGMENT)
    assert grabber is not None, "MIT-SHM works on Xvfb: sub-image grabs must be available"
    try:
        screen = _screen_via_xlib(d)
        assert len(np.unique(screen.reshape(-1, 4)[:, :3], axis=0)) > 5  # the windows are drawn
        runs = 0
        for case in range(300):
            base = screen.copy()
            rows = rng.sample(range(H), rng.randint(0, H))  # rows the viewer's frame has stale
            base[rows] ^= np.uint8(rng.randint(1, 255))
            with_base = case % 3 != 0
            frame = base.copy() if with_base else np.full((H, W, 4), 9, np.uint8)
            expected = frame.copy()
            rects = [_random_rect(rng) for _ in range(rng.randint(0, 6))]
            want = reference.xshm_grab(screen, expected, rects, base if with_base else None, SEGMENT)
            got = grabber.grab(frame, rects, base if with_base else None)
            assert got == want, (case, rects)
            assert np.array_equal(frame[..., :3], expected[..., :3]), (case, rects)
            runs += len(got)
        assert runs > 100  # the cases wrote rows, not just nothing
    finally:
        grabber.close()
        for win in windows:
            win.destroy()
        d.close()


def test_a_refused_grab_raises_and_leaves_the_connection_working(xvfb_factory) -> None:
    from agent.capture.xshm import XShmGrabber

    name = xvfb_factory(W, H)
    grabber = XShmGrabber.open(name, size=SEGMENT)
    assert grabber is not None
    try:
        root, seg, segment, size = grabber._grab_args
        frame = np.zeros((H, W, 4), np.uint8)
        with pytest.raises(OSError, match="XShmGetImage .* failed: X error"):  # no such segment: BadShmSeg
            grabber._native.grab(frame, [(0, 0, 8, 8), (8, 8, 8, 8)], None, root, seg + 999, segment, size)
        with pytest.raises(ValueError):
            grabber._native.grab(np.zeros((H, W, 3), np.uint8), [(0, 0, 8, 8)], None, root, seg, segment, size)
        with pytest.raises(ValueError):
            grabber._native.grab(frame, [(0, 0, 8, 8)], np.zeros((H, W - 1, 4), np.uint8), root, seg, segment, size)
        assert grabber.grab(frame, [(0, 0, W, H)]) == []  # both replies were read: the connection goes on
        grabber.close()
        with pytest.raises(OSError):
            grabber.grab(frame, [(0, 0, 8, 8)])
    finally:
        grabber.close()

"""MssSource on a real X server (Xvfb): known pixels, size changes, cursor, a display that dies."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from agent.capture import MssSource, open_source
from agent.capture.x11_cursor import cursor_from_argb
from agent.errors import CaptureError

ROOT = Path(__file__).resolve().parents[2]

Xlib_display = pytest.importorskip("Xlib.display")
from Xlib import X  # noqa: E402
from Xlib.ext import randr  # noqa: E402


@pytest.fixture
def xconn(xvfb: str) -> Iterator:
    d = Xlib_display.Display(xvfb)
    try:
        yield d
    finally:
        d.close()


def paint_window(d, x: int, y: int, w: int, h: int, rgb: int, cursor=X.NONE):
    """An unmanaged window filled with one colour (Xvfb runs no window manager)."""
    screen = d.screen()
    win = screen.root.create_window(x, y, w, h, 0, screen.root_depth, background_pixel=rgb,
                                    override_redirect=True, cursor=cursor)
    win.map()
    d.sync()
    return win


def wait_for(predicate, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def unused_display() -> str:
    for n in [999, *range(1000, 1100)]:
        if not os.path.exists(f"/tmp/.X{n}-lock") and not os.path.exists(f"/tmp/.X11-unix/X{n}"):
            return f":{n}"
    raise RuntimeError("no unused display number")


def resize(display: str, width: int, height: int) -> None:
    """Change the screen size with RandR (Xvfb can shrink, and grow back up to its start size)."""
    d = Xlib_display.Display(display)
    try:
        root = d.screen().root
        res = randr.get_screen_resources(root)
        for crtc in res.crtcs:  # a CRTC larger than the new screen would refuse the change
            randr.set_crtc_config(d, crtc, res.config_timestamp, 0, 0, 0, randr.Rotate_0, [])
        randr.set_screen_size(root, width, height, max(width // 4, 1), max(height // 4, 1))
        d.sync()
    finally:
        d.close()


@pytest.mark.xvfb
def test_grab_sees_drawn_pixels(xvfb: str, xconn) -> None:
    red = paint_window(xconn, 100, 50, 200, 120, 0xC02010)
    blue = paint_window(xconn, 150, 80, 30, 20, 0x1040F0)
    try:
        with MssSource(xvfb) as source:
            assert source.size == (1024, 768)
            assert source.capture_path in ("XShmGetImage", "XGetImage")
            if source.capture_path == "XGetImage":
                assert source.fallback_reason
            frame = source.grab()
            assert frame.shape == (768, 1024, 4) and frame.dtype == np.uint8 and frame.flags.c_contiguous
            assert not frame.flags.owndata, "a view over mss's buffer, not a copy"
            bgr = frame[..., :3]
            assert (bgr[50:170, 100:300][:30] == (0x10, 0x20, 0xC0)).all()
            assert (bgr[80:100, 150:180] == (0xF0, 0x40, 0x10)).all()
            assert (bgr[50:170, 100:150] == (0x10, 0x20, 0xC0)).all()
            assert not (bgr[49, 100:300] == (0x10, 0x20, 0xC0)).all(axis=1).any(), "nothing above the window"
            assert not (bgr[50:170, 300] == (0x10, 0x20, 0xC0)).all(axis=1).any(), "nothing right of it"
            # the next grab sees a change made in between, in a new array: the old one stays as it was
            # (fresh_frames: the agent keeps frames without copying them)
            assert source.fresh_frames
            blue.configure(x=400)
            xconn.sync()
            assert wait_for(lambda: (source.grab()[80:100, 400:430, :3] == (0xF0, 0x40, 0x10)).all())
            assert not np.shares_memory(frame, source.grab())
            assert (frame[80:100, 150:180, :3] == (0xF0, 0x40, 0x10)).all()
            assert not (frame[80:100, 400:430, :3] == (0xF0, 0x40, 0x10)).all()
            assert (source.grab()[80:100, 150:180, :3] == (0x10, 0x20, 0xC0)).all()
            assert "mss" in source.description and xvfb in source.description
    finally:
        red.destroy()
        blue.destroy()
        xconn.sync()


@pytest.mark.xvfb
def test_size_change_through_randr(xvfb_factory) -> None:
    display = xvfb_factory(1024, 768)
    with MssSource(display) as source:
        assert source.grab().shape == (768, 1024, 4)
        resize(display, 640, 480)
        frame = source.grab()
        assert frame.shape == (480, 640, 4) and source.size == (640, 480)
        resize(display, 1024, 768)
        assert source.grab().shape == (768, 1024, 4) and source.size == (1024, 768)
        d = Xlib_display.Display(display)
        try:
            paint_window(d, 900, 700, 50, 40, 0x00FF00)
            assert wait_for(lambda: (source.grab()[700:740, 900:950, :3] == (0, 0xFF, 0)).all())
        finally:
            d.close()


@pytest.mark.xvfb
def test_display_that_dies_raises_capture_error(xvfb_factory) -> None:
    display = xvfb_factory(320, 240)
    number = display.lstrip(":")
    source = MssSource(display)
    try:
        source.grab()
        pid = int(Path(f"/tmp/.X{number}-lock").read_text().strip())
        os.kill(pid, signal.SIGTERM)  # the Xvfb this test's fixture started
        assert wait_for(lambda: not os.path.exists(f"/tmp/.X11-unix/X{number}"), 10)
        with pytest.raises(CaptureError) as info:
            for _ in range(3):
                source.grab()
        assert display in str(info.value) and "\n" not in str(info.value)
    finally:
        source.close()
        source.close()


@pytest.mark.xvfb
def test_cursor_shape_follows_the_pointer(xvfb: str, xconn) -> None:
    font = xconn.open_font("cursor")
    hand = font.create_glyph_cursor(font, 60, 61, (0, 0, 0), (65535, 65535, 65535))  # XC_hand2
    win = paint_window(xconn, 600, 400, 100, 100, 0x808080, cursor=hand)
    try:
        with MssSource(xvfb) as source:
            xconn.screen().root.warp_pointer(10, 10)
            xconn.sync()
            assert wait_for(lambda: source.cursor() is not None)
            wait_for(lambda: False, 0.2)  # let a pending cursor change arrive
            first = source.cursor()
            assert first is not None and first is source.cursor(), "unchanged cursor: no refetch"
            h, w = first.pixels.shape[:2]
            assert first.pixels.dtype == np.uint8 and first.pixels.shape[2] == 4
            assert 0 <= first.hot_x < w and 0 <= first.hot_y < h
            assert (first.pixels[..., 3] > 0).any()
            xconn.screen().root.warp_pointer(650, 450)
            xconn.sync()
            assert wait_for(lambda: source.cursor().serial != first.serial)
            second = source.cursor()
            assert second.pixels.shape != first.pixels.shape or not np.array_equal(second.pixels, first.pixels)
    finally:
        win.destroy()
        xconn.screen().root.warp_pointer(0, 0)
        xconn.sync()


def test_cursor_pixels_are_unpremultiplied() -> None:
    argb = [0xFF102030, 0x80400000, 0x00000000, 0x40101010]  # opaque, half red, transparent, quarter grey
    shape = cursor_from_argb(argb, 2, 2, 5, -1, serial=9)
    assert shape.hot_x == 1 and shape.hot_y == 0 and shape.serial == 9
    px = shape.pixels
    assert px[0, 0].tolist() == [0x30, 0x20, 0x10, 0xFF]
    assert px[0, 1].tolist() == [0, 0, 0x7F, 0x80]  # 0x40 * 255 // 0x80
    assert px[1, 0].tolist() == [0, 0, 0, 0]
    assert px[1, 1].tolist() == [0x3F, 0x3F, 0x3F, 0x40]
    with pytest.raises(ValueError):
        cursor_from_argb(argb, 3, 2, 0, 0, 1)
    with pytest.raises(ValueError):
        cursor_from_argb([], 0, 0, 0, 0, 1)


def test_no_display_is_a_clear_capture_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(CaptureError) as info:
        open_source()
    assert "no X display" in str(info.value) and "--display" in str(info.value)
    assert "synthetic:mixed" in str(info.value)
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    with pytest.raises(CaptureError) as info:
        open_source()
    assert "Wayland" in str(info.value) and "\n" not in str(info.value)


def test_unreachable_display_is_a_capture_error() -> None:
    display = unused_display()
    with pytest.raises(CaptureError) as info:
        open_source(display)
    message = str(info.value)
    assert display in message and "\n" not in message and "synthetic:mixed" in message


def test_probe_on_unreachable_display_exits_5_with_one_line() -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "agent", "probe", "--display", unused_display()], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 5
    assert proc.stderr.startswith("error: cannot open X display") and len(proc.stderr.splitlines()) == 1
    assert "Traceback" not in proc.stderr and proc.stdout == ""


@pytest.mark.xvfb
def test_damage_hint(xvfb: str, xconn) -> None:
    with MssSource(xvfb) as source:
        assert source.damaged() is True, "before any grab since asking, everything is news"
        source.grab()
        wait_for(lambda: False, 0.1)
        assert source.damaged() is False
        win = paint_window(xconn, 10, 10, 40, 30, 0x336699)
        try:
            assert wait_for(lambda: source.damaged() is True)
            assert (source.grab()[10:40, 10:50, :3] == (0x99, 0x66, 0x33)).all()
            assert source.damaged() is False
        finally:
            win.destroy()
            xconn.sync()
        assert wait_for(lambda: source.damaged() is True), "unmapping a window draws what was under it"

"""On a real Xvfb: sub-image grabs write exactly what X drew, where it drew it, and nothing else."""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import numpy as np
import pytest

from agent.capture.mss_source import MAX_DAMAGE_RECTS, MssSource, coalesce
from tests.integration.test_capture_mss import paint_window, wait_for


@contextlib.contextmanager
def _screen(xvfb_factory) -> Iterator[tuple[Any, MssSource]]:
    """A 640x480 Xvfb's X connection and a sub-image source on it."""
    from Xlib import display as xdisplay

    name = xvfb_factory(640, 480)
    d = xdisplay.Display(name)
    try:
        with MssSource(name) as source:
            if not source.sub_images:
                pytest.skip("no MIT-SHM on this Xvfb")
            yield d, source
    finally:
        d.close()


@contextlib.contextmanager
def _window(d: Any, source: MssSource) -> Iterator[None]:
    """A 40x30 window at (100, 50) in 0x336699, drawn and reported by DAMAGE."""
    win = paint_window(d, 100, 50, 40, 30, 0x336699)
    try:
        assert wait_for(lambda: source.damaged() is True)
        yield
    finally:
        win.destroy()


@pytest.mark.xvfb
def test_grab_into_writes_only_the_damage(xvfb_factory) -> None:
    with _screen(xvfb_factory) as (d, source):
        assert source.capture_path == "XShmGetImage"
        frame = np.zeros((480, 640, 4), np.uint8)
        assert source.grab_into(frame, [(0, 0, 640, 480)]) == [(0, 0, 640, 480)]
        truth = frame.copy()
        assert source.damaged() is not None
        source.grab_into(frame)  # forget the damage so far
        canvas = np.full_like(frame, 7)  # not the screen: only written rects may change
        with _window(d, source):
            rects = source.grab_into(canvas)
            assert rects and all(x <= 100 and y <= 50 and x + w >= 140 and y + h >= 80 for x, y, w, h in rects)
            assert (canvas[50:80, 100:140, :3] == (0x99, 0x66, 0x33)).all()
            outside = np.ones(frame.shape[:2], bool)
            for x, y, w, h in rects:
                outside[y:y + h, x:x + w] = False
            assert (canvas[outside] == 7).all(), "pixels outside the damage were written"
            assert source.grab_into(canvas) == [], "the damage was taken: nothing new"
            assert (truth[0, 0] == source.grab()[0, 0]).all()


@pytest.mark.xvfb
def test_grab_into_with_a_base_writes_and_returns_only_the_rows_that_changed(xvfb_factory) -> None:
    with _screen(xvfb_factory) as (d, source):
        base = np.zeros((480, 640, 4), np.uint8)
        source.grab_into(base, [(0, 0, 640, 480)])
        frame = base.copy()
        with _window(d, source):
            rects = source.grab_into(frame, [(0, 0, 640, 480)], base=base)  # the whole screen asked for
            rows = sorted({r for _, y, _, h in rects for r in range(y, y + h)})
            assert rows == list(range(50, 80)), "only the window's rows differ, so only they come back"
            assert np.array_equal(frame[..., :3], source.grab()[..., :3])


@pytest.mark.xvfb
def test_one_frame_capture_follows_a_real_display(xvfb_factory) -> None:
    # A big screen's capture (forced here on a small one): grabs go into copy-on-write scratch mappings
    # of the one frame, and the changes are written back into it.
    from agent.capture.shared_frame import SharedFrame
    from agent.service.capture_loop import CaptureLoop

    with _screen(xvfb_factory) as (d, source):
        loop = CaptureLoop(source, 30, on_frame=lambda *a: None, wanted=lambda: True, on_failure=lambda e: None,
                           one_frame_min_bytes=0)
        frame, _, _ = loop._grab(True, True, True)
        loop.write_back()
        loop.frame = frame
        assert isinstance(loop._pool, SharedFrame) and frame is loop._pool.current
        with _window(d, source):
            got, changes, _ = loop._grab(True, False)
            assert got is frame and changes.rects
            assert not (frame[50:80, 100:140, :3] == (0x99, 0x66, 0x33)).all(), "written back only when told"
            loop.write_back()
            assert (frame[50:80, 100:140, :3] == (0x99, 0x66, 0x33)).all()
            assert np.array_equal(frame[..., :3], source.grab()[..., :3])


def test_coalesce_covers_every_rect_within_the_limit() -> None:
    rects = [(x * 10, y * 7, 5, 3) for y in range(30) for x in range(7)]
    merged = coalesce(rects, MAX_DAMAGE_RECTS)
    assert len(merged) <= MAX_DAMAGE_RECTS
    for x, y, w, h in rects:
        assert any(mx <= x and my <= y and x + w <= mx + mw and y + h <= my + mh for mx, my, mw, mh in merged)
    assert coalesce(rects[:3], MAX_DAMAGE_RECTS) == rects[:3]


@pytest.mark.xvfb
def test_damage_is_taken_over_the_grabbers_connection(xvfb_factory) -> None:
    """DamageSubtract + FetchRegion ride the XShm connection (ordered before its grabs, no python-xlib
    round trip); the hint on the watch connection still reports the next drawing."""
    from Xlib import display as xdisplay

    name = xvfb_factory(320, 240)
    d = xdisplay.Display(name)
    with MssSource(name) as source:
        assert source.sub_images and source._shm.damage_ready
        frame = np.zeros((240, 320, 4), np.uint8)
        source.grab_into(frame, [(0, 0, 320, 240)])
        assert source.damaged() is not None
        source.take_damage()
        fetches = []
        source._watch.damage.take_rects = lambda: fetches.append(1)  # the python-xlib path must stay unused
        win = paint_window(d, 30, 40, 50, 20, 0x102030)
        try:
            assert wait_for(lambda: source.damaged() is True)
            rects = source.take_damage()
            assert rects and all(x <= 30 and y <= 40 and x + w >= 80 and y + h >= 60 for x, y, w, h in rects)
            assert source.damaged() is False and source.take_damage() == []
            canvas = np.full_like(frame, 7)
            assert source.grab_into(canvas, damage=rects) == rects
            assert (canvas[40:60, 30:80, :3] == (0x30, 0x20, 0x10)).all()
            win.configure(x=200)
            d.sync()
            assert wait_for(lambda: source.damaged() is True), "the hint still fires after a take"
            assert source.take_damage()
            assert not fetches
        finally:
            win.destroy()
            d.close()


@pytest.mark.xvfb
def test_damage_events_come_to_the_grabbers_connection_not_to_python_xlib(xvfb_factory) -> None:
    """The DAMAGE object is the grabber's own: drawing makes its socket readable and is read there, in C;
    the watch's python-xlib connection parses no DamageNotify (it still brings the cursor's changes)."""
    import select

    from Xlib import display as xdisplay

    name = xvfb_factory(320, 240)
    d = xdisplay.Display(name)
    with MssSource(name) as source:
        assert source._shm.owns_damage
        grabber_fd, watch_fd = source.hint_fileno()
        assert watch_fd == source._watch._d.fileno() and grabber_fd != watch_fd
        frame = np.zeros((240, 320, 4), np.uint8)
        source.grab_into(frame, [(0, 0, 320, 240)])
        source.damaged()
        source.take_damage()
        assert source.damaged() is False
        parsed = []
        note = source._watch.damage.note_event
        source._watch.damage.note_event = lambda event: (parsed.append(event.type), note(event))
        win = paint_window(d, 30, 40, 50, 20, 0x102030)
        try:
            assert select.select([grabber_fd], [], [], 3)[0], "drawing makes the grabber's socket readable"
            assert wait_for(lambda: source.damaged() is True)
            rects = source.take_damage()
            assert rects and all(x <= 30 and y <= 40 and x + w >= 80 and y + h >= 60 for x, y, w, h in rects)
            assert source.damaged() is False
            assert source._watch.damage._event_type not in parsed
        finally:
            win.destroy()
            d.close()


@pytest.mark.xvfb
def test_a_damage_object_the_grabber_cannot_use_leaves_it_on_python_xlib(xvfb_factory) -> None:
    from agent.capture.xshm import XShmGrabber

    name = xvfb_factory(64, 48)
    grabber = XShmGrabber.open(name)
    assert grabber is not None
    try:
        assert grabber.use_damage(0x3FFFFFF) is False  # no such DAMAGE object: BadDamage on the trial subtract
        assert not grabber.damage_ready
        with pytest.raises(OSError):
            grabber.take_damage()
        frame = np.zeros((48, 64, 4), np.uint8)
        grabber.grab(frame, [(0, 0, 64, 48)])  # the connection survived the refused request
    finally:
        grabber.close()


@pytest.mark.xvfb
def test_without_the_grabbers_damage_python_xlib_takes_it(xvfb_factory, monkeypatch) -> None:
    from Xlib import display as xdisplay

    from agent.capture.xshm import XShmGrabber

    monkeypatch.setattr(XShmGrabber, "use_damage", lambda self, damage: False)
    name = xvfb_factory(200, 100)
    d = xdisplay.Display(name)
    with MssSource(name) as source:
        assert source.sub_images and not source._shm.damage_ready
        frame = np.zeros((100, 200, 4), np.uint8)
        source.grab_into(frame, [(0, 0, 200, 100)])
        assert source.damaged() is not None
        source.take_damage()
        win = paint_window(d, 20, 30, 40, 10, 0x445566)
        try:
            assert wait_for(lambda: source.damaged() is True)
            rects = source.take_damage()
            assert rects and all(x <= 20 and y <= 30 and x + w >= 60 and y + h >= 40 for x, y, w, h in rects)
            assert source.grab_into(frame, damage=rects) == rects
            assert (frame[30:40, 20:60, :3] == (0x66, 0x55, 0x44)).all()
        finally:
            win.destroy()
            d.close()


def _damage_objects(d: Any) -> int:
    """DAMAGE objects on the server, all clients together (X-Resource)."""
    damage = d.intern_atom("DamageExt")  # the resource type the DAMAGE extension registers
    return sum(r.count for client in d.res_query_clients().clients
               for r in d.res_query_client_resources(client.resource_base).types if r.resource_type == damage)


@pytest.mark.xvfb
def test_a_damage_object_the_grabber_made_but_cannot_use_is_destroyed(xvfb_factory) -> None:
    from Xlib import display as xdisplay

    from agent.capture.xshm import XShmGrabber

    name = xvfb_factory(64, 48)
    d = xdisplay.Display(name)
    grabber = XShmGrabber.open(name)
    assert grabber is not None
    try:
        assert d.has_extension("X-Resource")
        before = _damage_objects(d)
        grabber.use_damage = lambda damage: False  # e.g. XFixes older than 2 on this server
        assert grabber.own_damage() is False and not grabber.owns_damage
        assert _damage_objects(d) == before
        del grabber.use_damage
        assert grabber.own_damage() is True  # the working case makes one, and keeps it
        assert _damage_objects(d) == before + 1
    finally:
        grabber.close()
        d.close()

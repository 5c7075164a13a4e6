"""The capture loop sleeps on X DAMAGE while idle, and still sees every change (hashes confirm)."""
from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess

import numpy as np
import pytest

from agent.capture import MssSource
from agent.service.capture_loop import HINT_CONFIRM_INTERVAL
from agent.service.rfb_service import RFBService
from agent.viewer.rfb_client import open_rfb

pytestmark = pytest.mark.xvfb


async def _serve(display: str):
    source = MssSource(display)
    service = RFBService(source, fps=30)
    await service.start()
    server = await asyncio.start_server(service.serve_connection, "127.0.0.1", 0)
    return source, service, server


async def test_idle_screen_is_not_grabbed_but_changes_arrive(xvfb_factory):
    display = xvfb_factory(320, 240)
    env = dict(os.environ, DISPLAY=display)
    source, service, server = await _serve(display)
    try:
        assert source.hint_fileno() is not None, "Xvfb has DAMAGE: the hint must be available"
        client = await open_rfb("127.0.0.1", server.sockets[0].getsockname()[1])
        await client.update(incremental=False)
        before = service.frames_captured
        idle_seconds = 2.5
        with pytest.raises(asyncio.TimeoutError):
            await client.update(incremental=True, timeout=idle_seconds)
        grabs = service.frames_captured - before
        # an idle screen is grabbed only to confirm the hint, not at the frame rate
        assert grabs <= idle_seconds / HINT_CONFIRM_INTERVAL + 2, grabs
        subprocess.run(["xsetroot", "-solid", "#ff0000"], env=env, check=True)
        for _ in range(20):
            await client.update(incremental=True, timeout=5)
            if (client.framebuffer[:, :, :3] == np.array([0, 0, 255], np.uint8)).all():
                break
        assert (client.framebuffer[:, :, :3] == np.array([0, 0, 255], np.uint8)).all()
        await client.close()
    finally:
        server.close()
        await service.close()
        source.close()


async def test_the_reader_on_x_stays_between_waits_and_drawing_still_wakes_the_loop(xvfb_factory):
    """The X11 source's sockets keep one reader from wait to wait (no poll handle made and dropped per typed
    key); each drawing still ends a wait and is grabbed, and the reader is off while a worker thread grabs."""
    from Xlib import display as xdisplay

    from tests.integration.test_capture_mss import paint_window

    display = xvfb_factory(320, 240)
    loop = asyncio.get_running_loop()
    added: list[int] = []
    add_reader = loop.add_reader
    loop.add_reader = lambda fd, *args: (added.append(fd), add_reader(fd, *args))[1]
    source, service, server = await _serve(display)
    d = xdisplay.Display(display)
    try:
        assert source.hint_drains and len(source.hint_fileno()) == 2
        client = await open_rfb("127.0.0.1", server.sockets[0].getsockname()[1])
        await client.update(incremental=False)
        await asyncio.sleep(0.3)
        added.clear()
        waits = service.frames_skipped
        windows = []
        for i in range(6):
            windows.append(paint_window(d, 20 + 40 * i, 30, 30, 20, 0x203040 + 0x10 * i))
            update = await client.update(incremental=True, timeout=5)
            assert update is not None
            await asyncio.sleep(0.15)
        assert (client.framebuffer[30:50, 220:250, :3] == np.array([0x90, 0x30, 0x20], np.uint8)).all()  # the last window
        waits = service.frames_skipped - waits
        # a worker thread's confirming grab (once a second) takes the reader off; nothing else does
        assert waits >= 6 and len(added) <= 2 * (2 + 2), (waits, added)
        for win in windows:
            win.destroy()
        await client.close()
    finally:
        d.close()
        server.close()
        await service.close()
        source.close()
        loop.add_reader = add_reader



async def test_a_cursor_change_without_drawing_reaches_the_viewer_before_any_confirming_grab(xvfb_factory,
                                                                                             monkeypatch):
    """The pointer's shape changing (over a link, a window's border) draws nothing on the screen: X
    reports it as cursor news alone. The viewer still gets the new shape at once, without a grab, not
    with the next drawing or confirming grab (here a minute away: only the news itself can bring it)."""
    from Xlib import display as xdisplay

    from agent.rfb.messages import CursorChanged
    from agent.service import capture_loop
    from tests.integration.test_capture_mss import paint_window

    monkeypatch.setattr(capture_loop, "HINT_CONFIRM_INTERVAL", 60.0)
    display = xvfb_factory(320, 240)
    d = xdisplay.Display(display)  # the windows' client: their cursors live as long as it does
    font = d.open_font("cursor")
    cursors = [font.create_glyph_cursor(font, glyph, glyph + 1, (0, 0, 0), (65535, 65535, 65535))
               for glyph in (60, 150)]  # XC_hand2, XC_watch
    windows = [paint_window(d, 20, 20, 100, 100, 0x808080, cursor=cursors[0]),
               paint_window(d, 180, 20, 100, 100, 0x808080, cursor=cursors[1])]
    d.screen().root.warp_pointer(300, 200)  # on the root window: its own cursor
    d.sync()
    source, service, server = await _serve(display)
    client = None
    try:
        client = await open_rfb("127.0.0.1", server.sockets[0].getsockname()[1])
        await client.update(incremental=False)
        await asyncio.sleep(0.3)
        shapes = []
        for x, y in ((70, 70), (230, 70), (300, 200)):
            client.events.clear()
            captured = service.frames_captured
            d.screen().root.warp_pointer(x, y)
            d.sync()
            shape = None
            for _ in range(5):  # each update answers one request: a bounded number of them
                with contextlib.suppress(asyncio.TimeoutError):  # no update: nothing brought the shape
                    await client.update(incremental=True, timeout=1)
                shape = next((e for e in client.events if isinstance(e, CursorChanged)), None)
                if shape is not None:
                    break
            assert shape is not None, f"the cursor at {x},{y} never reached the viewer"
            assert service.frames_captured == captured  # the shape alone: no grab of the screen for it
            shapes.append((shape.pixels.shape, shape.hot_x, shape.hot_y, shape.pixels.tobytes()))
        assert len(set(shapes)) == 3
    finally:
        if client is not None:
            await client.close()
        for win in windows:
            win.destroy()
        d.close()
        server.close()
        await service.close()
        source.close()


async def test_a_cursor_x_will_not_show_is_asked_for_once_not_again_and_again(xvfb_factory):
    """X may refuse a new cursor's image (Xvfb does, with BadAccess, for a root cursor whose client has
    left: ``xsetroot -cursor_name``), and then tells of a "new" cursor again after each refusal. The loop
    asks once, not again and again: at first it spun (10,000 asks a second), then asked at the frame rate."""
    display = xvfb_factory(320, 240)
    env = dict(os.environ, DISPLAY=display)
    subprocess.run(["xdotool", "mousemove", "100", "100"], env=env, check=True)
    source, service, server = await _serve(display)
    asked = []
    cursor = source.cursor
    source.cursor = lambda: (asked.append(1), cursor())[1]
    client = None
    try:
        client = await open_rfb("127.0.0.1", server.sockets[0].getsockname()[1])
        await client.update(incremental=False)
        await asyncio.sleep(0.3)
        asked.clear()
        subprocess.run(["xsetroot", "-cursor_name", "watch"], env=env, check=True)
        await asyncio.sleep(1.0)
        assert len(asked) <= 4, len(asked)  # the news once, a grab or two (confirming), not a spin
    finally:
        if client is not None:
            await client.close()
        server.close()
        await service.close()
        source.close()

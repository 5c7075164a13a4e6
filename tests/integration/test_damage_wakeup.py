"""The capture loop sleeps on X DAMAGE while idle, and still sees every change (hashes confirm)."""
from __future__ import annotations

import asyncio
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

"""On a real X display, a service that keeps one frame (as it does on a 4K screen; forced here on a small
one) shows the viewer exactly the screen while a terminal scrolls and its window is dragged about."""
from __future__ import annotations

import asyncio
import os
import subprocess

import numpy as np
import pytest

from agent.capture import MssSource
from agent.capture.shared_frame import SharedFrame
from agent.rfb import constants as C
from agent.service.rfb_service import RFBService
from agent.viewer.rfb_client import open_rfb
from tests.support.tools import need

pytestmark = pytest.mark.xvfb

ENCODINGS = [C.ENC_COPYRECT, C.ENC_TIGHT, C.ENC_ZRLE, C.ENC_RAW]


async def test_one_frame_capture_shows_the_exact_screen_through_scrolls_and_drags(xvfb_factory, tmp_path):
    xterm, xdotool = need("xterm", "xdotool")
    display = xvfb_factory(800, 600)
    env = dict(os.environ, DISPLAY=display)
    stop = tmp_path / "stop"
    term = subprocess.Popen([xterm, "-geometry", "70x20+20+20", "+bc", "-e", "sh", "-c",
                             f"i=0; while [ ! -e {stop} ]; do i=$((i+1)); echo line $i $(date +%N); sleep 0.01; done; "
                             "echo done; sleep 600"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    source = MssSource(display)
    service = RFBService(source, fps=30, one_frame_min_bytes=0)  # every screen counts as big
    await service.start()
    server = await asyncio.start_server(service.serve_connection, "127.0.0.1", 0)
    try:
        window = subprocess.run([xdotool, "search", "--sync", "--class", "xterm"], env=env, check=True,
                                capture_output=True, text=True, timeout=10).stdout.split()[0]
        client = await open_rfb("127.0.0.1", server.sockets[0].getsockname()[1], encodings=ENCODINGS)
        await client.update(incremental=False)
        loop = asyncio.get_running_loop()
        for step in range(12):  # the terminal scrolls all along; its window moves every other step
            if step % 2:
                await asyncio.to_thread(subprocess.run, [xdotool, "windowmove", window, str(20 + 30 * step),
                                                         str(20 + 15 * step)], env=env, check=True, timeout=10)
            deadline = loop.time() + 0.3
            while loop.time() < deadline:
                await client.update(timeout=5)
        stop.touch()  # the output ends: the screen comes to rest
        await asyncio.sleep(0.5)
        for _ in range(200):  # incremental updates until nothing more comes
            try:
                await client.update(timeout=1.5)
            except asyncio.TimeoutError:
                break
        assert isinstance(service._capture._pool, SharedFrame) and service._capture.frame is service._capture._pool.current
        with MssSource(display) as truth:
            screen = truth.grab()
        assert np.array_equal(service._capture.frame[..., :3], screen[..., :3]), "the one frame is the screen"
        assert np.array_equal(client.framebuffer[..., :3], screen[..., :3]), "the viewer shows the screen"
        await client.close()
    finally:
        term.kill()
        term.wait(10)
        server.close()
        await service.close()
        source.close()

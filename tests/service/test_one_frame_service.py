"""A service keeping one frame (a big screen's SharedFrame) serves exact pictures while the screen
scrolls and changes under updates being encoded: the capture writes the frame only between updates."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from agent.capture.shared_frame import SharedFrame
from agent.rfb import constants as C
from agent.service.rfb_service import RFBService
from agent.viewer.rfb_client import AsyncRFBClient
from tests.service.test_capture_loop import FakeDamageScreen
from tests.support.pipes import memory_pipe

ENCODINGS = [C.ENC_COPYRECT, C.ENC_ZRLE, C.ENC_RAW]


@pytest.mark.parametrize("seed", range(4))
def test_a_viewer_sees_the_exact_screen_while_one_frame_is_written_in_place(seed):
    async def main() -> None:
        # big enough that updates are encoded, and changes written back, in worker threads; without the
        # gate about half of these runs end with the viewer's picture wrong (checked)
        source = FakeDamageScreen(640, 480, seed)
        service = RFBService(source, fps=120, one_frame_min_bytes=0)  # every screen is "big"
        await service.start()
        (sr, sw), (cr, cw) = memory_pipe()
        task = asyncio.ensure_future(service.serve_connection(sr, sw))
        client = await AsyncRFBClient.handshake(cr, cw, encodings=ENCODINGS)
        await client.update(incremental=False)
        rng = np.random.default_rng(seed)
        stop = asyncio.Event()

        async def change() -> None:  # scrolls (CopyRects) and drawing, while updates are encoded
            while not stop.is_set():
                if rng.integers(0, 4):
                    source.scroll(int(rng.integers(1, 30)))
                else:
                    x, y = int(rng.integers(0, 620)), int(rng.integers(0, 460))
                    source.draw((x, y, int(rng.integers(1, 640 - x)), int(rng.integers(1, 480 - y))))
                await asyncio.sleep(float(rng.uniform(0, 0.004)))

        changer = asyncio.ensure_future(change())
        for _ in range(60):
            await client.update()
        stop.set()
        await changer
        frame = service._capture.frame
        assert isinstance(service._capture._pool, SharedFrame) and frame is service._capture._pool.current
        for _ in range(100):  # the screen is still now: incremental updates until nothing more comes
            try:
                await client.update(timeout=0.5)
            except asyncio.TimeoutError:
                break
        assert np.array_equal(frame, source.screen), "the one frame is the screen"
        assert np.array_equal(client.framebuffer[..., :3], source.screen[..., :3]), "the viewer shows the screen"
        await client.close()
        await asyncio.wait_for(task, 5)
        await service.close()

    asyncio.run(main())

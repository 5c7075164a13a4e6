"""The confirming grabs' pace: slower while DAMAGE proves right, back to full speed at its first miss."""
from __future__ import annotations

import asyncio
from typing import Optional, Sequence

import numpy as np
import pytest

from agent.service import capture_loop
from agent.service.confirm_pace import CONFIRM_BANDS, MAX_SLOWDOWN, ConfirmPace, damage_missed
from tests.service.test_capture_loop import FakeDamageScreen, _loop

Rect = tuple[int, int, int, int]


class TakingDamageScreen(FakeDamageScreen):
    """Hands its damage over first (``take_damage``), as the X11 source does."""

    def take_damage(self) -> list[Rect]:
        taken, self.damage = self.damage, []
        return taken

    def grab_into(self, frame: np.ndarray, also: Sequence[Rect] = (), base: Optional[np.ndarray] = None,
                  damage: Optional[Sequence[Rect]] = None) -> Optional[list[Rect]]:
        self.damage = list(damage or ())
        return super().grab_into(frame, also, base)


def test_clean_rounds_slow_the_pace_and_a_miss_restores_it():
    pace = ConfirmPace(1.0)
    assert pace.interval(CONFIRM_BANDS) == 1.0
    for slowdown in (2, 4, MAX_SLOWDOWN, MAX_SLOWDOWN):
        for _ in range(CONFIRM_BANDS - 1):
            pace.confirmed(False, CONFIRM_BANDS)
        pace.confirmed(None, CONFIRM_BANDS)  # unknown: counts neither way
        pace.confirmed(False, CONFIRM_BANDS)  # the round's last band
        assert pace.slowdown == slowdown
    assert pace.interval(CONFIRM_BANDS) == MAX_SLOWDOWN
    assert pace.interval(2 * CONFIRM_BANDS) == MAX_SLOWDOWN / 2  # smaller bands, more often
    pace.confirmed(True, CONFIRM_BANDS)
    assert pace.interval(CONFIRM_BANDS) == 1.0
    for _ in range(CONFIRM_BANDS - 1):
        pace.confirmed(False, CONFIRM_BANDS)
    assert pace.slowdown == 1, "a round counts from the miss on"


def test_a_change_is_missed_only_outside_everything_x_reported():
    assert damage_missed([(0, 0, 16, 16)], [(8, 8, 1, 1)]) is False
    assert damage_missed([(0, 0, 16, 16), (40, 0, 8, 8)], [(8, 8, 1, 1)]) is True
    assert damage_missed([], []) is False
    assert damage_missed([(0, 0, 1, 1)], None) is None


def test_a_confirming_band_tells_drawing_x_reported_from_drawing_it_missed():
    source = TakingDamageScreen(64, 64)
    loop = _loop(source)
    loop.frame = loop._grab(True, False)[0]  # the first frame (the run loop keeps it so)
    source.draw((4, 4, 8, 8))  # in the first band, reported
    loop.frame = loop._grab(True, True)[0]
    assert loop._missed is False
    loop._band = 0
    loop._missed = None
    source.draw((4, 4, 8, 8), report=False)  # a GL client X did not report
    frame, changes, _ = loop._grab(True, True)
    assert loop._missed is True and changes.rects and np.array_equal(frame, source.screen)


@pytest.mark.xvfb
async def test_an_idle_screen_is_confirmed_less_and_less_often(xvfb_factory, monkeypatch):
    from agent.capture import MssSource
    from agent.service.rfb_service import RFBService
    from agent.viewer.rfb_client import open_rfb

    monkeypatch.setattr(capture_loop, "HINT_CONFIRM_INTERVAL", 0.05)  # a band every 50 ms at first
    display = xvfb_factory(320, 240)
    source = MssSource(display)
    service = RFBService(source, fps=30)
    await service.start()
    server = await asyncio.start_server(service.serve_connection, "127.0.0.1", 0)
    try:
        client = await open_rfb("127.0.0.1", server.sockets[0].getsockname()[1])
        await client.update(incremental=False)
        before = service.frames_captured
        await asyncio.sleep(2.0)
        grabs = service.frames_captured - before
        # at the full pace 40 grabs; slowing: 4 at 50 ms, 4 at 100 ms, then one each 200 ms (about 15)
        assert 8 <= grabs <= 25, grabs
        assert service._capture._pace.slowdown == MAX_SLOWDOWN
        await client.close()
    finally:
        server.close()
        await service.close()
        source.close()

"""CaptureLoop on a source that hands over its damage first: small damage (typing) is grabbed on the
event loop, large damage and confirming grabs in the worker thread, and every frame stays exact."""
from __future__ import annotations

import asyncio
import threading
from typing import Optional, Sequence

import numpy as np
import pytest

from agent.service.capture_loop import INLINE_MAX_PIXELS, CaptureLoop
from tests.service.test_capture_loop import FakeDamageScreen
from tests.support import reference as ref

Rect = tuple[int, int, int, int]


class TakingScreen(FakeDamageScreen):
    """FakeDamageScreen with ``take_damage``, recording on which thread each grab ran and what it wrote."""

    def __init__(self, width: int, height: int) -> None:
        super().__init__(width, height)
        self.grabs: list[tuple[int, list[Rect]]] = []  # (thread ident, rects written)
        self.refuse = 0  # grab_into calls to refuse (returning None, as a resize does)

    def take_damage(self) -> list[Rect]:
        rects, self.damage = self.damage, []
        return rects

    def grab_into(self, frame: np.ndarray, also: Sequence[Rect] = (),
                  damage: Sequence[Rect] | None | bool = False,
                  base: Optional[np.ndarray] = None) -> Optional[list[Rect]]:
        taken = self.take_damage() if damage is False else list(damage or [])
        if self.refuse:
            self.refuse -= 1
            return None
        rects = taken + list(also)
        for x, y, w, h in rects:
            frame[y:y + h, x:x + w] = self.screen[y:y + h, x:x + w]
        self.grabs.append((threading.get_ident(), rects))
        return rects


async def _settle(loop: CaptureLoop, count: int, timeout: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while loop.frames_captured < count and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.005)
    assert loop.frames_captured >= count, "the loop did not grab the drawing"


def test_small_damage_is_grabbed_inline_and_large_damage_in_the_worker_thread():
    source = TakingScreen(320, 200)
    shown: list[tuple[np.ndarray, np.ndarray]] = []  # (frame, what a viewer reconstructs)

    def on_frame(frame, changes, cursor):
        previous = shown[-1][1] if shown else None
        if previous is None or changes is None:
            shown.append((frame, frame.copy()))
        else:
            shown.append((frame, ref.apply_changes(previous, frame, changes.copies, changes.rects)))

    async def scenario() -> list[tuple[str, bool]]:
        main = threading.get_ident()
        loop = CaptureLoop(source, 200, on_frame=on_frame, wanted=lambda: True, on_failure=lambda e: None)
        loop.start()
        await _settle(loop, 1)  # the first frame: a whole grab, in the worker thread
        seen: list[tuple[str, bool]] = []
        for kind, rect in [("glyph", (10, 10, 8, 14)), ("glyph", (18, 10, 8, 14)), ("page", (0, 0, 320, 200)),
                           ("glyph", (26, 10, 8, 14)), ("glyph", (34, 10, 8, 14))]:
            count = loop.frames_captured
            before = len(source.grabs)
            source.draw(rect)
            loop.wake()
            await _settle(loop, count + 1)
            assert len(source.grabs) == before + 1
            seen.append((kind, source.grabs[-1][0] == main))
            assert np.array_equal(loop.frame, source.screen)
        await loop.close()
        return seen

    seen = asyncio.run(scenario())
    assert 8 * 14 <= INLINE_MAX_PIXELS < 320 * 200
    assert seen == [("glyph", True), ("glyph", True), ("page", False),
                    ("glyph", False),  # right after large damage, the next is taken in the thread
                    ("glyph", True)], seen
    for frame, rebuilt in shown:
        assert np.array_equal(frame, rebuilt), "copies then rects must give the new frame"


def test_taken_damage_that_sub_images_cannot_serve_is_regrabbed_whole_in_the_worker_thread():
    source = TakingScreen(160, 120)

    async def scenario() -> None:
        main = threading.get_ident()
        loop = CaptureLoop(source, 200, on_frame=lambda *a: None, wanted=lambda: True, on_failure=lambda e: None)
        loop.start()
        await _settle(loop, 1)
        count, before = loop.frames_captured, len(source.grabs)
        source.refuse = 1  # the inline grab_into fails after its damage was taken
        source.draw((5, 5, 6, 10))
        loop.wake()
        await _settle(loop, count + 1)
        assert len(source.grabs) == before + 1 and source.full_grabs == 0, "no full grab() on the event loop"
        thread, rects = source.grabs[-1]
        assert thread != main and (0, 0, 160, 120) in rects, "the lost damage is covered by a whole grab"
        assert np.array_equal(loop.frame, source.screen)
        await loop.close()

    asyncio.run(scenario())


class HintedFullFrameScreen(FakeDamageScreen):
    """A source with a damage hint but no sub-images (as GNOME's): input must still wake the loop."""

    sub_images = False


def test_input_wakes_the_loop_only_where_it_forces_a_grab():
    async def waits_after_input(source: FakeDamageScreen) -> bool:
        loop = CaptureLoop(source, 50, on_frame=lambda *a: None, wanted=lambda: True, on_failure=lambda e: None)
        loop.start()
        await _settle(loop, 1)
        await asyncio.sleep(0.05)  # idle: the loop waits for damage (the fake has no fd: short sleeps)
        loop._waits._waiter = asyncio.get_running_loop().create_future()  # stands for a pending wait
        waiter = loop._waits._waiter
        loop.note_input()
        woken = waiter.done()
        loop._waits._waiter = None
        await loop.close()
        return woken

    assert asyncio.run(waits_after_input(TakingScreen(64, 48))) is False, "X's damage report wakes a sub-image loop"
    assert asyncio.run(waits_after_input(HintedFullFrameScreen(64, 48))) is True


@pytest.mark.parametrize("churn_fps", [None, 0])
def test_a_churning_area_is_grabbed_a_few_times_a_second_while_a_typed_glyph_goes_at_once_and_nothing_is_lost(
        churn_fps):
    """With churn_fps=0 (``--churn-fps 0``) the log is grabbed at the loop's full rate instead."""
    from agent.service import churn_damage as CD

    source = TakingScreen(480, 200)
    # the log is larger than INLINE_MAX_PIXELS: a release of it is grabbed in the worker thread
    log_area, glyphs = (160, 0, 320, 200), [(10 + 8 * i, 10, 8, 14) for i in range(6)]
    assert log_area[2] * log_area[3] > INLINE_MAX_PIXELS

    def churn_grabs(since: int) -> int:
        return sum(any(r[0] >= 160 for r in rects) for _, rects in source.grabs[since:])

    busy_from = None
    untaken: list[bool] = []
    published: list[tuple[list, list]] = []  # (rects, churn) of the frames published once the log is busy

    def on_frame(frame, changes, cursor) -> None:
        if busy_from is not None and changes.rects:
            published.append((list(changes.rects), list(changes.churn)))

    async def scenario() -> tuple[int, list[float], int]:
        nonlocal busy_from
        aio = asyncio.get_running_loop()
        extra = {} if churn_fps is None else {"churn_fps": churn_fps}
        loop = CaptureLoop(source, 100, on_frame=on_frame, wanted=lambda: True, on_failure=lambda e: None, **extra)
        grab = loop._grab

        def counting_grab(force=True, confirm=True, whole=False, damage=False):
            if busy_from is not None and damage is False and not confirm:
                untaken.append(damage)  # a thread hop only to take damage that turns out held again
            return grab(force, confirm, whole, damage)

        loop._grab = counting_grab
        loop.start()
        await _settle(loop, 1)
        end = aio.time() + CD.BUSY_FOR + 1.3
        echoes: list[float] = []
        typed_at = aio.time() + CD.BUSY_FOR + 0.1
        while aio.time() < end:  # the log redraws every 10 ms; a glyph is typed every 150 ms
            source.draw(log_area)
            now = aio.time()
            if busy_from is None and now > typed_at - 0.05:
                busy_from = len(source.grabs)
            if glyphs and now >= typed_at:
                glyph = glyphs.pop(0)
                source.draw(glyph)
                drawn = now
                while not np.array_equal(loop.frame[10:24, glyph[0]:glyph[0] + 8],
                                         source.screen[10:24, glyph[0]:glyph[0] + 8]):
                    assert aio.time() - drawn < 1.0, "the typed glyph never arrived"
                    await asyncio.sleep(0.002)
                echoes.append(aio.time() - drawn)
                typed_at = now + 0.15
            await asyncio.sleep(0.01)
        churned = churn_grabs(busy_from)
        await asyncio.sleep(CD.HELD_INTERVAL + 0.2)  # the log stops: what was held arrives
        held = np.array_equal(loop.frame, source.screen)
        await loop.close()
        return churned, echoes, held

    churned, echoes, exact = asyncio.run(scenario())
    assert exact, "held damage is grabbed once the log stops"
    assert len(echoes) == 6 and max(echoes) < CD.HELD_INTERVAL, echoes
    # about 1.2 s of a busy log at 100 frames a second: every HELD_INTERVAL, not every frame
    releases = [(rects, churn) for rects, churn in published if any(r[0] >= 160 for r in rects)]
    assert releases and not any(c[0] < 64 for _, churn in published for c in churn), "a typed glyph is no churn"
    if churn_fps is None:
        assert 1 <= churned <= 1.2 / CD.HELD_INTERVAL + 3, churned
        assert not untaken, "after a release, the damage held again is taken on the loop, not in a thread"
        # the updater's ActivityMap learns which changes were held: they are never a key's echo
        assert all(churn and all(c[0] >= 160 - CD.TILE for c in churn) for _, churn in releases[1:]), releases
    else:
        assert churned > 3 * (1.2 / CD.HELD_INTERVAL + 3), churned
        assert all(churn == [] for _, churn in published), "nothing is held with --churn-fps 0"

"""FramePool: a buffer is reused only when nobody else holds it, and always comes back equal to the current frame."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.capture.frame_pool import FramePool


def _frame(value: int = 0, shape=(48, 64, 4)) -> np.ndarray:
    return np.full(shape, value, np.uint8)


def _edit(rng: np.random.Generator, buf: np.ndarray) -> list[tuple[int, int, int, int]]:
    h, w = buf.shape[:2]
    rects = []
    for _ in range(int(rng.integers(0, 4))):
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        rw, rh = int(rng.integers(1, w - x + 1)), int(rng.integers(1, h - y + 1))
        buf[y:y + rh, x:x + rw] = rng.integers(0, 256, (rh, rw, 4), dtype=np.uint8)
        rects.append((x, y, rw, rh))
    return rects


def test_a_held_frame_is_never_handed_out_again():
    pool = FramePool(max_pooled=3)
    pool.adopt(_frame())
    held = [pool.current]
    for i in range(6):
        buf = pool.take()
        assert not any(buf is h for h in held), "a frame someone holds came back to be written"
        assert not np.shares_memory(buf, held[-1])
        buf[0, 0] = i + 1
        pool.commit(buf, [(0, 0, 1, 1)])
        held.append(buf)  # a viewer keeps every frame: the pool must allocate
    assert pool.allocated == 6


def test_a_released_buffer_is_reused_and_only_three_exist_in_steady_state():
    pool = FramePool()
    pool.adopt(_frame())
    for i in range(50):
        buf = pool.take()
        buf[i % 48, 0] = i
        pool.commit(buf, [(0, i % 48, 1, 1)])
        viewer_frame = pool.current  # the viewer drops the previous frame when it gets the next  # noqa: F841
    assert pool.allocated <= 2 and pool.nbytes() <= 3 * _frame().nbytes


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), steps=st.integers(1, 30), holders=st.integers(0, 2))
def test_taken_buffer_equals_the_current_frame(seed, steps, holders):
    rng = np.random.default_rng(seed)
    pool = FramePool()
    pool.adopt(rng.integers(0, 256, (37, 53, 4), dtype=np.uint8))
    kept: list[np.ndarray] = []
    for _ in range(steps):
        buf = pool.take()
        assert np.array_equal(buf, pool.current)
        rects = _edit(rng, buf)
        if rects and rng.random() < 0.8:
            pool.commit(buf, rects)
            kept.append(buf)
            kept = kept[-holders:] if holders else []  # viewers holding the last few frames
        else:
            if rects:  # written but equal to current after all: undo, then release
                np.copyto(buf, pool.current)
            pool.release(buf)


def test_a_discarded_buffer_is_rebuilt_whole():
    pool = FramePool()
    first = _frame(1)
    pool.adopt(first)
    buf = pool.take()
    buf[:] = 99  # a grab failed half way
    pool.discard(buf)
    del buf
    again = pool.take()
    assert np.array_equal(again, first)


def test_a_new_size_drops_the_old_buffers():
    pool = FramePool()
    pool.adopt(_frame(1))
    pool.commit(pool.take(), [])
    pool.adopt(_frame(2, (10, 20, 4)))
    assert pool.take().shape == (10, 20, 4)


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _slow_spell(pool: FramePool, clock: _Clock) -> None:
    """A reader holds each frame over the next grab: the pool needs a third buffer."""
    held = None
    for i in range(4):
        buf = pool.take()
        buf[0, i] = i + 1
        pool.commit(buf, [(i, 0, 1, 1)])
        held = buf if i % 2 == 0 else held  # noqa: F841 - the slow encoder's frame
        clock.now += 0.1


def test_a_third_buffer_is_dropped_once_the_slow_reader_is_gone():
    clock = _Clock()
    pool = FramePool(clock=clock)
    pool.adopt(_frame())
    _slow_spell(pool, clock)
    assert len(pool._buffers) == 3 and pool.allocated == 2
    for i in range(20):  # quick readers again: one buffer is spare at every take
        buf = pool.take()
        assert np.array_equal(buf, pool.current)
        buf[1, i] = i
        pool.commit(buf, [(i, 1, 1, 1)])
        del buf
        clock.now += 0.5
    assert pool.dropped == 1 and len(pool._buffers) == 2 and pool.nbytes() == 2 * _frame().nbytes
    _slow_spell(pool, clock)  # slow again later: a new third buffer, still always equal to the current frame
    assert pool.allocated == 3


def test_a_surplus_buffer_is_kept_for_a_slow_reader_that_comes_back_soon():
    clock = _Clock()
    pool = FramePool(clock=clock)
    pool.adopt(_frame())
    for spell in range(5):
        _slow_spell(pool, clock)
        for _ in range(3):
            pool.commit(pool.take(), [])
            clock.now += 0.5
    assert pool.dropped == 0 and pool.allocated == 2


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), steps=st.integers(1, 40))
def test_buffers_dropped_and_allocated_on_the_way_always_come_back_current(seed, steps):
    rng = np.random.default_rng(seed)
    clock = _Clock()
    pool = FramePool(clock=clock, surplus_seconds=1.0)
    pool.adopt(rng.integers(0, 256, (21, 40, 4), dtype=np.uint8))
    kept: list[np.ndarray] = []
    for _ in range(steps):
        clock.now += float(rng.uniform(0, 0.8))
        buf = pool.take()
        assert np.array_equal(buf, pool.current)
        assert not any(buf is k for k in kept)
        pool.commit(buf, _edit(rng, buf))
        kept.append(buf)
        readers = int(rng.integers(0, 3))  # readers come and go, holding the last few frames
        kept = kept[len(kept) - readers:] if readers else []
        del buf
        assert len(pool._buffers) <= pool.max_pooled

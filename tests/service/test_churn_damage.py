"""Damage in churning areas is held back and grabbed a few times a second (agent.service.churn_damage);
typing, paging, a dragged window and the technician's pointer keep the full rate, and nothing held is lost."""
from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings, strategies as st

from agent.service import churn_damage as CD
from agent.service.churn_damage import ChurnDamage

W, H = 640, 480
LOG = (330, 8, 300, 460)   # a terminal printing a log, redrawn every 20 ms
GLYPH = (40, 400, 8, 16)   # a typed character in another window


def _churn(d: ChurnDamage, start: float, until: float, step: float = 0.02, rect=LOG) -> list[tuple[float, list]]:
    """Feed ``rect``'s damage every ``step`` seconds; returns (time, what split said to grab) per batch."""
    out = []
    t = start
    while t < until:
        out.append((t, d.split(t, [rect])))
        t = round(t + step, 6)
    return out


def test_a_log_is_grabbed_at_full_rate_at_first_then_only_every_held_interval() -> None:
    d = ChurnDamage(W, H)
    batches = _churn(d, 0.0, 3.0)
    early = [t for t, grab in batches if t < CD.BUSY_FOR]
    assert all(grab == [LOG] for t, grab in batches if t < CD.BUSY_FOR), "not busy yet: everything at once"
    grabbed = [t for t, grab in batches if t >= CD.BUSY_FOR and grab]
    assert len(early) == 25 and grabbed, "held damage still goes, now and then"
    gaps = np.diff(grabbed)
    assert gaps.min() >= CD.HELD_INTERVAL - 1e-9 and gaps.max() <= CD.HELD_INTERVAL + 0.02 + 1e-9
    for t, grab in batches:
        if t >= CD.BUSY_FOR and grab:
            covered = [r for r in grab if r[0] <= LOG[0] and r[1] <= LOG[1]
                       and r[0] + r[2] >= LOG[0] + LOG[2] and r[1] + r[3] >= LOG[1] + LOG[3]]
            assert covered, f"held tiles come back covering the whole log area: {grab}"
    assert d.due > batches[-1][0], "what was drawn since the last release is still owed"


def test_a_large_churning_area_is_grabbed_less_often_in_proportion_to_its_pixels() -> None:
    width, height = 1920, 1080
    big = (896, 0, 1024, 1024)  # 32x32 whole tiles: 1,048,576 pixels, 3.5 x HELD_PIXELS
    d = ChurnDamage(width, height)
    batches = _churn(d, 0.0, 6.0, rect=big)
    grabbed, t = [t for t, grab in batches if grab], batches[-1][0] + 0.02
    interval = CD.HELD_INTERVAL * big[2] * big[3] / CD.HELD_PIXELS
    gaps = np.diff([g for g in grabbed if g >= CD.BUSY_FOR])
    assert len(gaps) >= 5 and gaps.min() >= interval - 1e-9 and gaps.max() <= interval + 0.02 + 1e-9, gaps
    glyph = (40, 400, 8, 16)
    assert d.split(t, [big, glyph]) == [glyph], "a key's echo elsewhere still goes at once"


def test_what_is_held_goes_soon_after_the_drawing_on_it_stops_however_large() -> None:
    d = ChurnDamage(1920, 1080)
    big = (0, 0, 1920, 1080)
    last = [t for t, grab in _churn(d, 0.0, 2.0, rect=big) if grab][-1]
    stop = 2.0 - 0.02  # the last drawing
    assert d.due == stop + CD.HELD_SETTLE < last + CD.HELD_INTERVAL * 1920 * 1088 / CD.HELD_PIXELS
    assert d.split(d.due - 0.01, []) == [], "not yet"
    out = d.split(d.due, [])
    assert out and sum(w * h for _, _, w, h in out) == 1920 * 1080, "the whole held area, once"
    assert d.due == math.inf


def test_released_says_whether_the_last_split_handed_the_held_damage_over() -> None:
    d = ChurnDamage(W, H)
    _churn(d, 0.0, 1.0)  # busy, and held, by now
    seen = []
    for step in range(30):
        grab = d.split(1.0 + 0.02 * step, [LOG])
        seen.append((bool(grab), d.released))
    assert any(released for _, released in seen)
    assert all(grabbed == released for grabbed, released in seen), seen  # the log's only grab is the release
    d.split(2.0, None)
    assert not d.released


def test_typing_paging_a_window_dragged_at_ten_moves_a_second_and_a_small_spinner_are_never_held() -> None:
    for step, rect in [(1 / 6.5, GLYPH), (1.0, (0, 0, W, H)), (0.1, (100, 100, 200, 150)),
                       (0.02, (600, 440, 32, 32))]:  # the last: a spinner, too small to weigh
        d = ChurnDamage(W, H)
        t = 0.0
        while t < 5.0:
            assert d.split(t, [rect]) == [rect], (step, t)
            t += step
        assert d.due == math.inf


def test_the_echo_of_a_key_in_another_window_goes_at_once_while_the_log_is_held() -> None:
    d = ChurnDamage(W, H)
    last = [t for t, grab in _churn(d, 0.0, 1.0) if grab][-1]
    t = last + 0.02
    assert d.split(t, [LOG, GLYPH]) == [GLYPH]
    assert d.split(t + 0.02, [LOG, (GLYPH[0], LOG[1], LOG[0] + 10 - GLYPH[0], 16)])[0][1] == LOG[1], \
        "damage reaching beyond the busy tiles is grabbed whole"


def test_a_pointer_event_releases_what_is_held_and_holds_nothing_while_the_technician_moves_it() -> None:
    d = ChurnDamage(W, H)
    _churn(d, 0.0, 1.0)
    assert d.split(1.0, [LOG]) == [], "held"
    d.note_pointer(1.01)
    grab = d.split(1.02, [LOG])
    assert LOG in grab and d.due == math.inf, "held tiles released along with the new damage"
    assert all(d.split(t, [LOG]) == [LOG] for t in (1.04, 1.5, 2.0)), "full rate while the pointer moves"
    later = [grab for _, grab in _churn(d, 2.04, 2.6)]
    assert [] in later, "held again once the pointer rests"


def test_when_x_cannot_say_where_it_drew_everything_is_grabbed_and_nothing_stays_held() -> None:
    d = ChurnDamage(W, H)
    _churn(d, 0.0, 1.0)
    assert d.due < math.inf
    assert d.split(1.0, None) is None and d.due == math.inf
    _churn(d, 1.02, 1.2)
    d.clear()
    assert d.due == math.inf


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, W - 1), st.integers(0, H - 1), st.integers(65, 200), st.integers(65, 200)),
                min_size=1, max_size=6))  # more than SMALL_DAMAGE in all
def test_held_damage_comes_back_as_rectangles_covering_exactly_its_tiles(rects) -> None:
    d = ChurnDamage(W, H)
    t = 0.0
    while t < CD.BUSY_FOR + 0.1:  # every rect's tiles busy
        d.split(t, rects)
        t += 0.02
    d._released_at = t  # the next release is not due yet: everything drawn now is held
    assert d.split(t, rects) == []
    expected = d._held.copy()
    out = d.split(t + CD.HELD_INTERVAL, [])
    got = np.zeros((H, W), np.int32)
    for x, y, w, h in out:
        assert x % CD.TILE == 0 and y % CD.TILE == 0 and x + w <= W and y + h <= H
        got[y:y + h, x:x + w] += 1
    assert got.max() == 1, "no pixel grabbed twice"
    tiles = np.repeat(np.repeat(expected, CD.TILE, 0), CD.TILE, 1)[:H, :W]
    assert np.array_equal(got == 1, tiles)
    assert d.due == math.inf

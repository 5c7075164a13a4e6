"""Latency-first updates (agent.service.priority): the echo of input goes first, churn waits its turn,
bulk is cut to a slice of the link, and each update knows how old its oldest change is."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from agent.service import priority as P
from agent.service.priority import CALM, CHURNING, INTERACTIVE, ActivityMap

W, H = 640, 480
TYPED = (40, 400, 8, 16)      # a glyph in the typed window
CHURN = (320, 0, 320, 240)    # a window filling with log output
LINK = P.LinkState(125_000.0)  # 1 Mbit/s in bytes/s, nothing in flight


def churning_map(until: float, step: float = 1 / 30) -> ActivityMap:
    m = ActivityMap(W, H)
    t = 0.0
    while t < until:
        m.note_changes(t, [], [CHURN])
        t += step
    return m


def test_a_glyph_after_a_key_is_interactive_and_log_output_is_churning_even_right_after_input() -> None:
    m = churning_map(2.0)
    m.note_input(2.0)
    m.note_changes(2.02, [], [TYPED, CHURN])  # the frame after the key: echo and churn alike changed
    assert m.classify(TYPED, 2.05) == INTERACTIVE
    assert m.classify(CHURN, 2.05) == CHURNING
    assert m.classify((0, 0, 32, 32), 2.05) == CALM
    assert m.classify(TYPED, 2.02 + P.HOT_HOLD + 0.1) != INTERACTIVE  # it cools down


def test_a_change_long_after_input_is_not_an_echo() -> None:
    m = ActivityMap(W, H)
    m.note_input(1.0)
    m.note_changes(1.0 + P.ECHO_WINDOW + 0.1, [], [TYPED])
    assert m.classify(TYPED, 1.5) == CALM


def test_the_pointer_makes_its_surroundings_interactive() -> None:
    m = ActivityMap(W, H)
    m.note_input(1.0, pointer=(100, 100))
    assert m.classify((90, 90, 20, 20), 1.1) == INTERACTIVE
    assert m.classify((400, 300, 20, 20), 1.1) == CALM


def test_while_interacting_the_echo_goes_first_churn_waits_its_turn_and_bulk_is_cut_to_the_budget() -> None:
    m = churning_map(2.0)
    m.note_input(2.0)
    m.note_changes(2.02, [], [TYPED, CHURN])
    calm = (0, 0, 320, 240)
    m.note_changes(2.5, [], [calm])  # a big calm change, not an echo (too late after the key)
    plan = m.plan_update([CHURN, calm, TYPED], 2.6, LINK)
    assert plan.rects[0] == TYPED
    budget = m.budget(LINK)
    assert budget == int(LINK.rate * P.UPDATE_SLICE)
    bulk = [r for r in plan.rects if r != TYPED]
    assert bulk and sum(w * h for _, _, w, h in bulk) * m.bytes_per_pixel <= budget + 1
    assert all(r[:2] == calm[:2] and r[2] == calm[2] for r in bulk)  # a band from the top of the calm area
    # nothing is lost: what was not sent is handed back, and together they cover every pending area
    sent_and_later = plan.rects + plan.later
    covered = np.zeros((H, W), bool)
    for x, y, w, h in sent_and_later:
        covered[y:y + h, x:x + w] = True
    for x, y, w, h in (CHURN, calm, TYPED):
        assert covered[y:y + h, x:x + w].all()
    assert any(r[0] == CHURN[0] for r in plan.later)  # the churn waits: calm goes before it


def test_while_interacting_the_rest_shares_a_bucket_however_often_the_viewer_asks() -> None:
    m = churning_map(2.0)
    m.note_input(2.0)
    first = m.plan_update([CHURN], 2.1, LINK)  # the bucket starts full: one slice of the churn goes
    assert first.rects and first.held and first.later
    sent = sum(w * h for _, _, w, h in first.rects) * m.bytes_per_pixel
    assert sent <= m.budget(LINK) + 1
    asked_again = m.plan_update(first.later, 2.11, LINK)  # the viewer asks again at once: nothing left
    assert asked_again.rects == [] and asked_again.held
    due = m.bulk_due(2.11)
    assert due > 2.11
    early = m.plan_update(asked_again.later, (2.11 + due) / 2, LINK)
    assert early.rects == [] and early.held, "a sliver of a band is not worth an update: it waits for half a slice"
    later = m.plan_update(early.later, due + 0.01, LINK)
    assert later.rects  # refilled at BULK_SHARE of the link's rate: the next band goes
    assert sum(w * h for _, _, w, h in later.rects) >= (m.budget(LINK) / 2) / m.bytes_per_pixel - CHURN[2], "a band of at least half a slice (to a row)"
    # interactive areas never wait for the bucket
    m.note_input(2.5)
    m.note_changes(2.52, [], [TYPED])
    assert m.plan_update([TYPED], 2.53, LINK).rects == [TYPED]


@pytest.mark.parametrize("rate, interacting", [(None, True), (LINK, False)])
def test_without_a_link_estimate_or_without_input_everything_goes_as_before(rate, interacting) -> None:
    m = churning_map(2.0)
    if interacting:
        m.note_input(2.0)
    rects = [CHURN, (0, 0, 320, 240), TYPED]
    plan = m.plan_update(rects, 2.1, rate)
    assert plan.rects == rects and plan.later == [] and not plan.held


def test_change_to_update_latency_is_the_age_of_the_oldest_change_carried_and_leftovers_keep_their_age() -> None:
    m = ActivityMap(W, H)
    m.note_changes(1.0, [], [(0, 0, 64, 64)])
    m.note_changes(1.2, [], [(0, 0, 64, 64), (200, 200, 32, 32)])  # the first area changed again: still 1.0
    assert m.sent(1.5, [], [(200, 200, 32, 32)], [(0, 0, 64, 64)]) == pytest.approx(0.3)
    assert m.sent(1.6, [], [(0, 0, 64, 64)], []) == pytest.approx(0.6)
    assert m.sent(1.7, [], [(0, 0, 64, 64)], []) is None  # nothing was owed there any more
    m.note_changes(2.0, [(0, 0, 100, 100, 64, 64)], [])  # a copy's destination is a change too
    assert m.sent(2.25, [(0, 0, 100, 100, 64, 64)], [], []) == pytest.approx(0.25)


def test_the_price_per_pixel_follows_what_updates_cost_on_the_link() -> None:
    m = ActivityMap(W, H)
    for _ in range(30):
        m.learn_cost(100 * 100, 2_000)  # 0.2 link bytes a pixel, after compression
    assert m.bytes_per_pixel == pytest.approx(0.2, rel=0.01)
    m.learn_cost(10, 5_000)  # a tiny update's cost is mostly headers: not learnt from
    assert m.bytes_per_pixel == pytest.approx(0.2, rel=0.01)
    for _ in range(30):  # the bulk's bands, with the echoes of keys between them
        m.learn_cost(120_000, 3_600)  # 0.03 a pixel
        m.learn_cost(342, 30)         # a glyph: 0.09 a pixel
    assert m.bytes_per_pixel == pytest.approx(0.03, rel=0.01), "the price is the bulk's: weighted by pixels"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, W - 1), st.integers(0, H - 1), st.integers(1, 300), st.integers(1, 300)),
                min_size=1, max_size=12), st.floats(4_000, 2e6), st.booleans())
def test_a_plan_never_loses_a_pixel(rects, bandwidth, churn) -> None:
    rate = P.LinkState(bandwidth)
    rects = [(x, y, min(w, W - x), min(h, H - y)) for x, y, w, h in rects]
    m = churning_map(1.0) if churn else ActivityMap(W, H)
    m.note_input(1.0)
    m.note_changes(1.01, [], rects[:2])
    plan = m.plan_update(rects, 1.05, rate)
    wanted = np.zeros((H, W), bool)
    for x, y, w, h in rects:
        wanted[y:y + h, x:x + w] = True
    got = np.zeros((H, W), bool)
    for x, y, w, h in plan.rects + plan.later:
        got[y:y + h, x:x + w] = True
    assert (got | ~wanted).all()
    assert plan.rects or plan.held
    assert not math.isnan(m.bytes_per_pixel)


def test_after_a_capture_stall_churn_stays_churn_and_the_glyph_is_still_the_echo() -> None:
    """A capture that stalled (a busy PC) must not make the log window, which changed meanwhile, look
    like the answer to the key: what tells them apart is that the log changes without input too."""
    m = churning_map(2.0)
    m.note_input(2.6)  # the last frame was at ~2.0: nothing seen for 0.6 s before the key
    m.note_changes(2.62, [], [TYPED, CHURN])
    assert m.classify(CHURN, 2.65) == CHURNING
    assert m.classify(TYPED, 2.65) == INTERACTIVE
    plan = m.plan_update([CHURN, TYPED], 2.65, LINK)
    assert plan.rects[0] == TYPED


def test_while_typing_fast_the_log_window_still_shows_it_changes_on_its_own() -> None:
    """Keys every 150 ms leave gaps between their echo windows: the log keeps changing in them."""
    m = churning_map(1.0, step=0.03)
    t = 1.0
    for key in range(40):
        m.note_input(t)
        for frame in range(5):  # frames every 30 ms: the first ones inside the key's echo window
            at = t + 0.005 + 0.03 * frame
            m.note_changes(at, [], [CHURN] + ([TYPED] if frame == 0 else []))
        t += 0.15
    assert m.classify(CHURN, t) == CHURNING
    assert m.classify(TYPED, t - 0.1) == INTERACTIVE


def test_a_churning_tile_that_happened_to_be_unchanged_in_the_last_frame_is_still_no_echo() -> None:
    """Frames come on any damage, so one frame may miss a print of the log window: a single quiet frame
    before the key must not make the log window 'interactive'."""
    m = churning_map(2.0, step=0.02)
    m.note_changes(2.01, [], [TYPED])  # a frame that caught only the typed window (the log did not print yet)
    m.note_input(2.015)
    m.note_changes(2.03, [], [TYPED, CHURN])
    assert m.classify(CHURN, 2.04) == CHURNING


def test_a_held_churning_area_grabbed_right_after_keys_is_never_an_echo_however_rarely_it_comes() -> None:
    """A large churning area is grabbed every 0.46 s (agent.service.churn_damage); at 6.5 keys a second most
    grabs land inside a key's window, so its spontaneous rate stays below SPONTANEOUS_MAX. Told which
    changes were held (Changes.churn), the map never takes them for the echo."""
    told, untold = ActivityMap(W, H), ActivityMap(W, H)
    t = 0.0
    for _ in range(8):
        for m in (told, untold):
            m.note_input(t)
        told.note_changes(t + 0.02, [], [TYPED, CHURN], churn=[CHURN])
        untold.note_changes(t + 0.02, [], [TYPED, CHURN])
        t += 0.46
    now = t - 0.4
    assert untold.classify(CHURN, now) == INTERACTIVE, "the mistake this guards against"
    assert told.classify(CHURN, now) != INTERACTIVE and told.classify(TYPED, now) == INTERACTIVE
    plan = told.plan_update([CHURN, TYPED], now, LINK)
    assert plan.rects[0] == TYPED and CHURN not in plan.rects, "the log is cut to the bucket, behind the echo"


def test_a_backlogged_link_holds_the_bulk_but_never_the_echo() -> None:
    m = churning_map(2.0)
    m.note_input(2.0)
    m.note_changes(2.02, [], [TYPED, CHURN])
    queued = P.LinkState(125_000.0, in_flight=60_000, rtt=0.1)  # ~0.5 s of queue on a 1 Mbit/s link
    assert queued.backlogged and not LINK.backlogged
    plan = m.plan_update([CHURN, TYPED], 2.05, queued)
    assert plan.rects == [TYPED] and plan.later == [CHURN] and plan.held


def test_an_echo_is_pending_until_sent_and_nothing_is_once_the_hold_is_over() -> None:
    m = churning_map(2.0)
    assert not m.interactive_pending(2.0)
    m.note_input(2.0)
    m.note_changes(2.02, [], [TYPED, CHURN])
    assert m.interactive_pending(2.05)
    m.sent(2.06, [], [TYPED], [])
    assert not m.interactive_pending(2.07)  # the churn is owed, but it is not interactive
    m.note_changes(2.08, [], [TYPED])
    assert m.interactive_pending(2.09)
    assert not m.interactive_pending(2.08 + P.HOT_HOLD + 0.01)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(-40, W + 40), st.integers(-40, H + 40), st.integers(0, 300),
                          st.integers(0, 300)), min_size=P.FEW_AREAS + 1, max_size=120))
def test_many_rectangles_mark_the_same_tiles_in_one_go_as_one_at_a_time(rects) -> None:
    m = ActivityMap(W, H)
    one_by_one = np.zeros(m._pending.shape, bool)
    for rect in rects:
        m._slice(rect, one_by_one, True)
    assert np.array_equal(m._touched([], rects), one_by_one)
    copies = [(0, 0) + r[:2] + r[2:] for r in rects[:3]]
    assert np.array_equal(m._touched(copies, rects[3:]), one_by_one)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(-40, W + 40), st.integers(-40, H + 40), st.integers(0, 300),
                          st.integers(0, 300)), min_size=P.FEW_AREAS + 1, max_size=80),
       st.integers(0, 2**31 - 1))
def test_many_rectangles_are_classified_in_one_go_as_one_at_a_time(rects, seed) -> None:
    rng = np.random.default_rng(seed)
    m = churning_map(1.5)
    m.note_input(1.5, pointer=(int(rng.integers(0, 200)), int(rng.integers(300, H))))  # far from CHURN
    m.note_changes(1.52, [], [TYPED, (int(rng.integers(0, 200)), int(rng.integers(300, H)), 40, 40)])
    now = 1.6
    assert m.classify_all(rects, now) == [m.classify(r, now) for r in rects]
    assert {INTERACTIVE, CHURNING} <= set(m.classify_all(rects + [TYPED, CHURN] * 20, now))


def test_the_rates_decay_the_same_across_the_rescale_of_their_common_factor():
    """The decay is a common factor folded into the grids only now and then (RESCALE_BELOW, after ~14 s):
    a tile changing ten times a second for 40 s has the rate the decay says throughout, and is churning;
    a quiet minute later it is calm, and the factor has been folded in along the way."""
    activity = ActivityMap(64, 64)
    for i in range(400):
        now = i * 0.1
        activity.note_changes(now, (), [(0, 0, 8, 8)])
        expected = sum(math.exp(-(now - j * 0.1) / P.CHURN_TAU) for j in range(i + 1))
        assert float(activity._rate[0, 0]) * activity._scale == pytest.approx(expected, rel=1e-4)
    assert activity.classify((0, 0, 8, 8), now) == CHURNING
    assert activity.classify((0, 0, 8, 8), now + 60.0) == CALM and activity._scale > 1e-6


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(-40, W + 40), st.integers(-40, H + 40), st.integers(0, 200),
                          st.integers(0, 200), st.booleans(), st.booleans()), min_size=1, max_size=30))
def test_one_area_through_views_leaves_the_same_state_as_through_a_mask(steps) -> None:
    """A single changed area (a typed glyph) takes views of its tiles; the same area given twice takes
    the general path, a mask of the tiles: frames, inputs and updates leave both maps the same."""
    views, masks = ActivityMap(W, H), ActivityMap(W, H)
    for i, (x, y, w, h, typed, update) in enumerate(steps):
        now = 0.05 * i
        rect = (x, y, w, h)
        if typed:
            views.note_input(now)
            masks.note_input(now)
        views.note_changes(now + 0.01, (), [rect])
        masks.note_changes(now + 0.01, (), [rect, rect])
        if update:
            assert views.sent(now + 0.02, (), [rect], []) == masks.sent(now + 0.02, (), [rect, rect], [])
        for grid in ("_rate", "_spontaneous", "_hot_until", "_pending"):
            assert np.array_equal(getattr(views, grid), getattr(masks, grid)), grid
        assert views._hot_ends == masks._hot_ends and views._scale == masks._scale

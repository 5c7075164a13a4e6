"""StablePalette: every requested colour is covered, and a colour never moves while it stays."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.encode.stable_palette import StablePalette

colour_sets = st.lists(st.sets(st.integers(0, 40), min_size=1, max_size=8), min_size=1, max_size=30)


@settings(max_examples=200, deadline=None)
@given(requests=colour_sets, slots=st.integers(8, 16))
def test_covers_every_request_and_keeps_slots(requests: list[set[int]], slots: int) -> None:
    palette = StablePalette(slots)
    before: dict[int, int] = {}
    for tick, request in enumerate(requests):
        colours = np.array(sorted(request), np.uint32)[np.random.default_rng(tick).permutation(len(request))]
        now = palette.cover(colours).tolist()
        assert len(now) == len(palette) <= slots and len(set(now)) == len(now)
        assert request <= set(now)
        where = {c: i for i, c in enumerate(now)}
        assert palette.in_slot_order(colours).tolist() == sorted(request, key=where.__getitem__)
        for colour, slot in before.items():
            if colour in where:  # still there: the same slot
                assert where[colour] == slot
            else:  # evicted: only when full, and never a colour this rectangle uses
                assert len(now) == slots and colour not in request
        before = where


def test_evicts_the_least_recently_used_colour() -> None:
    palette = StablePalette(3)
    palette.cover(np.array([1, 2, 3], np.uint32))
    palette.cover(np.array([1], np.uint32))
    palette.cover(np.array([3], np.uint32))
    assert palette.cover(np.array([4], np.uint32)).tolist() == [1, 4, 3]  # 2 was used longest ago


def test_refuses_more_colours_than_slots() -> None:
    with pytest.raises(ValueError, match="do not fit"):
        StablePalette(2).cover(np.array([1, 2, 3], np.uint32))


def test_churning_while_colours_keep_evicting_each_other_and_calm_after() -> None:
    palette = StablePalette()
    fresh = iter(range(1, 1 << 30))
    assert not palette.churning
    for _ in range(30):  # a colourful screen: every rectangle 200 colours never seen
        palette.cover(np.array([next(fresh) for _ in range(200)], np.uint32))
    assert palette.churning
    known = palette.cover(np.array([next(fresh) for _ in range(50)], np.uint32))[:50].copy()
    for _ in range(60):  # then text in colours the palette holds
        palette.cover(known)
    assert not palette.churning

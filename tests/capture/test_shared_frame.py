"""SharedFrame: a scratch frame reads as the current one, writes to it stay private until written back,
and it costs only the pages it writes."""
from __future__ import annotations

import numpy as np
import pytest

from agent.capture.shared_frame import SharedFrame


def _rss_kb() -> dict[str, int]:
    with open("/proc/self/status") as f:
        return {k: int(v.split()[0]) for k, _, v in (line.partition(":") for line in f) if k.startswith("Rss")}


def test_scratch_is_copy_on_write_and_write_back_publishes_only_the_changes():
    shared = SharedFrame(48, 64)
    current = shared.current
    assert current.shape == (48, 64, 4) and current.flags.writeable and current.flags.c_contiguous
    current[:] = 7
    scratch = shared.take()
    assert np.array_equal(scratch, current), "a scratch frame starts as the current frame"
    scratch[2:6, 3:9] = 200
    scratch[40:42, 0:64] = 9
    assert (current == 7).all(), "writing the scratch frame leaves the current one alone"
    shared.write_back(scratch, [(3, 2, 6, 4)])
    assert (current[2:6, 3:9] == 200).all() and (current[40:42] == 7).all(), "only the rects given"
    again = shared.take()
    assert np.array_equal(again, current) and (again[40:42] == 7).all()
    shared.close()
    assert np.array_equal(scratch[2:6, 3:9], current[2:6, 3:9]), "mappings outlive the memfd"
    with pytest.raises(ValueError):
        shared.take()


def test_a_scratch_frame_costs_the_pages_it_writes_not_a_frame():
    shared = SharedFrame(1080, 1920)  # 8 MB
    shared.current[:] = 1
    base = _rss_kb()
    scratch = shared.take()
    scratch[500:520, 100:600] = 2  # 20 rows: at most 2 pages each
    grown = _rss_kb()
    assert grown["RssAnon"] - base["RssAnon"] < 1024, "a few pages copied, not 8 MB"
    del scratch
    assert _rss_kb()["RssAnon"] - base["RssAnon"] < 512, "dropping the scratch frame returns its pages"

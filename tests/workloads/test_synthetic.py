"""Synthetic workloads: determinism, any size, and a ``truth`` that matches the pixels exactly."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.commands.screens import open_screen as open_source
from agent.errors import UsageError
from agent.workloads import WORKLOADS, FrameTruth, SyntheticSource
from agent.workloads.synthetic import union_area


def check_truth(prev: np.ndarray, cur: np.ndarray, truth: FrameTruth) -> None:
    """Every changed pixel is declared; moved regions hold the previous frame's pixels, shifted."""
    h, w = cur.shape[:2]
    prev, cur = prev.view(np.uint32)[..., 0], cur.view(np.uint32)[..., 0]  # one word per pixel: fast compares
    changed = np.zeros((h, w), bool)
    for x, y, rw, rh in truth.changed:
        assert rw > 0 and rh > 0 and 0 <= x and 0 <= y and x + rw <= w and y + rh <= h, truth
        changed[y:y + rh, x:x + rw] = True
    declared = changed.copy()
    for (x, y, rw, rh), dx, dy in truth.moved:
        assert rw > 0 and rh > 0 and 0 <= x and 0 <= y and x + rw <= w and y + rh <= h, truth
        sx, sy = x - dx, y - dy
        assert 0 <= sx and 0 <= sy and sx + rw <= w and sy + rh <= h, "move source off screen"
        same = cur[y:y + rh, x:x + rw] == prev[sy:sy + rh, sx:sx + rw]
        assert (same | changed[y:y + rh, x:x + rw]).all(), f"moved region does not hold the source pixels {truth}"
        declared[y:y + rh, x:x + rw] = True
    undeclared = (cur != prev) & ~declared
    assert not undeclared.any(), f"undeclared change at {np.argwhere(undeclared)[:3].tolist()}, truth {truth}"


def play(source: SyntheticSource, frames: int) -> list[FrameTruth]:
    """Grab ``frames`` frames after the first, checking each truth; returns the truths.

    The source's buffer (``source.grab()`` returns the same array each time)
    then holds the last frame.
    """
    prev = source.grab().copy()
    truths = []
    for _ in range(frames):
        cur = source.grab()
        check_truth(prev, cur, source.truth)
        truths.append(source.truth)
        prev = cur.copy()
    return truths


def test_workload_names() -> None:
    assert WORKLOADS == ("typing", "scrolling", "window-drag", "video", "idle", "switch", "mixed")


@pytest.mark.parametrize("workload", WORKLOADS)
def test_truth_matches_pixels_and_incremental_equals_full_render(workload: str) -> None:
    source = SyntheticSource(workload, 480, 270, seed=3)
    truths = play(source, 150)
    assert any(t.changed or t.moved for t in truths) or workload == "idle"
    # every frame was built by small repaints and moves; a full render of the same state agrees
    assert np.array_equal(source.render_full(), source._frame)


@pytest.mark.parametrize("workload", WORKLOADS)
@pytest.mark.parametrize("size", [(1, 1), (7, 3), (3, 7), (2, 300), (300, 2)])
def test_tiny_sizes(workload: str, size: tuple[int, int]) -> None:
    w, h = size
    source = SyntheticSource(workload, w, h)
    frame = source.grab()
    assert frame.shape == (h, w, 4) and frame.dtype == np.uint8 and frame.flags.c_contiguous
    assert source.truth.changed == [(0, 0, w, h)] and source.truth.moved == []
    play(source, 60)
    assert source.size == (w, h)


@pytest.mark.parametrize("workload", WORKLOADS)
def test_odd_large_size(workload: str) -> None:
    source = SyntheticSource(workload, 1921, 1081, seed=1)
    frame = source.grab()
    assert frame.shape == (1081, 1921, 4) and frame.dtype == np.uint8 and frame.flags.c_contiguous
    assert (frame[..., 3] == 255).all(), "synthetic frames are opaque"
    play(source, 8)
    assert np.array_equal(source.render_full(), source._frame)


@pytest.mark.parametrize("workload", WORKLOADS)
def test_deterministic_by_seed(workload: str) -> None:
    a, b, c = (SyntheticSource(workload, 320, 200, seed=s) for s in (5, 5, 6))
    differs = False
    for _ in range(40):
        fa, fb, fc = a.grab(), b.grab(), c.grab()
        assert np.array_equal(fa, fb)
        assert a.truth == b.truth
        differs |= not np.array_equal(fa, fc)
    assert differs, "another seed gives another sequence"


def test_grab_returns_the_same_buffer() -> None:
    source = SyntheticSource("typing", 200, 100)
    first = source.grab()
    second = source.grab()
    assert first is second


def test_idle_is_idle() -> None:
    source = SyntheticSource("idle", 640, 360)
    first = source.grab().copy()
    for _ in range(100):
        assert np.array_equal(source.grab(), first)
        assert source.truth == FrameTruth([], [])


def test_typing_changes_little_and_scrolls_by_a_line() -> None:
    source = SyntheticSource("typing", 640, 200)  # few rows: the text area scrolls soon
    truths = play(source, 400)
    area, line = 640 * 200, source._ui.line_h
    assert all(t.changed_area() < 0.03 * area for t in truths if not t.moved)
    assert all(t.changed_area() <= 640 * 2 * line for t in truths if t.moved), "a scroll exposes one line"
    moves = [m for t in truths for m in t.moved]
    assert moves, "a newline on the last row scrolls the text up"
    assert {(dx, dy) for _, dx, dy in moves} == {(0, -line)}
    # text is antialiased: the editor shows many shades, not just ink and paper
    x0, y0, x1, y1 = source._scene.text_region
    assert len(np.unique(source._frame[y0:y1, x0:x1].reshape(-1, 4), axis=0)) > 20


def test_scrolling_moves_the_page_and_keeps_the_sidebar() -> None:
    source = SyntheticSource("scrolling", 800, 600, seed=2)
    sidebar = source.grab()[100:500, 10:60].copy()
    truths = play(source, 120)
    moving = [t for t in truths if t.moved]
    assert len(moving) > 60
    steps = set()
    for t in moving:
        assert len(t.moved) == 1
        (_, _, w, _), dx, dy = t.moved[0]
        assert dx == 0 and dy != 0 and w < 800
        steps.add(dy)
        assert t.moved_area() > t.changed_area() or abs(dy) > 200
    assert any(dy > 0 for dy in steps) and any(dy < 0 for dy in steps), "scrolls both ways"
    assert len(steps) > 5, "steps of varying size"
    assert np.array_equal(source._frame[100:500, 10:60], sidebar)


def test_window_drag_moves_mostly_along_axes() -> None:
    source = SyntheticSource("window-drag", 800, 600, seed=4)
    truths = play(source, 200)
    vectors = [(dx, dy) for t in truths for _, dx, dy in t.moved]
    assert len(vectors) > 150
    axis = sum(1 for dx, dy in vectors if dx == 0 or dy == 0)
    assert axis > len(vectors) // 2 and axis < len(vectors), "mostly horizontal or vertical, some diagonal"
    for t in truths:
        if t.moved:
            assert t.moved_area() > 4 * t.changed_area()


def test_video_changes_one_region_every_frame() -> None:
    source = SyntheticSource("video", 640, 360)
    truths = play(source, 60)
    regions = {t.changed[0] for t in truths}
    assert len(regions) == 1
    (_, _, w, h), = regions
    assert 0.1 < w * h / (640 * 360) < 0.6
    assert all(not t.moved for t in truths)


def test_switch_changes_the_whole_screen_every_few_frames() -> None:
    source = SyntheticSource("switch", 320, 200)
    truths = play(source, 60)
    full = [i for i, t in enumerate(truths) if t.changed]
    assert all(truths[i].changed == [(0, 0, 320, 200)] for i in full)
    assert 60 // 9 <= len(full) <= 60 // 3 + 1
    assert all(b - a >= 3 for a, b in zip(full, full[1:]))


def test_mixed_is_a_mix() -> None:
    source = SyntheticSource("mixed", 320, 200, seed=7)
    truths = play(source, 500)
    area = 320 * 200
    assert any(t.moved for t in truths)
    assert any(t.changed_area() == area for t in truths)
    assert any(0 < t.changed_area() < 0.02 * area for t in truths)
    assert any(not t.changed and not t.moved for t in truths)


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(WORKLOADS), st.integers(1, 160), st.integers(1, 120), st.integers(0, 2 ** 32 - 1))
def test_any_size_and_seed(workload: str, w: int, h: int, seed: int) -> None:
    source = SyntheticSource(workload, w, h, seed=seed)
    play(source, 12)
    assert np.array_equal(source.render_full(), source._frame)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 30), st.integers(1, 20), st.integers(1, 20)),
                max_size=8))
def test_union_area(rects: list[tuple[int, int, int, int]]) -> None:
    grid = np.zeros((60, 60), bool)
    for x, y, w, h in rects:
        grid[y:y + h, x:x + w] = True
    assert union_area(rects) == int(grid.sum())


def test_bad_arguments() -> None:
    with pytest.raises(UsageError) as info:
        SyntheticSource("spreadsheet")
    assert all(name in str(info.value) for name in WORKLOADS)
    for w, h in ((0, 10), (10, 0), (9000, 10)):
        with pytest.raises(UsageError):
            SyntheticSource("idle", w, h)


def test_open_source_synthetic() -> None:
    source = open_source("synthetic:video")
    assert isinstance(source, SyntheticSource) and source.size == (1280, 720) and source.workload == "video"
    source = open_source("synthetic:typing:320x200", display=":0")
    assert source.size == (320, 200) and source.grab().shape == (200, 320, 4)
    for bad in ("synthetic:", "synthetic:nope", "synthetic:typing:320", "synthetic:typing:0x0", "vnc:typing",
                "synthetic:typing:320x200:9"):
        with pytest.raises(UsageError):
            open_source(bad)
    with pytest.raises(UsageError) as info:
        open_source("synthetic:nope")
    assert "mixed" in str(info.value) and "window-drag" in str(info.value)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(-45, 45), st.integers(-45, 45), st.integers(0, 2 ** 32 - 1))
def test_shift_moves_exactly(w: int, h: int, dx: int, dy: int, seed: int) -> None:
    from agent.workloads.paint import shift

    px = np.random.default_rng(seed).integers(0, 2 ** 32, (h + 4, w + 4), dtype=np.uint32)
    before = px.copy()
    region = (2, 2, 2 + w, 2 + h)
    dst = shift(px, region, dx, dy)
    outside = np.ones(px.shape, bool)
    outside[2:2 + h, 2:2 + w] = False
    assert np.array_equal(px[outside], before[outside]), "nothing outside the region is touched"
    if dst is None:
        assert abs(dx) >= w or abs(dy) >= h
        return
    x0, y0, x1, y1 = dst
    assert np.array_equal(px[y0:y1, x0:x1], before[y0 - dy:y1 - dy, x0 - dx:x1 - dx])


def test_same_frames_in_another_process() -> None:
    """Nothing depends on hash randomisation or process state: benchmarks rerun the same sequences."""
    import hashlib
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = (
        "import hashlib\n"
        "from agent.workloads import SyntheticSource, WORKLOADS\n"
        "for name in WORKLOADS:\n"
        "    s = SyntheticSource(name, 160, 90, seed=11)\n"
        "    h = hashlib.sha256()\n"
        "    for _ in range(40):\n"
        "        h.update(s.grab().tobytes())\n"
        "    print(name, h.hexdigest())\n"
    )
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root), PYTHONHASHSEED="12345")
    proc = subprocess.run([sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    theirs = dict(line.split() for line in proc.stdout.splitlines())
    for name in WORKLOADS:
        source = SyntheticSource(name, 160, 90, seed=11)
        h = hashlib.sha256()
        for _ in range(40):
            h.update(source.grab().tobytes())
        assert theirs[name] == h.hexdigest(), name

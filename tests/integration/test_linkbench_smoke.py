"""The link benchmark, small: its step matcher and report offline, and one real ``--quick`` run.

The real run is the CI-sized benchmark (1 Mbit/s with 50 ms each way, typing
for 3.5 s, our agent through relay and bridge, and x11vnc): it asserts that
the benchmark works and produces sane output, never how fast anything is.
"""
from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.support.tools import need

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.linkbench import report  # noqa: E402
from benchmarks.linkbench.cpu import CLK_TCK, CpuReading, cpu_reading, cpu_seconds  # noqa: E402
from benchmarks.linkbench.measure import Matcher, RunResult, psnr  # noqa: E402

# ---------------------------------------------------------------- the step matcher


def _screen(h: int = 40, w: int = 60) -> np.ndarray:
    img = np.full((h, w, 4), 255, np.uint8)
    img[..., :3] = 200
    return img


def test_matcher_times_a_change_from_the_step_to_the_update_that_shows_it():
    base = _screen()
    m = Matcher((0, 0, 60, 40), base, lossless=True, min_psnr=30)
    after = base.copy()
    after[10:14, 20:25, :3] = 0
    assert m.add_step(0, 1.0, (0, 0, 60, 40), after) == (20, 10, 5, 4)
    m.check(base, 1.05)            # the viewer still shows the old screen
    assert m.latencies == [] and len(m.pending) == 1
    m.check(after, 1.2)
    assert m.latencies == [pytest.approx(0.2)] and not m.pending
    assert m.add_step(1, 2.0, (0, 0, 60, 40), after) is None  # nothing changed: no target
    assert m.steps_unchanged == 1


def test_matcher_credits_a_skipped_state_when_a_later_one_is_shown():
    base = _screen()
    m = Matcher((0, 0, 60, 40), base, lossless=True, min_psnr=30)
    first, second = base.copy(), base.copy()
    first[5:10, 5:30, :3] = 0            # a window at one place...
    second[5:10, 15:40, :3] = 0          # ...then moved: overlaps the first change
    m.add_step(0, 1.0, (0, 0, 60, 40), first)
    m.add_step(1, 1.1, (0, 0, 60, 40), second)
    m.check(second, 1.4)                 # the viewer jumped straight to the second state
    assert sorted(m.latencies) == [pytest.approx(0.3), pytest.approx(0.4)]


def test_matcher_counts_a_change_never_shown_as_missed():
    base = _screen()
    m = Matcher((0, 0, 60, 40), base, lossless=True, min_psnr=30)
    changed = base.copy()
    changed[0:3, 0:3, :3] = 7
    m.add_step(0, 1.0, (0, 0, 60, 40), changed)
    wrong = changed.copy()
    wrong[1, 1, :3] = 8                  # almost, but lossless means exact
    m.check(wrong, 2.0)
    m.finish()
    assert m.latencies == [] and m.missed == 1


def test_lossy_matching_accepts_jpeg_noise_but_not_the_old_state():
    rng = np.random.default_rng(0)
    base = _screen(80, 80)
    page = base.copy()
    page[8:72, 8:72, :3] = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    m = Matcher((0, 0, 80, 80), base, lossless=False, min_psnr=30)
    m.add_step(0, 0.0, (0, 0, 80, 80), page)
    m.check(base, 0.1)
    assert not m.latencies
    noisy = page.copy()
    noisy[..., :3] = np.clip(page[..., :3].astype(int) + rng.integers(-40, 41, page[..., :3].shape), 0, 255)
    assert psnr(noisy, page) < 30        # worse than the threshold, yet plainly the new page
    m.check(noisy, 0.3)
    assert m.latencies == [pytest.approx(0.3)]


def test_cpu_seconds_reads_proc():
    import os

    assert cpu_seconds(os.getpid()) > 0
    assert cpu_seconds(None) == 0.0


def test_cpu_reading_counts_nanoseconds_and_threads():
    """A busy thread's CPU shows in the exact count (below a tick's resolution too), and a reading
    of this process agrees with its ticks within their rounding."""
    import os
    import threading

    def spin(seconds: float) -> None:
        end = time.thread_time() + seconds
        while time.thread_time() < end:
            pass

    before = cpu_reading(os.getpid())
    worker = threading.Thread(target=spin, args=(0.003,))  # under a 10 ms tick
    worker.start()
    spin(0.05)
    after_spin = cpu_reading(os.getpid())  # taken while the worker may still run: it is alive
    worker.join()
    used = after_spin - before
    assert before.exact is not None and after_spin.exact is not None  # schedstat is there (Debian's kernel)
    assert 0.05 <= used < 1.0
    assert abs(after_spin.exact - after_spin.ticks) < 1.0  # same clock, different rounding (plus dead threads)
    assert cpu_reading(None) == CpuReading(0.0, 0.0)


def test_cpu_reading_falls_back_to_ticks_when_a_thread_took_its_time_away():
    """Exact counts only cover live threads: when the ticks grew by more than their rounding beyond the
    exact count, a thread exited in between, and the ticks are the figure; without schedstat, too."""
    tick = 1.0 / CLK_TCK
    assert CpuReading(1.2345, 1.23) - CpuReading(1.0001, 1.00) == pytest.approx(0.2344)
    assert CpuReading(1.05, 1.50) - CpuReading(1.00, 1.00) == pytest.approx(0.50)  # a thread's 0.45 s gone
    assert CpuReading(1.0 + tick / 2, 1.0 + 2 * tick) - CpuReading(1.0, 1.0) == pytest.approx(tick / 2)  # rounding
    assert CpuReading(None, 1.50) - CpuReading(1.0, 1.0) == pytest.approx(0.5)


def _churn_lines(tmp_path: Path, run: int) -> list[str]:
    """Start the churn generator, let it print for 0.4 s, stop it; the lines it printed."""
    import signal
    import time

    pid_file = tmp_path / f"churn-{run}.pid"
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.linkbench.churn", "churn-text", "--pid-file",
                             str(pid_file), "--columns", "40"], cwd=str(ROOT), stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline and proc.poll() is None, "the generator never wrote its pid"
            time.sleep(0.02)
        time.sleep(0.2)
        assert proc.stdout is not None
        proc.send_signal(signal.SIGUSR1)
        time.sleep(0.4)
        proc.send_signal(signal.SIGUSR2)
        time.sleep(0.2)
        assert proc.poll() is None  # stopped printing, still on screen
    finally:
        proc.kill()
        out, _ = proc.communicate()
    return out.splitlines()


def test_churn_generator_waits_then_prints_the_same_random_lines_every_run(tmp_path):
    from benchmarks.linkbench.__main__ import DEFAULT_WORKLOADS
    from benchmarks.linkbench.workloads import make_workload

    assert "churn" in DEFAULT_WORKLOADS.split(",") and make_workload("churn").lead > 0
    first, second = _churn_lines(tmp_path, 1), _churn_lines(tmp_path, 2)
    assert first[0].startswith("churn: waiting")
    body = [line for line in first[1:] if line]
    assert len(body) >= 20, first    # 120 lines/s: far more than a 1 Mbit/s link carries
    assert all(20 <= len(line) <= 40 for line in body) and len(set(body)) == len(body)
    n = min(len(first), len(second))
    assert first[:n] == second[:n]   # seeded: every server sees the same text


@pytest.mark.xvfb
@pytest.mark.timeout(60)
async def test_churn_workload_types_beside_a_terminal_that_churns_only_during_the_script(xvfb_factory, tmp_path):
    need("xdotool", "xterm", "xsetroot")
    from benchmarks.linkbench.churn import _overlap
    from benchmarks.linkbench.measure import Grabber
    from benchmarks.linkbench.workloads import SCREEN, XSession, make_workload, prepare_display

    display = xvfb_factory(*SCREEN)
    x, grabber, wl = XSession(display, tmp_path), Grabber(display), make_workload("churn")
    try:
        await prepare_display(display)
        await wl.setup(x, grabber.grab)
        assert wl.region == wl.typed and not _overlap(wl.typed, wl.churn_region)
        still = await grabber.grab(wl.churn_region)
        await wl.start_script()
        await asyncio.sleep(0.5)
        churned = await grabber.grab(wl.churn_region)
        assert not np.array_equal(still, churned)
        typed = await grabber.grab(wl.typed)

        class Keys:  # the viewer's key(), played on the display (the benchmark sends it through RFB)
            async def key(self, keysym: int) -> None:
                await x.type_char(chr(keysym))

        wl.attach_viewer(Keys())
        await wl.step(0)
        await asyncio.sleep(0.3)
        assert not np.array_equal(typed, await grabber.grab(wl.typed))  # the keystroke went to vim, not the churn
        await wl.end_script()
        await asyncio.sleep(0.2)
        stopped = await grabber.grab(wl.churn_region)
        await asyncio.sleep(0.3)
        assert np.array_equal(stopped, await grabber.grab(wl.churn_region))
    finally:
        await wl.close()
        await x.close()
        grabber.close()


# ---------------------------------------------------------------- the report, offline


def _run(server: str, workload: str, *, link: str = "1m", setting: str = "lossless", down: int = 1000,
         p: float = 0.1, cpu: float = 0.05, error: str | None = None) -> RunResult:
    r = RunResult(server, workload, link, setting, 0, error=error, seconds=5.0, bytes_down=down, bytes_up=50,
                  sync_bytes=9000, updates=20, steps=10, steps_changed=10, latencies=[p] * 10, cpu_server=cpu,
                  cpu_xvfb=0.1, converged=True, exact_fraction=1.0, psnr=math.inf,
                  series=[(0.0, 0), (2.5, down // 2), (5.0, down)])
    return r


def test_report_tables_targets_and_plot(tmp_path):
    results = [
        _run("rejnet", "typing", down=400, p=0.05, cpu=0.2), _run("x11vnc", "typing", down=1000, p=0.2),
        _run("tigervnc", "typing", down=500, p=0.06, cpu=0.1),
        _run("rejnet", "paging", down=100_000), _run("x11vnc", "paging", down=200_000),
        _run("rejnet", "idle", down=50), _run("x11vnc", "idle", down=500), _run("rejnet", "synthetic:typing"),
        _run("tigervnc", "drag", error="ServerError: boom"), _run("rejnet", "drag", down=10_000),
        _run("x11vnc", "drag", down=200_000),
        _run("rejnet", "churn", p=0.2, cpu=1.0), _run("x11vnc", "churn", p=0.9, cpu=0.5),
        _run("tigervnc", "churn", p=1.0, cpu=1.0),
    ]
    results[5].updates = 0
    results[6].updates = 1
    results[7].frame_match = 12
    text = report.write(results, {"command": "test", "links": "1m", "delay_ms": 50.0, "seconds": 5.0, "repeat": 1},
                        tmp_path)
    assert (tmp_path / "report.md").read_text() == text
    expected = [
        "| 1m | lossless | typing | rejnet | 1/1 | 0.4 |", "| 1m | lossless | churn | tigervnc | 1/1 | 1.0 |",
        "PASS 1m lossless typing: rejnet p95 latency vs x11vnc: 0.25x",
        "PASS 1m lossless typing: rejnet bytes vs x11vnc: 0.40x",
        "FAIL 1m lossless typing: rejnet bytes vs tigervnc: 0.80x",
        "FAIL 1m lossless typing: rejnet agent CPU vs tigervnc: 2.00x (target <= 1.5x;",
        "PASS 1m lossless churn: rejnet agent CPU vs tigervnc: 1.00x (target <= 1x;",
        "PASS 1m lossless churn: rejnet echo p95 latency 200 ms (target <= 250 ms)",
        "PASS 1m lossless churn: rejnet echo p95 latency vs the better peer (x11vnc): 0.22x",
        # a peer missing from the run (or failed) is never a PASS
        "- n/a (tigervnc not run): 1m lossless paging: rejnet bytes vs the better peer (target <= 0.15x)",
        "- n/a (tigervnc not run): 1m lossless paging: rejnet agent CPU vs tigervnc",
        "- n/a (tigervnc failed): 1m lossless drag: rejnet bytes vs the better peer",
        "- n/a (typing not run at 256k lossless): 256k lossless typing",
        "PASS 1m idle: rejnet sends 10.0 B/s and 0 pixel update(s)", "PASS 1m idle: rejnet agent CPU 1.00%",
    ]
    assert [line for line in expected if line not in text] == []
    assert "frame match 1/1" in text and "ServerError: boom" in text
    from PIL import Image

    with Image.open(tmp_path / "plot-1m-lossless.png") as img:
        assert img.size[0] > 500 and img.size[1] > 500
        assert len(img.getcolors(1 << 16) or []) > 3  # lines were drawn, not a blank page


# ---------------------------------------------------------------- a real run, CI-sized


@pytest.mark.xvfb
def _quick_run(out: Path, *options: str, timeout: float = 110) -> tuple[subprocess.CompletedProcess, dict]:
    """``python -m benchmarks.linkbench --out OUT --quick OPTIONS``, which must succeed, and its results.json."""
    proc = subprocess.run([sys.executable, "-m", "benchmarks.linkbench", "--out", str(out), "--quick", *options],
                          cwd=str(ROOT), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, json.loads((out / "results.json").read_text())


@pytest.mark.slow
@pytest.mark.interop
@pytest.mark.timeout(170)
def test_quick_benchmark_runs_and_reports(tmp_path):
    need("Xvfb", "xdotool", "xterm", "xsetroot", "x11vnc")
    out = tmp_path / "out"
    proc, data = _quick_run(out, timeout=160)
    assert "[2/2" in proc.stdout  # progress lines
    runs = {r["server"]: r for r in data["runs"]}
    assert set(runs) == {"rejnet", "x11vnc"}
    for server, r in runs.items():
        assert r["error"] is None, (server, r["error"])
        assert r["bytes_down"] > 0 and r["sync_bytes"] > 0 and r["bytes_up"] > 0, r
        assert r["steps_changed"] > 0 and r["latencies"], r
        assert all(0 <= v < 30 for v in r["latencies"])
        assert r["exact_fraction"] is not None and 0 <= r["exact_fraction"] <= 1
        assert r["cpu_server"] is not None and r["cpu_server"] >= 0
        series = r["series"]
        assert series[0] == [0.0, 0] and all(b[0] >= a[0] and b[1] >= a[1] for a, b in zip(series, series[1:]))
    text = (out / "report.md").read_text()
    assert "| 1m | lossless | typing | rejnet |" in text and "| 1m | lossless | typing | x11vnc |" in text
    assert "### Targets" in text and text in proc.stdout
    assert (out / "plot-1m-lossless.png").stat().st_size > 1000


# ---------------------------------------------------------------- --stages: where the agent's CPU goes


def test_stage_specs_are_checked_before_anything_runs():
    from benchmarks.linkbench.stages import StageSpecError, resolve

    owner, name, fn = resolve("agent.service.updater:ViewerUpdater.prepare_update")
    assert name == "prepare_update" and owner.__name__ == "ViewerUpdater" and callable(fn)
    for spec, why in [("agent.service.updater", "expected module:Qualified.name"),
                      ("agent.nowhere:f", "cannot import"),
                      ("agent.service.updater:ViewerUpdater.nothing", "not a plain function"),
                      ("agent.service.updater:Nothing.prepare_update", "has no"),
                      ("agent.service.connection:RFBConnection.run", "coroutine")]:
        with pytest.raises(StageSpecError, match=why):
            resolve(spec)


def test_a_stage_counts_its_outermost_calls_and_their_thread_cpu():
    import types

    from benchmarks.linkbench import stages

    def spin(n: int) -> int:
        total = 0
        for i in range(n):
            total += i * i
        return total

    def nested(depth: int) -> int:  # calls itself: counted once per outermost call
        return spin(20000) if depth == 0 else mod.nested(depth - 1)

    mod = types.ModuleType("stage_probe")
    mod.nested, mod.spin = nested, spin
    sys.modules["stage_probe"] = mod
    try:
        totals = stages.install(["stage_probe:nested"])
        before = {"seq": 1, "stages": {k: list(v) for k, v in totals.items()}}
        for _ in range(3):
            mod.nested(4)
        after = {"seq": 2, "stages": {k: list(v) for k, v in totals.items()}}
    finally:
        del sys.modules["stage_probe"]
    got = stages.window(before, after)["stage_probe:nested"]
    assert got["calls"] == 3 and got["seconds"] > 0
    assert got["ms_per_call"] == pytest.approx(1e3 * got["seconds"] / 3, rel=1e-3)
    assert stages.window(None, after) == {}


@pytest.mark.slow
@pytest.mark.interop
@pytest.mark.timeout(120)
def test_stages_time_the_named_agent_methods_over_the_script_window(tmp_path):
    need("Xvfb", "xdotool", "xterm", "xsetroot")
    out = tmp_path / "out"
    specs = ["agent.service.updater:ViewerUpdater.prepare_update", "agent.encode.manager:EncodeManager.encode"]
    _, data = _quick_run(out, "--servers", "rejnet", "--stages", ",".join(specs))
    run = data["runs"][0]
    assert run["error"] is None and data["meta"]["stages"] == specs
    got = run["stages"]
    assert set(got) == set(specs)
    # every typed key's echo is prepared and encoded inside the window, and no more often than asked
    assert 0 < got[specs[1]]["calls"] <= got[specs[0]]["calls"] <= 3 * run["steps"] + 10
    assert all(g["seconds"] > 0 for g in got.values())
    # the stages are the agent's own CPU over the same window (its /proc figure has a 10 ms tick)
    assert sum(g["seconds"] for g in got.values()) <= run["cpu_server"] + 0.03
    text = (out / "report.md").read_text()
    assert "### Agent stages (--stages)" in text and f"| {specs[1]} |" in text


@pytest.mark.slow
@pytest.mark.interop
@pytest.mark.timeout(120)
def test_profile_covers_the_agents_event_loop_over_the_script_window(tmp_path):
    import pstats

    need("Xvfb", "xdotool", "xterm", "xsetroot")
    out = tmp_path / "out"
    _, data = _quick_run(out, "--servers", "rejnet", "--profile")
    run = data["runs"][0]
    assert run["error"] is None and data["meta"]["profile"] is True and run["stages"] == {}
    stats = pstats.Stats(str(out / run["profile"])).stats  # type: ignore[attr-defined]
    calls = {name: entry[1] for (_, _, name), entry in stats.items()}
    # every typed key's echo is planned on the loop inside the window; the start-up (imports) is not in it
    assert 0 < calls["prepare_update"] <= 3 * run["steps"] + 10
    assert "_find_and_load" not in calls
    # the loop thread's CPU (the profiler's slowing included): inside the agent's over the same window
    own = sum(entry[2] for entry in stats.values())
    assert 0 < own <= run["cpu_server"] + 0.03
    text = (out / "report.md").read_text()
    assert "### Agent profiles (--profile)" in text and run["profile"] in text
    # the table leads with the function of the largest own time (which one varies from run to run)
    heaviest, _ = max(stats.items(), key=lambda item: item[1][2])
    assert f"| {report._where(heaviest)} |" in text

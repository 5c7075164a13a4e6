"""One run of the link benchmark: a workload, a server, a link, a setting; and the script entry.

Order of a run: start the workload's programs and wait for a still screen,
start the server behind the proxy, connect the viewer and wait until it
shows the screen, a warm-up, then the script (steps at fixed offsets, each
followed by its ground truth), then time for the viewer to catch up. Bytes,
CPU and updates are counted over the script and the catching up. A run that
fails is recorded with its reason; everything it started is stopped.

``python benchmarks/linkbench/run.py ...`` is the same as
``python -m benchmarks.linkbench ...``.
"""
from __future__ import annotations

import asyncio
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

if __name__ == "__main__":  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np

from benchmarks.linkbench.measure import (
    Grabber, LoopLag, Matcher, Region, RunResult, Setting, Viewer, clip_region, frames_match, pointer_mask, psnr,
)
from benchmarks.linkbench.cpu import cpu_reading
from benchmarks.linkbench.stages import snapshot as stage_snapshot, window as stages_window

SYNC_TIMEOUT = 120.0      # the first full update at 256 kbit/s can take a while
SETTLE_TIMEOUT = 15.0     # after the script: time for the viewer to catch up
QUIET = 2.0               # no pixels for this long: the server considers the viewer up to date
POLL_CHANGE = 0.6         # longest wait for a step's change to show on the X screen
STABLE_GAP = 0.015        # grabs this far apart that agree: the step's drawing is finished
STABLE_MAX = 0.3
SYNTHETIC_FPS_BOUND = 30  # the agent's default capture rate: bound for the frame search
WARMUP = 4.5              # seconds from connect to the script's start: x11vnc measures the link
                          # for ~4 s after a viewer connects (its log: client_set_net) and holds
                          # updates meanwhile; every server gets the same head start


class _Capture:
    """Turns a workload's steps into Matcher targets: where, when and what the screen showed."""

    def __init__(self, grabber: Grabber, matcher: Matcher, region: Region) -> None:
        self.grabber = grabber
        self.matcher = matcher
        self.region = region

    async def after_step(self, index: int, hint: Optional[Region], final: bool, t_done: float,
                         framebuffer: Callable[[], np.ndarray], last_update: Callable[[], float]) -> None:
        hint = clip_region(hint or self.region, self.region)
        if final:
            grab, t0 = await self.grabber.grab(hint), t_done
        else:
            deadline = time.monotonic() + POLL_CHANGE
            while True:
                t_before = time.monotonic()
                grab = await self.grabber.grab(hint)
                t0 = (t_before + time.monotonic()) / 2  # the change was on screen by the middle of this grab
                if self.matcher.differs(hint, grab) or time.monotonic() >= deadline:
                    break
                await asyncio.sleep(0.005)
            settle_end = time.monotonic() + STABLE_MAX
            while time.monotonic() < settle_end:  # wait for the application to finish drawing
                await asyncio.sleep(STABLE_GAP)
                again = await self.grabber.grab(hint)
                if np.array_equal(again, grab):
                    break
                grab = again
        if self.matcher.add_step(index, t0, hint, grab) is not None:
            # the viewer may already show it (a fast link): credit the update that brought it
            t_last = last_update()
            if t_last >= t0:
                self.matcher.check(framebuffer(), t_last)


async def _stage_snapshot(server: Any) -> Optional[dict]:
    """The agent's --stages totals now (None without --stages); asked before the CPU is read at each edge."""
    path = getattr(server, "stages_file", None)
    if path is None or server.server_pid is None:
        return None
    return await asyncio.to_thread(stage_snapshot, server.server_pid, path)


async def measure_run(server: Any, workload: Any, setting: Setting, link: Any, link_name: str, *, repeat: int,
                      seconds: float, display: Any, grabber: Optional[Grabber], workdir: Any,
                      min_psnr: float = 30.0, settle_timeout: float = SETTLE_TIMEOUT) -> RunResult:
    """Start the workload and the server, connect the viewer, play the script, measure; always cleans up."""
    from agent.viewer.rfb_client import open_rfb
    from agent.rfb.pixelformat import NATIVE
    from benchmarks.linkbench.workloads import POINTER_PARK, SCREEN, XSession, prepare_display

    result = RunResult(server.name, workload.name, link_name, setting.name, repeat)
    real = workload.kind == "x"
    gnome = real and getattr(display, "name", None) == "gnome"  # the same workload on a GNOME Wayland desktop
    x: Any = None
    viewer: Optional[Viewer] = None
    full: Region = (0, 0, *SCREEN)
    lag = LoopLag()
    mark = [time.monotonic()]

    def phase(name: str) -> None:
        now = time.monotonic()
        result.phases[name] = round(now - mark[0], 3)
        mark[0] = now

    def matches_screen(truth: np.ndarray) -> Callable[[np.ndarray], bool]:
        return lambda fb: fb.shape[:2] == truth.shape[:2] and frames_match(
            pointer_mask(fb, POINTER_PARK), truth, setting.lossless, min_psnr)

    try:
        if gnome:
            from benchmarks.linkbench.gnome import WaylandSession

            x = await asyncio.to_thread(WaylandSession, display, workdir, SCREEN)
            await x.prepare(POINTER_PARK)
        elif real:
            x = XSession(display.name, workdir)
            await prepare_display(display.name)
        if real:
            assert grabber is not None and x is not None
            await workload.setup(x, grabber.grab)
        phase("setup")
        t_server = time.monotonic()
        await server.start(display=display.name if real else None,
                           screen=None if real else workload.screen, link=link, workdir=workdir)
        phase("start")
        t_connect = time.monotonic()
        client = await open_rfb(*server.address, encodings=setting.encodings, pixel_format=NATIVE, timeout=60)
        viewer = Viewer(client)
        viewer.start()
        if real:
            truth = pointer_mask(await grabber.grab(full), POINTER_PARK)
            result.synced, _ = await viewer.converge(matches_screen(truth), timeout=SYNC_TIMEOUT, quiet=QUIET)
        else:
            while not viewer.log.last_pixels and time.monotonic() - t_connect < SYNC_TIMEOUT:
                await viewer.wait_update(1.0)
            result.synced = bool(viewer.log.last_pixels)
        result.sync_seconds = time.monotonic() - t_connect
        result.sync_bytes = server.down.counter.total
        await asyncio.sleep(max(0.0, t_connect + WARMUP - time.monotonic()))
        phase("sync")
        lag.start()

        pids = (server.server_pid, display.pid if display else None)
        down0, up0 = server.down.counter.total, server.up.counter.total
        stages0 = await _stage_snapshot(server)
        cpu0 = [cpu_reading(p) for p in pids] + [cpu_reading(*server.helper_pids)]
        server.proxy.reset_clock()
        t_start = time.monotonic()
        workload.attach_viewer(client)
        await workload.start_script()
        if real:
            matcher = Matcher(workload.region, await grabber.grab(workload.region), lossless=setting.lossless,
                              min_psnr=min_psnr)
            viewer.listeners.append(matcher.check)
            capture = _Capture(grabber, matcher, workload.region)
            result.steps = workload.steps(seconds)
            late = 0.0
            for i in range(result.steps):
                due = t_start + workload.lead + i * workload.interval
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                late = max(late, time.monotonic() - due)
                step = await workload.step(i)
                await capture.after_step(i, step.hint, step.final, time.monotonic(), lambda: viewer.client.framebuffer,
                                         lambda: viewer.log.entries[-1][0] if viewer.log.entries else 0.0)
            result.step_lateness_max = late
            await asyncio.sleep(max(0.0, t_start + seconds - time.monotonic()))
            await workload.end_script()
            phase("script")
            final = pointer_mask(await grabber.grab(full), POINTER_PARK)
            result.converged, result.converge_seconds = await viewer.converge(
                matches_screen(final), timeout=settle_timeout, quiet=QUIET)
            phase("settle")
        else:
            await asyncio.sleep(seconds)
            phase("script")
        t_end = time.monotonic()
        result.loop_lag_p99, result.loop_lag_max = await lag.stop()
        cpu1 = [cpu_reading(p) for p in pids] + [cpu_reading(*server.helper_pids)]
        result.stages = stages_window(stages0, await _stage_snapshot(server))
        result.cpu_server, result.cpu_xvfb, result.cpu_helpers = (b - a for a, b in zip(cpu0, cpu1))
        if not display:
            result.cpu_xvfb = math.nan
        result.seconds = t_end - t_start
        result.bytes_down = server.down.counter.total - down0
        result.bytes_up = server.up.counter.total - up0
        result.updates = viewer.log.pixel_updates(t_start, t_end)
        result.series = [(round(t, 3), b - down0) for t, b in server.down.counter.series
                         if t <= t_end - t_start]
        if not real:  # the synthetic screen never stops: freeze the viewer on a whole update
            await viewer.finish_update(settle_timeout)
        fb = np.array(viewer.client.framebuffer)
        if real:
            matcher.finish()
            result.latencies = [round(v, 4) for v in matcher.latencies]
            result.missed = matcher.missed
            result.steps_changed = matcher.steps_changed
            shown = pointer_mask(fb, POINTER_PARK)
            if shown.shape == final.shape:
                result.exact_fraction = float(np.mean(np.all(shown == final, axis=2)))
                result.psnr = psnr(shown, final)
        if viewer.error is not None:
            raise viewer.error
    except Exception as exc:  # one failed run must not end the benchmark: it is reported
        result.error = f"{type(exc).__name__}: {exc}".strip()[:300]
        fb = None
    finally:
        await lag.stop()
        if viewer is not None:
            await viewer.close()
        await server.stop()
        await workload.close()
        if x is not None:
            await x.close()
        phase("stop")
    if not real and result.ok and fb is not None:
        agent_frames = int((time.monotonic() - t_server + 5) * SYNTHETIC_FPS_BOUND)
        result.frame_match, result.psnr = await asyncio.to_thread(
            synthetic_match, workload.workload, fb, setting.lossless, agent_frames)
        result.exact_fraction = 1.0 if result.frame_match is not None and setting.lossless else math.nan
    return result


def synthetic_match(workload: str, fb: np.ndarray, lossless: bool, max_frames: int) -> tuple[Optional[int], float]:
    """Which frame of the synthetic workload the viewer ended on: (index, PSNR); index None if none matched."""
    from agent.workloads import SyntheticSource

    h, w = fb.shape[:2]
    source = SyntheticSource(workload, w, h)
    shown = np.ascontiguousarray(fb[..., :3])
    probe = shown[::8, ::8]
    best, best_k = -1.0, None
    for k in range(max_frames):
        frame = source.grab()
        if lossless:
            if np.array_equal(frame[::8, ::8, :3], probe) and np.array_equal(frame[..., :3], shown):
                return k, math.inf
            continue
        score = psnr(frame[::8, ::8], probe)
        if score > best:
            best, best_k = score, k
    if lossless or best_k is None:
        return None, math.nan
    source = SyntheticSource(workload, w, h)
    for _ in range(best_k + 1):
        frame = source.grab()
    return best_k, psnr(frame, shown)


if __name__ == "__main__":
    from benchmarks.linkbench.__main__ import main

    sys.exit(main())

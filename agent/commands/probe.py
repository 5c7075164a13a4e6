"""``rejnet-agent probe``: capture the screen for a few seconds and report what the pipeline sees.

It answers the first questions of a support call about performance: how
fast can this machine capture its screen, how long does change detection
take per frame, and how much of the screen changes (as rectangles to encode,
and as copies that cost almost nothing to send). With no display at all it
probes the synthetic ``mixed`` workload, so the command always shows
something; a display that was asked for but cannot be opened is an error
(exit code 5).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from agent.capture.base import ScreenSource
from agent.commands.screens import add_backend_argument, add_screen_arguments, open_screen
from agent.errors import UsageError
from agent.models import rects_area

MAX_SECONDS = 3600.0
INTERVAL = 1.0  # seconds between progress lines


@dataclass
class _Window:
    """Per-frame figures for one stretch of the run (an interval or the whole of it)."""

    capture: list[float] = field(default_factory=list)
    detect: list[float] = field(default_factory=list)
    dirty: list[float] = field(default_factory=list)
    copied: list[float] = field(default_factory=list)
    truth_changed: list[float] = field(default_factory=list)
    truth_moved: list[float] = field(default_factory=list)

    def add(self, other: "_Window") -> None:
        for name in self.__dataclass_fields__:
            getattr(self, name).extend(getattr(other, name))


def _ms(values: list[float]) -> dict[str, float]:
    if not values:
        return {"mean": 0.0, "p50": 0.0, "p95": 0.0}
    a = np.asarray(values) * 1e3
    return {"mean": round(float(a.mean()), 3), "p50": round(float(np.percentile(a, 50)), 3),
            "p95": round(float(np.percentile(a, 95)), 3)}


def _ratio(values: list[float]) -> dict[str, float]:
    if not values:
        return {"mean": 0.0, "max": 0.0}
    a = np.asarray(values)
    return {"mean": round(float(a.mean()), 6), "max": round(float(a.max()), 6)}


def _figures(window: _Window, seconds: float) -> dict:
    frames = len(window.capture)
    out = {
        "frames": frames,
        "seconds": round(seconds, 3),
        "frames_per_second": round(frames / seconds, 2) if seconds > 0 else 0.0,
        "capture_ms": _ms(window.capture),
        "detect_ms": _ms(window.detect),
        "dirty_ratio": _ratio(window.dirty),
        "copied_ratio": _ratio(window.copied),
    }
    if window.truth_changed:
        out["truth_changed_ratio"] = _ratio(window.truth_changed)
        out["truth_moved_ratio"] = _ratio(window.truth_moved)
    return out


def probe(source: ScreenSource, seconds: float = 3.0, tile: int = 64,
          on_interval: Callable[[dict], None] | None = None) -> dict:
    """Capture and detect for ``seconds``; returns the summary figures (and reports each second).

    The first frame, and the first after a size change, are whole-screen by
    definition: they count for rates and times but not for the area ratios.
    """
    from agent.changes.detector import ChangeDetector

    width, height = source.size
    try:
        detector = ChangeDetector(width, height, tile=tile)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    total, window = _Window(), _Window()
    resizes = 0
    frames = 0
    received_before = getattr(source, "frames_received", 0) or 0
    start = time.perf_counter()
    mark = start
    while True:
        t0 = time.perf_counter()
        frame = source.grab()
        t1 = time.perf_counter()
        fresh = frames == 0
        if frame.shape[:2] != (detector.height, detector.width):
            detector.resize(frame.shape[1], frame.shape[0])
            resizes += 1
            fresh = True
        changes = detector.update(frame)
        t2 = time.perf_counter()
        frames += 1
        window.capture.append(t1 - t0)
        window.detect.append(t2 - t1)
        if not fresh:
            area = float(frame.shape[0] * frame.shape[1])
            window.dirty.append(rects_area(changes.rects) / area)
            window.copied.append(sum(c[4] * c[5] for c in changes.copies) / area)
            truth = getattr(source, "truth", None)
            if truth is not None:
                window.truth_changed.append(truth.changed_area() / area)
                window.truth_moved.append(truth.moved_area() / area)
        now = time.perf_counter()
        if now - mark >= INTERVAL or now - start >= seconds:
            if on_interval is not None:
                report = {"type": "interval", "t": round(now - start, 3), **_figures(window, now - mark)}
                on_interval(report)
            total.add(window)
            window, mark = _Window(), now
        if now - start >= seconds and frames >= 2:
            break
    summary = {"type": "summary", **_figures(total, time.perf_counter() - start), "resizes": resizes}
    received = getattr(source, "frames_received", None)
    if received is not None:  # a stream source (GNOME): grabs of an unchanged screen return the last frame
        summary["stream_frames"] = received - received_before
    return summary


def _open(args: argparse.Namespace) -> ScreenSource:
    from agent.capture.backends import is_wayland

    if args.screen or args.display or args.backend or os.environ.get("DISPLAY"):
        return open_screen(args.screen, args.display, args.backend, with_input=False)
    if is_wayland(os.environ):
        from agent.capture.backends import mutter_on_bus

        found = mutter_on_bus()
        if found is True:
            return open_screen(None, None, "gnome", with_input=False)
        why = f"this Wayland session has no X display and no GNOME screen-cast API ({found or 'not GNOME'})"
    else:
        why = "no X display (DISPLAY is not set)"
    print(f"{why}: probing the synthetic 'mixed' workload instead", file=sys.stderr)
    return open_screen("synthetic:mixed")


def _source_line(source: ScreenSource, tile: int, seconds: float) -> dict:
    width, height = source.size
    out = {"type": "source", "backend": source.backend or "synthetic", "description": source.description,
           "width": width, "height": height, "tile": tile, "seconds": seconds}
    for name in ("capture_path", "fallback_reason", "cursor_mode", "cursor_reason"):
        if hasattr(source, name):
            out[name] = getattr(source, name)
    return out


def _pct(r: dict) -> str:
    return f"{r['mean'] * 100:.2f}% (max {r['max'] * 100:.1f}%)"


def _text_interval(r: dict) -> None:
    print(f"  {r['t']:6.1f} s  {r['frames']:4d} frames  {r['frames_per_second']:7.1f}/s  "
          f"capture {r['capture_ms']['mean']:7.2f} ms  detect {r['detect_ms']['mean']:7.2f} ms  "
          f"dirty {r['dirty_ratio']['mean'] * 100:6.2f}%  copied {r['copied_ratio']['mean'] * 100:6.2f}%",
          flush=True)


def _text_summary(s: dict) -> None:
    print(f"summary: {s['frames']} frames in {s['seconds']:.2f} s = {s['frames_per_second']:.1f} frames/s")
    for name, key in (("capture", "capture_ms"), ("detect", "detect_ms")):
        m = s[key]
        print(f"  {name:<8} per frame  mean {m['mean']:.2f} ms  p50 {m['p50']:.2f} ms  p95 {m['p95']:.2f} ms")
    print(f"  dirty area (rects / screen)   {_pct(s['dirty_ratio'])}")
    print(f"  copied area (copies / screen) {_pct(s['copied_ratio'])}")
    if "truth_changed_ratio" in s:
        print(f"  synthetic truth: changed {_pct(s['truth_changed_ratio'])}, moved {_pct(s['truth_moved_ratio'])}")
    if "stream_frames" in s:
        print(f"  frames the compositor sent     {s['stream_frames']} (only when the screen changed; other grabs "
              "returned the last frame, zero-copy)")
    if s["resizes"]:
        print(f"  screen size changed {s['resizes']} time(s)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_screen_arguments(parser)
    add_backend_argument(parser)
    parser.add_argument("--seconds", type=float, default=3.0, help="how long to capture (default 3)")
    parser.add_argument("--tile", type=int, default=64, help="change-detection tile size, 16..128 (default 64)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line instead of text")


def run(args: argparse.Namespace) -> int:
    from agent.changes.detector import MAX_TILE, MIN_TILE

    if not 0 < args.seconds <= MAX_SECONDS:
        raise UsageError(f"--seconds must be in (0, {MAX_SECONDS:g}]")
    if not MIN_TILE <= args.tile <= MAX_TILE:
        raise UsageError(f"--tile must be in {MIN_TILE}..{MAX_TILE}")
    source = _open(args)
    try:
        head = _source_line(source, args.tile, args.seconds)
        if args.json:
            emit: Callable[[dict], None] = lambda obj: print(json.dumps(obj), flush=True)  # noqa: E731
            emit(head)
            emit(probe(source, args.seconds, args.tile, emit))
        else:
            print(f"probing {head['description']} for {args.seconds:g} s (tile {args.tile}, "
                  f"backend {head['backend']})")
            if head.get("cursor_reason"):
                print(f"  cursor: {head['cursor_reason']}")
            if head.get("fallback_reason"):
                print(f"  capture fell back to {head['capture_path']}: {head['fallback_reason']}")
            _text_summary(probe(source, args.seconds, args.tile, _text_interval))
    finally:
        source.close()
    return 0

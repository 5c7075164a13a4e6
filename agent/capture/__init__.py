"""Screen sources: the real display (mss) and deterministic synthetic workloads.

``open_source`` is what commands call: ``--screen synthetic:WORKLOAD[:WxH]``
gives a synthetic screen, anything else the X display from ``--display`` or
``$DISPLAY``. A missing or unreachable display is a CaptureError whose one
line says what to do, never a traceback.
"""
from __future__ import annotations

import os
import re
import sys

from agent.capture.base import CursorShape, ScreenSource
from agent.capture.mss_source import MssSource
from agent.capture.synthetic import FrameTruth, SyntheticSource
from agent.capture.workloads import WORKLOADS
from agent.errors import CaptureError, UsageError

__all__ = ["ScreenSource", "CursorShape", "MssSource", "SyntheticSource", "WORKLOADS", "FrameTruth",
           "open_source", "parse_screen"]

_SIZE = re.compile(r"^(\d{1,5})x(\d{1,5})$")
DEFAULT_SIZE = (1280, 720)


def parse_screen(screen: str) -> tuple[str, int, int]:
    """``synthetic:WORKLOAD[:WIDTHxHEIGHT]`` -> (workload, width, height); UsageError otherwise."""
    parts = screen.split(":")
    if parts[0] != "synthetic" or len(parts) not in (2, 3):
        raise UsageError(f"--screen takes synthetic:WORKLOAD or synthetic:WORKLOAD:WIDTHxHEIGHT, got {screen!r}")
    workload = parts[1]
    if workload not in WORKLOADS:
        raise UsageError(f"unknown synthetic workload {workload!r}; valid: {', '.join(WORKLOADS)}")
    width, height = DEFAULT_SIZE
    if len(parts) == 3:
        m = _SIZE.match(parts[2])
        if m is None:
            raise UsageError(f"synthetic screen size must look like 1280x720, got {parts[2]!r}")
        width, height = int(m.group(1)), int(m.group(2))
    return workload, width, height


def open_source(screen: str | None = None, display: str | None = None) -> ScreenSource:
    """The screen to capture: a synthetic workload, or the X display ``display`` / ``$DISPLAY``."""
    if screen:
        workload, width, height = parse_screen(screen)
        return SyntheticSource(workload, width, height)
    if not sys.platform.startswith("linux"):
        return MssSource(None)  # Windows and macOS: mss captures the desktop without an X display
    display = display or os.environ.get("DISPLAY") or None
    if display is None:
        if os.environ.get("WAYLAND_DISPLAY"):
            raise CaptureError("this is a Wayland session without X: screen capture needs X11 (log in to an "
                               "X11/Xorg session, or run under XWayland with DISPLAY set), or use "
                               "--screen synthetic:mixed")
        raise CaptureError("no X display: set DISPLAY or pass --display :N, or use --screen synthetic:mixed")
    return MssSource(display)

"""Real screen sources: the X11 display through mss, with DAMAGE as the change hint and XFixes for the cursor.

``open_source`` chooses the backend for this session and imports it lazily
(the python-mss pattern), so importing ``agent.capture`` loads no X library.
A missing or unreachable display is a CaptureError whose one line says what
to do, never a traceback. Synthetic screens live in ``agent.workloads``.
"""
from __future__ import annotations

import os
import sys
from typing import Any

from agent.capture.base import ScreenSource
from agent.errors import CaptureError

__all__ = ["ScreenSource", "MssSource", "open_source"]


def open_source(display: str | None = None) -> ScreenSource:
    """The screen to capture: the X display ``display`` / ``$DISPLAY`` (the whole desktop elsewhere)."""
    from agent.capture.mss_source import MssSource

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


def __getattr__(name: str) -> Any:
    if name == "MssSource":
        from agent.capture.mss_source import MssSource

        return MssSource
    raise AttributeError(f"module 'agent.capture' has no attribute {name!r}")

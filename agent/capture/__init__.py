"""Real screen sources: the X11 display through mss (DAMAGE as the change hint, XFixes for the cursor),
and a GNOME Wayland session through Mutter's ScreenCast and PipeWire.

``open_source`` chooses the backend for this session (agent.capture.backends:
GNOME's API on a GNOME Wayland session, X11 where DISPLAY is set, or what
``backend`` forces) and imports it lazily (the python-mss pattern), so
importing ``agent.capture`` loads neither an X library nor PyGObject. A
missing or unreachable display, or a missing package, is a CaptureError whose
one line says what to do, never a traceback. Synthetic screens live in
``agent.workloads``.
"""
from __future__ import annotations

import os
import sys
from typing import Any

from agent.capture.base import ScreenSource
from agent.errors import CaptureError

__all__ = ["ScreenSource", "MssSource", "GnomeSource", "open_source", "BACKENDS"]

BACKENDS = ("x11", "gnome")


def open_source(display: str | None = None, backend: str | None = None, *, with_input: bool = True) -> ScreenSource:
    """The screen to capture: GNOME's monitor on a GNOME Wayland session, else the X display
    ``display`` / ``$DISPLAY`` (the whole desktop on Windows and macOS).

    ``backend`` ("x11" or "gnome") forces one. ``with_input``: the GNOME
    backend opens a RemoteDesktop session too, for agent.inputs.gnome (a
    probe that only looks passes False). The source's ``backend`` attribute
    names what was chosen.
    """
    if not sys.platform.startswith("linux") and backend is None:
        from agent.capture.mss_source import MssSource

        return MssSource(None)  # Windows and macOS: mss captures the desktop without an X display
    from agent.capture.backends import GNOME, resolve_backend

    if resolve_backend(backend, display) == GNOME:
        from agent.capture.gnome_source import GnomeSource

        return GnomeSource(with_input=with_input)
    from agent.capture.mss_source import MssSource

    display = display or os.environ.get("DISPLAY") or None
    if display is None:
        raise CaptureError("no X display: set DISPLAY or pass --display :N, or use --screen synthetic:mixed")
    return MssSource(display)


def __getattr__(name: str) -> Any:
    if name == "MssSource":
        from agent.capture.mss_source import MssSource

        return MssSource
    if name == "GnomeSource":
        from agent.capture.gnome_source import GnomeSource

        return GnomeSource
    raise AttributeError(f"module 'agent.capture' has no attribute {name!r}")

"""Input injection: where the technician's keys and pointer land on the customer's desktop.

``open_input_backend`` picks the backend and imports it lazily (the
python-mss pattern), so importing ``agent.inputs`` needs neither an X library
nor PyGObject: XTest on an X display, or, for a screen captured through GNOME's
Mutter API, that source's own RemoteDesktop session (agent.inputs.gnome).
Wrap the backend in ``ScopeGate`` so input only passes while the consent
scope is ``control``.
"""
from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from agent.inputs.base import InputBackend, InputError, NullInput
from agent.inputs.gate import ScopeGate

__all__ = ["InputBackend", "InputError", "NullInput", "ScopeGate", "open_input_backend"]

# platform prefix -> (module, class); the first matching prefix wins
_BACKENDS: tuple[tuple[str, str, str], ...] = (
    ("linux", "agent.inputs.xtest", "XTestInput"),
    ("freebsd", "agent.inputs.xtest", "XTestInput"),
    ("openbsd", "agent.inputs.xtest", "XTestInput"),
)


def open_input_backend(display: str | None, backend: str | None = None, source: Any = None) -> InputBackend:
    """The input backend for the screen being shared.

    ``source`` is the opened screen source: a GNOME one (``source.backend ==
    "gnome"``) carries the RemoteDesktop session input must go through.
    ``backend`` forces "x11" or "gnome"; otherwise the source decides, and
    without one it is XTest on ``display`` (default $DISPLAY). Raises
    InputError with a message for the person starting the agent when there is
    nothing to inject into (no display, no XTEST, no backend yet).
    """
    chosen = backend or getattr(source, "backend", None)
    if chosen == "gnome":
        from agent.inputs.gnome import GnomeInput

        if getattr(source, "backend", None) != "gnome":
            raise InputError("GNOME input goes through the GNOME screen source's session: open the screen with "
                             "--backend gnome first")
        return GnomeInput(source)
    for prefix, module_name, class_name in _BACKENDS:
        if sys.platform.startswith(prefix):
            break
    else:
        raise InputError(f"no input backend for platform {sys.platform!r} yet: "
                         "run view-only or use an X11 desktop")
    if not (display or os.environ.get("DISPLAY")):
        hint = " (a Wayland session needs GNOME, or XWayland and DISPLAY set)" if os.environ.get("WAYLAND_DISPLAY") else ""
        raise InputError(f"no X display to send input to: set DISPLAY or pass --display :N{hint}")
    module = importlib.import_module(module_name)
    backend_obj: InputBackend = getattr(module, class_name)(display)
    return backend_obj

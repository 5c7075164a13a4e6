"""Input injection: where the technician's keys and pointer land on the customer's desktop.

``open_input_backend`` picks the platform backend and imports it lazily (the
python-mss pattern), so importing ``agent.inputs`` never needs an X library.
Wrap the backend in ``ScopeGate`` so input only passes while the consent
scope is ``control``.
"""
from __future__ import annotations

import importlib
import os
import sys

from agent.inputs.base import InputBackend, InputError, NullInput
from agent.inputs.gate import ScopeGate

__all__ = ["InputBackend", "InputError", "NullInput", "ScopeGate", "open_input_backend"]

# platform prefix -> (module, class); the first matching prefix wins
_BACKENDS: tuple[tuple[str, str, str], ...] = (
    ("linux", "agent.inputs.xtest", "XTestInput"),
    ("freebsd", "agent.inputs.xtest", "XTestInput"),
    ("openbsd", "agent.inputs.xtest", "XTestInput"),
)


def open_input_backend(display: str | None) -> InputBackend:
    """The input backend for this platform; ``display`` is an X display name (default $DISPLAY).

    Raises InputError with a message for the person starting the agent when
    there is nothing to inject into (no display, no XTEST, no backend yet).
    """
    for prefix, module_name, class_name in _BACKENDS:
        if sys.platform.startswith(prefix):
            break
    else:
        raise InputError(f"no input backend for platform {sys.platform!r} yet: "
                         "run view-only or use an X11 desktop")
    if not (display or os.environ.get("DISPLAY")):
        hint = " (a Wayland session needs XWayland and DISPLAY set)" if os.environ.get("WAYLAND_DISPLAY") else ""
        raise InputError(f"no X display to send input to: set DISPLAY or pass --display :N{hint}")
    module = importlib.import_module(module_name)
    backend: InputBackend = getattr(module, class_name)(display)
    return backend

"""PyGObject, GLib/Gio and GStreamer for the GNOME Wayland backend, or one line saying what to install.

The X11 path never imports this module: PyGObject is the optional extra
``rejnet-agent[wayland]``. Anything missing (PyGObject itself, GStreamer's
introspection data, the pipewiresrc element) is a CaptureError (exit code 5)
naming the packages, never an ImportError traceback.
"""
from __future__ import annotations

import threading
from typing import Any

from agent.errors import CaptureError

PIP_HINT = ("pip install 'rejnet-agent[wayland]' (PyGObject<3.50; building it needs "
            "apt-get install libgirepository1.0-dev libcairo2-dev pkg-config)")
GST_TYPELIBS = "gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0"
# element -> the Debian package that ships it
GST_ELEMENTS = {"pipewiresrc": "gstreamer1.0-pipewire", "videoconvert": "gstreamer1.0-plugins-base",
                "appsink": "gstreamer1.0-plugins-base"}

_init_lock = threading.Lock()
_gst: Any = None


def load_gio() -> tuple[Any, Any]:
    """(GLib, Gio) from PyGObject: enough to talk to the session bus."""
    try:
        import gi
    except ImportError:
        raise CaptureError(f"the GNOME Wayland backend needs PyGObject, which is not installed: {PIP_HINT}") from None
    try:
        gi.require_version("Gio", "2.0")
        from gi.repository import Gio, GLib
    except (ImportError, ValueError) as exc:
        raise CaptureError(f"PyGObject cannot load Gio ({exc}): apt-get install gir1.2-glib-2.0") from None
    return GLib, Gio


def load_gst() -> tuple[Any, Any]:
    """(Gst, GstApp), initialised once, with every element the PipeWire pipeline uses present."""
    global _gst
    load_gio()
    with _init_lock:
        if _gst is not None:
            return _gst
        import gi

        try:
            gi.require_version("Gst", "1.0")
            gi.require_version("GstApp", "1.0")
            from gi.repository import Gst, GstApp
        except (ImportError, ValueError) as exc:
            raise CaptureError(f"GStreamer's introspection data is missing ({exc}): apt-get install {GST_TYPELIBS}") \
                from None
        ok, _ = Gst.init_check(None)
        if not ok:
            raise CaptureError("GStreamer failed to initialise (see GST_DEBUG=2 for why)")
        missing = sorted({pkg for element, pkg in GST_ELEMENTS.items() if Gst.ElementFactory.find(element) is None})
        if missing:
            names = [e for e, pkg in GST_ELEMENTS.items() if pkg in missing and Gst.ElementFactory.find(e) is None]
            raise CaptureError(f"the GStreamer element(s) {', '.join(names)} are missing: "
                               f"apt-get install {' '.join(missing)}")
        _gst = (Gst, GstApp)
        return _gst


def gobject_pointer(obj: Any) -> int:
    """The C address of a GObject wrapped by PyGObject (its ``__gpointer__`` capsule), for ctypes calls."""
    import ctypes

    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype, get.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    address = get(obj.__gpointer__, None)
    if not address:
        raise CaptureError(f"PyGObject gave no address for {type(obj).__name__}")
    return int(address)

"""Which capture backend this session gets: X11 (mss) or GNOME Wayland (Mutter ScreenCast + PipeWire).

The rule (``choose_backend``, pure, tested without a compositor):

1. ``--backend x11|gnome`` forces one; ``--display :N`` means X11.
2. A Wayland session (``XDG_SESSION_TYPE=wayland`` or ``WAYLAND_DISPLAY`` set)
   whose session bus has ``org.gnome.Mutter.ScreenCast`` gets GNOME's API.
3. Otherwise ``DISPLAY`` set means X11 (an Xorg session, or XWayland when the
   compositor is not GNOME or PyGObject is not installed).
4. Otherwise there is nothing we can capture: a CaptureError that says why.

Other compositors (KDE, wlroots) and sandboxed apps need the xdg-desktop-portal
route, which is designed (see the GNOME source's docstring) but not built.
"""
from __future__ import annotations

import logging
import os
from typing import Callable, Mapping

from agent.errors import CaptureError, UsageError

log = logging.getLogger(__name__)

X11, GNOME = "x11", "gnome"
BACKENDS = (X11, GNOME)
SCREEN_CAST_NAME = "org.gnome.Mutter.ScreenCast"


def is_wayland(env: Mapping[str, str]) -> bool:
    return env.get("XDG_SESSION_TYPE", "").lower() == "wayland" or bool(env.get("WAYLAND_DISPLAY"))


def choose_backend(forced: str | None, display: str | None, env: Mapping[str, str],
                   mutter_on_bus: Callable[[], bool | str]) -> str:
    """The backend name; ``mutter_on_bus()`` answers True, False, or a string saying why it cannot tell.

    It is called only for a Wayland session that was not told what to use.
    """
    if forced is not None:
        if forced not in BACKENDS:
            raise UsageError(f"--backend must be one of {', '.join(BACKENDS)}, not {forced!r}")
        if forced == GNOME and display:
            raise UsageError("--display names an X display: it cannot be combined with --backend gnome")
        return forced
    if display:
        return X11
    x_display = env.get("DISPLAY")
    if is_wayland(env):
        found = mutter_on_bus()
        if found is True:
            return GNOME
        if x_display:
            if isinstance(found, str):  # GNOME may well be there: XWayland shows only the X11 windows
                log.warning("Wayland session, but %s: capturing X display %s through XWayland, which shows X11 "
                            "windows only", found, x_display)
            else:
                log.info("Wayland session without %s (not GNOME): capturing X display %s through XWayland",
                         SCREEN_CAST_NAME, x_display)
            return X11
        if isinstance(found, str):
            raise CaptureError(f"this is a Wayland session without X, and {found}")
        raise CaptureError(f"this Wayland session's compositor is not GNOME (no {SCREEN_CAST_NAME} on the session "
                           "bus) and there is no X display: other compositors need the xdg-desktop-portal "
                           "backend, which is not built yet; log in to GNOME or an X11 session, or use "
                           "--screen synthetic:mixed")
    if x_display:
        return X11
    raise CaptureError("no X display (DISPLAY is not set) and no Wayland session: set DISPLAY or pass "
                       "--display :N, run inside a GNOME Wayland session, or use --screen synthetic:mixed")


def mutter_on_bus() -> bool | str:
    """Whether the session bus has Mutter's screen-cast API; a string when it cannot tell (no PyGObject, no bus)."""
    try:
        from agent.capture.gi_support import load_gio

        GLib, Gio = load_gio()
    except CaptureError as exc:
        return str(exc)
    if not os.environ.get("DBUS_SESSION_BUS_ADDRESS") and not os.environ.get("XDG_RUNTIME_DIR"):
        return "there is no session bus (DBUS_SESSION_BUS_ADDRESS is not set)"
    try:
        address = Gio.dbus_address_get_for_bus_sync(Gio.BusType.SESSION, None)
        flags = Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION
        conn = Gio.DBusConnection.new_for_address_sync(address, flags, None, None)
    except GLib.Error as exc:
        return f"the session bus cannot be reached ({exc.message})"
    try:
        reply = conn.call_sync("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                               "NameHasOwner", GLib.Variant("(s)", (SCREEN_CAST_NAME,)),
                               GLib.VariantType.new("(b)"), Gio.DBusCallFlags.NONE, 5000, None)
        return bool(reply.unpack()[0])
    except GLib.Error as exc:
        return f"the session bus did not answer ({exc.message})"
    finally:
        conn.close_sync(None)


def resolve_backend(forced: str | None = None, display: str | None = None) -> str:
    """``choose_backend`` for this process's environment and session bus."""
    return choose_backend(forced, display, os.environ, mutter_on_bus)

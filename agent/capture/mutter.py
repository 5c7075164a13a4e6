"""GNOME's private Mutter D-Bus API: one RemoteDesktop session with its ScreenCast of a monitor.

The sequence, on the session bus (mutter 43 offers ScreenCast version 4 and
RemoteDesktop version 1)::

    RemoteDesktop.CreateSession()                     -> session (SessionId)
    ScreenCast.CreateSession({"remote-desktop-session-id": SessionId})
    ScreenCast.Session.RecordMonitor("", {"cursor-mode": 1})  -> stream
    RemoteDesktop.Session.Start()                     -> stream emits PipeWireStreamAdded(node)

The screen source reads the PipeWire node; the input backend calls the
RemoteDesktop session's Notify* methods (absolute pointer motion is given in
the stream's coordinates, hence one session for both). Without input
(``rejnet-agent probe``) only a ScreenCast session is made.

The API is private and versioned: we read each interface's ``Version``
property and refuse, with a CaptureError naming what is missing, anything
older than what we call. Mutter ends our sessions when our bus connection
closes, so a crashed agent leaves nothing recording. The connection is
private to this session; its signals are delivered to a GLib main context of
our own, which ``poll()`` turns (no GLib main loop thread).

Cursor: "cursor-mode" 2 (metadata) would send the pointer as SPA_META_Cursor
beside the frames, but GStreamer's pipewiresrc (PipeWire 0.3.65, Debian 12)
drops that metadata, so we ask for mode 1: the cursor drawn into the frames.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Mapping

from agent.errors import CaptureError

log = logging.getLogger(__name__)

SCREEN_CAST = "org.gnome.Mutter.ScreenCast"
REMOTE_DESKTOP = "org.gnome.Mutter.RemoteDesktop"
SCREEN_CAST_PATH = "/org/gnome/Mutter/ScreenCast"
REMOTE_DESKTOP_PATH = "/org/gnome/Mutter/RemoteDesktop"
PROPERTIES = "org.freedesktop.DBus.Properties"

MIN_SCREEN_CAST_VERSION = 2      # "cursor-mode" on RecordMonitor (GNOME 3.34)
MIN_REMOTE_DESKTOP_VERSION = 1   # NotifyKeyboardKeysym, NotifyPointerMotionAbsolute, NotifyPointerAxisDiscrete
DEVICE_KEYBOARD, DEVICE_POINTER, DEVICE_TOUCHSCREEN = 1, 2, 4
CURSOR_HIDDEN, CURSOR_EMBEDDED, CURSOR_METADATA = 0, 1, 2
CURSOR_MODE_NAMES = {CURSOR_HIDDEN: "hidden", CURSOR_EMBEDDED: "embedded", CURSOR_METADATA: "metadata"}
CURSOR_EMBEDDED_REASON = ("GStreamer's pipewiresrc passes no SPA cursor metadata on, so the cursor is drawn "
                          "into the frames (cursor-mode embedded)")
START_TIMEOUT = 10.0
CALL_TIMEOUT_MS = 5000


@dataclass(frozen=True)
class MutterApi:
    """What the session bus offers: each interface's Version (None when absent) and the device types."""

    screen_cast_version: int | None
    remote_desktop_version: int | None = None
    device_types: int = 0


def check_api(api: MutterApi, need_input: bool) -> None:
    """Refuse a Mutter that lacks what we call, with one line naming what is missing (exit code 5)."""
    if api.screen_cast_version is None:
        raise CaptureError(f"{SCREEN_CAST} is not on the session bus: this is not a GNOME (Mutter) session, or "
                           "mutter is too old to share the screen")
    if api.screen_cast_version < MIN_SCREEN_CAST_VERSION:
        raise CaptureError(f"{SCREEN_CAST} is version {api.screen_cast_version}, rejnet needs version "
                           f"{MIN_SCREEN_CAST_VERSION} or later (cursor-mode, GNOME 3.34+)")
    if not need_input:
        return
    if api.remote_desktop_version is None:
        raise CaptureError(f"{REMOTE_DESKTOP} is not on the session bus: mutter was built without remote "
                           "desktop support, so input cannot be injected")
    if api.remote_desktop_version < MIN_REMOTE_DESKTOP_VERSION:
        raise CaptureError(f"{REMOTE_DESKTOP} is version {api.remote_desktop_version}, rejnet needs version "
                           f"{MIN_REMOTE_DESKTOP_VERSION} or later")
    missing = [name for bit, name in ((DEVICE_KEYBOARD, "keyboard"), (DEVICE_POINTER, "pointer"))
               if not api.device_types & bit]
    if missing:
        raise CaptureError(f"{REMOTE_DESKTOP} offers no {' or '.join(missing)} device "
                           f"(SupportedDeviceTypes {api.device_types}): input cannot be injected")


def stream_geometry(parameters: Mapping[str, Any]) -> tuple[int, int, int, int] | None:
    """(x, y, width, height) of the recorded monitor from a Stream's ``Parameters``, if it says."""
    try:
        x, y = (int(v) for v in parameters.get("position", (0, 0)))
        w, h = (int(v) for v in parameters["size"])
    except (KeyError, TypeError, ValueError):
        return None
    return (x, y, w, h) if w > 0 and h > 0 else None


class MutterSession:
    """A started ScreenCast (and, with ``remote_desktop``, RemoteDesktop) session; ``node_id`` is the PipeWire node."""

    def __init__(self, *, remote_desktop: bool = True, connector: str = "",
                 cursor_mode: int = CURSOR_EMBEDDED, timeout: float = START_TIMEOUT) -> None:
        from agent.capture.gi_support import load_gio

        self._GLib, self._Gio = load_gio()
        self.remote_desktop = remote_desktop
        self.cursor_mode = cursor_mode
        self.closed_reason: str | None = None
        self.node_id: int | None = None
        self.pipewire_fd: int | None = None  # Mutter's streams are on the user's PipeWire daemon (no fd)
        self.stream_path = ""
        self._rd_path = self._sc_path = ""
        self._subscriptions: list[int] = []
        self._ctx = self._GLib.MainContext.new()
        self._conn = self._connect()
        try:
            self.api = self._read_api()
            check_api(self.api, remote_desktop)
            self._start(connector, timeout)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ setup
    def _connect(self) -> Any:
        GLib, Gio = self._GLib, self._Gio
        try:
            address = Gio.dbus_address_get_for_bus_sync(Gio.BusType.SESSION, None)
            flags = Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION
            return Gio.DBusConnection.new_for_address_sync(address, flags, None, None)
        except GLib.Error as exc:
            raise CaptureError(f"cannot reach the session bus for GNOME screen sharing: {exc.message}") from None

    def _call(self, name: str, path: str, interface: str, method: str, args: Any = None) -> Any:
        GLib, Gio = self._GLib, self._Gio
        try:
            reply = self._conn.call_sync(name, path, interface, method, args, None, Gio.DBusCallFlags.NONE,
                                         CALL_TIMEOUT_MS, None)
        except GLib.Error as exc:
            raise CaptureError(f"{interface}.{method} failed: {_dbus_message(exc)}") from None
        return reply.unpack() if reply is not None else ()

    def _property(self, name: str, path: str, interface: str, prop: str) -> Any:
        GLib = self._GLib
        try:
            return self._call(name, path, PROPERTIES, "Get", GLib.Variant("(ss)", (interface, prop)))[0]
        except CaptureError:
            return None

    def _read_api(self) -> MutterApi:
        sc = self._property(SCREEN_CAST, SCREEN_CAST_PATH, SCREEN_CAST, "Version")
        rd = devices = None
        if self.remote_desktop:
            rd = self._property(REMOTE_DESKTOP, REMOTE_DESKTOP_PATH, REMOTE_DESKTOP, "Version")
            devices = self._property(REMOTE_DESKTOP, REMOTE_DESKTOP_PATH, REMOTE_DESKTOP, "SupportedDeviceTypes")
        return MutterApi(sc, rd, int(devices or 0))

    def _subscribe(self, sender: str, interface: str, member: str, path: str, handler: Any) -> None:
        self._ctx.push_thread_default()
        try:
            sub = self._conn.signal_subscribe(sender, interface, member, path, None,
                                              self._Gio.DBusSignalFlags.NONE, handler)
        finally:
            self._ctx.pop_thread_default()
        self._subscriptions.append(sub)

    def _start(self, connector: str, timeout: float) -> None:
        GLib = self._GLib
        options: dict[str, Any] = {}
        if self.remote_desktop:
            (self._rd_path,) = self._call(REMOTE_DESKTOP, REMOTE_DESKTOP_PATH, REMOTE_DESKTOP, "CreateSession")
            session_id = self._property(REMOTE_DESKTOP, self._rd_path, f"{REMOTE_DESKTOP}.Session", "SessionId")
            if not session_id:
                raise CaptureError(f"{REMOTE_DESKTOP}: the new session has no SessionId")
            options["remote-desktop-session-id"] = GLib.Variant("s", session_id)
            self._subscribe(REMOTE_DESKTOP, f"{REMOTE_DESKTOP}.Session", "Closed", self._rd_path, self._on_closed)
        (self._sc_path,) = self._call(SCREEN_CAST, SCREEN_CAST_PATH, SCREEN_CAST, "CreateSession",
                                      GLib.Variant("(a{sv})", (options,)))
        self._subscribe(SCREEN_CAST, f"{SCREEN_CAST}.Session", "Closed", self._sc_path, self._on_closed)
        properties = {"cursor-mode": GLib.Variant("u", self.cursor_mode)}
        (self.stream_path,) = self._call(SCREEN_CAST, self._sc_path, f"{SCREEN_CAST}.Session", "RecordMonitor",
                                         GLib.Variant("(sa{sv})", (connector, properties)))
        self._subscribe(SCREEN_CAST, f"{SCREEN_CAST}.Stream", "PipeWireStreamAdded", self.stream_path,
                        self._on_stream_added)
        if self.remote_desktop:  # a ScreenCast session tied to a RemoteDesktop one starts with it
            self._call(REMOTE_DESKTOP, self._rd_path, f"{REMOTE_DESKTOP}.Session", "Start")
        else:
            self._call(SCREEN_CAST, self._sc_path, f"{SCREEN_CAST}.Session", "Start")
        deadline = time.monotonic() + timeout
        while self.node_id is None and self.closed_reason is None and time.monotonic() < deadline:
            self._ctx.iteration(False) or time.sleep(0.01)
        if self.closed_reason is not None:
            raise CaptureError(f"GNOME closed the screen-cast session as it started: {self.closed_reason}")
        if self.node_id is None:
            raise CaptureError(f"{SCREEN_CAST} gave no PipeWire stream within {timeout:g} s")

    def _on_stream_added(self, conn, sender, path, interface, member, params) -> None:
        self.node_id = int(params.unpack()[0])

    def _on_closed(self, conn, sender, path, interface, member, params) -> None:
        self.closed_reason = f"{interface} {path} was closed by GNOME"

    # ------------------------------------------------------------------ while running
    def describe(self) -> str:
        return f"gnome mutter ScreenCast v{self.api.screen_cast_version} node {self.node_id}"

    @property
    def geometry(self) -> tuple[int, int, int, int] | None:
        """The recorded monitor's (x, y, width, height), from the stream's Parameters."""
        params = self._property(SCREEN_CAST, self.stream_path, f"{SCREEN_CAST}.Stream", "Parameters")
        return stream_geometry(params) if isinstance(params, dict) else None

    def poll(self) -> None:
        """Deliver pending bus signals; CaptureError when GNOME closed the session (mutter restarted, logout)."""
        if self._conn is None:
            raise CaptureError("the GNOME screen-cast session was closed")
        while self._ctx.iteration(False):
            pass
        if self.closed_reason is not None:
            raise CaptureError(self.closed_reason)
        if self._conn.is_closed():
            raise CaptureError("the session bus connection to GNOME was lost")

    def notify(self, method: str, signature: str, *args: Any) -> None:
        """Call RemoteDesktop.Session.Notify<method>(args); CaptureError when the session is gone."""
        if not self.remote_desktop:
            raise CaptureError("this GNOME session was opened without input (view only)")
        if self._conn is None:
            raise CaptureError("the GNOME remote-desktop session was closed")
        self._call(REMOTE_DESKTOP, self._rd_path, f"{REMOTE_DESKTOP}.Session", f"Notify{method}",
                   self._GLib.Variant(signature, args))

    def close(self) -> None:
        """Stop the sessions and close our bus connection (which alone makes Mutter drop them). Idempotent."""
        conn, self._conn = getattr(self, "_conn", None), None
        if conn is None:
            return
        for sub in self._subscriptions:
            conn.signal_unsubscribe(sub)
        self._subscriptions.clear()
        if self.closed_reason is None:
            try:
                if self._rd_path:
                    conn.call_sync(REMOTE_DESKTOP, self._rd_path, f"{REMOTE_DESKTOP}.Session", "Stop", None, None,
                                   self._Gio.DBusCallFlags.NONE, CALL_TIMEOUT_MS, None)
                elif self._sc_path:
                    conn.call_sync(SCREEN_CAST, self._sc_path, f"{SCREEN_CAST}.Session", "Stop", None, None,
                                   self._Gio.DBusCallFlags.NONE, CALL_TIMEOUT_MS, None)
            except self._GLib.Error as exc:  # already stopped, or mutter is gone
                log.debug("stopping the GNOME session: %s", _dbus_message(exc))
        try:
            conn.close_sync(None)
        except self._GLib.Error as exc:
            log.debug("closing the session bus connection: %s", _dbus_message(exc))
        while self._ctx.iteration(False):  # let go of queued signal deliveries
            pass


def _dbus_message(exc: Any) -> str:
    """A GLib.Error's message without the 'GDBus.Error:org.x.Y: ' prefix, on one line."""
    text = str(getattr(exc, "message", exc))
    if text.startswith("GDBus.Error:"):
        text = text.split(": ", 1)[-1]
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__

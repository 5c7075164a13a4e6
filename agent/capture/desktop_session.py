"""What a Wayland screen source and input backend need from a compositor session, whoever grants it.

Today one implementation: agent.capture.mutter.MutterSession (GNOME's private
D-Bus API, no dialog). The other route, for KDE, wlroots compositors and
sandboxed (Flatpak) apps, is the xdg-desktop-portal: org.freedesktop.portal.
RemoteDesktop.CreateSession -> SelectDevices(types keyboard|pointer,
persist_mode 2, restore_token) -> ScreenCast.SelectSources(types monitor,
cursor_mode) -> RemoteDesktop.Start (the portal's consent dialog; the reply
carries the streams and a new restore_token) -> OpenPipeWireRemote (a
PipeWire socket fd). A PortalSession implementing this protocol plugs into
GnomeSource(session=...) and GnomeInput unchanged: ``node_id`` and
``pipewire_fd`` feed ``pipewire_pipeline(node, fd)``, and ``notify`` prepends
the portal's (session_handle, options) arguments to the same Notify* calls.
It is not built yet: the portal's dialog needs a person (or a restore token
from an earlier, interactive grant), so it cannot be tested headless here.
"""
from __future__ import annotations

from typing import Any, Protocol


class DesktopSession(Protocol):
    """A started screen-cast (and optionally remote-desktop) session of one monitor."""

    remote_desktop: bool          # input can be injected through ``notify``
    node_id: int | None           # the PipeWire node of the monitor's stream
    pipewire_fd: int | None       # a PipeWire socket to use instead of the user's daemon (the portal's)
    stream_path: str              # the stream's handle, for absolute pointer motion
    cursor_mode: int              # 0 hidden, 1 embedded, 2 metadata (agent.capture.mutter)

    def describe(self) -> str:
        """A short description for ``ScreenSource.description``."""

    def poll(self) -> None:
        """Deliver pending events; CaptureError once the compositor closed the session."""

    def notify(self, method: str, signature: str, *args: Any) -> None:
        """Notify<method>(args) on the remote-desktop session (keys, pointer); CaptureError if it is gone."""

    def close(self) -> None:
        """End the session. Idempotent."""

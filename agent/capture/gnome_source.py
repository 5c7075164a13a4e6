"""The GNOME Wayland screen: Mutter's ScreenCast of a monitor, read from PipeWire through GStreamer.

Same interface as the X11 source (``grab``, ``size``, ``damaged``,
``hint_fileno``, ``cursor``, ``close``), so the capture loop does not know
which it has:

* frames are read-only views of the mapped PipeWire buffer (pipewire_frames).
  A view keeps its buffer out of PipeWire's pool until it is collected, so no
  one writes to it again: ``fresh_frames`` is True and the capture loop keeps
  a changed frame without copying it (Mutter's pool has up to 16 buffers; the
  loop holds one or two);
* the damage hint is the stream itself: ``damaged()`` is True when Mutter sent
  a buffer since the last grab and ``hint_fileno()`` becomes readable when it
  does. An idle monitor sends nothing, so an idle session costs nothing;
* the cursor is drawn into the frames (see agent.capture.mutter on why
  metadata mode cannot be read through GStreamer): ``cursor()`` is None and
  ``cursor_mode`` / ``cursor_reason`` say so;
* a resized monitor renegotiates the stream; frames come at the new size.

The same Mutter session carries the technician's input (agent.inputs.gnome),
which needs the stream: ``session`` is shared with the input backend, and
this source owns it (closing the source ends both).

Other compositors and sandboxed apps: the xdg-desktop-portal yields exactly
what this class consumes (a PipeWire node, a PipeWire socket, the same
Notify* input calls); the session it needs is the DesktopSession protocol
(agent.capture.desktop_session), passed as ``session``. Only Mutter's is built.
"""
from __future__ import annotations

import logging

import numpy as np

from agent.capture.base import ScreenSource
from agent.capture.desktop_session import DesktopSession
from agent.errors import CaptureError
from agent.models import CursorShape

log = logging.getLogger(__name__)


class GnomeSource(ScreenSource):
    """The primary (or ``connector``'s) monitor of the GNOME session on this process's session bus."""

    backend = "gnome"
    fresh_frames = True

    def __init__(self, *, connector: str = "", with_input: bool = True, session: DesktopSession | None = None) -> None:
        """Open Mutter's session for the monitor (``connector``, "" = primary), or use a started ``session``."""
        from agent.capture.mutter import CURSOR_EMBEDDED, CURSOR_EMBEDDED_REASON, CURSOR_MODE_NAMES, MutterSession
        from agent.capture.pipewire_frames import AppSinkFrames, pipewire_pipeline

        self._closed = False
        self._frames: AppSinkFrames | None = None
        self.session: DesktopSession = session if session is not None else MutterSession(
            remote_desktop=with_input, connector=connector, cursor_mode=CURSOR_EMBEDDED)
        try:
            self._frames = AppSinkFrames(pipewire_pipeline(self.session.node_id or 0, self.session.pipewire_fd))
        except BaseException:
            self.session.close()
            raise
        self.cursor_mode = CURSOR_MODE_NAMES[self.session.cursor_mode]
        self.cursor_reason = CURSOR_EMBEDDED_REASON
        self.capture_path = "PipeWire shared memory, mapped (zero-copy)"
        self._size = self._frames.size
        self._describe()

    @property
    def fallback_reason(self) -> str | None:
        return self._frames.fallback_reason if self._frames is not None else None

    @property
    def frames_received(self) -> int:
        """Frames the compositor sent so far (it sends one only when the monitor was redrawn)."""
        return self._frames.frames if self._frames is not None else 0

    @property
    def node_id(self) -> int | None:
        return self.session.node_id

    @property
    def size(self) -> tuple[int, int]:
        return self._size

    def _describe(self) -> None:
        self.description = f"{self.session.describe()} {self._size[0]}x{self._size[1]} via PipeWire"

    def grab(self) -> np.ndarray:
        if self._closed or self._frames is None:
            raise CaptureError("this screen source was closed")
        self.session.poll()
        frame = self._frames.latest()
        size = (frame.shape[1], frame.shape[0])
        if size != self._size:
            log.info("screen size changed from %dx%d to %dx%d", *self._size, *size)
            self._size = size
            self._describe()
        return frame

    def damaged(self) -> bool | None:
        """Whether Mutter sent a frame since the last grab (it sends one only when the monitor was redrawn)."""
        return False if self._frames is None else self._frames.pending

    def hint_fileno(self) -> int | None:
        """Readable when Mutter sends a frame: the capture loop sleeps on it while the screen is idle."""
        return None if self._frames is None or self._closed else self._frames.fileno()

    def cursor(self) -> CursorShape | None:
        return None  # drawn into the frames (cursor-mode embedded)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        frames, self._frames = self._frames, None
        if frames is not None:
            frames.close()
        self.session.close()

"""Real displays through python-mss.

mss does the capture on every platform it supports; what is platform-specific
here is small and kept apart: knowing when the screen changed size, reading
the cursor shape and the optional "something was drawn" hint. On X11 a
python-xlib connection does all three from events (root ConfigureNotify,
XFixes cursor notify, DAMAGE), so a frame costs no extra round trip; other
platforms re-read the monitor layout from mss once a second.

``grab()`` returns a zero-copy numpy view over the bytearray mss returns for
each shot (mss itself copies out of its shared-memory segment into that
array). On X11 with MIT-SHM, ``grab_into`` instead writes only the rectangles
X DAMAGE reported (agent.capture.xshm) into a buffer the caller owns: the
capture loop's path, which never allocates a frame per grab. Which path is
used (XShmGetImage over MIT-SHM, or plain XGetImage) and why it fell back are
kept in ``capture_path`` and ``fallback_reason``.
"""
from __future__ import annotations

import logging
import os
import select
import sys
import time
from typing import Any, Sequence

import numpy as np

from agent.capture.base import ScreenSource
from agent.models import CursorShape
from agent.errors import CaptureError

log = logging.getLogger(__name__)

Rect = tuple[int, int, int, int]

POLL_SECONDS = 1.0  # non-X11 platforms: how often the monitor layout is re-read
_SHM_OK = "MIT-SHM is working correctly."
MAX_DAMAGE_RECTS = 48  # more damage rectangles than this are merged into as many bands (one request each)


def _new_mss(display: str | None) -> Any:
    import mss

    kwargs = {"display": display} if sys.platform.startswith("linux") and display else {}
    factory = getattr(mss, "MSS", None) or mss.mss  # mss >= 10.2 deprecates mss.mss()
    return factory(**kwargs)


class _X11Watch:
    """A python-xlib connection to the same display: root size from events, and the cursor."""

    def __init__(self, display: str | None) -> None:
        from Xlib import X, error
        from Xlib import display as xdisplay

        from agent.capture.x11_damage import DamageHint
        from agent.capture.x11_cursor import XFixesCursor

        self._errors = (error.ConnectionClosedError, error.DisplayError, error.XError, OSError)
        try:
            self._d = xdisplay.Display(display)
        except (error.DisplayError, OSError) as exc:
            raise CaptureError(_unreachable(display, exc)) from None
        # asynchronous X errors are logged, not printed over the command's output
        self._d.set_error_handler(lambda err, request=None: log.debug("X error on the watch connection: %s", err))
        try:
            self._root = self._d.screen().root
            self._root.change_attributes(event_mask=X.StructureNotifyMask)
            geometry = self._root.get_geometry()
            self.width, self.height = geometry.width, geometry.height
            self.cursor = XFixesCursor(self._d)
            self.damage = DamageHint(self._d)
        except self._errors as exc:
            self.close()
            raise CaptureError(_unreachable(display, exc)) from None
        self._configure = X.ConfigureNotify
        self.display = display
        self.origin = (0, 0)  # the X root window starts at 0, 0
        self._readable = select.poll()
        self._readable.register(self._d.fileno(), select.POLLIN)

    def poll(self) -> tuple[int, int]:
        """Read pending events without blocking; returns the current root size."""
        if self._nothing_new():
            return self.width, self.height
        try:
            while self._d.pending_events():
                event = self._d.next_event()
                if event.type == self._configure and event.window == self._root:
                    self.width, self.height = event.width, event.height
                else:
                    self.cursor.note_event(event)
                    self.damage.note_event(event)
        except self._errors as exc:
            raise CaptureError(_gone(self.display, exc)) from None
        return self.width, self.height

    def _nothing_new(self) -> bool:
        """No event queued, nothing to send and nothing to read: python-xlib's pending_events (a lock, a
        flush and a select, ~35 us, asked several times a typed key) would find nothing either."""
        proto = self._d.display
        if proto.event_queue or proto.request_queue or proto.data_send:
            return False
        return not self._readable.poll(0)

    def query(self) -> tuple[int, int]:
        """Ask the server for the root size now (after a failed grab): CaptureError if it is gone."""
        try:
            geometry = self._root.get_geometry()
        except self._errors as exc:
            raise CaptureError(_gone(self.display, exc)) from None
        self.width, self.height = geometry.width, geometry.height
        return self.width, self.height

    def damaged(self) -> bool | None:
        self.poll()
        return self.damage.damaged if self.damage.available else None

    def sync(self) -> None:
        """Round trip: everything sent on this connection so far is applied."""
        try:
            self._d.sync()
        except self._errors as exc:
            raise CaptureError(_gone(self.display, exc)) from None

    def rearm_damage(self) -> None:
        try:
            self.damage.rearm()
        except self._errors as exc:
            raise CaptureError(_gone(self.display, exc)) from None

    def take_damage(self) -> list[Rect] | None:
        """The rectangles drawn since the last call (the hint re-armed), or None when X cannot say where."""
        if not self.damage.available:
            return None
        try:
            return self.damage.take_rects()
        except self._errors as exc:
            raise CaptureError(_gone(self.display, exc)) from None

    def cursor_shape(self) -> CursorShape | None:
        self.poll()  # cursor-change events may have arrived since the last grab
        try:
            return self.cursor.shape()
        except self._errors as exc:
            log.debug("no cursor shape: %s", exc)
            return None

    def close(self) -> None:
        d, self._d = getattr(self, "_d", None), None
        if d is not None:
            try:
                d.close()
            except Exception as exc:  # the server may already be gone; closing must not fail
                log.debug("closing the X connection: %s", exc)


class _PollWatch:
    """Platforms without an X server: the monitor layout re-read from a fresh mss every second."""

    def __init__(self, sct: Any) -> None:
        monitor = sct.monitors[0]
        self.width, self.height = monitor["width"], monitor["height"]
        # the virtual screen may start left of or above the primary monitor (Windows)
        self.origin = (monitor["left"], monitor["top"])
        self._next = time.monotonic() + POLL_SECONDS

    def poll(self) -> tuple[int, int]:
        if time.monotonic() >= self._next:
            self.query()
        return self.width, self.height

    def query(self) -> tuple[int, int]:
        self._next = time.monotonic() + POLL_SECONDS
        try:
            with _new_mss(None) as sct:
                monitor = sct.monitors[0]
        except Exception as exc:
            raise CaptureError(f"the display went away: {_detail(exc)}") from None
        self.width, self.height = monitor["width"], monitor["height"]
        self.origin = (monitor["left"], monitor["top"])
        return self.width, self.height

    def cursor_shape(self) -> CursorShape | None:
        return None

    def damaged(self) -> bool | None:
        return None

    def rearm_damage(self) -> None:
        pass

    def take_damage(self) -> list[Rect] | None:
        return None

    def close(self) -> None:
        pass


class MssSource(ScreenSource):
    """The real screen (all monitors, as one framebuffer) captured with mss."""

    def __init__(self, display: str | None = None) -> None:
        self.backend = "x11" if sys.platform.startswith(("linux", "freebsd", "openbsd")) else f"mss-{sys.platform}"
        self.display = (display or os.environ.get("DISPLAY")) if sys.platform.startswith("linux") else None
        # On X, mss copies every image (XShm segment or XGetImage reply) into a new bytearray
        # (tests/test_capture_mss.py checks it): the agent keeps that frame without another 8 MB copy.
        self.fresh_frames = sys.platform.startswith("linux")
        self.capture_path = "unknown"
        self.fallback_reason: str | None = None
        self._sct: Any = None
        self._shm: Any = None  # agent.capture.xshm.XShmGrabber: sub-image grabs, when MIT-SHM works
        self._watch: Any = None
        self._watch_fd: int | None = None  # the watch's socket, once asked (hint_fileno)
        self._hinting = False  # DAMAGE is re-armed per grab only once someone asks for the hint
        self._closed = False
        try:
            # xcb first (our XShm grabber, else mss): it fails cleanly on an unreachable display,
            # where python-xlib would leak its sockets. mss, when the grabber works, is opened only
            # if someone calls grab(): its shared segment is a whole screen (33 MB at 4K).
            if sys.platform.startswith("linux"):
                from agent.capture.xshm import XShmGrabber

                self._shm = XShmGrabber.open(self.display)
            if self._shm is None:
                self._open()
            self._watch = _X11Watch(self.display) if sys.platform.startswith("linux") else _PollWatch(self._sct)
            self._width, self._height = self._watch.poll()
            self._check()  # fail now, with a clear message, rather than in the middle of a session
            if self._shm is not None and self._watch.damage.available:
                if self._shm.own_damage():
                    self._watch.damage.release()  # its events come to the grabber's connection instead
                else:
                    self._watch.sync()  # the DAMAGE object exists on the server before the grabber names it
                    self._shm.use_damage(self._watch.damage.damage_id)
        except BaseException:
            self.close()
            raise

    @property
    def size(self) -> tuple[int, int]:
        return (self._width, self._height)

    def _open(self) -> None:
        try:
            self._sct = _new_mss(self.display)
        except Exception as exc:
            raise CaptureError(_unreachable(self.display, exc)) from None

    def _reopen(self, size: tuple[int, int]) -> None:
        """A new size: mss sizes its shared-memory segment when it connects, so connect again (lazily)."""
        log.info("screen size changed from %dx%d to %dx%d", self._width, self._height, *size)
        if self._sct is not None:
            self._sct.close()
            self._sct = None
        if self._shm is None:
            self._open()
        self._width, self._height = size
        self._describe()

    def _check(self) -> None:
        """One small grab through the path in use; CaptureError (or the grabber dropped) if it fails."""
        if self._shm is not None:
            try:
                self._shm.grab(np.empty((1, 1, 4), np.uint8), [(0, 0, 1, 1)])
                self.capture_path = "XShmGetImage"
                self._describe()
                return
            except OSError as exc:
                log.info("no XShm sub-image capture: %s", exc)
                self._shm.close()
                self._shm = None
                self._open()
        self._grab_once()

    def _grab_once(self) -> np.ndarray:
        if self._sct is None:
            self._open()
        w, h = self._width, self._height
        left, top = self._watch.origin
        shot = self._sct.grab({"left": left, "top": top, "width": w, "height": h})
        raw = shot.raw
        if len(raw) != w * h * 4:
            raise CaptureError(f"mss returned {len(raw)} bytes for a {w}x{h} screen: unsupported pixel layout")
        if self.capture_path == "unknown":
            self._note_path()
        return np.frombuffer(raw, dtype=np.uint8).reshape(h, w, 4)

    def _note_path(self) -> None:
        status = list(getattr(self._sct, "performance_status", None) or [])
        if sys.platform.startswith("linux"):
            if _SHM_OK in status:
                self.capture_path = "XShmGetImage"
            else:
                self.capture_path = "XGetImage"
                self.fallback_reason = "; ".join(status) or "this mss version has no MIT-SHM path"
        else:
            self.capture_path = f"mss ({sys.platform})"
        self._describe()

    def _describe(self) -> None:
        self.description = f"mss {self.display or 'screen'} {self._width}x{self._height} via {self.capture_path}"

    def damaged(self) -> bool | None:
        """Whether X reported drawing since the last grab; None when the server cannot tell (no DAMAGE).

        A capture loop may skip grabbing while this is False. Asking once makes
        every later grab re-arm the hint, which costs one round trip per grab.
        """
        self._hinting = True
        if self._shm is not None and self._shm.damage_events():
            self._watch.damage.damaged = True
            return True  # the watch's own events (the cursor's, the screen size) wait for the grab's poll()
        return self._watch.damaged()  # the watch reads its own events too

    def hint_fileno(self) -> int | tuple[int, ...] | None:
        """File descriptors that become readable when X sends an event (DAMAGE among them), or None.

        Lets a capture loop sleep in the event loop until the screen is drawn on,
        instead of polling ``damaged()``; ``damaged()`` still says what happened.
        Two when DAMAGE's events come to the grabber's connection: the watch's
        still brings the cursor's changes and the screen's size.
        """
        d = getattr(self._watch, "_d", None)
        damage = getattr(self._watch, "damage", None)  # asked without reading X: the loop just did
        if d is None or damage is None or not damage.available:
            return None
        if self._watch_fd is None:  # (python-xlib's fileno() checks the connection too: twice a typed key)
            self._watch_fd = d.fileno()
        if self._shm is not None and self._shm.owns_damage:
            return self._shm.fileno(), self._watch_fd
        return self._watch_fd

    hint_drains = True  # damaged() reads all that hint_fileno()'s sockets hold: a reader may stay on them

    @property
    def sub_images(self) -> bool:
        """Whether ``grab_into`` can serve (MIT-SHM works on this display)."""
        return self._shm is not None

    def take_damage(self) -> list[Rect] | None:
        """Move what X DAMAGE accumulated out of the server and return its rectangles (re-arms the hint).

        None when X cannot say where it drew (grab everything then). Lets a
        capture loop see how much was drawn before choosing where to grab it
        (a few glyphs at once, a screenful in a worker thread); hand the result
        to ``grab_into(damage=...)``. Over the grabber's own connection when it
        could take the damage there (one round trip, no python-xlib).
        """
        if self._closed:
            raise CaptureError("this screen source was closed")
        if self._shm is not None and self._shm.damage_ready:
            try:
                rects = self._shm.take_damage()
            except OSError as exc:  # the display went away (or the watch's DAMAGE object with it)
                log.debug("taking the damage failed: %s", exc)
                return None
            self._watch.damage.damaged = False
            return rects
        return self._watch.take_damage()

    def grab_into(self, frame: np.ndarray, also: Sequence[Rect] = (),
                  damage: Sequence[Rect] | None | bool = False,
                  base: np.ndarray | None = None) -> list[Rect] | None:
        """Write what X DAMAGE reported since the last grab, and the rectangles ``also``, into ``frame``.

        ``frame`` is the caller's (H, W, 4) buffer holding the previous frame;
        returns the rectangles written (possibly none), or None when this path
        cannot serve (no MIT-SHM grabber, the size changed, a request failed):
        the caller then uses ``grab()``, which sorts out why. Re-arms the hint;
        where X cannot say what was drawn, the whole screen is written.
        ``damage``: what ``take_damage()`` returned just before, if the caller
        took it already (False: take it here). ``base``: the previous frame,
        when ``frame`` equals it (a scratch or pooled copy): then only rows
        that differ from it are written, and returned (X's damage covers many
        rows that did not change).
        """
        if self._closed:
            raise CaptureError("this screen source was closed")
        if self._shm is None:
            return None
        size = self._watch.poll()
        if size != (self._width, self._height) or frame.shape[:2] != (self._height, self._width):
            return None
        rects = self.take_damage() if damage is False else damage
        if rects is None or (0, 0, self._width, self._height) in also:
            rects = [(0, 0, self._width, self._height)]
        else:
            rects = coalesce(rects, MAX_DAMAGE_RECTS) + list(also)
        try:
            changed = self._shm.grab(frame, rects, base)
        except OSError as exc:  # the display shrank or went away: grab() finds out which
            log.debug("sub-image grab failed: %s", exc)
            return None
        return rects if base is None else changed

    def grab(self) -> np.ndarray:
        if self._closed:
            raise CaptureError("this screen source was closed")
        size = self._watch.poll()
        if size != (self._width, self._height):
            self._reopen(size)
        if self._hinting:
            if self._shm is not None and self._shm.damage_ready:
                self.take_damage()  # a round trip: the reset is applied before mss's grab is served
            else:
                self._watch.rearm_damage()
        try:
            return self._grab_once()
        except CaptureError:
            raise
        except Exception as exc:  # mss raises ScreenShotError, XError, even AssertionError when X dies
            first = exc
        # The display went away, or shrank before its ConfigureNotify reached us.
        size = self._watch.query()
        if size == (self._width, self._height):
            raise CaptureError(f"capturing {self.display or 'the screen'} failed: {_detail(first)}") from None
        self._reopen(size)
        try:
            return self._grab_once()
        except CaptureError:
            raise
        except Exception as exc:
            raise CaptureError(f"capturing {self.display or 'the screen'} failed: {_detail(exc)}") from None

    def cursor(self) -> CursorShape | None:
        return None if self._closed or self._watch is None else self._watch.cursor_shape()

    def cursor_news(self) -> bool:
        """Read by the last ``damaged()``, like the damage: asking costs no trip to X."""
        cursor = getattr(self._watch, "cursor", None)
        return not self._closed and cursor is not None and cursor.changed

    def close(self) -> None:
        self._closed = True
        shm, self._shm = self._shm, None
        if shm is not None:
            shm.close()
        sct, self._sct = self._sct, None
        if sct is not None:
            try:
                sct.close()
            except Exception as exc:  # closing a connection to a dead server
                log.debug("closing mss: %s", exc)
        if self._watch is not None:
            self._watch.close()


def coalesce(rects: list[Rect], limit: int) -> list[Rect]:
    """At most ``limit`` rectangles covering ``rects``: runs of them (X keeps a region's rectangles
    in y-x bands) merged into their bounding boxes. One XShmGetImage each, so a few large requests beat
    hundreds of glyph-sized ones."""
    if len(rects) <= limit:
        return rects
    rects = sorted(rects, key=lambda r: (r[1], r[0]))
    per = -(-len(rects) // limit)
    out = []
    for i in range(0, len(rects), per):
        run = rects[i:i + per]
        x0, y0 = min(r[0] for r in run), min(r[1] for r in run)
        x1, y1 = max(r[0] + r[2] for r in run), max(r[1] + r[3] for r in run)
        out.append((x0, y0, x1 - x0, y1 - y0))
    return out


def _detail(exc: BaseException) -> str:
    """The first line of an exception's text: CaptureError messages stay on one line."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _unreachable(display: str | None, exc: BaseException) -> str:
    return (f"cannot open X display {display or '(default)'}: {_detail(exc)}; check that the X server is "
            "running and that DISPLAY/XAUTHORITY are right, or use --screen synthetic:mixed")


def _gone(display: str | None, exc: BaseException) -> str:
    return f"X display {display or '(default)'} went away during capture: {_detail(exc)}"

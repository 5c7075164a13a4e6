"""The X11 cursor shape through XFixes, for the RFB Cursor pseudo-encoding.

The screen capture does not contain the pointer (X never draws it into the
root window's pixels), so the viewer draws it locally from this shape: the
technician's pointer then moves without a round trip. The shape is fetched
only when XFixes says the cursor changed (DisplayCursorNotify), so asking for
it on every frame costs nothing.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from agent.models import CursorShape

log = logging.getLogger(__name__)

# X cursors are small; a bound on what we accept from the server all the same
MAX_CURSOR_SIDE = 256


def cursor_from_argb(argb: Any, width: int, height: int, hot_x: int, hot_y: int, serial: int) -> CursorShape:
    """A CursorShape from XFixes pixels: 32-bit ARGB words with premultiplied alpha.

    RFB wants straight colours and a mask, so partly transparent pixels are
    un-premultiplied; fully transparent ones become black with alpha 0.
    """
    if not (0 < width <= MAX_CURSOR_SIDE and 0 < height <= MAX_CURSOR_SIDE):
        raise ValueError(f"cursor size {width}x{height} out of range")
    words = np.asarray(argb, dtype=np.uint32)
    if words.size != width * height:
        raise ValueError(f"cursor has {words.size} pixels, expected {width * height}")
    # little-endian words 0xAARRGGBB are the bytes B, G, R, A: our BGRA frame order
    pixels = words.astype("<u4").reshape(height, width).view(np.uint8).reshape(height, width, 4).copy()
    alpha = pixels[..., 3].astype(np.uint32)
    partial = (alpha > 0) & (alpha < 255)
    if partial.any():
        colours = pixels[..., :3].astype(np.uint32)
        straight = np.minimum(colours * 255 // np.maximum(alpha, 1)[..., None], 255).astype(np.uint8)
        pixels[..., :3] = np.where(partial[..., None], straight, pixels[..., :3])
    pixels[alpha == 0] = 0
    hot_x = min(max(hot_x, 0), width - 1)
    hot_y = min(max(hot_y, 0), height - 1)
    return CursorShape(pixels=pixels, hot_x=hot_x, hot_y=hot_y, serial=serial)


class XFixesCursor:
    """Tracks the cursor shape on one python-xlib connection.

    The owner of the connection feeds it the events it reads (``note_event``)
    and asks for ``shape()`` whenever it likes. ``available`` is False, with
    ``reason`` saying why, when the server has no usable XFixes.
    """

    def __init__(self, xdisplay: Any) -> None:
        from Xlib.ext import xfixes

        self._display = xdisplay
        self._shape: CursorShape | None = None
        self._stale = True
        self._refused = False  # X refused the last cursor image asked for
        self.available = False
        self.reason = ""
        if not xdisplay.has_extension("XFIXES"):
            self.reason = "the X server has no XFIXES extension"
            return
        version = xdisplay.xfixes_query_version()
        if version.major_version < 2:
            self.reason = f"XFIXES {version.major_version}.{version.minor_version} is too old (need 2.0)"
            return
        root = xdisplay.screen().root
        xdisplay.xfixes_select_cursor_input(root, xfixes.XFixesDisplayCursorNotifyMask)
        # matched by event code: python-xlib may load the extension module twice,
        # so its event classes are not reliable for isinstance
        self._event_type = xdisplay.query_extension("XFIXES").first_event + xfixes.XFixesCursorNotify
        self._root = root
        self.available = True

    def note_event(self, event: Any) -> None:
        if self.available and getattr(event, "type", None) == self._event_type:
            self._stale = True

    @property
    def changed(self) -> bool:
        """X reported a new cursor that ``shape()`` has not read yet (and X answered the last time)."""
        return self.available and self._stale and not self._refused

    def shape(self) -> CursorShape | None:
        """The current cursor, re-read from the server only after it changed."""
        if not self.available:
            return None
        if self._stale:
            # The news is spent when asked, answered or not. X may refuse a cursor's image: Xvfb does, with
            # BadAccess, for a root cursor whose client left, and tells of a "new" cursor again after each
            # refusal. Until X answers again, its news wakes no one (``changed``): grabs still ask.
            self._stale = False
            self._refused = True
            reply = self._display.xfixes_get_cursor_image(self._root)
            self._refused = False
            if self._shape is None or reply.cursor_serial != self._shape.serial:
                try:
                    self._shape = cursor_from_argb(reply.cursor_image, reply.width, reply.height, reply.xhot,
                                                   reply.yhot, reply.cursor_serial)
                except ValueError as exc:
                    log.warning("ignoring a cursor image from the X server: %s", exc)
        return self._shape

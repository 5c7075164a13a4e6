"""X DAMAGE as a wake-up hint and as the list of rectangles to grab.

A capture loop that polls an idle screen still pays for a grab and a diff of
the whole frame each time. With this hint it can skip both until the X server
reports drawing, and with ``take_rects`` it grabs only where X says it drew.
It is only a hint: a False answer means "nothing drawn as far as X knows", and
callers still grab the whole screen now and then (a compositor or a GL client
may draw without DAMAGE noticing).

Level "non-empty" makes the server send one event when the damage region goes
from empty to non-empty; ``rearm``/``take_rects`` empty it again just before
each grab, so drawing that races the grab is both captured and reported again,
never lost.
"""
from __future__ import annotations

from typing import Any, Optional

Rect = tuple[int, int, int, int]


class DamageHint:
    """Tracks DAMAGE on the root window over one python-xlib connection.

    The connection's owner feeds it the events it reads (``note_event``).
    ``available`` is False, with ``reason``, when the server has no DAMAGE;
    ``regions`` is False when XFIXES regions are missing (then only the
    yes/no hint works and ``take_rects`` answers None).
    """

    def __init__(self, xdisplay: Any) -> None:
        from Xlib.ext import damage

        self._display = xdisplay
        self.available = False
        self.regions = False
        self.reason = ""
        self.damaged = True  # before the first grab, everything is news
        if not xdisplay.has_extension("DAMAGE"):
            self.reason = "the X server has no DAMAGE extension"
            return
        xdisplay.damage_query_version()
        self._damage = xdisplay.screen().root.damage_create(damage.DamageReportNonEmpty)
        self._event_type = xdisplay.query_extension("DAMAGE").first_event + damage.DamageNotifyCode
        self.available = True
        if xdisplay.has_extension("XFIXES") and xdisplay.xfixes_query_version().major_version >= 2:
            from agent.capture.x11_regions import create_region

            self._region = create_region(xdisplay)
            self.regions = True

    @property
    def damage_id(self) -> int:
        """The DAMAGE object's XID: another connection (the XShm grabber's) may take its region."""
        return int(self._damage) if self.available else 0

    def release(self) -> None:
        """Destroy the DAMAGE object: another connection made its own (XShmGrabber.own_damage), and this one
        should not read and parse an event per drawing for nothing. ``damaged`` is its owner's to set then;
        ``rearm`` and ``take_rects`` no longer work."""
        if self.available:
            self._display.damage_destroy(self._damage)
            self._display.flush()

    def note_event(self, event: Any) -> None:
        if self.available and getattr(event, "type", None) == self._event_type:
            self.damaged = True

    def rearm(self) -> None:
        """Forget the damage so far; call just before grabbing.

        The round trip makes the server apply the reset before the grab, which
        travels on another connection, is served.
        """
        if self.available:
            self._display.damage_subtract(self._damage)
            self._display.sync()
            self.damaged = False

    def take_rects(self) -> Optional[list[Rect]]:
        """Move the damage so far out of the server and return its rectangles; call just before grabbing.

        Same ordering guarantee as ``rearm`` (FetchRegion is the round trip).
        None when the server has no XFIXES regions: grab everything then.
        """
        if not self.regions:
            self.rearm()
            return None
        from agent.capture.x11_regions import fetch_region

        self._display.damage_subtract(self._damage, parts=self._region)
        rects = fetch_region(self._display, self._region)
        self.damaged = False
        return rects

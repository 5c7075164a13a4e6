"""X DAMAGE as a wake-up hint: has anything been drawn on the screen since the last grab?

A capture loop that polls an idle screen still pays for a grab and a diff of
the whole frame each time. With this hint it can skip both until the X server
reports drawing. It is only a hint: a False answer means "nothing drawn as far
as X knows", and callers still grab now and then (a compositor or a GL client
may draw without DAMAGE noticing).

Level "non-empty" makes the server send one event when the damage region goes
from empty to non-empty; ``rearm`` empties it again just before each grab, so
drawing that races the grab is both captured and reported again, never lost.
"""
from __future__ import annotations

from typing import Any


class DamageHint:
    """Tracks DAMAGE on the root window over one python-xlib connection.

    The connection's owner feeds it the events it reads (``note_event``).
    ``available`` is False, with ``reason``, when the server has no DAMAGE.
    """

    def __init__(self, xdisplay: Any) -> None:
        from Xlib.ext import damage

        self._display = xdisplay
        self.available = False
        self.reason = ""
        self.damaged = True  # before the first grab, everything is news
        if not xdisplay.has_extension("DAMAGE"):
            self.reason = "the X server has no DAMAGE extension"
            return
        xdisplay.damage_query_version()
        self._damage = xdisplay.screen().root.damage_create(damage.DamageReportNonEmpty)
        self._event_type = xdisplay.query_extension("DAMAGE").first_event + damage.DamageNotifyCode
        self.available = True

    def note_event(self, event: Any) -> None:
        if self.available and getattr(event, "type", None) == self._event_type:
            self.damaged = True

    def rearm(self) -> None:
        """Forget the damage so far; call just before grabbing.

        The round trip makes the server apply the reset before the grab, which
        travels on mss's own connection, is served.
        """
        if self.available:
            self._display.damage_subtract(self._damage)
            self._display.sync()
            self.damaged = False

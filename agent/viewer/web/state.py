"""What the console page shows about the session, kept from the bridge's events (sans-IO).

The bridge reports the session through ``on_event`` dicts (``{"event": NAME, ...}``). Today it
sends ``listening``, ``authenticated`` (with ``safety_code``) and ``local_viewer``, and its end
is the return of ``ViewerBridge.wait()``. The session stream (issue 10) adds more; this module maps
every name we know of and ignores the rest, so the page never breaks on a new event:

====================  ===========================================================
event                 effect on the page
====================  ===========================================================
authenticated         safety code; "connecting" until the first pixels arrive
safety_code           safety code (``code`` or ``safety_code``)
state                 the agent's lifecycle state and scope (``state``, ``scope``)
scope                 the scope the customer granted (``scope``: view/control/null)
link                  link figures: ``rtt_ms``, ``bandwidth_kbit`` (or ``kbit_s``), ``fps``
local_viewer          another VNC viewer on this computer took the screen (``peer`` is not the
                      console's own connection, ``own_peer``): "shown elsewhere", no input
reconnecting          "reconnecting" with ``reason``
resumed/reconnected   back to "active"
ended                 "ended" with ``reason``
====================  ===========================================================

The console itself adds ``pixels`` (the first screen arrived), ``rtt`` (its own fence round trip)
and ``figures`` (frames/s and kbit/s it measured), and ``end(reason)`` when ``wait()`` returns.
"""
from __future__ import annotations

import time
import unicodedata
from dataclasses import dataclass, field
from typing import Any

STATES = ("connecting", "active", "reconnecting", "ended")
SCOPES = ("view", "control")
REASON_MAX = 200


def clean_text(value: object, limit: int = REASON_MAX) -> str:
    """Remote text for display: no control or format characters, bounded length."""
    text = str(value)
    text = "".join(" " if unicodedata.category(ch)[0] == "C" else ch for ch in text)
    text = " ".join(text.split())
    return text[:limit]


def group_session_id(session: str) -> str:
    digits = "".join(ch for ch in session if ch.isdigit())
    return " ".join(digits[i:i + 3] for i in range(0, len(digits), 3)) if digits else clean_text(session, 32)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if value != value or value in (float("inf"), float("-inf")) or value < 0:
        return None
    return float(value)


@dataclass
class ConsoleState:
    """The page's model of the session; ``snapshot()`` is exactly what the page receives."""

    session: str
    state: str = "connecting"
    reason: str | None = None
    safety_code: str | None = None
    scope: str | None = None          # None: not reported (yet) by this bridge
    scope_reported: bool = False      # the bridge has told us a scope at least once
    rtt_ms: float | None = None
    kbit_s: float | None = None
    fps: float | None = None
    width: int = 0
    height: int = 0
    _link_rtt: float | None = field(default=None, repr=False)
    _link_kbit: float | None = field(default=None, repr=False)
    _own_rtt: float | None = field(default=None, repr=False)
    elsewhere: bool = False           # a VNC viewer on this computer took the screen over (newest wins)
    taken_by: str | None = None       # that viewer's address, while it has the screen
    own_peer: str | None = None       # the console's own RFB connection, as the bridge names it
    _pixels: bool = field(default=False, repr=False)
    _ending: bool = field(default=False, repr=False)
    changed_at: float = field(default_factory=time.monotonic, repr=False)

    # ---------------------------------------------------------------- inputs

    def apply(self, event: dict[str, Any]) -> bool:
        """Apply one bridge event; True if the page must be told. Unknown events change nothing."""
        if self.state == "ended" or not isinstance(event, dict):
            return False
        before = self.snapshot()
        kind = event.get("event")
        handler = getattr(self, f"_on_{kind}", None) if isinstance(kind, str) and kind.isidentifier() else None
        if handler is not None:
            handler(event)
        return self._changed(before)

    def _on_authenticated(self, event: dict[str, Any]) -> None:
        self._set_code(event.get("safety_code"))

    def _on_safety_code(self, event: dict[str, Any]) -> None:
        self._set_code(event.get("code", event.get("safety_code")))

    def _on_state(self, event: dict[str, Any]) -> None:
        if "scope" in event:
            self._set_scope(event.get("scope"))
        agent_state = event.get("state")
        if agent_state == "ended":
            # the reason follows (an "ended" event, or the bridge's wait()): show that one, stop input now
            if event.get("reason"):
                self.end(event["reason"])
            else:
                self._ending = True
        elif agent_state == "reconnecting":
            self._reconnecting(event.get("reason"))
        elif agent_state == "active":
            self._resume()

    def _on_scope(self, event: dict[str, Any]) -> None:
        self._set_scope(event.get("scope"))

    _on_scope_changed = _on_scope

    def _on_link(self, event: dict[str, Any]) -> None:
        self._link_rtt = _number(event.get("rtt_ms"))
        kbit = _number(event.get("bandwidth_kbit", event.get("kbit_s")))
        self._link_kbit = kbit
        fps = _number(event.get("fps"))
        if fps is not None:
            self.fps = round(fps, 1)
        self._figures()

    def _on_local_viewer(self, event: dict[str, Any]) -> None:
        peer = event.get("peer")
        if self.own_peer is None or not isinstance(peer, str) or peer == self.own_peer:
            return
        if event.get("connected") is True:
            self.elsewhere, self.taken_by = True, peer
        elif peer == self.taken_by:
            self.taken_by = None  # gone: the console may take the screen back (it stays "elsewhere" until then)

    def attached(self, own_peer: str) -> bool:
        """The console's RFB connection is (again) the bridge's: the screen is shown here."""
        before = self.snapshot()
        self.own_peer, self.elsewhere, self.taken_by = own_peer, False, None
        return self._changed(before)

    def _on_reconnecting(self, event: dict[str, Any]) -> None:
        self._reconnecting(event.get("reason"))

    def _on_resumed(self, event: dict[str, Any]) -> None:
        self._resume()

    _on_reconnected = _on_resumed

    def _on_ended(self, event: dict[str, Any]) -> None:
        self.end(event.get("reason") or "the session ended")

    # ------------------------------------------------------- the console's own

    def pixels(self, width: int, height: int) -> bool:
        """The screen (or a new size of it) arrived: the session is live."""
        before = self.snapshot()
        self.width, self.height = width, height
        self._pixels = True
        if self.state == "connecting":
            self.state = "active"
        return self._changed(before)

    def measured(self, *, rtt_ms: float | None = None, kbit_s: float | None = None,
                 fps: float | None = None) -> bool:
        """Figures the console measured itself (fence round trip, RFB bytes and updates per second)."""
        if self.state == "ended":
            return False
        before = self.snapshot()
        if rtt_ms is not None:
            self._own_rtt = rtt_ms
        if kbit_s is not None:
            self.kbit_s = round(kbit_s, 1)
        if fps is not None:
            self.fps = round(fps, 1)
        self._figures()
        return self._changed(before)

    def end(self, reason: object) -> bool:
        if self.state == "ended":
            return False
        self.state = "ended"
        self.reason = clean_text(reason) or "the session ended"
        self.changed_at = time.monotonic()
        return True

    # ---------------------------------------------------------------- output

    @property
    def input_allowed(self) -> bool:
        """Keyboard and mouse go to the customer only while active and not limited to view.

        A bridge that does not report the scope leaves it to the agent's own gate (input is
        dropped there unless the customer granted control)."""
        return self.state == "active" and self.scope != "view" and not self._ending and not self.elsewhere

    def snapshot(self) -> dict[str, Any]:
        return {"type": "state", "session": self.session, "state": self.state, "reason": self.reason,
                "safety_code": self.safety_code, "scope": self.scope, "scope_reported": self.scope_reported,
                "input": self.input_allowed, "ending": self._ending, "elsewhere": self.elsewhere,
                "link": {"rtt_ms": self.rtt_ms, "kbit_s": self.kbit_s, "fps": self.fps},
                "width": self.width, "height": self.height}

    # ---------------------------------------------------------------- helpers

    def _changed(self, before: dict[str, Any]) -> bool:
        changed = before != self.snapshot()
        if changed:
            self.changed_at = time.monotonic()
        return changed

    def _set_code(self, code: object) -> None:
        if code is not None:
            self.safety_code = clean_text(code, 16)

    def _set_scope(self, scope: object) -> None:
        self.scope_reported = True
        self.scope = scope if scope in SCOPES else None

    def _reconnecting(self, reason: object) -> None:
        self.state = "reconnecting"
        self.reason = clean_text(reason) if reason else None

    def _resume(self) -> None:
        if self.state in ("reconnecting", "connecting") and (self._pixels or self.state == "reconnecting"):
            self.state = "active"
            self.reason = None

    def _figures(self) -> None:
        rtt = self._own_rtt if self._own_rtt is not None else self._link_rtt
        self.rtt_ms = None if rtt is None else round(rtt, 1)
        if self._link_kbit is not None and self.kbit_s is None:
            self.kbit_s = round(self._link_kbit, 1)

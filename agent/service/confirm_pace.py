"""How often the capture loop checks X DAMAGE with a confirming grab (agent.service.capture_loop).

DAMAGE is never trusted alone: a confirming grab compares one band of the
screen whether X reported drawing there or not, and catches what DAMAGE
missed (a GL client drawing behind its back). On most desktops it never
misses, and the check is most of an idle agent's CPU: on the link benchmark,
8 s idle at 1920x1080 cost 12 ms of agent CPU with a band a second, 3 ms with
none (the grab in a worker thread, and the event loop's share of its hand-off).
So the pace slows while the checks keep finding nothing DAMAGE did not report:
it doubles after each clean round of all bands, up to MAX_SLOWDOWN times the
base interval, and drops back to the base at the first miss.
"""
from __future__ import annotations

from typing import Optional, Sequence

from agent.models import Rect, rect_intersect

HINT_CONFIRM_INTERVAL = 1.0  # seconds between confirming grabs of one band, while DAMAGE is not yet proven
CONFIRM_BANDS = 4            # sub-image sources: each confirming grab covers one band of rows, in turn
MAX_SLOWDOWN = 4             # proven DAMAGE: a band every 4 s, the whole screen every 16 s


class ConfirmPace:
    """The interval between confirming grabs, slowed while DAMAGE proves right (see the module docstring)."""

    def __init__(self, base: float = HINT_CONFIRM_INTERVAL) -> None:
        self.base = base
        self.slowdown = 1
        self._clean = 0  # clean confirming grabs since the pace last changed

    def interval(self, bands: int) -> float:
        """Seconds between confirming grabs when the screen is taken in ``bands`` bands."""
        return self.base * CONFIRM_BANDS / bands * self.slowdown

    def confirmed(self, missed: Optional[bool], bands: int) -> None:
        """A confirming grab found drawing DAMAGE had not reported (``missed``), or none (None: unknown)."""
        if missed is None:
            return
        if missed:
            self.slowdown, self._clean = 1, 0
            return
        self._clean += 1
        if self._clean >= bands:  # a whole round of the screen, clean
            self.slowdown, self._clean = min(self.slowdown * 2, MAX_SLOWDOWN), 0


def damage_missed(changed: Sequence[Rect], reported: Optional[Sequence[Rect]]) -> Optional[bool]:
    """Whether any ``changed`` rectangle lies outside everything X ``reported`` (None: X could not say)."""
    if reported is None:
        return None
    return any(not any(rect_intersect(rect, seen) for seen in reported) for rect in changed)

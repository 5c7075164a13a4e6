"""``--display`` / ``--screen``: what a command captures, the real display or a synthetic workload."""
from __future__ import annotations

import argparse

from agent.capture import open_source
from agent.capture.base import ScreenSource


def add_screen_arguments(parser: argparse.ArgumentParser, what: str = "capture") -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--display", metavar=":N", help=f"X display to {what} (default $DISPLAY)")
    where.add_argument("--screen", metavar="synthetic:WORKLOAD[:WxH]",
                       help="a synthetic screen instead of a display (typing, scrolling, window-drag, video, "
                            "idle, switch, mixed)")


def open_screen(screen: str | None = None, display: str | None = None) -> ScreenSource:
    """A synthetic workload when ``screen`` names one, else the display ``display`` / ``$DISPLAY``."""
    if screen:
        from agent.workloads import (
            open_synthetic,  # Pillow and the painters only for synthetic screens
        )

        return open_synthetic(screen)
    return open_source(display)

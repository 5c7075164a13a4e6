"""``--display`` / ``--screen`` / ``--backend``: what a command captures, the real display or a synthetic workload."""
from __future__ import annotations

import argparse

from agent.capture import BACKENDS, open_source
from agent.capture.base import ScreenSource


def add_screen_arguments(parser: argparse.ArgumentParser, what: str = "capture") -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--display", metavar=":N", help=f"X display to {what} (default $DISPLAY)")
    where.add_argument("--screen", metavar="synthetic:WORKLOAD[:WxH]",
                       help="a synthetic screen instead of a display (typing, scrolling, window-drag, video, "
                            "idle, switch, mixed)")


def add_backend_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=BACKENDS, metavar="|".join(BACKENDS),
                        help="capture and input through X11 or GNOME's Mutter API (default: GNOME on a GNOME "
                             "Wayland session, else X11 where DISPLAY is set)")


def open_screen(screen: str | None = None, display: str | None = None, backend: str | None = None, *,
                with_input: bool = True) -> ScreenSource:
    """A synthetic workload when ``screen`` names one, else the desktop (agent.capture.open_source)."""
    if screen:
        from agent.workloads import (
            open_synthetic,  # Pillow and the painters only for synthetic screens
        )

        return open_synthetic(screen)
    return open_source(display, backend, with_input=with_input)

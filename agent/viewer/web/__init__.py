"""The technician's console in the browser (``rejnet-viewer --web``).

``WebConsole`` serves one session's screen, facts and controls to a browser tab on loopback,
behind a random per-run token; see ``server`` for the seam with the bridge, ``frames`` for how
pixels reach the page, ``guard`` for who may connect and ``state`` for what the page shows.
"""
from agent.viewer.web.server import ConsoleConfig, WebConsole

__all__ = ["ConsoleConfig", "WebConsole"]

"""``rejnet-help``: the customer's window ("Pomoc zdalna"), the reference launcher on the control socket.

Three layers, each testable alone:

* ``logic``: the window as a plain object (state, rules, what each button
  sends), no Tk and no I/O; ``pages`` turns its state into the ``model.View``
  of each page; ``catalogue`` holds every text in Polish and English,
  ``theme`` the colours and type sizes with their WCAG checks;
* ``agent_io``: the agent as a background process and its control-socket
  connections, delivering messages on a queue;
* ``window``: the Tk/ttk skin that draws the logic's view and polls the queue.

``cli`` wires them for ``rejnet-help`` and ``python -m agent.launcher``.
"""
from __future__ import annotations

from agent.launcher.catalogue import Catalogue, pick_language
from agent.launcher.logic import Launcher
from agent.launcher.model import Page, Terms, View

__all__ = ["Catalogue", "Launcher", "Page", "Terms", "View", "pick_language"]

"""One support session: the lifecycle machine (sans-IO), the one-time password, flow control, and ``Agent``.

``Agent`` (session/agent.py) is the asyncio wiring; every rule about
consent, scope and wiping lives in the machine (session/lifecycle.py), fed
the events and answering the actions of session/events.py. Beside them:
link.py (how viewers reach us: relay or direct listener), channel.py (the
connected viewer's stream driving flow control, flow.py), password.py, and
errors.py (what the session refuses, as RefusedErrors with wire codes).
"""
from __future__ import annotations

from typing import Any

__all__ = ["Agent", "AgentConfig"]


def __getattr__(name: str) -> Any:
    if name in __all__:  # lazily: the machine alone does not need asyncio, SQLite or the crypto stack
        from agent.session import agent

        return getattr(agent, name)
    raise AttributeError(f"module 'agent.session' has no attribute {name!r}")

"""One support session: the lifecycle machine (sans-IO), the one-time password, flow control, and ``Agent``.

``Agent`` (session/agent.py) is the asyncio wiring; every rule about
consent, scope and wiping lives in the machine (session/lifecycle.py).
"""
from __future__ import annotations

from typing import Any

__all__ = ["Agent", "AgentConfig"]


def __getattr__(name: str) -> Any:
    if name in __all__:  # lazily: the machine alone does not need asyncio, SQLite or the crypto stack
        from agent.session import agent

        return getattr(agent, name)
    raise AttributeError(f"module 'agent.session' has no attribute {name!r}")

"""rejnet-agent: remote support over RFB inside an end-to-end encrypted channel.

The public API is re-exported here lazily, so that ``import agent`` stays cheap
and a product embedding only the change detector does not pay for asyncio,
SQLite or the crypto stack.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "ChangeDetector": "agent.changes.detector",
    "Changes": "agent.changes.detector",
    "open_source": "agent.commands.screens:open_screen",
    "ScreenSource": "agent.capture",
    "SyntheticSource": "agent.workloads",
    "WORKLOADS": "agent.workloads",
    "Agent": "agent.session.agent",
    "AgentConfig": "agent.session.agent",
    "RejnetError": "agent.errors",
    "CaptureError": "agent.errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'agent' has no attribute {name!r}")
    module, _, attribute = module.partition(":")
    value = getattr(importlib.import_module(module), attribute or name)
    globals()[name] = value
    return value

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
    "ChangeDetector": "agent.detect",
    "Changes": "agent.detect",
    "open_source": "agent.capture",
    "ScreenSource": "agent.capture",
    "SyntheticSource": "agent.capture",
    "WORKLOADS": "agent.capture",
    "Agent": "agent.session",
    "AgentConfig": "agent.session",
    "RejnetError": "agent.errors",
    "CaptureError": "agent.errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'agent' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

"""Local control socket between the launcher and the agent (DESIGN §4.4).

``protocol`` is the sans-IO wire format, ``server`` the asyncio socket the
session runs, ``client`` what ``rejnet-agent ctl`` and launchers use, ``paths``
where the socket lives. Names are re-exported lazily, so importing one part
does not load the others.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ControlError": "agent.control.protocol",
    "MAX_LINE": "agent.control.protocol",
    "ControlHandler": "agent.control.server",
    "ControlServer": "agent.control.server",
    "ControlClient": "agent.control.client",
    "AsyncControlClient": "agent.control.client",
    "ControlClientError": "agent.control.client",
    "AgentNotRunningError": "agent.control.client",
    "ControlReplyError": "agent.control.client",
    "ControlTimeoutError": "agent.control.client",
    "ControlSocketError": "agent.control.paths",
    "default_control_path": "agent.control.paths",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'agent.control' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

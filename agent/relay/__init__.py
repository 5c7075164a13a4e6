"""rejnet-relay: pairs an agent and a viewer by session ID and forwards their encrypted bytes (DESIGN §4.1).

``protocol`` is the sans-IO line protocol and session ID helpers, ``server``
the asyncio relay, ``client`` the helpers the agent and the viewer use.
"""
from __future__ import annotations

from agent.relay.client import AgentRegistration, open_agent_data, open_viewer
from agent.relay.protocol import (
    InvalidSessionIdError,
    NoSuchSessionError,
    RelayError,
    SessionBusyError,
    format_session_id,
    parse_address,
    parse_session_id,
)
from agent.relay.server import RelayServer

__all__ = [
    "AgentRegistration",
    "InvalidSessionIdError",
    "NoSuchSessionError",
    "RelayError",
    "RelayServer",
    "SessionBusyError",
    "format_session_id",
    "open_agent_data",
    "open_viewer",
    "parse_address",
    "parse_session_id",
]

"""Why the session refuses what its owner asked: one RefusedError subclass per reason.

``Agent`` (agent/session/agent.py) raises these from its library API and its
control-socket handler; agent/control/server.py turns any RefusedError into
the error reply ``{"code": ..., "message": ...}``, so the codes below are a
wire contract with launchers (DESIGN §4.4) and must not change. The session
knows nothing of the control protocol's own types.
"""
from __future__ import annotations

from agent.errors import RefusedError

__all__ = ["CommandUnknown", "ConsentNotRecorded", "NoSession", "NotAllowed", "RefusedError", "SessionOver",
           "TermsMismatch"]


class NoSession(RefusedError):
    """There are no credentials to show: the session is not registered yet, or it has ended."""

    code = "no_session"


class TermsMismatch(RefusedError):
    """The terms the customer saw are not a text this agent ships; show the packaged terms and ask again."""

    code = "terms_mismatch"


class SessionOver(RefusedError):
    """The session has ended; start a new one (a new agent) for another connection."""

    code = "ended"


class ConsentNotRecorded(RefusedError):
    """The consent ledger could not store the consent, so nothing is shared; check the ledger's disk."""

    code = "ledger"


class NotAllowed(RefusedError):
    """The session's state does not allow this now (the message names state and request); refresh with ``status``."""

    code = "not_allowed"


class CommandUnknown(RefusedError):
    """The session has no such command; see DESIGN §4.4 for the commands it knows."""

    code = "unknown_command"

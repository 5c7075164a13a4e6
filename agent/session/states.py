"""The session machine's vocabulary of states, its transition table and its errors (DESIGN §5).

Split from agent/session/lifecycle.py (which holds the rules and re-exports
all of this): the table reads as data, h11 ``_state.py`` style: (state, event
type) -> next state; a missing entry is an IllegalTransition.
"""
from __future__ import annotations

import enum

from agent.errors import RejnetError
from agent.session.events import (
    Accepted, AuthFailed, AuthSucceeded, ConfirmTimedOut, ConsentRecorded, LinkFailed, PathLost, PathResumed,
    Registered, Rejected, ResumeGaveUp, ScopeChanged, Terminate, ViewerArrived, ViewerLeft,
)


class State(enum.Enum):
    STARTING = "starting"
    WAITING = "waiting"
    AUTHENTICATING = "authenticating"
    CONSENT_PENDING = "consent_pending"
    ACTIVE = "active"
    RECONNECTING = "reconnecting"  # the authenticated viewer's path was cut; waiting for its resume
    ENDED = "ended"


_VIEWER_STATES = frozenset({State.AUTHENTICATING, State.CONSENT_PENDING, State.ACTIVE, State.RECONNECTING})
_AUTHENTICATED = frozenset({State.CONSENT_PENDING, State.ACTIVE, State.RECONNECTING})


# --- errors ------------------------------------------------------------------

class LifecycleError(RejnetError):
    """The session cannot do what was asked in its current state; nothing was changed."""


class IllegalTransition(LifecycleError):
    """This event is not allowed in the session's current state; the session is unchanged.

    The message names both, e.g. "Accepted is not allowed in state 'waiting'";
    a launcher showing it should refresh its view of the session (``status``).
    """

    def __init__(self, state: State, event: object, detail: str = "") -> None:
        self.state = state
        self.event_name = type(event).__name__
        text = f"{self.event_name} is not allowed in state {state.value!r}"
        super().__init__(f"{text}: {detail}" if detail else text)


class ConsentRequired(IllegalTransition):
    """The requested scope goes beyond the consent the customer gave; record a consent for it first."""


# --- the transition table ------------------------------------------------------
# (state, event type) -> next state. CONSENT_PENDING -> ACTIVE is state-triggered
# (h11 style): it fires after any event once the consent conditions hold.

S = State
_TRANSITIONS: dict[State, dict[type, State]] = {
    S.STARTING: {Registered: S.WAITING, ConsentRecorded: S.STARTING, ScopeChanged: S.STARTING,
                 LinkFailed: S.ENDED, Terminate: S.ENDED},
    S.WAITING: {Registered: S.WAITING, ViewerArrived: S.AUTHENTICATING, ConsentRecorded: S.WAITING,
                ScopeChanged: S.WAITING, LinkFailed: S.ENDED, Terminate: S.ENDED},
    S.AUTHENTICATING: {Registered: S.AUTHENTICATING, ViewerArrived: S.AUTHENTICATING,
                       AuthFailed: S.WAITING, AuthSucceeded: S.CONSENT_PENDING,
                       ConsentRecorded: S.AUTHENTICATING, ScopeChanged: S.AUTHENTICATING,
                       ViewerLeft: S.WAITING, LinkFailed: S.WAITING, Terminate: S.ENDED},
    S.CONSENT_PENDING: {Registered: S.CONSENT_PENDING, ConsentRecorded: S.CONSENT_PENDING,
                        ScopeChanged: S.CONSENT_PENDING, Accepted: S.CONSENT_PENDING, Rejected: S.WAITING,
                        ConfirmTimedOut: S.WAITING, ViewerLeft: S.WAITING, LinkFailed: S.WAITING,
                        PathLost: S.RECONNECTING, Terminate: S.ENDED},
    S.ACTIVE: {Registered: S.ACTIVE, ConsentRecorded: S.ACTIVE, ScopeChanged: S.ACTIVE,
               ViewerLeft: S.WAITING, LinkFailed: S.WAITING, PathLost: S.RECONNECTING, Terminate: S.ENDED},
    S.RECONNECTING: {Registered: S.RECONNECTING, ConsentRecorded: S.RECONNECTING, ScopeChanged: S.RECONNECTING,
                     Accepted: S.RECONNECTING, Rejected: S.WAITING, ConfirmTimedOut: S.WAITING,
                     PathLost: S.RECONNECTING, PathResumed: S.ACTIVE, ResumeGaveUp: S.WAITING,
                     ViewerLeft: S.WAITING, LinkFailed: S.RECONNECTING, Terminate: S.ENDED},
    # Terminal: late "it is over" news is absorbed, anything else is an error.
    S.ENDED: {Terminate: S.ENDED, ViewerLeft: S.ENDED, LinkFailed: S.ENDED, PathLost: S.ENDED,
              ResumeGaveUp: S.ENDED},
}
del S

"""What the session machine is fed and what it answers (DESIGN §5): plain frozen dataclasses.

Events are the machine's inputs, each naming who triggers it in ``SOURCE``;
actions are its outputs, which the session layer (agent/session/agent.py)
executes in order. They live apart from the machine (agent/session/lifecycle.py)
so that the rules read as one file and these shapes as another; both are
sans-IO. Fields that identify a person or a session (peer address, session ID)
are kept out of ``repr`` so they never reach a log line.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional, Union


# --- events (inputs) ---------------------------------------------------------

@dataclass(frozen=True)
class Registered:
    """The relay registered us (or a re-registration kept or replaced the ID)."""
    SOURCE: ClassVar[str] = "relay"
    session_id: str = field(repr=False)


@dataclass(frozen=True)
class ViewerArrived:
    """A viewer asked for this session; the PAKE starts. ``peer`` is its address."""
    SOURCE: ClassVar[str] = "viewer"
    peer: str = field(repr=False)


@dataclass(frozen=True)
class AuthFailed:
    """The viewer's key confirmation failed: wrong password (or a tampered handshake)."""
    SOURCE: ClassVar[str] = "viewer"
    attempt: Optional[int] = None


@dataclass(frozen=True)
class AuthSucceeded:
    """The PAKE and key confirmation succeeded: the viewer knows the password."""
    SOURCE: ClassVar[str] = "viewer"
    attempt: Optional[int] = None


@dataclass(frozen=True)
class ConsentRecorded:
    """The ledger committed a consent row (``consent_id``) for ``scope``; feed only after the commit."""
    SOURCE: ClassVar[str] = "launcher"
    scope: str
    consent_id: int


@dataclass(frozen=True)
class Accepted:
    """The customer accepted the pending connection (``confirm_each``)."""
    SOURCE: ClassVar[str] = "launcher"


@dataclass(frozen=True)
class Rejected:
    """The customer rejected the pending connection."""
    SOURCE: ClassVar[str] = "launcher"


@dataclass(frozen=True)
class ConfirmTimedOut:
    """Nobody answered the confirmation request in time: a rejection, never an acceptance."""
    SOURCE: ClassVar[str] = "timeout"
    attempt: Optional[int] = None


@dataclass(frozen=True)
class ScopeChanged:
    """The customer narrowed (or restored, within the consent) what the technician may do."""
    SOURCE: ClassVar[str] = "launcher"
    scope: str


@dataclass(frozen=True)
class ViewerLeft:
    """The viewer closed its connection (or was killed): the session waits for a reconnect."""
    SOURCE: ClassVar[str] = "viewer"
    reason: str = "viewer disconnected"
    attempt: Optional[int] = None


@dataclass(frozen=True)
class LinkFailed:
    """The link broke: with a viewer, it is gone (back to waiting); without one, the relay is lost."""
    SOURCE: ClassVar[str] = "link"
    reason: str = "link failed"
    attempt: Optional[int] = None


@dataclass(frozen=True)
class PathLost:
    """The authenticated viewer's connection was cut without its CLOSE: wait for a resume."""
    SOURCE: ClassVar[str] = "link"
    reason: str = "connection lost"
    attempt: Optional[int] = None


@dataclass(frozen=True)
class PathResumed:
    """The same viewer resumed the channel over a new connection (resumption secret, not the password)."""
    SOURCE: ClassVar[str] = "viewer"
    attempt: Optional[int] = None


@dataclass(frozen=True)
class ResumeGaveUp:
    """No resume within the bounded time after a cut: the viewer is gone."""
    SOURCE: ClassVar[str] = "timeout"
    reason: str = "the technician's connection was lost and did not come back"
    attempt: Optional[int] = None


@dataclass(frozen=True)
class Terminate:
    """End the session for good; ``by`` is launcher, viewer, signal or timeout."""
    SOURCE: ClassVar[str] = "any"
    by: str
    reason: str = ""


Event = Union[Registered, ViewerArrived, AuthFailed, AuthSucceeded, ConsentRecorded, Accepted, Rejected,
              ConfirmTimedOut, ScopeChanged, ViewerLeft, LinkFailed, PathLost, PathResumed, ResumeGaveUp, Terminate]


# --- actions (outputs, executed by the session layer in order) ----------------

@dataclass(frozen=True)
class ShowCredentials:
    """Show the session ID and password (read them with ``SessionMachine.credentials()``)."""


@dataclass(frozen=True)
class RotatePassword:
    """The password was replaced (the machine already holds the new one); the old one is wiped."""


@dataclass(frozen=True)
class RequestConfirmation:
    """Ask the customer: consent and/or accept this connection. Arm a timer feeding ConfirmTimedOut(attempt)."""
    attempt: int
    consent_needed: bool
    accept_needed: bool
    peer: str = field(repr=False)


@dataclass(frozen=True)
class StartStreaming:
    """Consent is recorded: pixels may flow to the viewer now."""
    scope: str


@dataclass(frozen=True)
class SetScope:
    """The scope in force changed; None means no viewer may act or see. Pass to ScopeGate.set_scope."""
    scope: Optional[str]


@dataclass(frozen=True)
class StopStreaming:
    """No more pixels to the viewer."""


@dataclass(frozen=True)
class ReleaseInputs:
    """Release every key and button the technician holds (no stuck modifiers)."""


@dataclass(frozen=True)
class AwaitResume:
    """Arm the give-up timer (feeding ResumeGaveUp(attempt)) and let a resume in."""
    attempt: int


@dataclass(frozen=True)
class DisconnectViewer:
    """Close the viewer's connection (authenticated CLOSE with this reason where possible)."""
    reason: str


@dataclass(frozen=True)
class RecordEnd:
    """Write the session end time to the ledger row ``consent_id``."""
    consent_id: int


@dataclass(frozen=True)
class EmitEvent:
    """Publish ``data`` to control-socket subscribers (one JSON line)."""
    data: dict[str, Any]

    def __repr__(self) -> str:
        # The data may hold the viewer's address: keep it out of logs.
        return f"EmitEvent(event={self.data.get('event')!r})"


@dataclass(frozen=True)
class Ended:
    """The session is over: exit the process with ``exit_code`` (DESIGN §7) after the other actions."""
    reason: str
    exit_code: int


Action = Union[ShowCredentials, RotatePassword, RequestConfirmation, StartStreaming, SetScope, StopStreaming,
               ReleaseInputs, AwaitResume, DisconnectViewer, RecordEnd, EmitEvent, Ended]

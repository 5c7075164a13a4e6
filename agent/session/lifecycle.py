"""The session state machine (DESIGN §5), sans-IO: events in, actions out.

This file owns the lifecycle of one support session. It does no I/O: the
session layer (agent/session/agent.py) turns what happens on the relay, the
secure channel, the control socket, signals and timers into events, feeds
them to ``SessionMachine.handle()`` and executes the actions it returns, in
order. The events and actions themselves are plain dataclasses in
agent/session/events.py (re-exported here); this file holds the rules. Transitions are data (``_TRANSITIONS``, keyed by state and event type,
as in h11's ``_state.py``); a missing entry is an ``IllegalTransition`` naming
the state and the event, raised before anything changes.

::

    starting --Registered--> waiting --ViewerArrived--> authenticating
       authenticating --AuthFailed--> waiting   (3rd failure: RotatePassword)
       authenticating --AuthSucceeded--> consent_pending   (the password is rotated: it works once)
       consent_pending --(consent row [+ Accepted if confirm_each])--> active (view | control)
       consent_pending --Rejected | ConfirmTimedOut--> waiting   (consent cleared: the next needs a fresh one)
       consent_pending | active --PathLost--> reconnecting --PathResumed--> the state it left
       authenticated --ViewerLeft | ResumeGaveUp--> ended (keep_waiting: waiting, consent cleared)
       any --Terminate--> ended;  starting | waiting --LinkFailed--> ended

Each event class names who triggers it in ``SOURCE`` (relay, viewer, launcher, link, timeout).

Rules the machine holds whatever it is fed:
* ``active`` is only entered with a consent ledger row id, which the session
  layer feeds (``ConsentRecorded``) only after the ledger committed the row;
  with ``confirm_each`` it also needs an ``Accepted`` for this very connection.
  A timeout never accepts.
* The scope in force is ``view`` or ``control`` only while ``active``; every
  change is a ``SetScope`` action (``SetScope(None)`` when leaving ``active``),
  which the session layer hands to ``inputs.ScopeGate.set_scope``.
* Ending wipes the session's data from this object: session ID, password
  (wiped, not just dropped) and peer address.

Viewer-scoped events may carry ``attempt`` (``machine.attempt``, bumped by
each ``ViewerArrived`` and repeated in ``RequestConfirmation``): an event whose
attempt is not the current one comes from an earlier connection (a late
timer, a socket closed after we dropped it) and is ignored, so it can never
hit the next viewer.
"""
from __future__ import annotations

import logging
from typing import Any, Literal

from agent.session.events import (
    Accepted, Action, AwaitResume, AuthFailed, AuthSucceeded, ConfirmTimedOut, ConsentRecorded, DisconnectViewer,
    EmitEvent, Ended, Event, LinkFailed, PathLost, PathResumed, RecordEnd, Registered, Rejected, ReleaseInputs,
    RequestConfirmation, ResumeGaveUp, RotatePassword, ScopeChanged, SetScope, ShowCredentials, StartStreaming,
    StopStreaming, Terminate, ViewerArrived, ViewerLeft,
)
from agent.session.password import PasswordPolicy, SessionPassword
from agent.session.states import (
    _AUTHENTICATED, _TRANSITIONS, _VIEWER_STATES, ConsentRequired, IllegalTransition, LifecycleError, State,
)

__all__ = [
    # the machine and its vocabulary
    "SessionMachine", "State", "SCOPES", "TERMINATORS", "CONSENT_REFUSED", "Scope", "scope_within",
    "LifecycleError", "IllegalTransition", "ConsentRequired",
    # events (agent.session.events)
    "Event", "Registered", "ViewerArrived", "AuthFailed", "AuthSucceeded", "ConsentRecorded", "Accepted",
    "Rejected", "ConfirmTimedOut", "ScopeChanged", "ViewerLeft", "LinkFailed", "Terminate",
    "PathLost", "PathResumed", "ResumeGaveUp", "AwaitResume",
    # actions (agent.session.events)
    "Action", "ShowCredentials", "RotatePassword", "RequestConfirmation", "StartStreaming", "SetScope",
    "StopStreaming", "ReleaseInputs", "DisconnectViewer", "RecordEnd", "EmitEvent", "Ended",
]

log = logging.getLogger(__name__)

Scope = Literal["view", "control"]
SCOPES: tuple[str, ...] = ("view", "control")
TERMINATORS: tuple[str, ...] = ("launcher", "viewer", "signal", "timeout")
REASON_MAX = 200
MAX_PENDING_HANDSHAKES = 8
"""Handshakes that may run at once (issue #11 A): a stranger who knows the ID cannot hold the session by
starting one and going quiet, because the technician's runs beside it and the first to prove the
password wins (the others are closed). Each pending one ends within the PAKE deadline (10 s). As many
as the relay lets one session have (agent.relay.server.MAX_VIEWERS_PER_SESSION), so one source's share
there (4) can never fill them all."""
CONSENT_REFUSED = "consent_refused"


_LEAVE_REASONS: dict[type, str] = {
    AuthFailed: "authentication failed",
    Rejected: CONSENT_REFUSED,
    ConfirmTimedOut: "confirmation timed out",
}


def scope_within(requested: str, consented: str) -> bool:
    """True if ``requested`` needs no more than ``consented`` (view < control)."""
    return SCOPES.index(requested) <= SCOPES.index(consented)


def _clean_reason(text: object, default: str) -> str:
    # Reasons may come from the remote side: printable, one line, bounded.
    if not isinstance(text, str):
        return default
    text = "".join(ch if ch.isprintable() else " " for ch in text).strip()
    return text[:REASON_MAX] or default


class SessionMachine:
    """One support session's lifecycle; see the module docstring for the rules."""

    def __init__(self, *, confirm_each: bool = False, policy: PasswordPolicy | None = None,
                 keep_waiting: bool = False) -> None:
        self._keep_waiting = bool(keep_waiting)
        self._cut_from: State | None = None  # the state a cut interrupted (RECONNECTING)
        self._confirm_each = bool(confirm_each)
        self._policy = policy if policy is not None else PasswordPolicy()
        self._state = State.STARTING
        self._session_id: str | None = None
        self._peer: str | None = None
        self._attempt = 0   # the current viewer's connection number (the newest while authenticating)
        self._counter = 0   # connection numbers issued so far
        self._pending: set[int] = set()  # handshakes in progress (AUTHENTICATING)
        self._consent: tuple[str, int] | None = None  # (scope, ledger row id) in force
        self._rows: list[int] = []  # every consent row of this session, each gets its end time
        self._chosen: str | None = None  # scope in force when active, within the consent
        self._accepted = False
        self._end: tuple[str, int] | None = None

    # --- read-only view ---------------------------------------------------
    @property
    def state(self) -> State:
        return self._state

    @property
    def scope(self) -> str | None:
        """``view`` or ``control`` while active, else None: the only scope input may act under."""
        return self._chosen if self._state is State.ACTIVE else None

    @property
    def session_id(self) -> str | None:
        return self._session_id

    @property
    def peer(self) -> str | None:
        return self._peer

    @property
    def password(self) -> SessionPassword | None:
        """The current password object (repr-safe); ``.reveal()`` it only for the PAKE."""
        return self._policy.password

    @property
    def consent_id(self) -> int | None:
        return None if self._consent is None else self._consent[1]

    @property
    def attempt(self) -> int:
        """Number of the current (or last) viewer connection."""
        return self._attempt

    @property
    def confirm_each(self) -> bool:
        return self._confirm_each

    @property
    def resumable(self) -> bool:
        """True while an authenticated viewer's channel exists: a RESUME may be answered."""
        return self._state in _AUTHENTICATED

    @property
    def can_accept_viewer(self) -> bool:
        """True when a new viewer may start authenticating: waiting, or handshakes running below the cap."""
        if self._state is State.AUTHENTICATING:
            return len(self._pending) < MAX_PENDING_HANDSHAKES
        return self._state is State.WAITING

    def retry_after(self) -> tuple[float, str]:
        """Seconds before a new handshake (a guess) may start, and why; (0.0, "") when it may now."""
        return self._policy.retry_after(len(self._pending))

    def pending(self, attempt: int) -> bool:
        """True while this connection's handshake may still win the session."""
        return self._state is State.AUTHENTICATING and attempt in self._pending

    @property
    def ended(self) -> tuple[str, int] | None:
        """(reason, exit code) once ended."""
        return self._end

    def credentials(self) -> dict[str, str]:
        """The ``credentials`` reply fields: session ID and password, for the owning launcher only."""
        password = self._policy.password
        if self._session_id is None or password is None:
            raise LifecycleError(f"no credentials in state {self._state.value!r}: "
                                 + ("the session has ended" if self._state is State.ENDED else "not registered yet"))
        return {"session": self._session_id, "password": password.reveal()}

    def status(self) -> dict[str, Any]:
        """The ``status`` reply fields. Never holds the password."""
        return {
            "state": self._state.value,
            "scope": self.scope,
            "viewer": self._peer if self._state in (State.CONSENT_PENDING, State.ACTIVE) else None,
            "session": self._session_id,
            "consent": None if self._consent is None else self._consent[0],
            "confirm_each": self._confirm_each,
            "awaiting": self._awaiting(),
            "failed_attempts": self._policy.failures,
        }

    def __repr__(self) -> str:
        return f"SessionMachine(state={self._state.value}, scope={self.scope}, attempt={self._attempt})"

    # --- the one entry point ------------------------------------------------
    def handle(self, event: Event) -> list[Action]:
        """Apply one event; returns the actions to execute, in order.

        Raises IllegalTransition (or ConsentRequired) with the machine unchanged.
        """
        attempt = getattr(event, "attempt", None)
        if attempt is not None:
            if self._state is State.AUTHENTICATING:
                stale = attempt not in self._pending
            else:
                stale = attempt != self._attempt or self._state not in _VIEWER_STATES
            if stale:
                log.debug("ignoring %s from earlier connection", type(event).__name__)
                return []
        target = _TRANSITIONS[self._state].get(type(event))
        if target is None:
            raise IllegalTransition(self._state, event)
        self._check(event)  # every refusal happens here, before any change
        before = self._state
        actions = getattr(self, "_on_" + type(event).__name__)(event, target)
        if self._state is State.CONSENT_PENDING and self._ready():
            actions += self._enter_active()
        elif isinstance(event, ConsentRecorded) and not any(isinstance(a, EmitEvent) for a in actions):
            actions.append(self._state_event())  # the same state, now with a consent: subscribers see it
        if self._state is not before:
            log.debug("session %s -> %s on %s", before.value, self._state.value, type(event).__name__)
        return actions

    # --- guards ---------------------------------------------------------------
    def _check(self, event: Event) -> None:
        state = self._state
        if isinstance(event, Registered):
            if not isinstance(event.session_id, str) or not event.session_id.isascii() \
                    or not event.session_id.isalnum() or len(event.session_id) > 64:
                raise IllegalTransition(state, event, "the session ID must be 1 to 64 ASCII letters or digits")
        elif isinstance(event, ViewerArrived):
            if not isinstance(event.peer, str) or not event.peer or len(event.peer) > 200:
                raise IllegalTransition(state, event, "the peer address must be a short non-empty string")
            if not self.can_accept_viewer:
                raise IllegalTransition(state, event, f"{MAX_PENDING_HANDSHAKES} handshakes are already running")
        elif isinstance(event, ConsentRecorded):
            if event.scope not in SCOPES:
                raise IllegalTransition(state, event, "scope must be 'view' or 'control'")
            if type(event.consent_id) is not int or event.consent_id <= 0:
                raise IllegalTransition(state, event, "a consent needs the committed ledger row id (a positive int)")
        elif isinstance(event, ScopeChanged):
            if event.scope not in SCOPES:
                raise IllegalTransition(state, event, "scope must be 'view' or 'control'")
            if self._consent is None:
                raise ConsentRequired(state, event, "no consent is recorded yet")
            if not scope_within(event.scope, self._consent[0]):
                raise ConsentRequired(state, event, f"scope {event.scope!r} needs a consent for it "
                                                    f"(consented: {self._consent[0]!r})")
        elif isinstance(event, Accepted):
            if not self._confirm_each or self._accepted:
                raise IllegalTransition(state, event, "no connection is waiting for confirmation")
        elif isinstance(event, Terminate):
            if event.by not in TERMINATORS:
                raise IllegalTransition(state, event, f"'by' must be one of {', '.join(TERMINATORS)}")

    # --- per-event handlers: (event, table target) -> actions -------------------
    def _on_Registered(self, event: Registered, target: State) -> list[Action]:
        changed = event.session_id != self._session_id
        self._session_id = event.session_id
        if target is not self._state:
            return self._switch(target)  # entering waiting shows the credentials
        return [ShowCredentials()] if changed else []

    def _on_ViewerArrived(self, event: ViewerArrived, target: State) -> list[Action]:
        self._counter += 1
        self._attempt = self._counter
        self._pending.add(self._counter)
        self._peer = event.peer
        self._accepted = False
        if self._state is State.AUTHENTICATING:
            return []  # another handshake beside those running
        return self._switch(target)

    def _settle(self, event: Event) -> bool:
        """One pending handshake ended; True if others still run (the session stays authenticating)."""
        attempt = getattr(event, "attempt", None)
        self._pending.discard(self._attempt if attempt is None else attempt)
        return bool(self._pending)

    def _on_AuthFailed(self, event: AuthFailed, target: State) -> list[Action]:
        if self._settle(event):
            actions: list[Action] = []
        else:
            actions = self._switch(target, _LEAVE_REASONS[AuthFailed])
        actions.append(EmitEvent({"event": "auth_failed"}))
        if self._policy.record_failure():
            actions += [RotatePassword(), ShowCredentials(), EmitEvent({"event": "password_rotated", "reason": "failures"})]
        return actions

    def _on_AuthSucceeded(self, event: AuthSucceeded, target: State) -> list[Action]:
        attempt = getattr(event, "attempt", None)
        self._attempt = self._attempt if attempt is None else attempt  # the winner; the others are closed
        self._pending.clear()
        actions: list[Action] = [EmitEvent({"event": "viewer", "address": self._peer})]
        actions += self._switch(target)
        self._policy.rotate()  # the password works once: this viewer resumes with the channel's secret
        actions += [RotatePassword(), ShowCredentials(), EmitEvent({"event": "password_rotated", "reason": "used"})]
        if not self._ready():
            actions += [RequestConfirmation(self._attempt, self._consent is None, self._confirm_each,
                                            peer=self._peer or ""),
                        EmitEvent({"event": "confirm", "address": self._peer, "consent_needed": self._consent is None,
                                   "accept_needed": self._confirm_each})]
        return actions

    def _on_ConsentRecorded(self, event: ConsentRecorded, target: State) -> list[Action]:
        self._consent = (event.scope, event.consent_id)
        if event.consent_id not in self._rows:
            self._rows.append(event.consent_id)
        return self._change_scope(event.scope)

    def _on_ScopeChanged(self, event: ScopeChanged, target: State) -> list[Action]:
        return self._change_scope(event.scope)

    def _on_Accepted(self, event: Accepted, target: State) -> list[Action]:
        self._accepted = True
        return []

    def _on_Rejected(self, event: Rejected, target: State) -> list[Action]:
        return self._back_to_waiting(_LEAVE_REASONS[Rejected])

    def _on_ConfirmTimedOut(self, event: ConfirmTimedOut, target: State) -> list[Action]:
        return self._back_to_waiting(_LEAVE_REASONS[ConfirmTimedOut])

    def _on_ViewerLeft(self, event: ViewerLeft, target: State) -> list[Action]:
        if self._state is State.ENDED:
            return []
        if self._state is State.AUTHENTICATING and self._settle(event):
            return []
        return self._viewer_gone(_clean_reason(event.reason, "viewer disconnected"), cause="viewer",
                                 viewer_gone=True)

    def _on_LinkFailed(self, event: LinkFailed, target: State) -> list[Action]:
        if self._state is State.ENDED:
            return []
        self._pending.clear()
        reason = _clean_reason(event.reason, "link failed")
        if target is State.ENDED:
            return self._end_session(f"link failed: {reason}", cause="link", exit_code=1)
        if self._state is State.RECONNECTING:
            return []  # the resume (or its timer) decides
        return self._viewer_gone(reason, cause="link", viewer_gone=True)

    def _on_PathLost(self, event: PathLost, target: State) -> list[Action]:
        if self._state in (State.ENDED, State.RECONNECTING):
            return []
        self._cut_from = self._state
        actions: list[Action] = []
        if self._state is State.ACTIVE:
            actions += [SetScope(None), ReleaseInputs()]  # nothing is injected while the path is down
        self._state = State.RECONNECTING
        actions += [AwaitResume(self._attempt),
                    EmitEvent({"event": "reconnecting", "reason": _clean_reason(event.reason, "connection lost")}),
                    self._state_event()]
        return actions

    def _on_PathResumed(self, event: PathResumed, target: State) -> list[Action]:
        back = self._cut_from or State.CONSENT_PENDING
        self._cut_from = None
        self._state = back
        actions: list[Action] = [EmitEvent({"event": "resumed"})]
        if back is State.ACTIVE and self._chosen is not None:
            # StartStreaming: an RFB stream the bridge opened while the path was down starts now (one
            # already running goes on untouched)
            actions += [SetScope(self._chosen), StartStreaming(self._chosen)]
        actions.append(self._state_event())
        return actions

    def _on_ResumeGaveUp(self, event: ResumeGaveUp, target: State) -> list[Action]:
        if self._state is State.ENDED:
            return []
        return self._viewer_gone(_clean_reason(event.reason, "connection lost"), cause="link", viewer_gone=False)

    def _viewer_gone(self, reason: str, *, cause: str, viewer_gone: bool) -> list[Action]:
        """Gone for good: after authentication the session ends, or (keep_waiting) waits anew."""
        if self._state not in _AUTHENTICATED:
            return self._switch(State.WAITING, reason, viewer_gone=viewer_gone)
        if not self._keep_waiting:
            return self._end_session(reason, cause="viewer" if cause == "viewer" else "link",
                                     exit_code=4 if cause == "viewer" else 1)
        return self._back_to_waiting(reason, viewer_gone=viewer_gone)

    def _back_to_waiting(self, reason: str, *, viewer_gone: bool = False) -> list[Action]:
        """Its consent ends with the authenticated viewer: the next one needs a fresh one."""
        actions = self._switch(State.WAITING, reason, viewer_gone=viewer_gone)
        actions += [RecordEnd(row) for row in self._rows]
        self._rows = []
        self._consent = None
        self._chosen = None
        self._cut_from = None
        return actions

    def _on_Terminate(self, event: Terminate, target: State) -> list[Action]:
        if self._state is State.ENDED:
            return []
        self._pending.clear()
        reason = _clean_reason(event.reason, f"ended by the {event.by}")
        code = 4 if event.by == "viewer" or reason == CONSENT_REFUSED else 0
        return self._end_session(reason, cause=event.by, exit_code=code)

    # --- state changes ----------------------------------------------------------
    def _change_scope(self, scope: str) -> list[Action]:
        old, self._chosen = self._chosen, scope
        if self._state is not State.ACTIVE or old == scope:
            return []
        actions: list[Action] = [SetScope(scope)]
        if scope != "control":
            actions.append(ReleaseInputs())
        return actions + [self._state_event()]

    def _ready(self) -> bool:
        return self._consent is not None and (self._accepted or not self._confirm_each)

    def _awaiting(self) -> list[str]:
        if self._state is not State.CONSENT_PENDING:
            return []
        return ([] if self._consent is not None else ["consent"]) + (
            ["accept"] if self._confirm_each and not self._accepted else [])

    def _enter_active(self) -> list[Action]:
        if self._consent is None or self._chosen is None:  # unreachable by _ready(); the invariant, spelled out
            raise LifecycleError("refusing to stream without a committed consent row")
        self._state = State.ACTIVE
        return [SetScope(self._chosen), StartStreaming(self._chosen), self._state_event()]

    def _switch(self, target: State, reason: str = "", viewer_gone: bool = False) -> list[Action]:
        """Exit actions of the current state, then entry actions of ``target``."""
        actions: list[Action] = []
        old = self._state
        if old is State.ACTIVE and target is not State.ACTIVE:
            actions += [StopStreaming(), SetScope(None), ReleaseInputs()]
        elif old is State.RECONNECTING and target is not State.RECONNECTING:
            actions += [StopStreaming()]
        if old in _VIEWER_STATES and target not in _VIEWER_STATES:
            if not viewer_gone:
                actions.append(DisconnectViewer(reason or "session ended"))
            if old is not State.AUTHENTICATING:  # only an authenticated viewer was announced
                self._cut_from = None
                actions.append(EmitEvent({"event": "viewer_left", "reason": reason or "session ended"}))
            self._peer = None
            self._accepted = False
        self._state = target
        if old is State.STARTING and target is State.WAITING:
            actions.append(ShowCredentials())
        actions.append(self._state_event())
        return actions

    def _end_session(self, reason: str, cause: str, exit_code: int) -> list[Action]:
        actions = self._switch(State.ENDED, reason)
        actions += [RecordEnd(row) for row in self._rows]
        actions += [EmitEvent({"event": "ended", "by": "remote" if cause == "viewer" else "local",
                               "cause": cause, "reason": reason}),
                    Ended(reason, exit_code)]
        # Wipe everything that may only live as long as the session (DESIGN §1 point 6).
        self._policy.wipe()
        self._session_id = None
        self._peer = None
        self._consent = None
        self._rows = []
        self._chosen = None
        self._accepted = False
        self._end = (reason, exit_code)
        return actions

    def _state_event(self) -> EmitEvent:
        # the consent row too: a launcher sees from the event alone that what it shows was recorded
        return EmitEvent({"event": "state", "state": self._state.value, "scope": self.scope,
                          "consent": None if self._consent is None else self._consent[0]})

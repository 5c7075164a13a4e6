"""The session state machine: the table, consent rules, rotation, reconnects, ending and wiping."""
from __future__ import annotations

import json
from typing import Any, Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.session.lifecycle import (_TRANSITIONS, MAX_PENDING_HANDSHAKES, SCOPES, TERMINATORS, Accepted, AuthFailed, AuthSucceeded, ConfirmTimedOut,
                             ConsentRecorded, ConsentRequired, DisconnectViewer, EmitEvent, Ended, IllegalTransition,
                             LifecycleError, LinkFailed, RecordEnd, Registered, Rejected, ReleaseInputs,
                             RequestConfirmation, ScopeChanged, SessionMachine, SetScope,
                             ShowCredentials, StartStreaming, State, StopStreaming, Terminate, ViewerArrived,
                             ViewerLeft, PathLost, PathResumed, ResumeGaveUp, AwaitResume)
from agent.session.password import PasswordPolicy, SessionPassword

PEER = "198.51.100.7:40001"
SID = "123456789"


def _counter() -> Callable[[], SessionPassword]:
    n = iter(range(100000))
    return lambda: SessionPassword(f"pw{next(n):04d}")


def _machine(confirm_each: bool = False, keep_waiting: bool = False) -> SessionMachine:
    return SessionMachine(confirm_each=confirm_each, policy=PasswordPolicy(generate=_counter()),
                          keep_waiting=keep_waiting)


def _feed(machine: SessionMachine, *events: Any) -> list[Any]:
    actions: list[Any] = []
    for event in events:
        actions += machine.handle(event)
    return actions


def _kinds(actions: list[Any]) -> list[Any]:
    return [a.data["event"] if isinstance(a, EmitEvent) else type(a).__name__ for a in actions]


def _snapshot(machine: SessionMachine) -> tuple:
    pw = machine.password
    return (machine.state, machine.scope, machine.session_id, machine.peer, machine.consent_id, machine.attempt,
            json.dumps(machine.status()), None if pw is None else (id(pw), pw.wiped), machine._accepted)


def test_happy_path_with_consent_given_before_the_viewer() -> None:
    m = _machine()
    assert m.state is State.STARTING
    assert _feed(m, Registered(SID)) == [ShowCredentials(), EmitEvent({"event": "state", "state": "waiting",
                                                                       "scope": None, "consent": None})]
    # nothing to do, but subscribers learn that a consent is recorded (the scope stays None until active)
    assert _feed(m, ConsentRecorded("control", 7)) == [EmitEvent({"event": "state", "state": "waiting",
                                                                   "scope": None, "consent": "control"})]
    assert m.state is State.WAITING and m.scope is None
    _feed(m, ViewerArrived(PEER))
    assert m.state is State.AUTHENTICATING and m.attempt == 1
    actions = _feed(m, AuthSucceeded())
    assert actions[0] == EmitEvent({"event": "viewer", "address": PEER})
    assert SetScope("control") in actions and StartStreaming("control") in actions
    assert m.state is State.ACTIVE and m.scope == "control"
    assert m.status()["viewer"] == PEER and m.status()["consent"] == "control"


def test_consent_after_authentication_asks_the_customer() -> None:
    m = _machine()
    _feed(m, Registered(SID), ViewerArrived(PEER))
    actions = _feed(m, AuthSucceeded())
    assert RequestConfirmation(1, consent_needed=True, accept_needed=False, peer=PEER) in actions
    assert m.state is State.CONSENT_PENDING and m.status()["awaiting"] == ["consent"]
    assert StartStreaming("view") in _feed(m, ConsentRecorded("view", 3))
    assert m.state is State.ACTIVE and m.scope == "view"


def test_confirm_each_needs_accept_and_a_consent_row() -> None:
    m = _machine(confirm_each=True)
    _feed(m, Registered(SID), ViewerArrived(PEER), AuthSucceeded())
    assert m.status()["awaiting"] == ["consent", "accept"]
    assert _feed(m, Accepted()) == []  # accepted, but no ledger row yet: not active
    assert m.state is State.CONSENT_PENDING
    with pytest.raises(IllegalTransition, match="no connection is waiting"):
        m.handle(Accepted())
    assert StartStreaming("control") in _feed(m, ConsentRecorded("control", 1))
    # The session ends with the technician (the launcher did not ask to keep waiting).
    _feed(m, ViewerLeft())
    assert m.state is State.ENDED


def test_keep_waiting_needs_a_fresh_consent_and_accept_for_the_next_viewer() -> None:
    m = _machine(confirm_each=True, keep_waiting=True)
    _feed(m, Registered(SID), ViewerArrived(PEER), AuthSucceeded(), Accepted(), ConsentRecorded("control", 1))
    assert m.state is State.ACTIVE
    actions = _feed(m, ViewerLeft())
    assert RecordEnd(1) in actions and m.state is State.WAITING
    _feed(m, ViewerArrived(PEER), AuthSucceeded())
    assert m.state is State.CONSENT_PENDING and m.status()["awaiting"] == ["consent", "accept"]
    assert m.status()["consent"] is None and m.scope is None


@pytest.mark.parametrize("answer", [Rejected(), ConfirmTimedOut(), ConfirmTimedOut(attempt=1)])
def test_reject_and_timeout_never_accept(answer: Any) -> None:
    m = _machine(confirm_each=True)
    _feed(m, Registered(SID), ConsentRecorded("control", 1), ViewerArrived(PEER), AuthSucceeded())
    actions = m.handle(answer)
    assert m.state is State.WAITING and m.peer is None
    assert not any(isinstance(a, StartStreaming) for a in actions)
    assert isinstance(actions[0], DisconnectViewer)
    assert m.can_accept_viewer


def test_accept_without_confirm_each_is_illegal_and_changes_nothing() -> None:
    m = _machine()
    _feed(m, Registered(SID), ViewerArrived(PEER), AuthSucceeded())
    before = _snapshot(m)
    with pytest.raises(IllegalTransition) as info:
        m.handle(Accepted())
    assert info.value.state is State.CONSENT_PENDING and info.value.event_name == "Accepted"
    assert _snapshot(m) == before


@pytest.mark.parametrize("bad", [ConsentRecorded("view", 0), ConsentRecorded("view", -4),
                                 ConsentRecorded("view", True), ConsentRecorded("view", "7"),  # type: ignore[arg-type]
                                 ConsentRecorded("view", None), ConsentRecorded("admin", 3)])  # type: ignore[arg-type]
def test_consent_without_a_committed_row_id_is_refused(bad: ConsentRecorded) -> None:
    m = _machine()
    _feed(m, Registered(SID), ViewerArrived(PEER), AuthSucceeded())
    before = _snapshot(m)
    with pytest.raises(IllegalTransition, match="ConsentRecorded is not allowed in state 'consent_pending'"):
        m.handle(bad)
    assert _snapshot(m) == before and m.state is State.CONSENT_PENDING


def test_scope_changes_stay_within_the_consent() -> None:
    m = _machine()
    with pytest.raises(ConsentRequired, match="no consent"):
        m.handle(ScopeChanged("view"))
    _feed(m, Registered(SID), ConsentRecorded("view", 1), ViewerArrived(PEER), AuthSucceeded())
    with pytest.raises(ConsentRequired, match="needs a consent for it"):
        m.handle(ScopeChanged("control"))
    assert m.scope == "view"
    assert _feed(m, ConsentRecorded("control", 2))[0] == SetScope("control")
    actions = _feed(m, ScopeChanged("view"))
    assert actions[:2] == [SetScope("view"), ReleaseInputs()]
    assert _feed(m, ScopeChanged("view")) == []
    assert _feed(m, ScopeChanged("control"))[0] == SetScope("control")
    # Both ledger rows of the session get their end time.
    assert [a for a in _feed(m, Terminate("launcher")) if isinstance(a, RecordEnd)] == [RecordEnd(1), RecordEnd(2)]


def test_a_narrowed_scope_is_kept_for_the_next_viewer() -> None:
    m = _machine()
    _feed(m, Registered(SID), ConsentRecorded("control", 1), ScopeChanged("view"), ViewerArrived(PEER))
    assert StartStreaming("view") in _feed(m, AuthSucceeded())


def test_three_failures_rotate_the_password() -> None:
    m = _machine()
    _feed(m, Registered(SID))
    first = m.password
    assert first is not None
    for n in range(2):
        actions = _feed(m, ViewerArrived(PEER), AuthFailed())
        assert _kinds(actions)[-3:] == ["DisconnectViewer", "state", "auth_failed"]
        assert m.status()["failed_attempts"] == n + 1
    actions = _feed(m, ViewerArrived(PEER), AuthFailed())
    assert _kinds(actions)[-3:] == ["RotatePassword", "ShowCredentials", "password_rotated"]
    assert first.wiped and m.password is not None and not m.password.wiped
    assert m.credentials()["password"] == "pw0001"
    assert m.state is State.WAITING and m.status()["failed_attempts"] == 0


def test_viewer_leaving_with_keep_waiting_needs_new_password_and_fresh_consent() -> None:
    m = _machine(keep_waiting=True)
    _feed(m, Registered(SID), ConsentRecorded("control", 1))
    first = m.credentials()["password"]
    actions = _feed(m, ViewerArrived(PEER), AuthSucceeded())
    assert "password_rotated" in _kinds(actions) and m.credentials()["password"] != first  # it works once
    actions = _feed(m, LinkFailed("connection reset"))
    assert actions[:3] == [StopStreaming(), SetScope(None), ReleaseInputs()]
    assert not any(isinstance(a, DisconnectViewer) for a in actions)  # it is already gone
    assert RecordEnd(1) in actions
    assert m.state is State.WAITING and m.peer is None and m.session_id == SID
    _feed(m, ViewerArrived("203.0.113.9:5000"), AuthSucceeded())
    assert m.state is State.CONSENT_PENDING and m.scope is None and m.attempt == 2  # never the old scope


def test_a_cut_releases_input_and_a_resume_restores_the_same_scope() -> None:
    m = _machine()
    _feed(m, Registered(SID), ConsentRecorded("control", 1), ViewerArrived(PEER), AuthSucceeded())
    actions = _feed(m, PathLost("reset"))
    assert actions[:3] == [SetScope(None), ReleaseInputs(), AwaitResume(1)]
    assert "reconnecting" in _kinds(actions) and not any(isinstance(a, StopStreaming) for a in actions)
    assert m.state is State.RECONNECTING and m.scope is None and m.resumable
    actions = _feed(m, PathResumed(attempt=1))
    assert SetScope("control") in actions and not any(isinstance(a, RecordEnd) for a in actions)
    assert StartStreaming("control") in actions  # a local viewer that connected during the cut is served now
    assert m.state is State.ACTIVE and m.scope == "control" and m.consent_id == 1


def test_no_resume_in_time_ends_the_session() -> None:
    m = _machine()
    _feed(m, Registered(SID), ConsentRecorded("view", 1), ViewerArrived(PEER), AuthSucceeded(), PathLost())
    actions = _feed(m, ResumeGaveUp("gone", attempt=1))
    assert RecordEnd(1) in actions and isinstance(actions[-1], Ended) and m.state is State.ENDED


def test_events_from_an_earlier_connection_are_ignored() -> None:
    m = _machine(confirm_each=True, keep_waiting=True)
    _feed(m, Registered(SID), ConsentRecorded("view", 1), ViewerArrived(PEER), AuthSucceeded(), ViewerLeft(attempt=1))
    _feed(m, ViewerArrived(PEER), AuthSucceeded())
    before = _snapshot(m)
    assert m.handle(ConfirmTimedOut(attempt=1)) == []  # the first connection's timer
    assert m.handle(ViewerLeft(attempt=1)) == []
    assert _snapshot(m) == before
    assert m.handle(ConfirmTimedOut(attempt=2))
    assert m.state is State.WAITING


@pytest.mark.parametrize("by, code, remote", [("launcher", 0, "local"), ("signal", 0, "local"),
                                              ("timeout", 0, "local"), ("viewer", 4, "remote")])
def test_terminate_ends_and_wipes(by: str, code: int, remote: str) -> None:
    m = _machine()
    _feed(m, Registered(SID), ConsentRecorded("control", 5), ViewerArrived(PEER), AuthSucceeded())
    pw = m.password
    actions = m.handle(Terminate(by, "done"))
    assert _kinds(actions) == ["StopStreaming", "SetScope", "ReleaseInputs", "DisconnectViewer", "viewer_left",
                               "state", "RecordEnd", "ended", "Ended"]
    assert actions[-1] == Ended("done", code)
    assert actions[-2].data == {"event": "ended", "by": remote, "cause": by, "reason": "done"}
    assert m.state is State.ENDED and m.ended == ("done", code)
    assert (m.session_id, m.password, m.peer, m.consent_id) == (None, None, None, None)
    assert pw is not None and pw.wiped
    with pytest.raises(LifecycleError, match="ended"):
        m.credentials()


def test_consent_refused_and_link_loss_exit_codes() -> None:
    m = _machine()
    _feed(m, Registered(SID))
    assert m.handle(Terminate("launcher", "consent_refused"))[-1] == Ended("consent_refused", 4)
    m = _machine()
    _feed(m, Registered(SID))
    assert m.handle(LinkFailed("relay unreachable"))[-1] == Ended("link failed: relay unreachable", 1)
    m = _machine()
    assert m.handle(LinkFailed("relay unreachable"))[-1].exit_code == 1  # never registered


def test_ended_absorbs_late_news_and_refuses_the_rest() -> None:
    m = _machine()
    _feed(m, Registered(SID), Terminate("signal"))
    assert _feed(m, Terminate("launcher"), ViewerLeft(), LinkFailed()) == []
    for event in (Registered(SID), ViewerArrived(PEER), Accepted(), AuthSucceeded()):
        with pytest.raises(IllegalTransition, match="in state 'ended'"):
            m.handle(event)


def test_reasons_from_the_wire_are_cleaned_and_bounded() -> None:
    m = _machine()
    _feed(m, Registered(SID))
    actions = m.handle(Terminate("viewer", "bye\x1b[2J\n" + "x" * 1000))
    reason = actions[-1].reason
    assert len(reason) <= 200 and reason.isprintable() and reason.startswith("bye")


def test_bad_inputs_are_refused_without_change() -> None:
    m = _machine()
    for bad in (Registered(""), Registered("12 34"), Terminate("technician")):
        before = _snapshot(m)
        with pytest.raises(IllegalTransition):
            m.handle(bad)
        assert _snapshot(m) == before
    _feed(m, Registered(SID))
    with pytest.raises(IllegalTransition, match="ViewerLeft is not allowed in state 'waiting'"):
        m.handle(ViewerLeft())
    with pytest.raises(IllegalTransition):
        m.handle(ViewerArrived(""))
    _feed(m, ViewerArrived(PEER))
    # several handshakes may run at once (issue #11 A), up to MAX_PENDING_HANDSHAKES
    for _ in range(MAX_PENDING_HANDSHAKES - 1):
        assert m.can_accept_viewer
        _feed(m, ViewerArrived("203.0.113.9:5000"))
    assert not m.can_accept_viewer
    with pytest.raises(IllegalTransition, match="handshakes are already running"):
        m.handle(ViewerArrived("203.0.113.9:5000"))


def test_every_state_lists_its_events_in_the_table() -> None:
    assert set(_TRANSITIONS) == set(State)
    assert all(target in State for row in _TRANSITIONS.values() for target in row.values())
    assert Terminate in _TRANSITIONS[State.ACTIVE] and ViewerArrived not in _TRANSITIONS[State.ACTIVE]


# --- properties over random event sequences --------------------------------------------

_ATTEMPT = st.none() | st.none() | st.integers(0, 3)  # mostly "the current connection", some stale numbers
_ANY = st.one_of(
    st.builds(Registered, st.sampled_from([SID, "555000111"])),
    st.builds(ViewerArrived, st.sampled_from([PEER, "203.0.113.9:5000"])),
    st.builds(AuthFailed, attempt=_ATTEMPT),
    st.builds(AuthSucceeded, attempt=_ATTEMPT),
    st.builds(ConsentRecorded, st.sampled_from(SCOPES), st.integers(1, 4)),
    st.builds(ConsentRecorded, st.sampled_from(("view", "root")), st.sampled_from([0, -1, True, None])),
    st.just(Accepted()), st.just(Rejected()),
    st.builds(ConfirmTimedOut, attempt=_ATTEMPT),
    st.builds(ScopeChanged, st.sampled_from(SCOPES)),
    st.builds(ViewerLeft, attempt=_ATTEMPT),
    st.builds(LinkFailed, st.just("reset"), attempt=_ATTEMPT),
    st.builds(Terminate, st.sampled_from(TERMINATORS + ("nobody",)), st.just("bye")),
)
# Chunks of a plausible session (a viewer that authenticates, the customer consenting...) mixed
# with arbitrary single events, so random histories get deep into the machine and off the path.
_CHUNK = st.one_of(
    st.tuples(st.builds(ConsentRecorded, st.sampled_from(SCOPES), st.integers(1, 4)),
              st.builds(ViewerArrived, st.just(PEER)), st.just(AuthSucceeded()), st.just(Accepted())),
    st.tuples(st.builds(ViewerArrived, st.just(PEER)), st.just(AuthSucceeded())),
    st.tuples(st.builds(ViewerArrived, st.just(PEER)), st.just(AuthFailed())),
    st.tuples(st.builds(ConsentRecorded, st.sampled_from(SCOPES), st.integers(1, 4))),
    st.tuples(st.just(Accepted())),
    st.tuples(st.builds(ScopeChanged, st.sampled_from(SCOPES))),
    st.tuples(st.builds(ViewerLeft, attempt=_ATTEMPT)),
    st.tuples(_ANY),
)
HISTORIES = st.lists(_CHUNK, max_size=25).map(lambda chunks: [event for chunk in chunks for event in chunk])


@settings(max_examples=300, deadline=None)
@given(st.booleans(), HISTORIES)
def test_random_sequences_hold_the_invariants(confirm_each: bool, events: list[Any]) -> None:
    issued: list[SessionPassword] = []
    counter = _counter()

    def generate() -> SessionPassword:
        issued.append(counter())
        return issued[-1]

    m = SessionMachine(confirm_each=confirm_each, policy=PasswordPolicy(generate=generate))
    committed: set[int] = set()  # rows the (imaginary) ledger committed this session
    accepted_this_viewer = False
    ended = 0
    for event in [Registered(SID), *events]:
        before = _snapshot(m)
        try:
            actions = m.handle(event)
        except IllegalTransition:
            assert _snapshot(m) == before, "a refused event changed the machine"
            continue
        if isinstance(event, ConsentRecorded):
            committed.add(event.consent_id)
        if isinstance(event, ViewerArrived):
            accepted_this_viewer = False
        if isinstance(event, Accepted):
            accepted_this_viewer = True
        for action in actions:
            if isinstance(action, EmitEvent):
                json.dumps(action.data)
            if isinstance(action, StartStreaming):
                assert m.consent_id in committed and action.scope in SCOPES
            ended += isinstance(action, Ended)
        if m.state is State.ACTIVE:
            assert m.consent_id in committed, "active without a committed consent row"
            assert m.scope in SCOPES
            assert accepted_this_viewer or not confirm_each, "active without the customer's accept"
        else:
            assert m.scope is None
        if m.state is State.ENDED:
            assert (m.session_id, m.password, m.peer) == (None, None, None)
            assert all(pw.wiped for pw in issued)
        assert ended == (m.state is State.ENDED)
    if m.state is not State.ENDED:  # however deep the history, ending wipes it all
        actions = m.handle(Terminate("signal"))
        assert isinstance(actions[-1], Ended) and not any(isinstance(a, StartStreaming) for a in actions)
    assert (m.session_id, m.password, m.peer, m.consent_id, m.scope) == (None, None, None, None, None)
    assert issued and all(pw.wiped for pw in issued)


@pytest.fixture
def machine_in() -> Iterator[Callable[[State], SessionMachine]]:
    paths = {
        State.STARTING: [],
        State.WAITING: [Registered(SID)],
        State.AUTHENTICATING: [Registered(SID), ViewerArrived(PEER)],
        State.CONSENT_PENDING: [Registered(SID), ViewerArrived(PEER), AuthSucceeded()],
        State.ACTIVE: [Registered(SID), ConsentRecorded("view", 1), ViewerArrived(PEER), AuthSucceeded()],
        State.RECONNECTING: [Registered(SID), ConsentRecorded("view", 1), ViewerArrived(PEER), AuthSucceeded(),
                             PathLost()],
        State.ENDED: [Terminate("launcher")],
    }

    def make(state: State) -> SessionMachine:
        m = _machine()
        _feed(m, *paths[state])
        assert m.state is state
        return m

    yield make


@pytest.mark.parametrize("state", list(State))
def test_events_missing_from_the_table_are_illegal(state: State, machine_in: Callable[[State], SessionMachine]) -> None:
    samples = [Registered(SID), ViewerArrived(PEER), AuthFailed(), AuthSucceeded(), ConsentRecorded("view", 2),
               Accepted(), Rejected(), ConfirmTimedOut(), ScopeChanged("view"), ViewerLeft(), LinkFailed(),
               Terminate("launcher")]
    for event in samples:
        m = machine_in(state)
        if type(event) in _TRANSITIONS[state]:
            continue
        with pytest.raises(IllegalTransition, match=f"{type(event).__name__} is not allowed in state '{state.value}'"):
            m.handle(event)
        assert m.state is state

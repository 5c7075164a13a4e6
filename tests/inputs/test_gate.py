"""ScopeGate: input reaches the backend only under scope control, and a drop releases everything."""
from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.inputs import InputBackend, NullInput, ScopeGate
from agent.session.lifecycle import (
    SCOPES,
    Accepted,
    AuthSucceeded,
    ConsentRecorded,
    IllegalTransition,
    LinkFailed,
    Registered,
    ReleaseInputs,
    ScopeChanged,
    SessionMachine,
    SetScope,
    State,
    Terminate,
    ViewerArrived,
    ViewerLeft,
)
from agent.session.password import PasswordPolicy, SessionPassword


class RecordingInput(InputBackend):
    """Remembers every call, and which keys and buttons are down, like a real backend would."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.keys: set[int] = set()
        self.buttons = 0
        self.closed = False

    def key(self, keysym: int, down: bool) -> None:
        self.calls.append(("key", keysym, down))
        (self.keys.add if down else self.keys.discard)(keysym)

    def pointer(self, x: int, y: int, button_mask: int) -> None:
        self.calls.append(("pointer", x, y, button_mask))
        self.buttons = button_mask & 0b10000111

    def release_all(self) -> None:
        self.calls.append(("release_all",))
        self.keys.clear()
        self.buttons = 0

    def close(self) -> None:
        self.calls.append(("close",))
        self.release_all()
        self.closed = True


def test_input_passes_only_under_control() -> None:
    inner = RecordingInput()
    gate = ScopeGate(inner)
    gate.key(0x61, True)
    gate.set_scope("view")
    gate.pointer(1, 2, 1)
    assert inner.calls == [] and gate.dropped == 2
    gate.set_scope("control")
    gate.key(0x61, True)
    gate.pointer(1, 2, 1)
    assert inner.calls == [("key", 0x61, True), ("pointer", 1, 2, 1)]
    assert gate.allows_input


@pytest.mark.parametrize("lower", ["view", None])
def test_leaving_control_releases_everything(lower: str | None) -> None:
    inner = RecordingInput()
    gate = ScopeGate(inner, "control")
    gate.key(0xFFE1, True)  # Shift held when the customer takes control back
    gate.pointer(5, 5, 1)
    gate.set_scope(lower)
    assert inner.calls[-1] == ("release_all",) and not inner.keys and not inner.buttons
    gate.key(0xFFE1, False)  # the late release is dropped: nothing is held any more
    assert inner.calls[-1] == ("release_all",)
    n = len(inner.calls)
    gate.set_scope("view")
    gate.set_scope(None)
    assert len(inner.calls) == n  # no control to leave: nothing to release


def test_close_releases_and_closes_once() -> None:
    inner = RecordingInput()
    gate = ScopeGate(inner, "control")
    gate.key(0x61, True)
    gate.close()
    gate.close()
    assert inner.closed and inner.calls.count(("close",)) == 1 and not inner.keys
    gate.key(0x62, True)
    assert not inner.keys and gate.scope is None and not gate.allows_input


def test_bad_scope_is_refused() -> None:
    gate = ScopeGate(NullInput())
    with pytest.raises(ValueError):
        gate.set_scope("admin")
    with pytest.raises(ValueError):
        ScopeGate(NullInput(), "root")
    assert gate.scope is None


# --- the gate driven by the session machine ---------------------------------------------

def apply(actions: list[Any], gate: ScopeGate) -> None:
    """What agent/session.py does with the machine's input-related actions."""
    for action in actions:
        if isinstance(action, SetScope):
            gate.set_scope(action.scope)
        elif isinstance(action, ReleaseInputs):
            gate.release_all()


_SESSION = st.one_of(
    st.tuples(st.builds(ConsentRecorded, st.sampled_from(SCOPES), st.integers(1, 3)),
              st.just(ViewerArrived("198.51.100.7:1")), st.just(AuthSucceeded())),
    st.builds(ConsentRecorded, st.sampled_from(SCOPES), st.integers(1, 3)),
    st.just(ViewerArrived("198.51.100.7:1")), st.just(AuthSucceeded()), st.just(Accepted()),
    st.builds(ScopeChanged, st.sampled_from(SCOPES)),
    st.just(ViewerLeft()), st.just(LinkFailed("reset")),
    st.just(Terminate("launcher")),
)
_INPUT = st.one_of(
    st.tuples(st.just("key"), st.sampled_from([0xFFE1, 0xFFE3, 0x61, 0x01000000 + 0x17C]), st.booleans()),
    st.tuples(st.just("pointer"), st.integers(-5, 2000), st.integers(-5, 2000), st.integers(0, 255)),
)


@settings(max_examples=300, deadline=None)
@given(st.booleans(), st.lists(st.one_of(_SESSION, _INPUT, _INPUT), max_size=60))
def test_input_never_reaches_the_backend_outside_control(confirm_each: bool, steps: list[Any]) -> None:
    n = iter(range(10000))
    machine = SessionMachine(confirm_each=confirm_each,
                             policy=PasswordPolicy(generate=lambda: SessionPassword(f"pw{next(n)}")))
    inner = RecordingInput()
    gate = ScopeGate(inner)
    apply(machine.handle(Registered("123456789")), gate)
    was_control = False
    for step in steps:
        if isinstance(step, tuple) and step and isinstance(step[0], str):
            before = len(inner.calls)
            getattr(gate, step[0])(*step[1:])
            if len(inner.calls) > before:
                assert machine.state is State.ACTIVE and machine.scope == "control", \
                    f"input reached the backend in {machine.state.value}/{machine.scope}"
            continue
        for event in step if isinstance(step, tuple) else (step,):
            try:
                apply(machine.handle(event), gate)
            except IllegalTransition:
                pass
        assert gate.scope == machine.scope  # the actions keep gate and machine in step
        in_control = machine.scope == "control"
        if was_control and not in_control:
            assert not inner.keys and not inner.buttons, "a key or button stayed down after control ended"
        was_control = in_control
    apply(machine.handle(Terminate("signal")) if machine.state is not State.ENDED else [], gate)
    assert not inner.keys and not inner.buttons and gate.scope is None

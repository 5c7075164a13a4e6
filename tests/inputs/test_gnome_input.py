"""GNOME input planning and bookkeeping, without a compositor: RFB masks to evdev buttons and wheel steps,
keysyms to NotifyKeyboardKeysym, held keys released. The Mutter session is a recording fake."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.errors import CaptureError
from agent.inputs import InputError, ScopeGate, open_input_backend
from agent.inputs.gnome import (
    AXIS_HORIZONTAL,
    AXIS_VERTICAL,
    BTN_LEFT,
    BTN_MIDDLE,
    BTN_RIGHT,
    BTN_SIDE,
    XK_SHIFT_L,
    GnomeInput,
    clamp_position,
    plan_buttons,
)


class RecordingSession:
    """Stands in for agent.capture.mutter.MutterSession: records Notify calls; can be made to fail."""

    remote_desktop = True
    stream_path = "/org/gnome/Mutter/ScreenCast/Stream/u1"

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.fail = False

    def notify(self, method: str, signature: str, *args) -> None:
        if self.fail:
            raise CaptureError("the GNOME remote-desktop session was closed")
        self.calls.append((method, *args))


class RecordingSource:
    backend = "gnome"
    size = (1024, 768)

    def __init__(self) -> None:
        self.session = RecordingSession()


@pytest.fixture
def source() -> RecordingSource:
    return RecordingSource()


def keys(calls) -> list[tuple[int, bool]]:
    return [(c[1], c[2]) for c in calls if c[0] == "KeyboardKeysym"]


def test_rfb_buttons_map_to_evdev_codes_and_wheel_to_discrete_axis_steps():
    assert plan_buttons(0, 0b1) == [("button", BTN_LEFT, 1)]
    assert plan_buttons(0b1, 0) == [("button", BTN_LEFT, 0)]
    assert plan_buttons(0, 0b10) == [("button", BTN_MIDDLE, 1)]
    assert plan_buttons(0, 0b100) == [("button", BTN_RIGHT, 1)]
    assert plan_buttons(0, 0b1000_0000) == [("button", BTN_SIDE, 1)]
    assert plan_buttons(0, 1 << 3) == [("axis", AXIS_VERTICAL, -1)]   # button 4: up
    assert plan_buttons(0, 1 << 4) == [("axis", AXIS_VERTICAL, 1)]    # button 5: down
    assert plan_buttons(0, 1 << 5) == [("axis", AXIS_HORIZONTAL, -1)]  # button 6: left
    assert plan_buttons(0, 1 << 6) == [("axis", AXIS_HORIZONTAL, 1)]   # button 7: right
    # a drag with the wheel turning: the held button does not bounce, the wheel steps each event
    assert plan_buttons(0b1, 0b1 | 1 << 4) == [("axis", AXIS_VERTICAL, 1)]
    assert plan_buttons(0b101, 0b110) == [("button", BTN_LEFT, 0), ("button", BTN_MIDDLE, 1)]


@given(st.integers(0, 255), st.integers(0, 255))
def test_button_plans_reach_the_target_state(held, mask):
    held &= 0b1000_0111
    down = {BTN_LEFT: 1, BTN_MIDDLE: 2, BTN_RIGHT: 4, BTN_SIDE: 128}
    state = held
    for kind, a, b in plan_buttons(held, mask):
        if kind == "button":
            bit = down[a]
            assert bool(state & bit) != bool(b), "a press of a held button or a release of a free one"
            state = state | bit if b else state & ~bit
    assert state == mask & 0b1000_0111
    steps = [e for e in plan_buttons(held, mask) if e[0] == "axis"]
    assert len(steps) == bin(mask & 0b0111_1000).count("1")


def test_positions_are_clamped_to_the_monitor():
    assert clamp_position(-5, 10, (1024, 768)) == (0, 10)
    assert clamp_position(5000, 5000, (1024, 768)) == (1023, 767)
    assert clamp_position(3, 4, (0, 0)) == (0, 0)


def test_first_key_primes_the_virtual_keyboard_once(source):
    gnome = GnomeInput(source)
    gnome.key(ord("a"), True)
    gnome.key(ord("a"), False)
    gnome.key(ord("b"), True)
    gnome.key(ord("b"), False)
    assert keys(source.session.calls) == [(XK_SHIFT_L, True), (XK_SHIFT_L, False), (ord("a"), True),
                                           (ord("a"), False), (ord("b"), True), (ord("b"), False)]


def test_autorepeat_is_release_and_press_and_stray_releases_are_dropped(source):
    gnome = GnomeInput(source)
    gnome.key(ord("x"), True)
    source.session.calls.clear()
    gnome.key(ord("x"), True)  # the viewer's autorepeat: a second down without an up
    gnome.key(ord("x"), False)
    gnome.key(ord("y"), False)  # never pressed
    gnome.key(0, True)  # NoSymbol
    assert keys(source.session.calls) == [(ord("x"), False), (ord("x"), True), (ord("x"), False)]


def test_release_all_lets_go_of_every_key_and_button_in_reverse(source):
    gnome = GnomeInput(source)
    gnome.key(0xFFE3, True)  # Control_L
    gnome.key(ord("c"), True)
    gnome.pointer(10, 20, 0b101)
    assert gnome.held == ([0xFFE3, ord("c")], 0b101)
    source.session.calls.clear()
    gnome.release_all()
    assert source.session.calls == [("KeyboardKeysym", ord("c"), False), ("KeyboardKeysym", 0xFFE3, False),
                                    ("PointerButton", BTN_LEFT, False), ("PointerButton", BTN_RIGHT, False)]
    assert gnome.held == ([], 0)
    source.session.calls.clear()
    gnome.release_all()
    assert source.session.calls == []


def test_pointer_moves_only_when_it_moved_on_the_stream(source):
    gnome = GnomeInput(source)
    gnome.pointer(10, 20, 0)
    gnome.pointer(10, 20, 0)
    gnome.pointer(2000, -3, 1 << 4)
    assert source.session.calls == [
        ("PointerMotionAbsolute", source.session.stream_path, 10.0, 20.0),
        ("PointerMotionAbsolute", source.session.stream_path, 1023.0, 0.0),
        ("PointerAxisDiscrete", AXIS_VERTICAL, 1),
    ]


def test_scope_gate_drop_releases_through_the_gnome_backend(source):
    gate = ScopeGate(GnomeInput(source), scope="control")
    gate.key(0xFFE1, True)
    gate.set_scope("view")
    assert keys(source.session.calls)[-1] == (0xFFE1, False)
    count = len(source.session.calls)
    gate.key(ord("a"), True)
    assert len(source.session.calls) == count and gate.dropped == 1


def test_a_lost_session_is_an_input_error_and_release_all_survives_it(source):
    gnome = GnomeInput(source)
    gnome.key(ord("a"), True)
    source.session.fail = True
    with pytest.raises(InputError, match="GNOME refused input"):
        gnome.key(ord("b"), True)
    gnome.release_all()  # no exception: nothing is held on a session that is gone
    assert gnome.held == ([], 0)
    gnome.close()
    with pytest.raises(InputError, match="closed"):
        gnome.key(ord("a"), True)


def test_open_input_backend_follows_the_source(source):
    assert isinstance(open_input_backend(None, None, source), GnomeInput)
    with pytest.raises(InputError, match="--backend gnome"):
        open_input_backend(":0", "gnome", None)

    class ViewOnly(RecordingSource):
        def __init__(self) -> None:
            super().__init__()
            self.session.remote_desktop = False

    with pytest.raises(InputError, match="view only"):
        open_input_backend(None, None, ViewOnly())


def test_entering_control_prepares_the_keyboard_before_the_first_key(source):
    gate = ScopeGate(GnomeInput(source), scope="view")
    assert source.session.calls == []  # nothing at all reaches the desktop before control
    gate.set_scope("control")
    assert keys(source.session.calls) == [(XK_SHIFT_L, True), (XK_SHIFT_L, False)]
    gate.key(ord("a"), True)
    gate.set_scope("view")
    gate.set_scope("control")  # primed once per session
    assert keys(source.session.calls) == [(XK_SHIFT_L, True), (XK_SHIFT_L, False), (ord("a"), True),
                                           (ord("a"), False)]


def test_a_failing_prepare_does_not_break_the_scope_change(source):
    source.session.fail = True
    gate = ScopeGate(GnomeInput(source), scope="view")
    gate.set_scope("control")
    assert gate.scope == "control"

"""Backend choice (agent.capture.backends.choose_backend): pure, no compositor, no X server."""
from __future__ import annotations

import pytest

from agent.capture.backends import choose_backend, is_wayland
from agent.errors import CaptureError, UsageError

GNOME_WAYLAND = {"XDG_SESSION_TYPE": "wayland", "WAYLAND_DISPLAY": "wayland-0"}


def never_asked() -> bool:
    raise AssertionError("the session bus was asked although the answer was already known")


@pytest.mark.parametrize("env, expected", [
    ({"XDG_SESSION_TYPE": "wayland"}, True),
    ({"XDG_SESSION_TYPE": "Wayland"}, True),
    ({"WAYLAND_DISPLAY": "wayland-0"}, True),
    ({"XDG_SESSION_TYPE": "x11", "DISPLAY": ":0"}, False),
    ({"XDG_SESSION_TYPE": "tty"}, False),
    ({}, False),
])
def test_wayland_session_is_read_from_the_environment(env, expected):
    assert is_wayland(env) is expected


def test_gnome_wayland_session_gets_gnome_even_with_xwayland():
    assert choose_backend(None, None, {**GNOME_WAYLAND, "DISPLAY": ":0"}, lambda: True) == "gnome"
    assert choose_backend(None, None, {"XDG_SESSION_TYPE": "wayland"}, lambda: True) == "gnome"


def test_x11_session_gets_x11_without_asking_the_bus():
    assert choose_backend(None, None, {"DISPLAY": ":0", "XDG_SESSION_TYPE": "x11"}, never_asked) == "x11"


def test_forced_backend_and_explicit_display_win_without_asking():
    assert choose_backend("x11", None, GNOME_WAYLAND, never_asked) == "x11"
    assert choose_backend("gnome", None, {"DISPLAY": ":0"}, never_asked) == "gnome"
    assert choose_backend(None, ":5", GNOME_WAYLAND, never_asked) == "x11"


def test_nonsense_combinations_are_usage_errors():
    with pytest.raises(UsageError, match="--backend"):
        choose_backend("weston", None, {}, never_asked)
    with pytest.raises(UsageError, match="--display"):
        choose_backend("gnome", ":1", {}, never_asked)


def test_other_compositor_falls_back_to_xwayland_or_says_portal():
    env = {"WAYLAND_DISPLAY": "wayland-1", "XDG_SESSION_TYPE": "wayland"}
    assert choose_backend(None, None, {**env, "DISPLAY": ":1"}, lambda: False) == "x11"
    with pytest.raises(CaptureError) as info:
        choose_backend(None, None, env, lambda: False)
    message = str(info.value)
    assert "not GNOME" in message and "xdg-desktop-portal" in message and "\n" not in message
    assert info.value.exit_code == 5


def test_bus_that_cannot_answer_is_named_in_the_error():
    why = "the GNOME Wayland backend needs PyGObject, which is not installed: pip install 'rejnet-agent[wayland]'"
    assert choose_backend(None, None, {**GNOME_WAYLAND, "DISPLAY": ":0"}, lambda: why) == "x11"
    with pytest.raises(CaptureError, match="PyGObject"):
        choose_backend(None, None, GNOME_WAYLAND, lambda: why)


def test_nothing_to_capture_is_one_line():
    with pytest.raises(CaptureError) as info:
        choose_backend(None, None, {}, never_asked)
    assert "no X display" in str(info.value) and "synthetic:mixed" in str(info.value)
    assert "\n" not in str(info.value)

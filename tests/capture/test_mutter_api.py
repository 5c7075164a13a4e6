"""Mutter's private API: version and device-type checks, stream parameters (pure, no compositor)."""
from __future__ import annotations

import pytest

from agent.capture.mutter import (
    MIN_SCREEN_CAST_VERSION,
    MutterApi,
    check_api,
    stream_geometry,
)
from agent.errors import CaptureError

MUTTER_43 = MutterApi(screen_cast_version=4, remote_desktop_version=1, device_types=7)


def _refusal(api: MutterApi, need_input: bool = True) -> str:
    with pytest.raises(CaptureError) as info:
        check_api(api, need_input)
    assert info.value.exit_code == 5 and "\n" not in str(info.value)
    return str(info.value)


def test_mutter_43_is_accepted_with_and_without_input():
    check_api(MUTTER_43, True)
    check_api(MutterApi(MIN_SCREEN_CAST_VERSION), False)


def test_no_screen_cast_names_the_interface():
    assert "org.gnome.Mutter.ScreenCast is not on the session bus" in _refusal(MutterApi(None))


def test_old_screen_cast_names_the_version_and_what_is_missing():
    message = _refusal(MutterApi(1, 1, 7))
    assert "version 1" in message and f"version {MIN_SCREEN_CAST_VERSION}" in message and "cursor-mode" in message


def test_input_needs_remote_desktop_with_keyboard_and_pointer():
    assert "RemoteDesktop is not on the session bus" in _refusal(MutterApi(4, None, 0))
    assert "version 0" in _refusal(MutterApi(4, 0, 7))
    assert "keyboard" in _refusal(MutterApi(4, 1, 2)) and "pointer" not in _refusal(MutterApi(4, 1, 2))
    assert "keyboard or pointer" in _refusal(MutterApi(4, 1, 4))
    check_api(MutterApi(4, None, 0), need_input=False)  # a probe only looks


@pytest.mark.parametrize("params, expected", [
    ({"position": (0, 0), "size": (1024, 768)}, (0, 0, 1024, 768)),
    ({"position": (1920, 0), "size": (1280, 1024)}, (1920, 0, 1280, 1024)),
    ({"size": (800, 600)}, (0, 0, 800, 600)),
    ({"position": (0, 0)}, None),
    ({"size": (0, 600)}, None),
    ({"size": "bogus"}, None),
    ({}, None),
])
def test_stream_geometry(params, expected):
    assert stream_geometry(params) == expected

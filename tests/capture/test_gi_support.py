"""A missing PyGObject is one line naming the packages, never an ImportError traceback."""
from __future__ import annotations

import sys

import pytest

from agent.capture.backends import mutter_on_bus
from agent.capture.gi_support import load_gio, load_gst
from agent.errors import CaptureError


def test_missing_pygobject_names_the_extra_and_the_build_packages(monkeypatch):
    monkeypatch.setitem(sys.modules, "gi", None)  # what "not installed" looks like to an import
    for load in (load_gio, load_gst):
        with pytest.raises(CaptureError) as info:
            load()
        message = str(info.value)
        assert "PyGObject" in message and "rejnet-agent[wayland]" in message and "<3.50" in message
        assert "libgirepository1.0-dev libcairo2-dev pkg-config" in message and "\n" not in message
        assert info.value.exit_code == 5


def test_backend_choice_says_why_it_cannot_ask_the_bus(monkeypatch):
    monkeypatch.setitem(sys.modules, "gi", None)
    assert "PyGObject" in str(mutter_on_bus())

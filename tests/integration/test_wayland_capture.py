"""GnomeSource and GnomeInput on a headless GNOME session, and the one-line errors of the CLI.

The GTK client of tests/support/gnome_session.py provides known content and
reports what reaches it.
"""
from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.support.gnome_session import BANDS, GtkClient, gnome_session, need_gnome, spawn_in  # noqa: F401
from tests.support.tools import need

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow]


@pytest.fixture
def in_session(gnome_session, monkeypatch):
    """This process talks to the headless session's bus and PipeWire (the env of a GNOME client)."""
    for name in ("DISPLAY", "PIPEWIRE_REMOTE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in gnome_session.env.items():
        monkeypatch.setenv(name, value)
    return gnome_session


@pytest.fixture
def client(gnome_session):
    gtk = GtkClient(gnome_session)
    yield gtk
    gtk.close()


def test_open_source_chooses_gnome_and_frames_show_the_client(in_session, client):
    from agent.capture import open_source
    from agent.capture.gnome_source import GnomeSource

    with open_source() as source:  # no --backend: the session type decides
        assert isinstance(source, GnomeSource) and source.backend == "gnome"
        assert source.size == (1024, 768) and "ScreenCast v" in source.description
        assert source.cursor_mode == "embedded" and "cursor" in source.cursor_reason
        assert source.cursor() is None and source.fresh_frames
        frame = source.grab()
        assert frame.shape == (768, 1024, 4) and frame.flags.c_contiguous and not frame.flags.writeable
        assert not frame.flags.owndata and source.fallback_reason is None  # a view of the mapped buffer
        for top, bottom, (r, g, b) in BANDS:
            assert tuple(frame[(top + bottom) // 2, 700, :3]) == (b, g, r)


def test_idle_screen_sends_no_frames_and_a_change_wakes_the_fd(in_session, client):
    from agent.capture.gnome_source import GnomeSource
    from agent.inputs.gnome import GnomeInput

    with GnomeSource() as source:
        source.grab()
        time.sleep(0.3)
        first = source.grab()
        assert source.damaged() is False
        fd = source.hint_fileno()
        assert select.select([fd], [], [], 1.5)[0] == [], "an idle monitor sent a frame"
        assert source.grab() is first  # nothing new: the same frame again, no copy
        typing = GnomeInput(source)
        typing.key(ord("w"), True)
        typing.key(ord("w"), False)
        assert select.select([fd], [], [], 5)[0] == [fd] and source.damaged() is True
        time.sleep(0.2)
        changed = source.grab()
        assert source.damaged() is False
        differ = np.argwhere((changed != first).any(axis=2))
        assert len(differ) and differ[:, 0].max() < 100, "the change is in the entry at the top"
        assert client.wait_text("w") == "w"
        typing.close()


def test_held_shift_is_released_when_the_scope_drops_to_view(in_session, client):
    from agent.capture.gnome_source import GnomeSource
    from agent.inputs import ScopeGate, open_input_backend

    with GnomeSource() as source:
        gate = ScopeGate(open_input_backend(None, None, source), scope="control")
        gate.key(0xFFE1, True)  # Shift_L held by the technician
        gate.key(ord("a"), True)
        gate.key(ord("a"), False)
        assert client.wait_text("A") == "A"
        gate.set_scope("view")  # the customer took control back: Shift must not stay down
        gate.set_scope("control")
        gate.key(ord("b"), True)
        gate.key(ord("b"), False)
        assert client.wait_text("Ab") == "Ab"
        gate.close()


def test_probe_reports_the_gnome_backend(gnome_session, client):
    (agent_bin,) = need("rejnet-agent")
    proc = spawn_in(gnome_session, [agent_bin, "probe", "--seconds", "1", "--json"])
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    head = json.loads(out.splitlines()[0])
    assert head["backend"] == "gnome" and (head["width"], head["height"]) == (1024, 768)
    assert head["cursor_mode"] == "embedded" and head["capture_path"].startswith("PipeWire")
    summary = json.loads(out.splitlines()[-1])
    assert summary["type"] == "summary" and summary["frames"] >= 2
    assert 0 <= summary["stream_frames"] < summary["frames"]  # an idle screen: grabs, but few new frames


def _one_line_exit_5(argv: list[str], env: dict[str, str]) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, cwd=str(ROOT))
    assert result.returncode == 5, (result.returncode, result.stderr)
    # dbus-run-session's daemon may warn about its fd limit; every other line is ours
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("dbus-daemon[")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_a_bus_without_mutter_is_exit_5_naming_the_interface(tmp_path):
    need_gnome()
    (agent_bin,) = need("rejnet-agent")
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update(XDG_RUNTIME_DIR=str(tmp_path), PYTHONPATH=str(ROOT))
    line = _one_line_exit_5(["dbus-run-session", "--", agent_bin, "--backend", "gnome", "--listen",
                             "127.0.0.1:0", "--consent-db", str(tmp_path / "c.db")], env)
    assert "org.gnome.Mutter.ScreenCast is not on the session bus" in line


def test_missing_pygobject_or_gstreamer_plugin_is_exit_5_naming_packages(gnome_session, tmp_path):
    env = dict(gnome_session.env, PYTHONPATH=str(ROOT))
    no_gi = ("import sys; sys.modules['gi'] = None; sys.argv = ['rejnet-agent', 'probe', '--backend', 'gnome']; "
             "from agent.commands import agent_main; sys.exit(agent_main())")
    line = _one_line_exit_5([sys.executable, "-c", no_gi], env)
    assert "PyGObject" in line and "rejnet-agent[wayland]" in line
    # GStreamer with no plugins at all (an empty plugin path and a fresh registry): pipewiresrc is missing
    empty = tmp_path / "plugins"
    empty.mkdir()
    env.update(GST_PLUGIN_SYSTEM_PATH_1_0=str(empty), GST_PLUGIN_PATH_1_0=str(empty),
               GST_REGISTRY_1_0=str(tmp_path / "registry.bin"))
    (agent_bin,) = need("rejnet-agent")
    line = _one_line_exit_5([agent_bin, "probe", "--backend", "gnome"], env)
    assert "pipewiresrc" in line and "gstreamer1.0-pipewire" in line and "gstreamer1.0-plugins-base" in line

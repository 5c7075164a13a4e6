"""The link benchmark's typing and idle workloads on a GNOME Wayland desktop (``--desktop gnome``).

One small real run: a headless GNOME session, foot running vim, keys typed
through the harness's own RemoteDesktop session, our agent sharing it with
``--backend gnome`` through relay and bridge behind the shaping proxy. It
asserts that the benchmark works there and says sane things, never how fast.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.gnome_session import need_gnome
from tests.support.tools import need

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow]


def test_typing_and_idle_run_on_the_gnome_backend(tmp_path):
    need_gnome()
    need("foot", "vim")
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "benchmarks.linkbench", "--desktop", "gnome", "--links", "10m",
                             "--settings", "lossless", "--repeat", "1", "--seconds", "3", "--out", str(out)],
                            cwd=str(ROOT), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])
    data = json.loads((out / "results.json").read_text())
    assert data["meta"]["desktop"] == "gnome" and data["meta"]["servers"] == ["rejnet"]
    runs = {r["workload"]: r for r in data["runs"]}
    assert set(runs) == {"typing", "idle"}
    for run in runs.values():
        assert run["error"] is None and run["synced"], run
    typing = runs["typing"]
    assert typing["steps"] >= 15 and typing["steps_changed"] >= typing["steps"] // 2
    assert typing["missed"] == 0 and typing["converged"] and typing["exact_fraction"] == 1.0
    assert typing["cpu_server"] > 0 and typing["bytes_down"] > 0
    idle = runs["idle"]
    assert idle["updates"] == 0 and idle["bytes_down"] < 2000, idle  # keepalives at most
    assert idle["cpu_server"] < 0.3, idle


def test_gnome_desktop_refuses_what_it_cannot_run(tmp_path):
    result = subprocess.run([sys.executable, "-m", "benchmarks.linkbench", "--desktop", "gnome", "--servers",
                             "rejnet,x11vnc", "--out", str(tmp_path)], cwd=str(ROOT), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2 and "x11vnc and TigerVNC cannot capture a Wayland desktop" in result.stderr

"""``rejnet-agent probe``: figures on synthetic workloads and on Xvfb, text and JSON output."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agent.capture import ScreenSource
from agent.commands.probe import probe
from agent.workloads import SyntheticSource

ROOT = Path(__file__).resolve().parents[2]



def run_probe(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full = dict(os.environ, PYTHONPATH=str(ROOT))
    full.update(env or {})
    for name, value in list(full.items()):
        if value is None:
            del full[name]
    return subprocess.run([sys.executable, "-m", "agent", "probe", *args], cwd=ROOT, env=full,
                          capture_output=True, text=True, timeout=90)


def json_lines(text: str) -> list[dict]:
    lines = [json.loads(line) for line in text.splitlines()]
    assert all(isinstance(obj, dict) for obj in lines)
    return lines


def test_probe_typing_reports_small_changes() -> None:
    intervals: list[dict] = []
    summary = probe(SyntheticSource("typing", 320, 200), seconds=0.5, tile=32, on_interval=intervals.append)
    assert summary["type"] == "summary" and summary["frames"] >= 2 and summary["resizes"] == 0
    assert intervals and intervals[-1]["type"] == "interval"
    assert sum(i["frames"] for i in intervals) == summary["frames"]
    assert summary["frames_per_second"] > 0
    assert summary["capture_ms"]["mean"] > 0 and summary["detect_ms"]["p95"] >= summary["detect_ms"]["p50"]
    # typing changes a glyph, the caret and the status bar: a few percent of the screen at most
    assert 0 < summary["dirty_ratio"]["mean"] < 0.05
    assert 0 < summary["truth_changed_ratio"]["mean"] < 0.05
    assert summary["copied_ratio"]["mean"] <= summary["truth_moved_ratio"]["mean"] + 0.01


def test_probe_idle_reports_nothing_dirty() -> None:
    summary = probe(SyntheticSource("idle", 200, 100), seconds=0.3)
    assert summary["frames"] >= 2
    assert summary["dirty_ratio"] == {"mean": 0.0, "max": 0.0}
    assert summary["copied_ratio"] == {"mean": 0.0, "max": 0.0}


class _Resizing(ScreenSource):
    """Alternates between two screen sizes every few frames, as a display reconfigured under us would."""

    description = "resizing test screen"

    def __init__(self) -> None:
        self._sources = [SyntheticSource("typing", 160, 100), SyntheticSource("typing", 120, 90)]
        self._n = 0

    @property
    def size(self) -> tuple[int, int]:
        return self._sources[(self._n // 5) % 2].size

    def grab(self) -> np.ndarray:
        frame = self._sources[(self._n // 5) % 2].grab()
        self._n += 1
        return frame


def test_probe_follows_size_changes() -> None:
    summary = probe(_Resizing(), seconds=0.3)
    assert summary["resizes"] >= 1
    assert summary["dirty_ratio"]["max"] < 1.0, "the whole-screen frame after a resize is not counted as dirt"


def test_cli_json_on_a_synthetic_workload() -> None:
    proc = run_probe("--screen", "synthetic:window-drag:320x240", "--seconds", "1.2", "--json")
    assert proc.returncode == 0, proc.stderr
    lines = json_lines(proc.stdout)
    assert lines[0]["type"] == "source" and lines[0]["width"] == 320 and lines[0]["height"] == 240
    assert lines[0]["description"].startswith("synthetic:window-drag")
    assert [obj["type"] for obj in lines[1:-1]] == ["interval"] * (len(lines) - 2) and len(lines) >= 3
    summary = lines[-1]
    assert summary["type"] == "summary" and summary["frames"] >= 2
    assert summary["truth_moved_ratio"]["mean"] > 0
    for key in ("frames_per_second", "capture_ms", "detect_ms", "dirty_ratio", "copied_ratio"):
        assert key in summary


def test_cli_text_output() -> None:
    proc = run_probe("--screen", "synthetic:video:256x144", "--seconds", "0.5")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("probing synthetic:video 256x144")
    assert "summary:" in proc.stdout and "frames/s" in proc.stdout and "dirty area" in proc.stdout


@pytest.mark.xvfb
def test_cli_json_on_xvfb(xvfb: str) -> None:
    proc = run_probe("--display", xvfb, "--seconds", "0.5", "--json")
    assert proc.returncode == 0, proc.stderr
    lines = json_lines(proc.stdout)
    source, summary = lines[0], lines[-1]
    assert source["width"] == 1024 and source["height"] == 768
    assert source["capture_path"] in ("XShmGetImage", "XGetImage")
    assert summary["type"] == "summary" and summary["frames"] >= 2
    assert "truth_changed_ratio" not in summary


def test_cli_without_any_display_probes_mixed() -> None:
    proc = run_probe("--seconds", "0.3", "--json", env={"DISPLAY": None, "WAYLAND_DISPLAY": None})
    assert proc.returncode == 0, proc.stderr
    assert "no X display" in proc.stderr and "mixed" in proc.stderr
    assert json_lines(proc.stdout)[0]["description"].startswith("synthetic:mixed")


@pytest.mark.parametrize("args", [["--tile", "7"], ["--seconds", "0"], ["--screen", "synthetic:nope"],
                                  ["--screen", "synthetic:idle", "--display", ":0"]])
def test_cli_usage_errors_exit_2(args: list[str]) -> None:
    proc = run_probe(*args)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.strip()

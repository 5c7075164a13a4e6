"""benchmarks/console_latency.py, small: the whole chain, the page in headless Chromium and a VNC client on
the bridge port, a few keys each on an unshaped link. Asserts that the benchmark runs and reports both
figures, never how fast anything is (the target line may say FAIL on a busy machine)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.tools import need

pytestmark = [pytest.mark.xvfb, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"


def test_console_latency_reports_page_and_vnc_figures(tmp_path):
    need("Xvfb", "xterm", "xdotool", "xsetroot")
    if not os.path.exists(CHROMIUM):
        pytest.skip("Chromium is not installed (apt-get install chromium); .ci/run installs it")
    pytest.importorskip("playwright.async_api", reason="pip install -e '.[test]' installs playwright")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.console_latency", "--keys", "4", "--rounds", "1",
                           "--link", "none", "--out", str(out)],
                          cwd=str(ROOT), capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    report = (out / "report.md").read_text()
    assert "| page (keydown -> canvas painted) | 4 | 0 |" in report, report
    assert "| VNC client on the bridge port" in report, report
    assert "page typing echo p95 <= VNC p95 + 10 ms" in report and ("- PASS" in report or "- FAIL" in report)
    figures = json.loads((out / "results.json").read_text())["figures"]
    for side in ("page", "vnc"):
        assert figures[side]["n"] == 4 and figures[side]["missed"] == 0
        assert 0 < figures[side]["p50_ms"] <= figures[side]["p95_ms"] < 10_000
    assert figures["diff_p95_ms"] == pytest.approx(figures["page"]["p95_ms"] - figures["vnc"]["p95_ms"])

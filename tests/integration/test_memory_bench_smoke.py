"""The 4K memory benchmark, small: its report offline, and one real ``--quick`` run (4K, 3 s, rejnet and TigerVNC).

The real run asserts that the benchmark works and reports sane figures (the
agent's process really was measured: positive RSS and CPU, the peak at least
the end), never that a target is met.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.tools import need

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks import memory_4k  # noqa: E402


def _row(server: str, peak_mb: float, cpu: float, error: str | None = None) -> dict:
    return {"server": server, "error": error, "peak_rss_kb": int(peak_mb * 1024), "max_sampled_rss_kb": 1024,
            "max_sampled_pss_kb": 900, "end_rss_kb": 1024, "cpu": cpu, "updates": 5, "bytes_down": 5000, "sync_seconds": 0.5}


META = {"command": "test", "size": "3840x2160", "seconds": 3.0, "link": "unlimited"}


def test_report_targets_are_ratios_against_tigervnc():
    text = memory_4k.report([_row("rejnet", 150, 0.3), _row("tigervnc", 100, 0.1)], META)
    assert "| rejnet | 150.0 | 1.0 | 0.9 | 1.0 | 0.30 | 5 | 5.0 | 0.50 |" in text
    assert "PASS 4K: agent peak RSS vs tigervnc: 1.50x" in text
    assert "FAIL 4K: agent CPU over the window vs tigervnc: 3.00x" in text


def test_report_without_tigervnc_gives_no_verdict():
    text = memory_4k.report([_row("rejnet", 150, 0.3), _row("x11vnc", 10, 0.1)], META)
    assert "- n/a (tigervnc not run): 4K: agent peak RSS" in text and "PASS" not in text and "FAIL" not in text
    text = memory_4k.report([_row("rejnet", 150, 0.3), _row("tigervnc", 0, 0, error="ServerError: boom")], META)
    assert "- n/a (tigervnc failed): 4K: agent CPU" in text and "failed: ServerError: boom" in text


def test_proc_status_reads_this_process():
    import os

    status = memory_4k.proc_status(os.getpid())
    assert status["VmHWM"] >= status["VmRSS"] > 0
    assert memory_4k.proc_status(None) == {}
    assert 0 < memory_4k.proc_pss(os.getpid()) <= status["VmRSS"] + 1024 and memory_4k.proc_pss(None) is None


@pytest.mark.xvfb
@pytest.mark.slow
@pytest.mark.interop
@pytest.mark.timeout(120)
def test_quick_memory_benchmark_measures_the_agent_and_tigervnc(tmp_path):
    need("Xvfb", "xterm", "xdotool", "xsetroot", "top", "X0tigervnc")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.memory_4k", "--out", str(out), "--quick"],
                          cwd=str(ROOT), capture_output=True, text=True, timeout=110)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads((out / "results.json").read_text())
    assert data["meta"]["size"] == "3840x2160" and data["meta"]["seconds"] == 3.0
    rows = {r["server"]: r for r in data["runs"]}
    assert set(rows) == {"rejnet", "tigervnc"}
    for server, r in rows.items():
        assert r["error"] is None, (server, r["error"])
        assert r["peak_rss_kb"] >= r["max_sampled_rss_kb"] >= r["end_rss_kb"] * 0.5 > 0, r
        assert r["peak_rss_kb"] >= r["end_rss_kb"] and r["samples"] > 10, r
        assert 0 < r["max_sampled_pss_kb"] <= r["max_sampled_rss_kb"], r
        assert r["updates"] > 0 and r["bytes_down"] > 0, r   # top kept changing and the viewer kept pulling
        assert 2.5 <= r["seconds"] < 10, r
    agent = rows["rejnet"]
    assert agent["cpu"] > 0 and agent["peak_rss_kb"] > 20 * 1024, agent  # the agent process, not a shell
    assert len(agent["helpers"]) == 2  # relay and bridge ran too, measured apart
    text = (out / "report.md").read_text()
    assert text in proc.stdout and "| rejnet |" in text and "| tigervnc |" in text
    verdicts = [line for line in text.splitlines() if line.startswith(("- PASS 4K", "- FAIL 4K"))]
    assert len(verdicts) == 2, text

"""The benchmarks stay runnable: each runs once, untimed (speed is judged by the benchmarks, not here)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_kernel_benchmarks_run_once_and_their_area_targets_hold():
    result = subprocess.run([sys.executable, "-m", "pytest", "benchmarks", "-q", "--benchmark-disable",
                             "-p", "no:cacheprovider", "--ignore=benchmarks/linkbench"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout

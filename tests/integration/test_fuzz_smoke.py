"""Each atheris harness under fuzz/ runs a few thousand inputs without a crash (the long runs are by hand)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HARNESSES = sorted(p.name for p in (ROOT / "fuzz").glob("*.py"))
SMOKE_RUNS = 5000


def test_every_harness_is_listed_in_the_fuzz_readme():
    readme = (ROOT / "fuzz" / "README.md").read_text(encoding="utf-8")
    assert HARNESSES and all(f"`{name}`" in readme for name in HARNESSES)


@pytest.mark.parametrize("harness", HARNESSES)
def test_harness_runs_clean(harness):
    result = subprocess.run([sys.executable, str(ROOT / "fuzz" / harness), f"-runs={SMOKE_RUNS}", "-max_len=4096",
                             "-seed=1"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Done {SMOKE_RUNS} runs" in result.stderr

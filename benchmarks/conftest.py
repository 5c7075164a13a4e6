"""Collects benchmark timings and detector figures, and prints them as ratios at the end of the run.

Absolute times drift on shared machines, so every time is shown against
``np.copyto`` of a frame of the same size measured in the same run.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

# size -> case -> (median seconds, min seconds); filled by the benchmarks.
TIMES: dict[str, dict[str, tuple[float, float]]] = {}
# (label, value text, passed or None) lines for the targets section.
TARGETS: list[tuple[str, str, bool | None]] = []
ANCHOR = "np.copyto (anchor)"


class Recorder:
    """What the benchmarks hand their results to."""

    def timing(self, size: str, case: str, benchmark: Any) -> None:
        stats = getattr(benchmark, "stats", None)
        if stats is None:  # --benchmark-disable: ran once, untimed
            return
        TIMES.setdefault(size, {})[case] = (stats.stats.median, stats.stats.min)

    def target(self, label: str, value: str, passed: bool | None) -> None:
        TARGETS.append((label, value, passed))


@pytest.fixture(scope="session")
def record() -> Recorder:
    return Recorder()


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    """Benchmark modules are named bench_*.py so the test run (testpaths = tests) never picks them up."""
    if file_path.suffix != ".py" or not file_path.name.startswith("bench_"):
        return None
    if parent.session.isinitpath(file_path):
        return None  # named on the command line: pytest collects it already
    return pytest.Module.from_parent(parent, path=file_path)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    write = terminalreporter.write_line
    if TIMES:
        terminalreporter.section("change detection: time / np.copyto time of the same frame")
        write(f"{'size':6} {'case':34} {'median ms':>10} {'ratio':>7} {'min ms':>9} {'ratio':>7}")
        for size, cases in TIMES.items():
            anchor = cases.get(ANCHOR)
            for case, (median, low) in cases.items():
                ratios = (f"{median / anchor[0]:7.2f} {low * 1e3:9.3f} {low / anchor[1]:7.2f}" if anchor
                          else f"{'-':>7} {low * 1e3:9.3f} {'-':>7}")
                write(f"{size:6} {case:34} {median * 1e3:10.3f} {ratios}")
    if TARGETS:
        terminalreporter.section("change detection targets")
        width = max(len(label) for label, _, _ in TARGETS)
        for label, value, passed in TARGETS:
            verdict = "" if passed is None else ("PASS" if passed else "FAIL")
            write(f"{label:{width}} {value:>8}  {verdict}")

"""Deterministic synthetic screens and the Xvfb starter, for tests, benchmarks and the demo.

The agent's core never imports this package (an import-linter contract says
so): it draws with Pillow, which a customer's agent does not need. Commands
reach it only for ``--screen synthetic:WORKLOAD[:WxH]``.
"""
from __future__ import annotations

import re

from agent.errors import UsageError
from agent.workloads.catalogue import WORKLOADS
from agent.workloads.synthetic import FrameTruth, SyntheticSource

__all__ = ["WORKLOADS", "FrameTruth", "SyntheticSource", "parse_screen", "open_synthetic"]

_SIZE = re.compile(r"^(\d{1,5})x(\d{1,5})$")
DEFAULT_SIZE = (1280, 720)


def parse_screen(screen: str) -> tuple[str, int, int]:
    """``synthetic:WORKLOAD[:WIDTHxHEIGHT]`` -> (workload, width, height); UsageError otherwise."""
    parts = screen.split(":")
    if parts[0] != "synthetic" or len(parts) not in (2, 3):
        raise UsageError(f"--screen takes synthetic:WORKLOAD or synthetic:WORKLOAD:WIDTHxHEIGHT, got {screen!r}")
    workload = parts[1]
    if workload not in WORKLOADS:
        raise UsageError(f"unknown synthetic workload {workload!r}; valid: {', '.join(WORKLOADS)}")
    width, height = DEFAULT_SIZE
    if len(parts) == 3:
        m = _SIZE.match(parts[2])
        if m is None:
            raise UsageError(f"synthetic screen size must look like 1280x720, got {parts[2]!r}")
        width, height = int(m.group(1)), int(m.group(2))
    return workload, width, height


def open_synthetic(screen: str) -> SyntheticSource:
    """The synthetic screen a ``--screen`` value names."""
    workload, width, height = parse_screen(screen)
    return SyntheticSource(workload, width, height)

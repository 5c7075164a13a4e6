"""Shared fixtures: an Xvfb display started by the test itself, free loopback ports."""
from __future__ import annotations

import asyncio
import inspect
import os
import subprocess
from typing import Iterator

import pytest
from hypothesis import settings

from agent.commands import event_loop
from agent.workloads.xvfb import start_xvfb, stop_process
from tests.support.tools import need

# The suite is a gate: the same examples every run, so a red run is a real change. To hunt for new
# failures, run with HYPOTHESIS_PROFILE=explore (random seeds, ten times the examples).
settings.register_profile("gate", derandomize=True)
settings.register_profile("explore", derandomize=False, max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "gate"))


def _start_xvfb(width: int, height: int) -> tuple[subprocess.Popen, str]:
    need("Xvfb")
    return start_xvfb(width, height, first=90 + os.getpid() % 500, last=700)


@pytest.fixture(scope="session")
def xvfb() -> Iterator[str]:
    """A 1024x768 Xvfb display shared by the session's tests; yields its name (":N")."""
    proc, display = _start_xvfb(1024, 768)
    try:
        yield display
    finally:
        stop_process(proc)


@pytest.fixture
def xvfb_factory() -> Iterator:
    """Start extra Xvfb displays of a chosen size; all stopped after the test."""
    procs: list[subprocess.Popen] = []

    def start(width: int = 640, height: int = 480) -> str:
        proc, display = _start_xvfb(width, height)
        procs.append(proc)
        return display

    yield start
    for proc in procs:
        stop_process(proc)


ASYNC_TEST_TIMEOUT = 120.0


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function):
    """Run ``async def`` tests in a fresh event loop (no plugin needed), bounded in time: the commands' own
    loop (agent.commands.event_loop: uvloop), so the tests see what the product runs on."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    kwargs = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    event_loop.run(asyncio.wait_for(pyfuncitem.obj(**kwargs), ASYNC_TEST_TIMEOUT))
    return True


# ---------------------------------------------------------------- no silent skips in CI

# In CI (.ci/run sets REJNET_NO_SKIPS=1) a skip is a test that did not run, so it fails the run with its
# reason. Empty on purpose: a reason added here must say why CI cannot run that test.
ALLOWED_SKIPS_IN_CI: tuple[str, ...] = ()


def _skip_is_a_failure(reason: str) -> bool:
    return bool(os.environ.get("REJNET_NO_SKIPS")) and not any(a in reason for a in ALLOWED_SKIPS_IN_CI)


def _reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    return str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail") and _skip_is_a_failure(_reason(report)):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where every test must run: {_reason(report)}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and _skip_is_a_failure(_reason(report)):
        report.outcome = "failed"
        report.longrepr = f"module skipped in CI, where every test must run: {_reason(report)}"

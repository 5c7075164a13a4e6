"""Shared fixtures: an Xvfb display started by the test itself, free loopback ports."""
from __future__ import annotations

import asyncio
import inspect
import os
import shutil
import socket
import subprocess
import time
from typing import Iterator

import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_xvfb(width: int, height: int) -> tuple[subprocess.Popen, str]:
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb); .ci/run installs it")
    for number in range(90 + os.getpid() % 500, 700):
        if os.path.exists(f"/tmp/.X{number}-lock") or os.path.exists(f"/tmp/.X11-unix/X{number}"):
            continue
        display = f":{number}"
        proc = subprocess.Popen(
            ["Xvfb", display, "-screen", "0", f"{width}x{height}x24", "-nolisten", "tcp", "-noreset",
             "+extension", "XTEST", "+extension", "DAMAGE"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            if os.path.exists(f"/tmp/.X11-unix/X{number}"):
                return proc, display
            time.sleep(0.05)
        proc.kill()
        proc.wait()
    raise RuntimeError("could not start Xvfb on any display number")


@pytest.fixture(scope="session")
def xvfb() -> Iterator[str]:
    """A 1024x768 Xvfb display shared by the session's tests; yields its name (":N")."""
    proc, display = _start_xvfb(1024, 768)
    try:
        yield display
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


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
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


ASYNC_TEST_TIMEOUT = 120.0


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function):
    """Run ``async def`` tests in a fresh event loop (no plugin needed), bounded in time."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    kwargs = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    asyncio.run(asyncio.wait_for(pyfuncitem.obj(**kwargs), ASYNC_TEST_TIMEOUT))
    return True

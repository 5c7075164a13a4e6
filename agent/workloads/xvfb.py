"""Start (and stop) a private Xvfb display: the demo's screen, and the tests' and benchmarks' too.

One way to find a free display number and wait for the server to be ready,
with DAMAGE and XTEST on by default (the capture loop and the input backend
use them), and one way to stop it and the X clients started on it.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from typing import Sequence

from agent.errors import CaptureError

READY_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
EXTENSIONS = ("+extension", "DAMAGE", "+extension", "XTEST")


def start_xvfb(width: int, height: int, *, first: int = 100, last: int = 900,
               extensions: Sequence[str] = EXTENSIONS) -> tuple[subprocess.Popen, str]:
    """Start Xvfb WIDTHxHEIGHTx24 on the first free display in [first, last); returns (process, ":N").

    ``extensions``: Xvfb's extension flags (a test turns XTEST off with ``("-extension", "XTEST")``).
    Raises CaptureError when Xvfb is not installed or no display could be started.
    """
    if shutil.which("Xvfb") is None:
        raise CaptureError("Xvfb is not installed (apt-get install xvfb)")
    for number in range(first, last):
        if os.path.exists(f"/tmp/.X{number}-lock") or os.path.exists(f"/tmp/.X11-unix/X{number}"):
            continue
        proc = subprocess.Popen(["Xvfb", f":{number}", "-screen", "0", f"{width}x{height}x24", "-nolisten", "tcp",
                                 "-noreset", *extensions],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None:
            if os.path.exists(f"/tmp/.X11-unix/X{number}"):
                return proc, f":{number}"
            time.sleep(0.05)
        proc.kill()
        proc.wait()
    raise CaptureError(f"could not start Xvfb on any display :{first}..:{last - 1}")


def stop_process(proc: subprocess.Popen, timeout: float = STOP_TIMEOUT) -> None:
    """Terminate ``proc`` (Xvfb or a client on it), kill it if it lingers past ``timeout``, and reap it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

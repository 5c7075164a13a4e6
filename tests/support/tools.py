"""Finding the external programs the integration tests drive.

Console scripts of packages installed in the test's virtualenv (``vncdo``)
sit next to ``sys.executable`` and are not on PATH when the venv is not
activated (the README's test command runs ``.venv/bin/python -m pytest``), so
they are looked up there first. A missing tool skips the test with the package
to install; CI turns every skip into a failure (tests/conftest.py), so a green
CI means the test ran.
"""
from __future__ import annotations

import os
import shutil
import sys

import pytest

# tool -> what installs it
PACKAGES = {
    "vncdo": "pip install '.[test]' (vncdotool)",
    "Xvfb": "apt-get install xvfb",
    "xdotool": "apt-get install xdotool",
    "xterm": "apt-get install xterm",
    "xsetroot": "apt-get install x11-xserver-utils",
    "x11vnc": "apt-get install x11vnc",
    "x0vncserver": "apt-get install tigervnc-scraping-server",
    "vncsnapshot": "apt-get install vncsnapshot",
    "xtigervncviewer": "apt-get install tigervnc-viewer",
}


def which(name: str) -> str | None:
    """The tool's path: beside this interpreter first (the venv's console scripts), then PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), name)
    if os.path.isfile(beside) and os.access(beside, os.X_OK):
        return beside
    return shutil.which(name)


def need(*names: str) -> list[str]:
    """The paths of every named tool; skips the test naming what to install if one is missing."""
    paths = []
    for name in names:
        path = which(name)
        if path is None:
            pytest.skip(f"{name} is not installed ({PACKAGES.get(name, 'see .ci/run')}); .ci/run installs it")
        paths.append(path)
    return paths

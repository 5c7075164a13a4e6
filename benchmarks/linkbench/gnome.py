"""The link benchmark on a GNOME Wayland desktop (``--desktop gnome``): typing and idle through the GNOME backend.

The X11 run's pieces, each with a Wayland twin:

* the display: a headless GNOME session (agent.capture.gnome_headless) at the
  benchmark's size instead of Xvfb; its CPU column is mutter's;
* the programs: ``foot`` (a Wayland terminal) running the same commands the
  xterms run (vim for typing, a static listing for idle);
* the input tool: the harness's own RemoteDesktop session (agent.inputs.gnome)
  types the same characters at the same times xdotool does on X11;
* the ground truth: the harness's own ScreenCast of the monitor (a GnomeSource
  without input), where X11 grabs with mss.

Wayland gives clients no say over where their window goes, so a window's
region is found by what changed on the screen when it appeared. Only our
agent can serve this desktop (x11vnc and TigerVNC are X servers' clients).
"""
from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Optional

import numpy as np

NAME = "gnome"  # the display name the servers and the run see for this desktop
WORKLOADS = ("typing", "idle")
TOOLS = ("foot",)
APT_HINT = "apt-get install dbus pipewire wireplumber mutter gstreamer1.0-pipewire foot; pip install '.[wayland]'"
KEYSYMS = {"\n": 0xFF0D, "Return": 0xFF0D, "space": 0x20}

Region = tuple[int, int, int, int]


def unavailable() -> Optional[str]:
    """Why a GNOME desktop cannot run here, or None."""
    from agent.capture.gnome_headless import missing_tools
    from agent.errors import CaptureError

    missing = missing_tools() + [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return f"{', '.join(missing)} not installed ({APT_HINT})"
    try:
        from agent.capture.gi_support import load_gst

        load_gst()
    except CaptureError as exc:
        return str(exc)
    return None


class GnomeDisplay:
    """A headless GNOME session; this process joins it (bus, PipeWire) so the harness can grab and type."""

    name = NAME

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.session: Any = None
        self._saved: dict[str, Optional[str]] = {}

    def start(self) -> str:
        from agent.capture.gnome_headless import HeadlessGnome

        self.session = HeadlessGnome(self.width, self.height).start()
        joined = {k: self.session.env[k] for k in ("DBUS_SESSION_BUS_ADDRESS", "WAYLAND_DISPLAY", "XDG_SESSION_TYPE")}
        # PipeWire's socket is in the session's runtime dir; processes keep their own XDG_RUNTIME_DIR
        joined["PIPEWIRE_RUNTIME_DIR"] = self.session.runtime_dir
        for key in (*joined, "DISPLAY"):
            self._saved[key] = os.environ.get(key)
        os.environ.pop("DISPLAY", None)
        os.environ.update(joined)
        return self.name

    @property
    def pid(self) -> Optional[int]:
        return self.session.mutter_pid if self.session is not None else None

    def client_env(self) -> dict[str, str]:
        assert self.session is not None
        return dict(self.session.env, LESSHISTFILE="-", TERM="foot")

    def stop(self) -> None:
        if self.session is not None:
            self.session.stop()
            self.session = None
        for key, value in self._saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved.clear()


class GnomeGrabber:
    """Ground truth from a ScreenCast of the monitor (no input), region by region, in one worker thread."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="linkbench-gnome-grab")
        self._source: Any = None

    def _grab(self, region: Region) -> np.ndarray:
        if self._source is None:
            from agent.capture.gnome_source import GnomeSource

            self._source = GnomeSource(with_input=False)
        frame = self._source.grab()
        x, y, w, h = region
        out = np.array(frame[y:y + h, x:x + w])
        out[..., 3] = 255  # BGRx: the viewer's framebuffer has 255
        return out

    async def grab(self, region: Region) -> np.ndarray:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._grab, region)

    def close(self) -> None:
        def _close() -> None:
            if self._source is not None:
                self._source.close()
                self._source = None

        self._pool.submit(_close).result(5)
        self._pool.shutdown(wait=True)


class WaylandSession:
    """Programs on the GNOME session and a RemoteDesktop session to type into them (XSession's twin)."""

    def __init__(self, display: GnomeDisplay, workdir: Path, screen: tuple[int, int]) -> None:
        from agent.capture.gnome_source import GnomeSource
        from agent.inputs.gnome import GnomeInput

        self.display = NAME
        self.workdir = workdir
        self.env = display.client_env()
        self.procs: list[subprocess.Popen] = []
        self.screen = screen
        self._source = GnomeSource(with_input=True)  # its RemoteDesktop session is our xdotool
        self._input = GnomeInput(self._source)
        self._input.prepare()

    async def prepare(self, pointer: tuple[int, int]) -> None:
        """The desktop every workload starts from: the pointer parked in a corner (the wallpaper is mutter's)."""
        self._input.pointer(*pointer, 0)
        await asyncio.sleep(0.2)

    async def terminal(self, title: str, geometry: str, command: list[str], grab: Any) -> tuple[str, Region]:
        """Start foot running ``command`` at the xterm geometry's size; returns (title, the window's region)."""
        full: Region = (0, 0, *self.screen)
        before = await grab(full)
        cols, rows = geometry.split("+")[0].split("x")
        self.procs.append(subprocess.Popen(
            ["foot", "--title", title, "--app-id", title, f"--window-size-chars={cols}x{rows}",
             "--font=DejaVu Sans Mono:size=11", "--", *command],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        from benchmarks.linkbench.workloads import WINDOW_TIMEOUT, WorkloadError, wait_stable

        deadline = time.monotonic() + WINDOW_TIMEOUT
        while True:
            now = await grab(full)
            changed = (now != before).any(axis=2)
            if changed.any():
                break
            if time.monotonic() > deadline:
                raise WorkloadError(f"the foot window '{title}' never appeared")
            await asyncio.sleep(0.05)
        settled = await wait_stable(grab, full)
        ys, xs = np.nonzero((settled != before).any(axis=2))
        region = (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
        return title, region

    async def focus(self, wid: str) -> None:
        """Mutter focuses a new window itself."""

    async def type_char(self, ch: str) -> None:
        keysym = KEYSYMS.get(ch, ord(ch))
        await asyncio.to_thread(self._tap, keysym)

    async def key(self, name: str) -> None:
        await asyncio.to_thread(self._tap, KEYSYMS.get(name, ord(name) if len(name) == 1 else 0))

    def _tap(self, keysym: int) -> None:
        self._input.key(keysym, True)
        self._input.key(keysym, False)

    async def close(self) -> None:
        from benchmarks.linkbench.workloads import stop_processes

        await stop_processes(self.procs)
        self._input.close()
        self._source.close()

"""Scripted workloads: real X programs driven by xdotool, and our agent's synthetic screens.

Every server in a comparison sees the same script: the same programs, files
and window positions, steps at the same offsets from the start (a late step
does not shift the ones after it), deterministic text. After each step the
harness takes the screen's ground truth; a workload tells it where to look
(``hint``) and whether the step's effect is already on screen when the
action returns (``final``: ``xdotool windowmove --sync``, the video window's
acknowledgement) or must be waited for (an editor redrawing after a key).

Run as ``python -m benchmarks.linkbench.workloads video-window ...`` this
module is the video window itself: a python-xlib program that draws
procedural natural images (the agent's photo textures, panned and lit) into
an X window, one frame per line on stdin, acknowledging each once the X
server has it.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable, Optional

Region = tuple[int, int, int, int]  # x, y, width, height
Grab = Callable[[Region], Awaitable["object"]]  # returns an (h, w, 4) BGRA array

SCREEN = (1920, 1080)
POINTER_PARK = (SCREEN[0] - 1, SCREEN[1] - 1)  # out of every workload's way (servers may draw the cursor)
ROOT_COLOUR = "#3a6ea5"
FONT = ("-fa", "DejaVu Sans Mono", "-fs", "11")
WINDOW_TIMEOUT = 15.0
TYPING_RATE = 6.5          # characters per second: a steady human typist
PAGING_INTERVAL = 1.0      # seconds per page
DRAG_INTERVAL = 0.1        # seconds per window move
DRAG_STEP = 16             # pixels per move
VIDEO_FPS = 10.0
VIDEO_SIZE = (480, 270)
TOOLS = ("Xvfb", "xdotool", "xterm", "xsetroot")
APT_HINT = "apt-get install x11vnc tigervnc-scraping-server xvfb xdotool xterm x11-xserver-utils vim less"

WORDS = ("the customer reads the session code aloud while the technician waits on the line and the "
         "screen shows a settings dialog with several options for network proxy printer and display "
         "scaling so we check each value then apply restart the service and confirm that everything "
         "works again before closing the ticket with a short note for the next shift").split()


async def stop_processes(procs: list[subprocess.Popen]) -> None:
    """Terminate a session's helper programs, newest first; kill what ignores it for 3 s; forget them all."""
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            await asyncio.to_thread(proc.wait, 3)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait)
    procs.clear()


class WorkloadError(RuntimeError):
    """A workload's programs did not come up (missing tool, window never mapped): the run is skipped."""


def editor() -> str:
    """The editor ``typing`` uses: vim when installed, else the terminal itself ('cat > /dev/null')."""
    return "vim" if shutil.which("vim") else "cat"


def missing_tools(extra: tuple[str, ...] = ()) -> list[str]:
    """The X tools a real-screen workload needs that are not on PATH."""
    return [t for t in TOOLS + extra if shutil.which(t) is None]


def sentence_text(seed: int, chars: int) -> str:
    """Deterministic prose of about ``chars`` characters, in lines of at most 60."""
    rng = random.Random(seed)
    lines, line = [], ""
    while sum(len(s) + 1 for s in lines) + len(line) < chars:
        word = rng.choice(WORDS)
        if len(line) + len(word) + 1 > 60:
            lines.append(line)
            line = ""
        line = f"{line} {word}" if line else word.capitalize()
    lines.append(line)
    return "\n".join(lines)


def long_file_text(lines: int = 6000, seed: int = 3) -> str:
    """A long, deterministic log-like file to page through."""
    rng = random.Random(seed)
    out = []
    for n in range(1, lines + 1):
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14)))
        level = rng.choice(("INFO ", "INFO ", "DEBUG", "WARN ", "ERROR"))
        out.append(f"{n:6d} 2024-05-{1 + n // 2000:02d} {n % 24:02d}:{n % 60:02d}:{(n * 7) % 60:02d} {level} "
                   f"svc[{1000 + n % 97}] {words}")
    return "\n".join(out) + "\n"


@dataclass
class StepResult:
    """Where a step may have changed the screen, and whether it is already on screen."""

    hint: Optional[Region]
    final: bool


class XSession:
    """Programs on one X display, each stopped (then killed) at ``close``."""

    def __init__(self, display: str, workdir: Path) -> None:
        self.display = display
        self.workdir = workdir
        self.env = dict(os.environ, DISPLAY=display, LESSHISTFILE="-", TERM="xterm")
        self.env.pop("LESS", None)
        self.procs: list[subprocess.Popen] = []

    def spawn(self, argv: list[str], **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(argv, env=self.env, stdout=kwargs.pop("stdout", subprocess.DEVNULL),
                                stderr=subprocess.DEVNULL, **kwargs)
        self.procs.append(proc)
        return proc

    async def xdotool(self, *args: str, timeout: float = 10.0) -> str:
        proc = await asyncio.create_subprocess_exec("xdotool", *args, env=self.env, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.DEVNULL)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise WorkloadError(f"xdotool {' '.join(args)} did not finish in {timeout:g} s") from None
        return out.decode()

    async def xterm(self, title: str, geometry: str, command: list[str]) -> tuple[str, Region]:
        """Start an xterm running ``command``; returns its window id and on-screen region."""
        self.spawn(["xterm", "-T", title, "-geometry", geometry, *FONT, "+bc", "+sb", "-bw", "0",
                    "-e", *command])
        try:
            out = await self.xdotool("search", "--sync", "--onlyvisible", "--name", f"^{title}$",
                                     timeout=WINDOW_TIMEOUT)
        except WorkloadError:
            raise WorkloadError(f"the xterm '{title}' never appeared on {self.display}") from None
        wid = out.split()[0]
        return wid, await self.geometry(wid)

    # what a workload does on a desktop; benchmarks.linkbench.gnome.WaylandSession does the same on GNOME
    async def terminal(self, title: str, geometry: str, command: list[str], grab: Grab) -> tuple[str, Region]:
        return await self.xterm(title, geometry, command)

    async def focus(self, wid: str) -> None:
        await self.xdotool("windowfocus", "--sync", wid)

    async def type_char(self, ch: str) -> None:
        if ch == "\n":
            await self.xdotool("key", "Return")
        else:
            await self.xdotool("type", "--delay", "0", "--", ch)

    async def key(self, name: str) -> None:
        await self.xdotool("key", "--clearmodifiers", name)

    async def geometry(self, wid: str) -> Region:
        fields = dict(line.split("=", 1) for line in (await self.xdotool("getwindowgeometry", "--shell", wid)).split()
                      if "=" in line)
        return int(fields["X"]), int(fields["Y"]), int(fields["WIDTH"]), int(fields["HEIGHT"])

    async def close(self) -> None:
        await stop_processes(self.procs)


async def prepare_display(display: str) -> None:
    """The desktop every workload starts from: a solid root and the pointer parked in a corner."""
    env = dict(os.environ, DISPLAY=display)
    for argv in (["xsetroot", "-solid", ROOT_COLOUR], ["xdotool", "mousemove", *map(str, POINTER_PARK)]):
        proc = await asyncio.create_subprocess_exec(*argv, env=env, stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=asyncio.subprocess.DEVNULL)
        await asyncio.wait_for(proc.wait(), 10)


async def wait_stable(grab: Grab, region: Region, *, quiet: float = 0.3, timeout: float = 10.0):
    """Grab ``region`` until it has not changed for ``quiet`` seconds; returns the last grab."""
    import numpy as np

    deadline = time.monotonic() + timeout
    last = await grab(region)
    since = time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        now = await grab(region)
        if not np.array_equal(now, last):
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return last
    raise WorkloadError(f"the screen region {region} never settled within {timeout:g} s")


class Workload:
    """One scripted workload. ``kind`` is "x" (a real display) or "synthetic" (our agent only)."""

    name = ""
    kind = "x"
    interval = 1.0
    lead = 0.0  # seconds from the script's start to the first step (background activity gets going)
    region: Region = (0, 0, *SCREEN)

    async def setup(self, x: XSession, grab: Grab) -> None:
        """Start the programs and wait until the screen is still."""

    def attach_viewer(self, client: object) -> None:
        """The benchmark's viewer (agent.viewer.rfb_client.AsyncRFBClient), for workloads that type through it."""

    async def start_script(self) -> None:
        """The script starts (counters are running): start any background activity."""

    async def end_script(self) -> None:
        """The script is over: stop background activity so the final frame can settle."""

    def steps(self, seconds: float) -> int:
        return max(int(seconds / self.interval), 0)

    async def step(self, i: int) -> StepResult:
        return StepResult(None, True)

    async def close(self) -> None:
        pass


class Typing(Workload):
    """Typing prose into vim in an xterm (or into the terminal itself without vim), at a human rate."""

    name = "typing"
    interval = 1.0 / TYPING_RATE

    async def setup(self, x: XSession, grab: Grab) -> None:
        self.x = x
        path = x.workdir / "notes.txt"
        path.write_text(sentence_text(seed=1, chars=480) + "\n")
        self.text = sentence_text(seed=2, chars=400)
        self.editor = editor()
        if self.editor == "vim":
            command = ["vim", "-u", "NONE", "-i", "NONE", "-n", "-N", "-c", "set nowrap", str(path)]
        else:  # the terminal's own echo: what 'cat > /dev/null' shows is what was typed
            command = ["sh", "-c", f"cat {path}; exec cat > /dev/null"]
        self.wid, self.region = await x.terminal("linkbench-typing", "90x26+220+140", command, grab)
        await x.focus(self.wid)
        await wait_stable(grab, self.region)
        if self.editor == "vim":
            for key in ("G", "o"):  # a new line at the end, in insert mode: not part of the measurement
                await x.key(key)
            await wait_stable(grab, self.region)

    async def step(self, i: int) -> StepResult:
        await self.x.type_char(self.text[i % len(self.text)])
        return StepResult(self.region, False)


class Paging(Workload):
    """Paging through a long log file in less, a page a second."""

    name = "paging"
    interval = PAGING_INTERVAL

    async def setup(self, x: XSession, grab: Grab) -> None:
        self.x = x
        path = x.workdir / "service.log"
        path.write_text(long_file_text())
        wid, self.region = await x.xterm("linkbench-paging", "132x46+120+60", ["less", "-S", str(path)])
        await x.xdotool("windowfocus", "--sync", wid)
        await wait_stable(grab, self.region)

    async def step(self, i: int) -> StepResult:
        await self.x.xdotool("key", "space")
        return StepResult(self.region, False)


class Drag(Workload):
    """An xterm moved around a rectangle with ``xdotool windowmove`` (no window manager on Xvfb)."""

    name = "drag"
    interval = DRAG_INTERVAL
    LEGS = ((1, 0, 30), (0, 1, 15), (-1, 0, 30), (0, -1, 15))  # dx, dy, moves: a closed loop
    START = (260, 180)

    async def setup(self, x: XSession, grab: Grab) -> None:
        self.x = x
        path = x.workdir / "listing.txt"
        path.write_text(long_file_text(lines=24, seed=5))
        self.wid, win = await x.xterm("linkbench-drag", "80x24+%d+%d" % self.START,
                                      ["sh", "-c", f"cut -c1-79 {path}; exec sleep 100000"])
        self.size = win[2], win[3]
        self.path = [self.START]
        for dx, dy, n in self.LEGS:
            for _ in range(n):
                px, py = self.path[-1]
                self.path.append((px + dx * DRAG_STEP, py + dy * DRAG_STEP))
        xs = [p[0] for p in self.path]
        ys = [p[1] for p in self.path]
        self.region = (min(xs), min(ys), max(xs) - min(xs) + self.size[0], max(ys) - min(ys) + self.size[1])
        await wait_stable(grab, self.region)

    async def step(self, i: int) -> StepResult:
        old = self.path[i % (len(self.path) - 1)]
        new = self.path[(i + 1) % (len(self.path) - 1)]
        await self.x.xdotool("windowmove", "--sync", self.wid, str(new[0]), str(new[1]))
        x0, y0 = min(old[0], new[0]), min(old[1], new[1])
        x1, y1 = max(old[0], new[0]) + self.size[0], max(old[1], new[1]) + self.size[1]
        return StepResult((x0, y0, x1 - x0, y1 - y0), True)


class Video(Workload):
    """A window of changing natural images at 10 frames a second (our python-xlib video window)."""

    name = "video"
    interval = 1.0 / VIDEO_FPS
    ORIGIN = (1240, 160)

    async def setup(self, x: XSession, grab: Grab) -> None:
        self.x = x
        w, h = VIDEO_SIZE
        self.region = (*self.ORIGIN, w, h)
        root = Path(__file__).resolve().parents[2]
        env = dict(x.env, PYTHONPATH=os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])))
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "benchmarks.linkbench.workloads", "video-window", "--display", x.display,
            "--geometry", "%dx%d+%d+%d" % (w, h, *self.ORIGIN), stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=env, cwd=str(root))
        await self._frame(0, timeout=WINDOW_TIMEOUT)
        await wait_stable(grab, self.region)

    async def _frame(self, k: int, timeout: float = 5.0) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(b"%d\n" % k)
        await self.proc.stdin.drain()
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        except asyncio.TimeoutError:
            raise WorkloadError(f"the video window did not draw frame {k} within {timeout:g} s") from None
        if line.strip() != b"drawn %d" % k:
            raise WorkloadError(f"the video window answered {line!r} to frame {k}")

    async def step(self, i: int) -> StepResult:
        await self._frame(i + 1)
        return StepResult(self.region, True)

    async def close(self) -> None:
        proc = getattr(self, "proc", None)
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 3)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()


class Idle(Workload):
    """A terminal with static text and nothing changing: what does a server cost while nobody works?"""

    name = "idle"
    interval = 1.0

    async def setup(self, x: XSession, grab: Grab) -> None:
        path = x.workdir / "listing.txt"
        path.write_text(long_file_text(lines=30, seed=9))
        _, self.region = await x.terminal("linkbench-idle", "100x32+300+200",
                                          ["sh", "-c", f"cut -c1-99 {path}; exec sleep 100000"], grab)
        await wait_stable(grab, self.region)

    def steps(self, seconds: float) -> int:
        return 0


class Synthetic(Workload):
    """One of the agent's deterministic synthetic screens (``--screen synthetic:NAME:WxH``)."""

    kind = "synthetic"

    def __init__(self, workload: str) -> None:
        self.workload = workload
        self.name = f"synthetic:{workload}"
        self.screen = "synthetic:%s:%dx%d" % (workload, *SCREEN)

    def steps(self, seconds: float) -> int:
        return 0


X_WORKLOADS: dict[str, type[Workload]] = {cls.name: cls for cls in (Typing, Paging, Drag, Video, Idle)}


def _x_workloads() -> dict[str, type[Workload]]:
    from benchmarks.linkbench.churn import Churn  # churn.py builds on Typing: imported once this module is whole

    return {**X_WORKLOADS, Churn.name: Churn}


def make_workload(name: str) -> Workload:
    """``typing`` / ``churn`` / ``paging`` / ``drag`` / ``video`` / ``idle`` or ``synthetic:<agent workload>``."""
    if name.startswith("synthetic:"):
        from agent.workloads import WORKLOADS

        sub = name.split(":", 1)[1]
        if sub not in WORKLOADS:
            raise ValueError(f"unknown synthetic workload {sub!r}; the agent has {', '.join(WORKLOADS)}")
        return Synthetic(sub)
    known = _x_workloads()
    if name not in known:
        raise ValueError(f"unknown workload {name!r}; valid: {', '.join(known)} or synthetic:NAME")
    return known[name]()


# ---------------------------------------------------------------- the video window (a separate process)


class _Frames:
    """Procedural natural images: two photo textures panned at different speeds, lit, with a cut every 5 s."""

    def __init__(self, width: int, height: int, seed: int = 11) -> None:
        import numpy as np

        from agent.workloads.paint import palette, photo_texture, value_noise
        from agent.workloads.scenes import PALETTES

        rng = np.random.default_rng(seed)
        self.w, self.h = width, height
        self.a = np.tile(photo_texture(rng, height, width, cells=3), (2, 2))
        self.b = np.tile((value_noise(rng, height, width, cells=5, octaves=3) * 255).astype(np.uint8), (2, 2))
        self.luts = [palette(p) for p in PALETTES]
        self.light = np.linspace(1.08, 0.82, height, dtype=np.float32)[:, None]

    def frame(self, k: int):
        """Frame ``k`` as (h, w, 4) BGRA bytes (little-endian 0xAARRGGBB)."""
        import numpy as np

        w, h = self.w, self.h
        ax, ay = (k * 7) % w, (k * 3) % h
        bx, by = (-k * 11) % w, (k * 5) % h
        v = self.a[ay:ay + h, ax:ax + w].astype(np.float32) * 0.65
        v += self.b[by:by + h, bx:bx + w] * np.float32(0.35)
        v *= self.light
        lut = self.luts[(k // 50) % len(self.luts)]
        return lut[np.clip(v, 0, 255).astype(np.uint8)].view(np.uint8).reshape(h, w, 4)


def video_window_main(argv: list[str]) -> int:
    """Draw frame K for each line 'K' on stdin; answer 'drawn K' once the X server has it."""
    parser = argparse.ArgumentParser(prog="video-window")
    parser.add_argument("--display", required=True)
    parser.add_argument("--geometry", required=True, help="WxH+X+Y")
    args = parser.parse_args(argv)
    size, x, y = args.geometry.split("+")
    w, h = map(int, size.split("x"))

    from Xlib import X, display

    d = display.Display(args.display)
    screen = d.screen()
    win = screen.root.create_window(int(x), int(y), w, h, 0, screen.root_depth, X.InputOutput, X.CopyFromParent,
                                    background_pixel=0, override_redirect=True)
    win.set_wm_name("linkbench-video")
    pixmap = win.create_pixmap(w, h, screen.root_depth)
    gc = win.create_gc()
    win.map()
    d.sync()
    frames = _Frames(w, h)
    rows = max(1, 200_000 // (w * 4))  # stay under the core protocol's request size
    for line in sys.stdin:
        k = int(line)
        img = frames.frame(k)
        for y0 in range(0, h, rows):
            part = img[y0:y0 + rows]
            pixmap.put_image(gc, 0, y0, w, part.shape[0], X.ZPixmap, screen.root_depth, 0, part.tobytes())
        win.copy_area(gc, pixmap, 0, 0, w, h, 0, 0)  # one request: the frame appears at once
        d.sync()
        print(f"drawn {k}", flush=True)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["video-window"]:
        sys.exit(video_window_main(sys.argv[2:]))
    sys.exit("usage: python -m benchmarks.linkbench.workloads video-window --display :N --geometry WxH+X+Y")

"""The ``churn`` workload: typing into vim while a second terminal, beside it, fills with fresh random text.

Unlike ``typing`` (xdotool on the display), the keys go through the viewer as RFB
KeyEvents, for every server, as a technician's do.

Why: a technician types on a busy screen (a log scrolling, a build running).
A server that sends changes in screen order puts every keystroke's echo
behind the churn; the benchmark measures how long the echo waits. The typed
window is the ``typing`` workload's (same text, same rate, same place); the
churning xterm sits to its right, never overlapping, so the per-step latency
machinery watches only the typed window and an echo counts only once an
update has brought it there.

The churning terminal runs this module (``python -m benchmarks.linkbench.churn
churn-text ...``): a seeded generator (the same lines for every server) that
waits for SIGUSR1 to start printing, prints ``--rate`` lines a second of
random characters (far more than 1 Mbit/s can carry for any server), and stops
at SIGUSR2, leaving its last screen still so the final frame can be compared.
The churn starts ``LEAD`` seconds before the first keystroke so the link is
already saturated when typing begins.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import string
import sys
import time
from pathlib import Path

from benchmarks.linkbench.workloads import SCREEN, Grab, StepResult, Typing, WorkloadError, wait_stable

ROOT = Path(__file__).resolve().parents[2]
CHURN_RATE = 120          # lines per second: a ~87x44 terminal's content replaced more than twice a second
CHURN_SEED = 7
CELL = (9, 20)            # a little more than a DejaVu Sans Mono 11 cell in xterm (9.05 x 19.1 px)
MARGIN = 60               # pixels kept free at the screen's right and bottom edges (the parked pointer)
GAP = 40                  # pixels between the typed window and the churning one
LEAD = 1.0                # seconds of churn before the first keystroke
RETURN = 0xFF0D           # keysym; printable ASCII keysyms are the characters' codes
TICK = 0.02               # the generator prints a batch of lines this often
ALPHABET = string.ascii_letters + string.digits + "      .,:;-_/()[]{}<>=+*#%$@!?"


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


class Churn(Typing):
    """``typing`` in vim, with a terminal beside it printing fresh random text from the script's start to its end."""

    name = "churn"
    lead = LEAD

    async def setup(self, x, grab: Grab) -> None:
        await super().setup(x, grab)
        self.typed = self.region
        tx, ty, tw, th = self.typed
        left = tx + tw + GAP
        cols = max(20, (SCREEN[0] - left - MARGIN) // CELL[0])
        rows = max(10, (SCREEN[1] - ty - MARGIN) // CELL[1])
        pid_file = x.workdir / "churn.pid"
        pid_file.unlink(missing_ok=True)
        command = ["env", "PYTHONPATH=" + os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                   sys.executable, "-m", "benchmarks.linkbench.churn", "churn-text", "--seed", str(CHURN_SEED),
                   "--rate", str(CHURN_RATE), "--columns", str(cols - 2), "--pid-file", str(pid_file)]
        _, self.churn_region = await x.xterm("linkbench-churn", f"{cols}x{rows}+{left}+{ty}", command)
        cx, cy, cw, ch = self.churn_region
        if _overlap(self.churn_region, self.typed) or cx + cw > SCREEN[0] or cy + ch > SCREEN[1]:
            raise WorkloadError(f"the churning terminal {self.churn_region} does not fit beside the typed window "
                                f"{self.typed} on a {SCREEN[0]}x{SCREEN[1]} screen")
        self.pid = await _read_pid(pid_file)
        await x.focus(self.wid)  # keystrokes go to vim, never to the churning terminal
        await wait_stable(grab, self.churn_region)
        await wait_stable(grab, self.typed)

    def steps(self, seconds: float) -> int:
        return super().steps(seconds - self.lead)

    def attach_viewer(self, client: object) -> None:
        self.rfb = client

    async def step(self, i: int) -> StepResult:
        """The technician types through the viewer (an RFB KeyEvent, injected by each server its own way),
        as in a real session: a server can only put what the technician does first if it sees the input."""
        ch = self.text[i % len(self.text)]
        await self.rfb.key(RETURN if ch == "\n" else ord(ch))
        return StepResult(self.region, False)

    async def start_script(self) -> None:
        os.kill(self.pid, signal.SIGUSR1)

    async def end_script(self) -> None:
        os.kill(self.pid, signal.SIGUSR2)
        await asyncio.sleep(3 * TICK)  # the last batch drawn: the final frame is still


async def _read_pid(path: Path, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return int(path.read_text())
        except (OSError, ValueError):
            await asyncio.sleep(0.05)
    raise WorkloadError(f"the churn generator never wrote {path}")


# ---------------------------------------------------------------- the generator (runs inside the xterm)


def churn_text_main(argv: list[str]) -> int:
    """Wait for SIGUSR1, then print ``--rate`` seeded random lines a second until SIGUSR2; then stay still."""
    p = argparse.ArgumentParser(prog="churn-text")
    p.add_argument("--seed", type=int, default=CHURN_SEED)
    p.add_argument("--rate", type=float, default=CHURN_RATE)
    p.add_argument("--columns", type=int, default=80)
    p.add_argument("--pid-file", required=True)
    args = p.parse_args(argv)
    state = {"run": False, "stop": False}
    signal.signal(signal.SIGUSR1, lambda *_: state.update(run=True))
    signal.signal(signal.SIGUSR2, lambda *_: state.update(stop=True))
    rng = random.Random(args.seed)
    out = sys.stdout
    out.write("churn: waiting for the script to start\n")
    out.flush()
    Path(args.pid_file).write_text(str(os.getpid()))
    while not state["run"]:
        signal.pause()
    start, printed = time.monotonic(), 0
    while not state["stop"]:
        due = int((time.monotonic() - start) * args.rate)
        lines = []
        for _ in range(due - printed):
            n = rng.randint(args.columns // 2, args.columns)
            lines.append("".join(rng.choice(ALPHABET) for _ in range(n)))
        printed = due
        if lines:
            out.write("\n" + "\n".join(lines))
            out.flush()
        time.sleep(TICK)
    while True:  # stay on screen, still, until the xterm is closed
        signal.pause()


if __name__ == "__main__":
    if sys.argv[1:2] == ["churn-text"]:
        sys.exit(churn_text_main(sys.argv[2:]))
    sys.exit("usage: python -m benchmarks.linkbench.churn churn-text --pid-file F [--seed N --rate R --columns C]")

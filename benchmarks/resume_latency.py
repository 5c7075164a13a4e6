"""Resume latency: how long after a cut path comes back the technician sees the screen again.

The chain of the resume tests (tests/integration/test_session_resume.py): rejnet-relay, rejnet-agent on a
fresh Xvfb (agent.workloads.xvfb.start_xvfb) with an xterm of static text, rejnet-viewer, and a cutting proxy
between agent and relay. A local RFB client of ours (agent.viewer.rfb_client) stays attached to the bridge
port throughout. Each of ``--cuts`` rounds:

1. the proxy resets every agent-relay connection and refuses new ones (both ends go ``reconnecting``);
2. the desktop's background changes colour (so only the resumed channel can show the new screen);
3. after ``--down`` seconds the proxy accepts again: "path back" (t0);
4. the client requests an update, waits for it, and repeats until its framebuffer equals a grab of the
   display: "screen back" (t1). The sample is t1 - t0.

    python -m benchmarks.resume_latency --cuts 10

The figure includes the agent's re-registration backoff (0.1 s doubling, agent/relay/client.py) and the
viewer's resume backoff (0.1 s to 2 s, agent/viewer/bridge.py): the time a path that came back waits for
the next retry is part of what the technician waits.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.workloads.xvfb import start_xvfb, stop_process  # noqa: E402
from tests.integration.test_session_resume import (  # noqa: E402
    COLOURS, Events, LoopThread, Probe, ResumeChain, differing, grab_bgr, is_event, paint_root, screen_back)

WITHIN = 30.0  # a sample that takes longer fails the run


def _paint(display: str) -> list[subprocess.Popen]:
    env = dict(os.environ, DISPLAY=display)
    paint_root(display, "#204a87")
    xterm = subprocess.Popen(["xterm", "-geometry", "80x24+30+40", "+bc", "-e", "sh", "-c",
                              "ls -la /usr/bin | head -40; sleep 3600"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.5)
    return [xterm]


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))  # nearest rank
    return ordered[rank]


def run(cuts: int, down: float, width: int, height: int) -> list[float]:
    xvfb, display = start_xvfb(width, height)
    painters: list[subprocess.Popen] = []
    loops = LoopThread()
    chain = None
    probe = None
    samples: list[float] = []
    try:
        painters = _paint(display)
        with tempfile.TemporaryDirectory(prefix="resume-latency-") as tmp:
            chain = ResumeChain(Path(tmp), display, consent="view", resume_timeout=120)
            assert chain.proxy is not None
            viewer, out, port = chain.viewer(chain.credentials()["password"])
            viewer_events, agent_events = Events(out), Events(chain.agent_out)
            viewer_events.wait(0, is_event("listening"), 30)
            chain.wait_state("active", 15)
            probe = Probe(loops, port)
            screen_back(probe, display, time.monotonic() + 15, full_first=True)
            print(f"display {display} {width}x{height}, cut {cuts} times, path down {down:g} s each", flush=True)
            for i in range(cuts):
                mark = agent_events.mark()
                mark_v = viewer_events.mark()
                chain.proxy.cut()
                agent_events.wait(mark, is_event("reconnecting"), 10)
                viewer_events.wait(mark_v, is_event("reconnecting"), 10)
                paint_root(display, COLOURS[i % len(COLOURS)])
                time.sleep(down)
                back = chain.proxy.restore()
                exact, updates = screen_back(probe, display, back + WITHIN)
                samples.append(exact - back)
                agent_events.wait(mark, is_event("resumed"), 10)
                print(f"cut {i + 1:2d}: screen back {exact - back:6.3f} s after the path ({updates} updates)",
                      flush=True)
            assert differing(probe.bgr(), grab_bgr(display)) == 0
            assert viewer.poll() is None, "the viewer ended"
            probe.close()
            probe = None
            chain.close()
            chain = None
    finally:
        if probe is not None:
            probe.close()
        if chain is not None:
            chain.close()
        loops.close()
        for proc in painters:
            stop_process(proc)
        stop_process(xvfb)
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.resume_latency", description=__doc__.split("\n")[0])
    parser.add_argument("--cuts", type=int, default=10, help="how many cuts (default %(default)s)")
    parser.add_argument("--down", type=float, default=1.0, help="seconds the path stays down (default %(default)s)")
    parser.add_argument("--size", default="1024x768", help="the Xvfb screen (default %(default)s)")
    args = parser.parse_args(argv)
    if args.cuts < 1 or args.down < 0:
        parser.error("--cuts must be at least 1 and --down not negative")
    width, height = (int(v) for v in args.size.lower().split("x"))
    samples = run(args.cuts, args.down, width, height)
    print(f"resume latency, path back -> screen back, {len(samples)} cuts: "
          f"p50 {_percentile(samples, 50):.3f} s, p95 {_percentile(samples, 95):.3f} s, "
          f"min {min(samples):.3f} s, max {max(samples):.3f} s, mean {statistics.fmean(samples):.3f} s")
    print("samples (s): " + " ".join(f"{s:.3f}" for s in samples))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Typing echo at the technician's console (the page) against a VNC viewer on the bridge's plain RFB port.

The chain, each a subprocess: Xvfb (agent.workloads.xvfb.start_xvfb) with an xterm running ``cat`` (the tty
echoes what is typed), ``rejnet-relay``, ``rejnet-agent --display :N --consent control`` reaching the relay
through the link benchmark's shaping proxy (benchmarks/linkbench/proxy.py, on the agent <-> relay hop, the
customer's uplink, as linkbench puts it), and ``rejnet-viewer --web 127.0.0.1:0 --no-browser --json
--listen 127.0.0.1:0``. Both sides are measured on the same link, in alternating phases (the bridge lets the
newest local RFB connection take over, and the console is itself a local RFB client of the bridge):

* page: headless Chromium (Playwright) on the console's URL. ``page.keyboard.press`` a key; the sample runs from
  the page's ``keydown`` (performance.now(), a capturing listener on window, before the console's own) to the
  ``putImageData`` call after which the canvas differs inside the xterm's window (a wrapper on
  CanvasRenderingContext2D.prototype.putImageData installed by the harness reads the region back with
  getImageData, only for paints that touch it; the time is taken before the read-back, so it is the same
  moment the console records as ``rejnetConsole.lastPaint``);
* vnc: our RFB client (agent.viewer.rfb_client.open_rfb) on the bridge's port, one incremental request
  outstanding at all times (the next sent as soon as an update is decoded, like linkbench's viewer); the
  sample runs from writing KeyEvent down+up to the decoded update after which its framebuffer differs
  inside the xterm's window.

Keys alternate a letter and BackSpace, so the echo always lands in the same cell (no wrap, no scroll).
Each phase starts with one warm-up key that is not counted; the page is reloaded at each page phase (its
console reattaches to the bridge) and the VNC client connects afresh at each VNC phase.

    python -m benchmarks.console_latency --keys 40 --out bench-out/console

The target (issue 13): page p95 <= VNC p95 + 10 ms, printed as a PASS/FAIL line. The exit status is non-zero
only when the harness fails (a process does not start, a side gets no samples), never on a missed target.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.workloads.xvfb import start_xvfb, stop_process
from benchmarks.linkbench.proxy import (
    TCP_IP_OVERHEAD,
    LinkSpec,
    ShapingProxy,
    parse_rate,
)
from benchmarks.linkbench.servers import (
    ServerError,
    _json_lines,
    _listening,
    _wait,
    free_port,
)

CHROMIUM = "/usr/bin/chromium"
ONE_WAY_DELAY = 0.050
TARGET_MS = 10.0            # page p95 may exceed VNC p95 by at most this
KEY_TIMEOUT = 10.0          # an echo not shown by then is "missed"
SETTLE = (0.15, 0.30)       # seconds between an echo shown and the next key (random, so nothing phase-locks)
TITLE = "rejnet-console-latency"
LETTERS = "abcdefghijklmnopqrstuvwxyz"
BACKSPACE = 0xFF08

# Installed in the page before the console's script: times keydown and the first paint that changes the region.
PAGE_PROBE = """
(() => {
  const L = window.__latency = { armed: false, region: null, base: null, t0: 0, t1: 0, paintsAtEcho: 0 };
  const orig = CanvasRenderingContext2D.prototype.putImageData;
  CanvasRenderingContext2D.prototype.putImageData = function (img, x, y, ...rest) {
    orig.call(this, img, x, y, ...rest);
    const t = performance.now();
    if (!L.armed || L.t1 || !L.t0) return;
    const r = L.region;
    if (x >= r.x + r.w || y >= r.y + r.h || x + img.width <= r.x || y + img.height <= r.y) return;
    const now = this.getImageData(r.x, r.y, r.w, r.h).data;
    for (let i = 0; i < now.length; i++) {
      if (now[i] !== L.base[i]) { L.t1 = t; L.paintsAtEcho = (window.rejnetConsole || {}).paints; return; }
    }
  };
  window.addEventListener("keydown", () => { if (L.armed && !L.t0) L.t0 = performance.now(); }, true);
  L.arm = (r) => {
    const c = document.getElementById("screen");
    L.region = r;
    L.base = c.getContext("2d").getImageData(r.x, r.y, r.w, r.h).data;
    L.t0 = 0; L.t1 = 0; L.armed = true;
  };
})();
"""


class HarnessError(RuntimeError):
    """The benchmark could not run (a process did not start, a side got no samples)."""


def percentile(samples: list[float], q: float) -> float:
    """Nearest rank, as benchmarks/resume_latency.py."""
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[rank]


def link_spec(name: str, delay_ms: float) -> LinkSpec:
    if name == "none":
        return LinkSpec(None)
    return LinkSpec(parse_rate(name), delay=delay_ms / 1e3, overhead=TCP_IP_OVERHEAD)


# ---------------------------------------------------------------- the customer's desk


class Desk:
    """Xvfb, a solid root, and an xterm running ``cat`` with the pointer on it (no WM: focus follows it)."""

    def __init__(self, width: int, height: int) -> None:
        self.xvfb, self.display = start_xvfb(width, height, first=300 + os.getpid() % 300)
        env = dict(os.environ, DISPLAY=self.display)
        self.procs: list[subprocess.Popen] = []
        try:
            subprocess.run(["xsetroot", "-solid", "#204a87"], env=env, check=False)
            self.procs.append(subprocess.Popen(
                ["xterm", "-T", TITLE, "-geometry", "24x4+40+40", "+bc", "-fa", "DejaVu Sans Mono", "-fs", "11",
                 "-e", "cat"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            self.region = self._window(env)
            x, y, w, h = self.region
            subprocess.run(["xdotool", "mousemove", str(x + w // 2), str(y + h // 2)], env=env, check=True)
        except BaseException:
            self.close()
            raise

    def _window(self, env: dict) -> tuple[int, int, int, int]:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            out = subprocess.run(["xwininfo", "-name", TITLE], env=env, capture_output=True, text=True,
                                 check=False).stdout
            got = {k: int(v) for k, v in re.findall(r"(Absolute upper-left [XY]|Width|Height):\s+(-?\d+)", out)}
            if len(got) == 4 and got["Width"] > 1:
                time.sleep(0.5)  # let it draw its first screen
                return (got["Absolute upper-left X"], got["Absolute upper-left Y"], got["Width"], got["Height"])
            time.sleep(0.1)
        raise HarnessError("the xterm's window did not appear")

    def close(self) -> None:
        for proc in self.procs:
            stop_process(proc)
        stop_process(self.xvfb)


# ---------------------------------------------------------------- our chain


class Chain:
    """relay, the shaping proxy (agent <-> relay), agent (control consent), viewer with --web and --listen."""

    def __init__(self, workdir: Path, display: str, link: LinkSpec) -> None:
        self.workdir, self.display, self.link = workdir, display, link
        self.procs: list[subprocess.Popen] = []
        self.proxy: ShapingProxy | None = None
        self.url = ""
        self.bridge: tuple[str, int] = ("127.0.0.1", 0)

    def _env(self) -> dict:
        env = dict(os.environ, XDG_RUNTIME_DIR=str(self.workdir / "run"), PYTHONUNBUFFERED="1")
        env.pop("REJNET_PASSWORD", None)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        return env

    def _spawn(self, argv: list[str], log: Path) -> subprocess.Popen:
        with open(log, "wb") as out:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    env=self._env(), cwd=str(ROOT))
        self.procs.append(proc)
        return proc

    async def start(self) -> None:
        run_dir = self.workdir / "run"
        run_dir.mkdir(mode=0o700, exist_ok=True)
        py = sys.executable
        relay_port = free_port()
        relay_log = self.workdir / "relay.log"
        relay = self._spawn([py, "-m", "agent.commands.relay", "--listen", f"127.0.0.1:{relay_port}"], relay_log)
        await _wait(lambda: _listening(relay_port), "rejnet relay", relay, relay_log)
        self.proxy = ShapingProxy(("127.0.0.1", relay_port), self.link, self.link)
        await self.proxy.start()
        assert self.proxy.address is not None
        control = run_dir / "control.sock"
        agent_log = self.workdir / "agent.log"
        agent = self._spawn([py, "-m", "agent", "--relay", f"127.0.0.1:{self.proxy.address[1]}",
                             "--display", self.display, "--consent", "control", "--json", "--control", str(control),
                             "--consent-db", str(self.workdir / "consent.db")], agent_log)
        ready = await _wait(lambda: next((o for o in _json_lines(agent_log) if o.get("event") == "ready"), None),
                            "rejnet agent", agent, agent_log)
        password = await self._password(control)
        pw_file = run_dir / "password"
        fd = os.open(pw_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(password + "\n")
        viewer_log = self.workdir / "viewer.log"
        viewer = self._spawn([py, "-m", "agent.commands.viewer", str(ready["session"]),
                              "--relay", f"127.0.0.1:{relay_port}", "--password-file", str(pw_file),
                              "--listen", "127.0.0.1:0", "--web", "127.0.0.1:0", "--no-browser", "--json"],
                             viewer_log)
        listening = await _wait(lambda: next((o for o in _json_lines(viewer_log) if o.get("event") == "listening"),
                                             None), "rejnet viewer bridge", viewer, viewer_log)
        web = await _wait(lambda: next((o for o in _json_lines(viewer_log) if o.get("event") == "web"), None),
                          "rejnet viewer console", viewer, viewer_log)
        pw_file.unlink()
        self.bridge = (listening["host"], int(listening["port"]))
        self.url = str(web["url"])

    async def _password(self, control: Path) -> str:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent", "ctl", "--control", str(control), "--json", "credentials",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=self._env(), cwd=str(ROOT))
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        if proc.returncode != 0:
            raise ServerError(f"rejnet agent ctl credentials failed: {err.decode(errors='replace').strip()[-300:]}")
        return str(json.loads(out.decode().splitlines()[0])["password"])

    def alive(self) -> None:
        for proc in self.procs:
            if proc.poll() is not None:
                raise HarnessError(f"{' '.join(proc.args[:3])} exited with {proc.returncode}; logs in {self.workdir}")

    async def close(self) -> None:
        for proc in reversed(self.procs):
            await asyncio.to_thread(stop_process, proc, 3.0)
        if self.proxy is not None:
            await self.proxy.close()


# ---------------------------------------------------------------- the two sides


def keys(n: int, start: int) -> list[tuple[str, int]]:
    """(Playwright key name, X keysym): a letter, BackSpace, a letter, ... so the echo stays in one cell."""
    out = []
    for i in range(start, start + n):
        if i % 2 == 0:
            ch = LETTERS[(i // 2) % len(LETTERS)]
            out.append((ch, ord(ch)))
        else:
            out.append(("Backspace", BACKSPACE))
    return out


async def page_phase(browser: Any, url: str, region: tuple[int, int, int, int], plan: list[tuple[str, int]],
                     rng: random.Random) -> tuple[list[float], int]:
    """Open the console (it takes the bridge back), then time each key: keydown -> region painted changed."""
    page = await browser.new_page(viewport={"width": 1300, "height": 900})
    try:
        await page.add_init_script(PAGE_PROBE)
        await page.goto(url)
        await page.wait_for_function("() => window.rejnetConsole && window.rejnetConsole.paints > 0", timeout=30_000)
        await page.wait_for_function("() => document.getElementById('state').dataset.state === 'active' && "
                                     "!document.getElementById('keys').disabled", timeout=30_000)
        await page.evaluate("document.getElementById('screen').focus()")
        await asyncio.sleep(0.5)
        x, y, w, h = region
        samples: list[float] = []
        missed = 0
        for i, (name, _) in enumerate(plan):
            await page.evaluate("(r) => window.__latency.arm(r)", {"x": x, "y": y, "w": w, "h": h})
            await page.keyboard.press(name)
            try:
                await page.wait_for_function("() => window.__latency.t1 > 0", timeout=KEY_TIMEOUT * 1000, polling=5)
                t0, t1 = await page.evaluate("[window.__latency.t0, window.__latency.t1]")
                if i > 0:  # the first key of a phase warms up
                    samples.append((t1 - t0) / 1000)
            except Exception as exc:  # playwright's TimeoutError
                if "Timeout" not in type(exc).__name__:
                    raise
                missed += i > 0
            await asyncio.sleep(rng.uniform(*SETTLE))
        return samples, missed
    finally:
        await page.close()


class VncSide:
    """Our RFB client on the bridge port; one incremental request outstanding at all times."""

    def __init__(self, rfb: Any) -> None:
        self.rfb = rfb
        self.changed = asyncio.Event()
        self.last_update = 0.0
        self._task = asyncio.ensure_future(self._pump())

    async def _pump(self) -> None:
        while True:
            await self.rfb.update(incremental=True, timeout=None)
            self.last_update = time.perf_counter()
            self.changed.set()

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):  # cancelled, or ended with the connection
            await self._task
        await self.rfb.close()


async def vnc_phase(bridge: tuple[str, int], region: tuple[int, int, int, int], plan: list[tuple[str, int]],
                    rng: random.Random) -> tuple[list[float], int]:
    from agent.viewer.rfb_client import open_rfb

    rfb = await open_rfb(*bridge, timeout=30.0)
    await rfb.update(incremental=False, timeout=30.0)
    side = VncSide(rfb)
    x, y, w, h = region
    try:
        await asyncio.sleep(0.5)
        samples: list[float] = []
        missed = 0
        for i, (_, keysym) in enumerate(plan):
            base = rfb.framebuffer[y:y + h, x:x + w].copy()
            side.changed.clear()
            t0 = time.perf_counter()
            await rfb.key(keysym, True)
            await rfb.key(keysym, False)
            deadline = t0 + KEY_TIMEOUT
            shown = None
            while shown is None and time.perf_counter() < deadline:
                try:
                    await asyncio.wait_for(side.changed.wait(), max(0.01, deadline - time.perf_counter()))
                except TimeoutError:
                    break
                side.changed.clear()
                if rfb.error is not None:
                    raise HarnessError(f"the VNC client's connection ended: {rfb.error}")
                if not (rfb.framebuffer[y:y + h, x:x + w] == base).all():
                    shown = side.last_update
            if i > 0:
                if shown is None:
                    missed += 1
                else:
                    samples.append(shown - t0)
            await asyncio.sleep(rng.uniform(*SETTLE))
        return samples, missed
    finally:
        await side.close()


# ---------------------------------------------------------------- the run


async def run(n_keys: int, rounds: int, link_name: str, delay_ms: float, size: tuple[int, int],
              workdir: Path) -> dict:
    from playwright.async_api import async_playwright

    link = link_spec(link_name, delay_ms)
    rng = random.Random(13)
    per_phase = max(1, math.ceil(n_keys / rounds))
    desk = Desk(*size)
    chain = Chain(workdir, desk.display, link)
    result: dict[str, Any] = {"link": link_name, "link_described": link.describe(), "keys_per_side": n_keys,
                              "rounds": rounds, "display": f"{size[0]}x{size[1]}", "region": list(desk.region),
                              "page": [], "vnc": [], "missed": {"page": 0, "vnc": 0}, "phases": []}
    try:
        await chain.start()
        print(f"display {desk.display} {size[0]}x{size[1]}, xterm at {desk.region}, link {link.describe()} "
              f"(agent <-> relay), {rounds} rounds of {per_phase} keys per side (+1 warm-up each)", flush=True)
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                               args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
            try:
                index = 0
                for r in range(rounds):
                    count = min(per_phase, n_keys - r * per_phase)
                    if count <= 0:
                        break
                    for side in ("page", "vnc"):
                        plan = keys(count + 1, index)
                        chain.alive()
                        started = time.monotonic()
                        if side == "page":
                            samples, missed = await page_phase(browser, chain.url, desk.region, plan, rng)
                        else:
                            samples, missed = await vnc_phase(chain.bridge, desk.region, plan, rng)
                        index += len(plan) + (len(plan) % 2)  # keep letter/BackSpace alternation: even start
                        result[side].extend(samples)
                        result["missed"][side] += missed
                        result["phases"].append({"side": side, "round": r, "samples": len(samples),
                                                 "missed": missed, "seconds": round(time.monotonic() - started, 2)})
                        shown = " ".join(f"{s * 1000:.0f}" for s in samples)
                        print(f"round {r + 1} {side:4s}: {len(samples)} keys, {missed} missed; ms: {shown}", flush=True)
            finally:
                await browser.close()
        chain.alive()
    finally:
        await chain.close()
        desk.close()
    for side in ("page", "vnc"):
        if not result[side]:
            raise HarnessError(f"no {side} samples (missed {result['missed'][side]})")
    return result


def summarize(result: dict) -> tuple[str, dict]:
    fig = {}
    for side in ("page", "vnc"):
        s = result[side]
        fig[side] = {"n": len(s), "p50_ms": 1000 * percentile(s, 50), "p95_ms": 1000 * percentile(s, 95),
                     "min_ms": 1000 * min(s), "max_ms": 1000 * max(s), "mean_ms": 1000 * statistics.fmean(s),
                     "missed": result["missed"][side]}
    d50 = fig["page"]["p50_ms"] - fig["vnc"]["p50_ms"]
    d95 = fig["page"]["p95_ms"] - fig["vnc"]["p95_ms"]
    ok = d95 <= TARGET_MS and fig["page"]["missed"] == 0
    page_missed = f", page missed {fig['page']['missed']}" if fig["page"]["missed"] else ""
    fig["diff_p50_ms"], fig["diff_p95_ms"], fig["pass"] = d50, d95, ok
    lines = [
        f"# Typing echo: console page vs VNC viewer ({result['link']}: {result['link_described']}, agent <-> relay)",
        "",
        (f"{result['keys_per_side']} keys per side in {result['rounds']} alternating rounds "
         f"(page phase, then VNC phase; one uncounted warm-up key per phase); xterm running `cat` at "
         f"{tuple(result['region'])} on a {result['display']} Xvfb; keys alternate a letter and BackSpace."),
        "",
        "| side | n | missed | p50 ms | p95 ms | min ms | max ms | mean ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    names = {"page": "page (keydown -> canvas painted)", "vnc": "VNC client on the bridge port (KeyEvent -> update decoded)"}
    for side in ("page", "vnc"):
        f = fig[side]
        lines.append(f"| {names[side]} | {f['n']} | {f['missed']} | {f['p50_ms']:.1f} | {f['p95_ms']:.1f} | "
                     f"{f['min_ms']:.1f} | {f['max_ms']:.1f} | {f['mean_ms']:.1f} |")
    lines += [
        "",
        f"page - VNC: p50 {d50:+.1f} ms, p95 {d95:+.1f} ms",
        "",
        (f"- {'PASS' if ok else 'FAIL'} page typing echo p95 <= VNC p95 + {TARGET_MS:g} ms: "
         f"{fig['page']['p95_ms']:.1f} ms vs {fig['vnc']['p95_ms']:.1f} ms ({d95:+.1f} ms{page_missed})"),
        "",
    ]
    return "\n".join(lines), fig


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.console_latency", description=__doc__.split("\n")[0])
    p.add_argument("--keys", type=int, default=40, help="counted keys per side (default %(default)s)")
    p.add_argument("--rounds", type=int, default=4, help="page/VNC phase pairs the keys are split over "
                   "(default %(default)s)")
    p.add_argument("--link", default="1m", choices=("1m", "10m", "none"),
                   help="the agent <-> relay link: 1m or 10m with --delay one way, or none (default %(default)s)")
    p.add_argument("--delay", type=float, default=ONE_WAY_DELAY * 1e3, metavar="MS",
                   help="one-way delay in ms (default %(default)s)")
    p.add_argument("--size", default="1024x768", help="the Xvfb screen (default %(default)s)")
    p.add_argument("--out", default="bench-out/console-latency", metavar="DIR",
                   help="where report.md and results.json go (default %(default)s)")
    args = p.parse_args(argv)
    if args.keys < 1 or args.rounds < 1:
        p.error("--keys and --rounds must be at least 1")
    width, height = (int(v) for v in args.size.lower().split("x"))
    missing = [t for t in ("Xvfb", "xterm", "xdotool", "xwininfo", "xsetroot") if shutil.which(t) is None]
    if missing or not os.path.exists(CHROMIUM):
        print(f"missing: {', '.join(missing + ([] if os.path.exists(CHROMIUM) else [CHROMIUM]))} "
              "(apt-get install xvfb xterm xdotool x11-utils x11-xserver-utils chromium)", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="console-latency-") as tmp:
        try:
            result = asyncio.run(run(args.keys, args.rounds, args.link, args.delay, (width, height), Path(tmp)))
        except (HarnessError, ServerError) as exc:
            print(f"harness failure: {exc}", file=sys.stderr)
            for log in sorted(Path(tmp).glob("*.log")):
                print(f"--- {log.name}\n{log.read_text(errors='replace')[-1500:]}", file=sys.stderr)
            return 1
    result["seconds"] = round(time.monotonic() - started, 1)
    text, fig = summarize(result)
    result["figures"] = fig
    result["command"] = "python -m benchmarks.console_latency " + " ".join(argv if argv is not None else sys.argv[1:])
    (out / "report.md").write_text(text)
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    print(text)
    print(f"written {out / 'report.md'} and {out / 'results.json'} ({result['seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

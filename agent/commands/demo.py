"""``rejnet-agent demo``: the whole chain on loopback, with nothing to set up.

A relay, an agent (on an Xvfb display when Xvfb is installed; with
``--wayland``, or when Xvfb is missing and the GNOME packages are there, on a
headless GNOME Wayland session through Mutter's API; else on the ``mixed``
synthetic workload), the customer's consent given the way a launcher
gives it, a viewer bridge, and our own RFB client playing the technician. It
prints the session ID, password and safety code, a live status line, and at
the end writes what the technician saw (PNG) and a summary (JSON).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent.commands import event_loop
from agent.commands.screens import open_screen
from agent.errors import SessionEndedError

STATUS_INTERVAL = 0.5
XVFB_SIZE = (1280, 800)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=10.0, help="how long the technician watches (default %(default)s)")
    parser.add_argument("--out", default="demo-out", metavar="DIR",
                        help="where to write technician.png and summary.json (default %(default)s)")
    parser.add_argument("--screen", metavar="synthetic:WORKLOAD",
                        help="share a synthetic workload instead of a fresh Xvfb display")
    parser.add_argument("--wayland", action="store_true",
                        help="share a fresh headless GNOME Wayland session (mutter, PipeWire) through the GNOME "
                             "backend instead of an Xvfb display")
    parser.add_argument("--json", action="store_true", help="print status and summary as JSON lines")


def run(args: argparse.Namespace) -> int:
    if args.seconds <= 0:
        from agent.errors import UsageError

        raise UsageError("--seconds must be positive")
    if args.wayland and args.screen:
        from agent.errors import UsageError

        raise UsageError("--wayland shares a GNOME session: it cannot be combined with --screen")
    os.makedirs(args.out, exist_ok=True)
    return event_loop.run(_demo(args.seconds, args.out, args.screen, args.json, args.wayland))


@dataclass
class _Display:
    """An Xvfb display with a terminal running ``top`` on it, so there is something to watch."""

    name: str
    procs: list[subprocess.Popen] = field(default_factory=list)

    @classmethod
    def start(cls) -> "_Display | None":
        """A decorated display, or None when Xvfb is missing or will not start."""
        from agent.errors import CaptureError
        from agent.workloads.xvfb import start_xvfb

        try:
            proc, name = start_xvfb(*XVFB_SIZE, first=150 + os.getpid() % 300)
        except CaptureError:
            return None
        display = cls(name, [proc])
        display._decorate()
        return display

    def _decorate(self) -> None:
        env = dict(os.environ, DISPLAY=self.name)
        if shutil.which("xsetroot"):
            subprocess.run(["xsetroot", "-solid", "#3a6ea5"], env=env, check=False,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if shutil.which("xterm"):
            self.procs.append(subprocess.Popen(
                ["xterm", "-geometry", "110x40+40+30", "-fa", "Monospace", "-fs", "10", "-e", "top", "-d", "1"],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            time.sleep(1.0)

    def stop(self) -> None:
        from agent.workloads.xvfb import stop_process

        for proc in reversed(self.procs):
            stop_process(proc, 3)


@dataclass
class _Gnome:
    """A headless GNOME Wayland session with a foot terminal running ``top`` on it.

    The agent runs in this process, so this process joins the session: its
    session bus and runtime directory (PipeWire) become the headless one's.
    """

    session: Any
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"gnome {self.session.width}x{self.session.height}"

    @classmethod
    def start(cls, required: bool) -> "_Gnome | None":
        """The session, or None when it cannot run here (``required``: a CaptureError saying why)."""
        from agent.capture.gi_support import load_gst
        from agent.capture.gnome_headless import HeadlessGnome
        from agent.errors import CaptureError

        try:
            load_gst()
            session = HeadlessGnome(*XVFB_SIZE).start()
        except CaptureError:
            if required:
                raise
            return None
        os.environ.pop("DISPLAY", None)
        os.environ.update({k: session.env[k] for k in ("DBUS_SESSION_BUS_ADDRESS", "XDG_RUNTIME_DIR",
                                                       "WAYLAND_DISPLAY", "XDG_SESSION_TYPE")})
        gnome = cls(session)
        if shutil.which("foot"):
            gnome.procs.append(subprocess.Popen(["foot", "--", "top", "-d", "1"], env=session.env,
                                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            time.sleep(1.0)
        return gnome

    def stop(self) -> None:
        from agent.workloads.xvfb import stop_process

        for proc in reversed(self.procs):
            stop_process(proc, 3)
        self.session.stop()


def _say(as_json: bool, text: str, **fields: Any) -> None:
    if as_json:
        print(json.dumps({"event": "demo", "message": text, **fields}), flush=True)
    else:
        print(text, flush=True)


async def _demo(seconds: float, out: str, screen: str | None, as_json: bool, wayland: bool = False) -> int:
    from agent.consent.terms import load_terms
    from agent.relay.server import RelayServer
    from agent.session.agent import Agent, AgentConfig
    from agent.viewer.bridge import BridgeConfig, ViewerBridge
    from agent.viewer.rfb_client import open_rfb

    display: Any = None
    backend = None
    if wayland:
        display = await asyncio.to_thread(_Gnome.start, True)
    elif not screen:
        display = await asyncio.to_thread(_Display.start)
        if display is None:  # no Xvfb: a headless GNOME session, when its packages are there
            display = await asyncio.to_thread(_Gnome.start, False)
    if isinstance(display, _Gnome):
        backend = "gnome"
        _say(as_json, f"Sharing a fresh headless GNOME Wayland session ({XVFB_SIZE[0]}x{XVFB_SIZE[1]}, mutter "
                      "ScreenCast + PipeWire) running top in a foot terminal")
    elif screen is None and display is None:
        screen = "synthetic:mixed:1280x720"
        _say(as_json, "Xvfb is not installed: sharing the 'mixed' synthetic workload instead of a real display")
    elif display is not None:
        _say(as_json, f"Sharing a fresh Xvfb display {display.name} ({XVFB_SIZE[0]}x{XVFB_SIZE[1]}) running top in an xterm")
    workdir = tempfile.mkdtemp(prefix="rejnet-demo-")
    relay = RelayServer(host="127.0.0.1", port=0)
    await relay.start()
    relay_host, relay_port = relay.address
    _say(as_json, f"Relay listening on {relay_host}:{relay_port}")
    agent = Agent(AgentConfig(relay=f"{relay_host}:{relay_port}", backend=backend,
                              display=display.name if display is not None and backend is None else None,
                              source=open_screen(screen) if screen else None, control_path=os.path.join(workdir, "control.sock"),
                              consent_db=os.path.join(out, "consent.db")))
    client = bridge = None
    summary: dict[str, Any] = {}
    try:
        await agent.start()
        creds = agent.credentials()
        from agent.relay.protocol import format_session_id

        _say(as_json, f"Customer's agent: session ID {format_session_id(creds['session'])}, password {creds['password']}",
             session=creds["session"])
        terms = load_terms()
        await agent.consent("view", terms.version, terms.sha256)
        _say(as_json, f"Customer consented (scope view) to terms {terms.version}, sha256 {terms.sha256[:16]}...; "
                      f"recorded in {os.path.join(out, 'consent.db')}")
        bridge = ViewerBridge(BridgeConfig(session_id=creds["session"], password=creds["password"],
                                           relay=(relay_host, relay_port), listen=("127.0.0.1", 0)))
        await bridge.start()
        assert bridge.address is not None
        for _ in range(100):  # the agent finishes its side of the handshake a moment later
            if agent.status().get("safety_code"):
                break
            await asyncio.sleep(0.02)
        _say(as_json, f"Technician's viewer authenticated; safety code {bridge.safety_code} on the technician's side, "
                      f"{agent.status().get('safety_code')} on the customer's; "
                      f"plain RFB on {bridge.address[0]}::{bridge.address[1]}",
             safety_code=bridge.safety_code)
        client = await open_rfb(*bridge.address, timeout=30)
        summary = await _watch(client, agent, seconds, as_json)
        png = os.path.join(out, "technician.png")
        _save_png(client.framebuffer, png)
        summary.update(png=png, capture_backend=agent.status().get("capture_backend"),
                       screen=screen or (display.name if backend else f"xvfb {display.name if display else ''}"),
                       width=client.width, height=client.height, safety_code=bridge.safety_code)
        await agent.terminate("demo finished")
        try:
            await asyncio.wait_for(bridge.wait(), 5)
            summary["viewer_end"] = "closed"
        except SessionEndedError as exc:
            summary["viewer_end"] = str(exc)
        except asyncio.TimeoutError:
            summary["viewer_end"] = "viewer did not notice the end within 5 s"
    finally:
        if client is not None:
            await client.close()
        if bridge is not None:
            await bridge.close()
        await agent.close()
        await relay.close()
        if display is not None:
            await asyncio.to_thread(display.stop)
        shutil.rmtree(workdir, ignore_errors=True)
    with open(os.path.join(out, "summary.json"), "w", encoding="utf-8") as fh:
        json.dump(summary, fh, indent=2)
    if as_json:
        print(json.dumps({"event": "summary", **summary}), flush=True)
    else:
        print("\nSummary")
        for key in ("capture_backend", "updates", "updates_per_s", "link_bytes_sent", "link_kbit_per_s", "bytes_received", "kbit_per_s",
                    "channel_rtt_ms", "change_to_update_ms_p50", "change_to_update_ms_p95",
                    "request_to_update_ms_p50", "request_to_update_ms_p95", "png", "viewer_end"):
            print(f"  {key:<26} {summary.get(key)}")
    return 0


async def _watch(client: Any, agent: Any, seconds: float, as_json: bool) -> dict[str, Any]:
    """Play the technician: request updates back to back, report a status line."""
    latencies: list[float] = []
    started = time.monotonic()
    next_status = started
    tty = sys.stdout.isatty() and not as_json
    while time.monotonic() - started < seconds:
        asked = time.monotonic()
        try:
            await client.update(incremental=True, timeout=min(2.0, seconds))
        except asyncio.TimeoutError:
            continue  # nothing changed on the customer's screen
        latencies.append(time.monotonic() - asked)
        now = time.monotonic()
        if now >= next_status:
            next_status = now + STATUS_INTERVAL
            elapsed = now - started
            agent_status = agent.status()
            rtt = agent_status.get("rtt")
            status = {"state": agent.machine.state.value, "bytes": client.bytes_received,
                      "link_bytes": agent_status.get("link_bytes_sent"),
                      "updates_per_s": round(len(latencies) / max(elapsed, 1e-6), 1),
                      "rtt_ms": None if rtt is None else round(1000 * rtt, 1),
                      "change_to_update_ms": agent_status.get("change_to_update_ms_p50"),
                      "request_to_update_ms": round(1000 * statistics.median(latencies[-20:]), 1)}
            if as_json:
                print(json.dumps({"event": "status", **status}), flush=True)
            else:
                line = (f"state {status['state']:<7} link bytes {status['link_bytes'] or 0:>9,} "
                        f"(RFB {status['bytes']:>10,})  "
                        f"updates/s {status['updates_per_s']:>6}  change-to-update {status['change_to_update_ms']} ms  "
                        f"RTT {status['rtt_ms']} ms")
                print("\r" + line if tty else line, end="" if tty else "\n", flush=True)
    if tty:
        print()
    elapsed = time.monotonic() - started
    ordered = sorted(latencies)
    agent_status = agent.status()
    rtt = agent_status.get("rtt")
    link_bytes = agent_status.get("link_bytes_sent") or 0
    return {
        "seconds": round(elapsed, 2),
        "updates": len(latencies),
        "updates_per_s": round(len(latencies) / elapsed, 1),
        "bytes_received": client.bytes_received,
        "kbit_per_s": round(8 * client.bytes_received / elapsed / 1000, 1),
        "link_bytes_sent": link_bytes,
        "link_kbit_per_s": round(8 * link_bytes / elapsed / 1000, 1),
        "channel_rtt_ms": None if rtt is None else round(1000 * rtt, 1),
        # a change on screen -> its update leaving the agent: the latency the technician feels, less the link
        "change_to_update_ms_p50": agent_status.get("change_to_update_ms_p50"),
        "change_to_update_ms_p95": agent_status.get("change_to_update_ms_p95"),
        # a pull request -> the next update: mostly the time the screen took to change again, not latency
        "request_to_update_ms_p50": round(1000 * ordered[len(ordered) // 2], 1) if ordered else None,
        "request_to_update_ms_p95": round(1000 * ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))], 1)
        if ordered else None,
    }


def _save_png(framebuffer: np.ndarray, path: str) -> None:
    from PIL import Image

    rgb = np.ascontiguousarray(framebuffer[:, :, 2::-1])
    Image.fromarray(rgb, "RGB").save(path)

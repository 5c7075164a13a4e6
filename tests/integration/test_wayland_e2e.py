"""End to end on a headless GNOME Wayland session: rejnet-relay, rejnet-agent --backend gnome, rejnet-viewer, vncdotool.

The console scripts are the ones installed beside this interpreter; the
session is dbus-run-session + pipewire + wireplumber + headless mutter
(tests/support/gnome_session.py), with a fullscreen GTK window of known
content and a focused text entry.
"""
from __future__ import annotations

import json
import subprocess
import time

import numpy as np
import pytest

from tests.support.gnome_session import BANDS, GtkClient, direct_grab, gnome_session, spawn_in  # noqa: F401
from tests.support.processes import Lines, Tap, free_port, stop, wait_port
from tests.support.tools import need, which

pytestmark = [pytest.mark.slow]


class WaylandChain:
    """rejnet-relay, rejnet-agent --backend gnome (through a tap), and a rejnet-viewer bridge."""

    def __init__(self, session, tmp_path, consent: str = "view") -> None:
        self.session, self.tmp_path, self.procs, self.tap = session, tmp_path, [], None
        try:
            self._start(consent)
        except BaseException:
            self.close()
            raise

    def _start(self, consent: str) -> None:
        session, tmp_path = self.session, self.tmp_path
        relay_bin, agent_bin, viewer_bin = need("rejnet-relay", "rejnet-agent", "rejnet-viewer")
        relay_port = free_port()
        self.relay = spawn_in(session, [relay_bin, "--listen", f"127.0.0.1:{relay_port}"])
        self.procs.append(self.relay)
        Lines(self.relay)
        wait_port(relay_port)
        self.tap = Tap(("127.0.0.1", relay_port))
        self.control = str(tmp_path / "control.sock")
        self.agent = spawn_in(session, [agent_bin, "--backend", "gnome", "--relay", f"127.0.0.1:{self.tap.port}",
                                        "--control", self.control, "--consent-db", str(tmp_path / "consent.db"),
                                        "--json", "--consent", consent])
        self.procs.append(self.agent)
        self.agent_out = Lines(self.agent)
        ready = self.agent_out.wait_json(lambda o: o.get("event") == "ready", timeout=30)
        self.session_id = ready["session"]
        password = self.ctl("credentials")["password"]
        pw_file = tmp_path / "pw"
        pw_file.write_text(password + "\n")
        self.port = free_port()
        self.viewer = spawn_in(session, [viewer_bin, self.session_id, "--relay", f"127.0.0.1:{relay_port}",
                                         "--password-file", str(pw_file), "--listen", f"127.0.0.1:{self.port}",
                                         "--json"])
        self.procs.append(self.viewer)
        self.viewer_out = Lines(self.viewer)
        self.viewer_out.wait_json(lambda o: o.get("event") == "listening", timeout=30)

    def ctl(self, *args: str) -> dict:
        agent_bin = which("rejnet-agent")
        result = subprocess.run([agent_bin, "ctl", "--control", self.control, "--json", *args],
                                capture_output=True, text=True, timeout=30, env=self.session.env)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout.splitlines()[0])

    def vncdo(self, *cmd: str, timeout: float = 60) -> subprocess.CompletedProcess:
        (vncdo,) = need("vncdo")
        result = subprocess.run([vncdo, "-s", f"127.0.0.1::{self.port}", *cmd], capture_output=True, text=True,
                                timeout=timeout)
        assert result.returncode == 0, result.stderr
        return result

    def close(self) -> None:
        for proc in reversed(self.procs):
            stop(proc)
        if self.tap is not None:
            self.tap.close()


@pytest.fixture
def client(gnome_session):
    gtk = GtkClient(gnome_session)
    yield gtk
    gtk.close()


@pytest.fixture
def chain(gnome_session, client, tmp_path):
    made = WaylandChain(gnome_session, tmp_path)
    yield made
    made.close()


def test_vncdotool_capture_equals_a_direct_pipewire_grab(chain, gnome_session, tmp_path):
    from PIL import Image

    status = chain.ctl("status")
    assert status["capture_backend"] == "gnome"
    png = tmp_path / "captured.png"
    chain.vncdo("capture", str(png))
    captured = np.array(Image.open(png).convert("RGB"))
    expected = direct_grab(gnome_session)
    assert captured.shape == expected.shape == (768, 1024, 3)
    for top, bottom, rgb in BANDS:  # the client's known content is there ...
        assert tuple(captured[(top + bottom) // 2, 512]) == rgb
    differ = np.count_nonzero((captured != expected).any(axis=2))
    assert differ == 0, f"{differ} pixels differ from PipeWire's own picture"  # ... and every other pixel too


def test_typing_lands_only_in_control_scope(chain, client):
    chain.vncdo("type", "nope", "pause", "1")
    assert client.text() == "", "keys reached the desktop in scope view"

    chain.ctl("consent", "--scope", "control")
    chain.vncdo("type", "Hello wayland", "pause", "0.5")
    assert client.wait_text("Hello wayland") == "Hello wayland"

    chain.ctl("set-scope", "view")
    chain.vncdo("type", "xyz", "pause", "1")
    assert client.text() == "Hello wayland", "keys reached the desktop after the scope dropped to view"


def test_pointer_moves_clicks_and_scrolls(chain, client):
    chain.vncdo("move", "321", "234", "pause", "0.5")
    assert not client.events_of("motion"), "the pointer moved in scope view"
    chain.ctl("consent", "--scope", "control")
    chain.vncdo("move", "321", "234", "pause", "0.3", "move", "400", "450", "pause", "0.3", "click", "3",
                "pause", "0.3", "click", "5", "pause", "0.5")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not client.events_of("scroll"):
        time.sleep(0.1)
    motions = [(e["x"], e["y"]) for e in client.events_of("motion")]
    assert (321, 234) in motions and (400, 450) in motions, motions[-10:]
    # GTK may report one press twice (to the widget and its toplevel): a press is its button and time
    assert {(e["button"], e["time"]) for e in client.events_of("button")} == {(3, client.events_of("button")[0]["time"])}
    scrolls = client.events_of("scroll")
    assert scrolls and all(e["direction"] == 1 or e["dy"] > 0 for e in scrolls), scrolls  # 1 = GDK_SCROLL_DOWN


def test_idle_wayland_screen_sends_keepalives_only(chain, client):
    """After the first picture, a screen nobody touches costs no pixels, no capture and almost no bytes."""
    from agent.viewer.rfb_client import open_rfb
    import asyncio

    async def watch(seconds: float) -> tuple[int, int, int, int]:
        rfb = await open_rfb("127.0.0.1", chain.port, timeout=30)
        try:
            await rfb.update(incremental=False, timeout=30)
            time.sleep(0.5)
            before = chain.ctl("status")
            wire0 = len(chain.tap.up)
            cpu0 = _cpu_seconds(chain.agent.pid)
            updates = 0
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                try:
                    await rfb.update(incremental=True, timeout=deadline - time.monotonic())
                    updates += 1
                except asyncio.TimeoutError:
                    break
            after = chain.ctl("status")
            cpu = _cpu_seconds(chain.agent.pid) - cpu0
            return (after["bytes_sent"] - before["bytes_sent"], len(chain.tap.up) - wire0, updates,
                    round(cpu * 1000))
        finally:
            await rfb.close()

    seconds = 6.0
    rfb_bytes, wire_bytes, updates, cpu_ms = asyncio.run(watch(seconds))
    assert updates == 0 and rfb_bytes == 0, (updates, rfb_bytes)
    # the relay direction agent -> relay: a keepalive PING and lazy ACKs, no screen
    assert wire_bytes < 1500, wire_bytes
    assert cpu_ms < 0.05 * seconds * 1000, f"the idle agent used {cpu_ms} ms of CPU in {seconds} s"


def _cpu_seconds(pid: int) -> float:
    import os

    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_demo_wayland_shows_the_whole_chain_on_a_headless_gnome_session(tmp_path):
    """``rejnet-agent demo --wayland`` starts its own headless GNOME session and shares it end to end."""
    from PIL import Image

    import os

    from tests.support.gnome_session import ROOT, need_gnome

    need_gnome()
    (agent_bin,) = need("rejnet-agent")
    need("foot")
    out_dir = tmp_path / "demo"
    result = subprocess.run([agent_bin, "demo", "--wayland", "--seconds", "3", "--json", "--out", str(out_dir)],
                            capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=str(ROOT))
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    summary = next(line for line in lines if line.get("event") == "summary")
    assert summary["capture_backend"] == "gnome" and summary["screen"].startswith("gnome ")
    assert summary["updates"] >= 1 and summary["viewer_end"] != "viewer did not notice the end within 5 s"
    shown = np.array(Image.open(summary["png"]).convert("RGB"))
    assert shown.shape == (800, 1280, 3)
    assert len(np.unique(shown.reshape(-1, 3), axis=0)) > 20, "the technician saw a blank screen"

"""End to end with the real commands: rejnet-relay, rejnet-agent, rejnet-viewer and vncdotool.

Every process is a subprocess, talking over loopback, on an Xvfb display the
tests start themselves.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest

from tests.support.processes import Lines, Tap, free_port, spawn, stop, wait_port
from tests.support.tools import need, which

pytestmark = [pytest.mark.xvfb, pytest.mark.slow]

VNCDO = which("vncdo") or "vncdo"


def _need_tools() -> None:
    need("vncdo", "xdotool", "xterm", "xsetroot")


def _paint(display: str) -> list[subprocess.Popen]:
    """Static, non-trivial content: a coloured root and an xterm listing files (no blinking)."""
    env = dict(os.environ, DISPLAY=display)
    subprocess.run(["xsetroot", "-solid", "#204a87"], env=env, check=False)
    procs = []
    if shutil.which("xterm"):
        procs.append(subprocess.Popen(["xterm", "-geometry", "80x24+30+40", "+bc", "-e", "sh", "-c",
                                       "ls -la /usr/bin | head -40; sleep 600"], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(1.5)
    return procs


class Chain:
    """relay + agent (+ taps) for one test; viewers are started by the tests."""

    def __init__(self, tmp_path, display: str, *, consent: str | None = "view", tap_agent: bool = False,
                 agent_args: tuple[str, ...] = ()) -> None:
        self.procs: list[subprocess.Popen] = []
        self.relay_port = free_port()
        self.relay = spawn(["agent.commands.relay", "--listen", f"127.0.0.1:{self.relay_port}"])
        self.procs.append(self.relay)
        self.relay_out = Lines(self.relay)
        wait_port(self.relay_port)
        self.tap = Tap(("127.0.0.1", self.relay_port)) if tap_agent else None
        agent_relay = self.tap.port if self.tap else self.relay_port
        self.control = str(tmp_path / "control.sock")
        args = ["agent", "--relay", f"127.0.0.1:{agent_relay}", "--display", display, "--control", self.control,
                "--consent-db", str(tmp_path / "consent.db"), "--json", *agent_args]
        if consent:
            args += ["--consent", consent]
        self.agent = spawn(args, env={"XDG_RUNTIME_DIR": str(tmp_path)})
        self.procs.append(self.agent)
        self.agent_out = Lines(self.agent)
        ready = self.agent_out.wait_json(lambda o: o.get("event") == "ready", timeout=30)
        self.session = ready["session"]
        self.tmp_path = tmp_path

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        import sys

        result = subprocess.run([sys.executable, "-m", "agent", "ctl", "--control", self.control, "--json", *args],
                                capture_output=True, text=True, timeout=30)
        if check:
            assert result.returncode == 0, result.stderr
        return result

    def password(self) -> str:
        import json

        return json.loads(self.ctl("credentials").stdout.splitlines()[0])["password"]

    def viewer(self, password: str, *extra: str) -> tuple[subprocess.Popen, Lines, int]:
        pw_file = self.tmp_path / f"pw-{len(self.procs)}"
        pw_file.write_text(password + "\n")
        port = free_port()
        proc = spawn(["agent.commands.viewer", self.session, "--relay", f"127.0.0.1:{self.relay_port}",
                      "--password-file", str(pw_file), "--listen", f"127.0.0.1:{port}", "--json", *extra])
        self.procs.append(proc)
        return proc, Lines(proc), port

    def close(self) -> None:
        for proc in reversed(self.procs):
            stop(proc)
        if self.tap:
            self.tap.close()


def _vncdo(port: int, *cmd: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([VNCDO, "-s", f"127.0.0.1::{port}", *cmd], capture_output=True, text=True, timeout=timeout)


def _screen(display: str) -> np.ndarray:
    from agent.capture import MssSource

    with MssSource(display) as src:
        return np.array(src.grab()[:, :, 2::-1])  # BGRA -> RGB


def _mouse(display: str) -> tuple[int, int]:
    out = subprocess.run(["xdotool", "getmouselocation"], env=dict(os.environ, DISPLAY=display),
                         capture_output=True, text=True, check=True).stdout
    fields = dict(part.split(":") for part in out.split() if ":" in part)
    return int(fields["x"]), int(fields["y"])


@pytest.fixture
def chain_factory(tmp_path, xvfb):
    _need_tools()
    painters = _paint(xvfb)
    chains: list[Chain] = []

    def make(**kwargs) -> Chain:
        chain = Chain(tmp_path, xvfb, **kwargs)
        chains.append(chain)
        return chain

    yield make
    for chain in chains:
        chain.close()
    for proc in painters:
        stop(proc)


def test_vncdotool_through_relay_sees_the_screen(chain_factory, xvfb, tmp_path):
    from PIL import Image

    chain = chain_factory()
    viewer, out, port = chain.viewer(chain.password())
    auth = out.wait_json(lambda o: o.get("event") == "authenticated")
    assert len(auth["safety_code"]) == 4 and auth["safety_code"].isdigit()
    out.wait_json(lambda o: o.get("event") == "listening")
    png = tmp_path / "captured.png"
    result = _vncdo(port, "capture", str(png))
    assert result.returncode == 0, result.stderr
    captured = np.array(Image.open(png).convert("RGB"))
    expected = _screen(xvfb)
    assert captured.shape == expected.shape
    assert np.array_equal(captured, expected), f"{np.count_nonzero((captured != expected).any(2))} pixels differ"


def test_pointer_lands_only_in_control_scope(chain_factory, xvfb):
    chain = chain_factory(consent="view")
    viewer, out, port = chain.viewer(chain.password())
    out.wait_json(lambda o: o.get("event") == "listening")
    subprocess.run(["xdotool", "mousemove", "5", "5"], env=dict(os.environ, DISPLAY=xvfb), check=True)
    assert _vncdo(port, "move", "321", "234", "pause", "0.5").returncode == 0
    assert _mouse(xvfb) == (5, 5), "a pointer move reached the desktop in scope view"

    chain.ctl("consent", "--scope", "control")
    assert _vncdo(port, "move", "321", "234", "pause", "0.5").returncode == 0
    deadline = time.monotonic() + 5
    while _mouse(xvfb) != (321, 234) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _mouse(xvfb) == (321, 234)

    chain.ctl("set-scope", "view")
    assert _vncdo(port, "move", "50", "60", "pause", "0.5").returncode == 0
    assert _mouse(xvfb) == (321, 234), "a pointer move reached the desktop after the scope dropped to view"


def test_wrong_password_exits_3_and_rotates_after_three(chain_factory):
    chain = chain_factory(agent_args=("--keep-waiting",))
    right = chain.password()
    wrong = "zzzzzz" if right != "zzzzzz" else "yyyyyy"
    for attempt in range(2):
        proc, out, _ = chain.viewer(wrong)
        assert proc.wait(30) == 3, "".join(out.stderr)
    status = chain.ctl("status")
    assert '"waiting"' in status.stdout
    proc, out, port = chain.viewer(right)
    out.wait_json(lambda o: o.get("event") == "authenticated")
    stop(proc)
    # Lines are read in order, and the wrong attempts above left "waiting" lines of their own: wait for the
    # rotation on use first, then for the waiting state that follows the technician's leaving.
    chain.agent_out.wait_json(lambda o: o.get("event") == "password_rotated")  # used once: replaced
    chain.agent_out.wait_json(lambda o: o.get("event") == "state" and o.get("state") == "waiting")
    assert chain.password() != right
    proc, out, _ = chain.viewer(wrong)
    assert proc.wait(30) == 3, "".join(out.stderr)
    for line in chain.agent_out.seen + chain.agent_out.stderr:
        assert right not in line, "the password appeared in the agent's output"


def test_tap_between_agent_and_relay_sees_no_plaintext(chain_factory, xvfb, tmp_path):
    chain = chain_factory(tap_agent=True)
    password = chain.password()
    viewer, out, port = chain.viewer(password)
    out.wait_json(lambda o: o.get("event") == "listening")
    local_tap = Tap(("127.0.0.1", port))
    try:
        result = _vncdo(local_tap.port, "capture", str(tmp_path / "x.png"))
        assert result.returncode == 0, result.stderr
        plain = local_tap.everything()
    finally:
        local_tap.close()
    wire = chain.tap.everything()
    assert len(wire) > 2_000  # a screen went by (compressed: the desktop is mostly one colour)
    # The control: the same checks find what they look for in the plaintext RFB beside it.
    assert b"RFB 003.008" in plain
    assert b"RFB 003.008" not in wire
    assert password.encode() not in wire
    screen = _screen(xvfb)
    bgrx = np.dstack([screen[:, :, ::-1], np.zeros(screen.shape[:2], np.uint8)])
    runs = []
    for y in range(40, min(400, bgrx.shape[0]), 7):
        row = bgrx[y, 30:600].tobytes()
        for x in range(0, len(row) - 32, 4 * 37):
            run = row[x:x + 32]
            if len(set(run[i:i + 4] for i in range(0, 32, 4))) >= 3:
                runs.append(run)
    assert runs, "the screen has no varied pixel runs to look for"
    assert not [run for run in runs if run in wire]


def test_terminate_ends_viewer_with_4_and_killed_viewer_returns_agent_to_waiting(chain_factory):
    chain = chain_factory(agent_args=("--keep-waiting", "--resume-timeout", "2"))
    viewer, out, port = chain.viewer(chain.password())
    out.wait_json(lambda o: o.get("event") == "authenticated")
    viewer.send_signal(signal.SIGKILL)
    viewer.wait(10)
    chain.agent_out.wait_json(lambda o: o.get("event") == "reconnecting", timeout=15)
    chain.agent_out.wait_json(lambda o: o.get("event") == "state" and o.get("state") == "waiting", timeout=15)

    viewer, out, port = chain.viewer(chain.password())
    out.wait_json(lambda o: o.get("event") == "authenticated")
    chain.ctl("consent", "--scope", "view")  # a new technician needs the customer's fresh consent
    chain.agent_out.wait_json(lambda o: o.get("event") == "state" and o.get("state") == "active", timeout=15)
    chain.ctl("terminate", "--reason", "customer is done")
    started = time.monotonic()
    assert viewer.wait(10) == 4
    assert time.monotonic() - started < 2.0
    assert chain.agent.wait(10) == 0

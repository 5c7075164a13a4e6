"""The servers under test, each started fresh for a run, behind the shaping proxy.

* ``rejnet``: our whole chain as separate processes: ``python -m agent.commands.relay``,
  ``python -m agent`` (the customer's agent) and ``python -m agent.commands.viewer``
  (the technician's bridge). The slow link is the customer's: the proxy sits
  between the agent and the relay, so the channel, the relay protocol and
  keepalives all count against us.
* ``x11vnc``: ``x11vnc -display :N -rfbport P -localhost -nopw -forever -shared
  -norc -quiet``, its polling and XDAMAGE defaults untouched, as a user runs it.
* ``tigervnc``: TigerVNC's scraping server. ``x0tigervncserver`` is a wrapper
  that daemonises ``X0tigervnc``; we run ``X0tigervnc -display :N -rfbport P
  -SecurityTypes None -localhost -AlwaysShared`` in the foreground (the same
  server, defaults otherwise) so its CPU time can be read from /proc.

The viewer connects to the proxy (peers) or to the bridge (ours); for peers
the proxy's forward direction is viewer -> server, for ours agent -> relay.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from agent.workloads.xvfb import start_xvfb, stop_process
from agent.errors import CaptureError
from benchmarks.linkbench.proxy import Direction, LinkSpec, ShapingProxy

START_TIMEOUT = 30.0
STOP_TIMEOUT = 2.0
ROOT = Path(__file__).resolve().parents[2]


class ServerError(RuntimeError):
    """A server under test did not start (or died); the run records the reason and goes on."""


def _listening(port: int) -> bool:
    """Whether something listens on 127.0.0.1:port (read from /proc, so no connection is made)."""
    want = f"0100007F:{port:04X}"
    try:
        with open("/proc/net/tcp") as f:
            return any(line.split()[1] == want and line.split()[3] == "0A" for line in f.readlines()[1:])
    except OSError:
        return False


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _wait(predicate, what: str, proc: Optional[subprocess.Popen], log: Optional[Path],
                timeout: float = START_TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        if proc is not None and proc.poll() is not None:
            raise ServerError(f"{what}: the process exited with {proc.returncode}{_tail(log)}")
        await asyncio.sleep(0.05)
    raise ServerError(f"{what}: not ready after {timeout:g} s{_tail(log)}")


def _tail(log: Optional[Path], chars: int = 600) -> str:
    if log is None or not log.exists():
        return ""
    text = log.read_text(errors="replace").strip()
    return f"; last output: {text[-chars:]}" if text else ""


def _json_lines(path: Path) -> list[dict]:
    out = []
    if path.exists():
        for line in path.read_text(errors="replace").splitlines():
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                out.append(obj)
    return out


class Display:
    """An Xvfb display of the benchmark's size, started and stopped by the benchmark."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.proc: Optional[subprocess.Popen] = None
        self.name = ""

    def start(self) -> str:
        try:
            self.proc, self.name = start_xvfb(self.width, self.height, first=300 + os.getpid() % 300)
        except CaptureError as exc:
            raise ServerError(str(exc)) from None
        return self.name

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc else None

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
            self.proc = None


def _stop(proc: subprocess.Popen) -> None:
    stop_process(proc, STOP_TIMEOUT)


class Server:
    """One server under test for one run: ``await start(...)``, ``address``, ``await stop()``."""

    name = ""
    tools: tuple[str, ...] = ()
    apt = ""
    serves_synthetic = False

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []
        self.proxy: Optional[ShapingProxy] = None
        self.address: Optional[tuple[str, int]] = None
        self.server_pid: Optional[int] = None
        self.helper_pids: list[int] = []
        self.workdir: Optional[Path] = None
        self.stages: list[str] = []  # agent methods to time (rejnet only; benchmarks.linkbench.stages)
        self.stages_file: Optional[Path] = None
        self.profile_file: Optional[Path] = None  # --profile: the agent's cProfile stats go here (rejnet only)

    @classmethod
    def unavailable(cls) -> Optional[str]:
        """Why this server cannot run here (a missing program and how to install it), or None."""
        missing = [t for t in cls.tools if shutil.which(t) is None]
        if missing:
            return f"{', '.join(missing)} not installed (apt-get install {cls.apt})"
        return None

    def _spawn(self, argv: list[str], log: Path, env: Optional[dict] = None) -> subprocess.Popen:
        with open(log, "wb") as out:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    env=env, cwd=str(ROOT))
        self.procs.append(proc)
        return proc

    @property
    def down(self) -> Direction:
        """Server -> viewer direction of the proxy."""
        raise NotImplementedError

    @property
    def up(self) -> Direction:
        raise NotImplementedError

    async def start(self, *, display: Optional[str], screen: Optional[str], link: LinkSpec, workdir: Path) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        if self.proxy is not None:
            await self.proxy.close()
        for proc in reversed(self.procs):
            await asyncio.to_thread(_stop, proc)
        self.procs.clear()


class _Peer(Server):
    """A VNC server on the display; the viewer reaches it through the proxy."""

    def argv(self, display: str, port: int) -> list[str]:
        raise NotImplementedError

    @property
    def down(self) -> Direction:
        assert self.proxy is not None
        return self.proxy.backward

    @property
    def up(self) -> Direction:
        assert self.proxy is not None
        return self.proxy.forward

    async def start(self, *, display: Optional[str], screen: Optional[str], link: LinkSpec, workdir: Path) -> None:
        if display is None or display == "gnome":
            raise ServerError(f"{self.name} serves a real X display only")
        self.workdir = workdir
        port = free_port()
        log = workdir / f"{self.name}.log"
        proc = self._spawn(self.argv(display, port), log)
        self.server_pid = proc.pid
        await _wait(lambda: _listening(port), f"{self.name} on {display}", proc, log)
        self.proxy = ShapingProxy(("127.0.0.1", port), link, link)
        await self.proxy.start()
        self.address = self.proxy.address


class X11vnc(_Peer):
    name = "x11vnc"
    tools = ("x11vnc",)
    apt = "x11vnc"

    def argv(self, display: str, port: int) -> list[str]:
        return ["x11vnc", "-display", display, "-rfbport", str(port), "-localhost", "-nopw", "-forever", "-shared",
                "-norc", "-quiet"]


class TigerVNC(_Peer):
    name = "tigervnc"
    tools = ("X0tigervnc",)
    apt = "tigervnc-scraping-server"

    def argv(self, display: str, port: int) -> list[str]:
        return ["X0tigervnc", "-display", display, "-rfbport", str(port), "-SecurityTypes", "None", "-localhost",
                "-AlwaysShared", "-desktop", "linkbench"]


class Rejnet(Server):
    """relay, agent and viewer bridge as separate processes; the proxy on the agent <-> relay hop."""

    name = "rejnet"
    serves_synthetic = True

    @classmethod
    def unavailable(cls) -> Optional[str]:
        try:
            import agent.session.agent  # noqa: F401
            import agent.viewer.bridge  # noqa: F401
        except ImportError as exc:
            return f"the agent package does not import ({exc}); run from the repository or pip install ."
        return None

    @property
    def down(self) -> Direction:
        assert self.proxy is not None
        return self.proxy.forward

    @property
    def up(self) -> Direction:
        assert self.proxy is not None
        return self.proxy.backward

    def _env(self, workdir: Path) -> dict:
        env = dict(os.environ, XDG_RUNTIME_DIR=str(workdir / "run"), PYTHONUNBUFFERED="1")
        env.pop("REJNET_PASSWORD", None)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        return env

    async def start(self, *, display: Optional[str], screen: Optional[str], link: LinkSpec, workdir: Path) -> None:
        self.workdir = workdir
        run_dir = workdir / "run"
        run_dir.mkdir(mode=0o700, exist_ok=True)
        env = self._env(workdir)
        py = sys.executable

        relay_port = free_port()
        relay_log = workdir / "relay.log"
        relay = self._spawn([py, "-m", "agent.commands.relay", "--listen", f"127.0.0.1:{relay_port}"], relay_log, env)
        await _wait(lambda: _listening(relay_port), "rejnet relay", relay, relay_log)
        self.proxy = ShapingProxy(("127.0.0.1", relay_port), link, link)
        await self.proxy.start()
        assert self.proxy.address is not None

        control = run_dir / "control.sock"
        if screen:
            source = ["--screen", screen]
        elif display == "gnome":  # benchmarks.linkbench.gnome: this process joined the GNOME session
            source = ["--backend", "gnome"]
        else:
            source = ["--display", str(display)]
        agent_log = workdir / "agent.log"
        entry = "agent"
        if self.stages or self.profile_file:
            from benchmarks.linkbench.stages import ENV_FILE, ENV_PROFILE, ENV_SPEC

            entry, self.stages_file = "benchmarks.linkbench.stages", workdir / "stages.json"
            env = dict(env, **{ENV_SPEC: ",".join(self.stages), ENV_FILE: str(self.stages_file)})
            if self.profile_file:
                env[ENV_PROFILE] = str(self.profile_file)
        agent = self._spawn([py, "-m", entry, "--relay", "127.0.0.1:%d" % self.proxy.address[1], *source,
                             "--consent", "control", "--json", "--control", str(control),
                             "--consent-db", str(workdir / "consent.db")], agent_log, env)
        ready = await _wait(lambda: next((o for o in _json_lines(agent_log) if o.get("event") == "ready"), None),
                            "rejnet agent", agent, agent_log)
        self.server_pid = agent.pid
        password = await self._password(control, env)
        pw_file = run_dir / "password"
        fd = os.open(pw_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(password + "\n")
        viewer_log = workdir / "viewer.log"
        viewer = self._spawn([py, "-m", "agent.commands.viewer", str(ready["session"]), "--relay", f"127.0.0.1:{relay_port}",
                              "--password-file", str(pw_file), "--listen", "127.0.0.1:0", "--json"], viewer_log, env)
        listening = await _wait(
            lambda: next((o for o in _json_lines(viewer_log) if o.get("event") == "listening"), None),
            "rejnet viewer bridge", viewer, viewer_log)
        pw_file.unlink()
        self.helper_pids = [relay.pid, viewer.pid]
        self.address = (listening["host"], int(listening["port"]))

    async def _password(self, control: Path, env: dict) -> str:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent", "ctl", "--control", str(control), "--json", "credentials",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=str(ROOT))
        out, err = await asyncio.wait_for(proc.communicate(), START_TIMEOUT)
        if proc.returncode != 0:
            raise ServerError(f"rejnet agent ctl credentials failed: {err.decode(errors='replace').strip()[-300:]}")
        try:
            return str(json.loads(out.decode().splitlines()[0])["password"])
        except (ValueError, KeyError, IndexError):
            raise ServerError("rejnet agent ctl credentials gave no password") from None


SERVERS: dict[str, type[Server]] = {cls.name: cls for cls in (Rejnet, X11vnc, TigerVNC)}

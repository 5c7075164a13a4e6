"""Start (and stop) a private headless GNOME session: the Wayland twin of the Xvfb starter.

A session bus of its own (``dbus-run-session``), PipeWire and WirePlumber on
it, and ``mutter --headless --wayland --no-x11 --virtual-monitor WxH``, which
then offers org.gnome.Mutter.ScreenCast and org.gnome.Mutter.RemoteDesktop
on that bus. Nothing touches the user's own session: the runtime directory
(Wayland and PipeWire sockets) is a fresh private one, and ``env`` is what a
client of this session needs (tests, the link benchmark and
``rejnet-agent demo --wayland`` use it).

It lives beside the capture backend it serves rather than in
``agent.workloads`` (where ``xvfb.py`` is) only because that folder has
another owner; nothing in the agent's core imports it.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

from agent.errors import CaptureError

READY_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0
TOOLS = {"dbus-run-session": "dbus", "pipewire": "pipewire", "wireplumber": "wireplumber", "mutter": "mutter"}
APT_HINT = "apt-get install dbus pipewire wireplumber mutter gstreamer1.0-pipewire"
WAYLAND_NAME = "wayland-rejnet"


def missing_tools() -> list[str]:
    """The programs a headless GNOME session needs that are not on PATH."""
    return [tool for tool in TOOLS if shutil.which(tool) is None]


@dataclass
class HeadlessGnome:
    """One headless GNOME session; ``start()`` it, read ``env``, ``stop()`` it."""

    width: int = 1024
    height: int = 768
    runtime_dir: str = ""
    env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    _bus_child: int | None = None

    @property
    def mutter_pid(self) -> int | None:
        proc = self.procs.get("mutter")
        return proc.pid if proc is not None else None

    def start(self) -> "HeadlessGnome":
        """Start the bus, PipeWire, WirePlumber and mutter; CaptureError (one line) if any will not come up."""
        missing = missing_tools()
        if missing:
            raise CaptureError(f"a headless GNOME session needs {', '.join(missing)} ({APT_HINT})")
        self.runtime_dir = tempfile.mkdtemp(prefix="rejnet-gnome-")
        os.chmod(self.runtime_dir, 0o700)
        try:
            self._start_bus()
            self.env = self._client_env()
            log = lambda name: open(os.path.join(self.runtime_dir, f"{name}.log"), "wb")  # noqa: E731
            self._spawn("pipewire", ["pipewire"], log)
            self._wait(lambda: os.path.exists(os.path.join(self.runtime_dir, "pipewire-0")), "pipewire")
            self._spawn("wireplumber", ["wireplumber"], log)
            self._spawn("mutter", ["mutter", "--headless", "--wayland", "--no-x11", "--wayland-display",
                                   WAYLAND_NAME, "--virtual-monitor", f"{self.width}x{self.height}"], log)
            self._wait(self._mutter_ready, "mutter's screen-cast API")
        except BaseException:
            self.stop()
            raise
        return self

    def _start_bus(self) -> None:
        # The child prints the bus address and its own pid, then becomes 'cat' on our pipe: closing the
        # pipe (or killing that pid) ends the child, and dbus-run-session then stops the bus daemon.
        proc = subprocess.Popen(["dbus-run-session", "--", "sh", "-c",
                                 'echo "$$ $DBUS_SESSION_BUS_ADDRESS"; exec cat >/dev/null'],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                env=self._base_env())
        self.procs["dbus"] = proc
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().strip()
        pid, _, address = line.partition(" ")
        if not address:
            raise CaptureError(f"dbus-run-session did not start a session bus (exit {proc.poll()})")
        self._bus_child = int(pid)
        self.address = address

    def _base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "DBUS_SESSION_BUS_ADDRESS",
                                                                 "PIPEWIRE_REMOTE", "XAUTHORITY")}
        env.update(XDG_RUNTIME_DIR=self.runtime_dir, XDG_SESSION_TYPE="wayland", XDG_CURRENT_DESKTOP="GNOME")
        return env

    def _client_env(self) -> dict[str, str]:
        env = self._base_env()
        env.update(DBUS_SESSION_BUS_ADDRESS=self.address, WAYLAND_DISPLAY=WAYLAND_NAME, GDK_BACKEND="wayland")
        return env

    def _spawn(self, name: str, argv: list[str], log) -> None:
        with log(name) as out:
            self.procs[name] = subprocess.Popen(argv, env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                                                stderr=subprocess.STDOUT)

    def _mutter_ready(self) -> bool:
        if not os.path.exists(os.path.join(self.runtime_dir, WAYLAND_NAME)):
            return False
        probe = subprocess.run(["dbus-send", "--session", "--print-reply", "--dest=org.freedesktop.DBus",
                                "/org/freedesktop/DBus", "org.freedesktop.DBus.NameHasOwner",
                                "string:org.gnome.Mutter.RemoteDesktop"],
                               env=self.env, capture_output=True, text=True, timeout=10)
        return "boolean true" in probe.stdout

    def _wait(self, ready, what: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise CaptureError(f"{name} exited ({proc.returncode}) while starting a headless GNOME "
                                       f"session{self._tail(name)}")
            if ready():
                return
            time.sleep(0.05)
        raise CaptureError(f"{what} did not come up within {READY_TIMEOUT:g} s{self._tail('mutter')}")

    def _tail(self, name: str) -> str:
        try:
            with open(os.path.join(self.runtime_dir, f"{name}.log"), "rb") as fh:
                text = fh.read().decode(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return f": {text[-1]}" if text else ""

    def stop(self) -> None:
        """Stop mutter, WirePlumber, PipeWire and the bus (in that order); remove the runtime directory."""
        for name in ("mutter", "wireplumber", "pipewire"):
            proc = self.procs.pop(name, None)
            if proc is not None:
                _stop(proc)
        bus = self.procs.pop("dbus", None)
        if bus is not None:
            if bus.stdin is not None:
                bus.stdin.close()
            try:
                bus.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                if self._bus_child:
                    try:
                        os.kill(self._bus_child, 15)
                    except ProcessLookupError:
                        pass
                _stop(bus)
            if bus.stdout is not None:
                bus.stdout.close()
        if self.runtime_dir:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)

    def __enter__(self) -> "HeadlessGnome":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

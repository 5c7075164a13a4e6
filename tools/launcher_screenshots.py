"""Screenshots of rejnet-help for the README, taken on a private Xvfb display with the real chain.

    python tools/launcher_screenshots.py [--out docs] [--lang pl en]

For each language: start Xvfb, rejnet-relay and rejnet-help on it, and walk
the customer's path the way a person does (keys through xdotool, Alt+letter
mnemonics): the terms before consent, the credentials while waiting, the
in-session bar once a technician (rejnet-viewer) is connected, and the page
after "Zakończ sesję". Each state is saved as a PNG of the window (the bar
with a margin of the desktop around it). Needs xvfb, xdotool and x11-utils
(.ci/run installs them). Nothing leaves loopback.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.capture import MssSource  # noqa: E402
from agent.launcher.catalogue import Catalogue  # noqa: E402
from agent.workloads.xvfb import start_xvfb, stop_process  # noqa: E402

LOCALE = {"pl": "pl_PL.UTF-8", "en": "en_US.UTF-8"}
DESKTOP = "#3465a4"
SCREEN = (1280, 800)
BAR_MARGIN = 24


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise SystemExit(f"screenshots: {what} within {timeout}s")


class Session:
    def __init__(self, lang: str, work: Path) -> None:
        self.lang = lang
        self.t = Catalogue(lang)
        self.xvfb, self.display = start_xvfb(*SCREEN)
        runtime = tempfile.mkdtemp(prefix="rh")
        os.chmod(runtime, 0o700)
        (work / "home").mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ, DISPLAY=self.display, HOME=str(work / "home"), XDG_RUNTIME_DIR=runtime,
                        XDG_CONFIG_HOME=str(work / "config"), LANG=LOCALE[lang], LC_ALL="", LC_MESSAGES="",
                        PYTHONUNBUFFERED="1")
        self.env.pop("REJNET_PASSWORD", None)
        self.procs: list[subprocess.Popen] = []
        self.work = work
        self.x("xsetroot", "-solid", DESKTOP)
        self.relay_port = _free_port()
        self.spawn("agent.commands.relay", "--listen", f"127.0.0.1:{self.relay_port}")
        _wait(self._relay_up, 15, "the relay did not listen")
        self.launcher = self.spawn("agent.launcher", "--relay", f"127.0.0.1:{self.relay_port}")

    def _relay_up(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.relay_port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def spawn(self, *args: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", *args], env=self.env, cwd=ROOT, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        return proc

    def x(self, *args: str) -> str:
        return subprocess.run(list(args), capture_output=True, text=True, timeout=20, env=self.env).stdout

    def window(self, page: str) -> str:
        title = self.t.text(f"title.{page}")

        def find() -> str | None:
            for wid in self.x("xdotool", "search", "--name", ".").split():
                if self.x("xdotool", "getwindowname", wid).rstrip("\n") == title:
                    return wid
            return None
        return _wait(find, 30, f"no window titled {title!r}")

    def press(self, window: str, key: str) -> None:
        self.x("xdotool", "windowfocus", "--sync", window)
        self.x("xdotool", "key", "--clearmodifiers", f"alt+{self.t.mnemonic(key)}")

    def ctl(self, *args: str) -> dict:
        out = subprocess.run([sys.executable, "-m", "agent", "ctl", "--json", *args], capture_output=True,
                             text=True, timeout=30, env=self.env, cwd=ROOT).stdout
        return json.loads(out.splitlines()[0]) if out.strip() else {}

    def shoot(self, window: str, path: Path, margin: int = 0) -> None:
        from PIL import Image

        time.sleep(0.8)  # let the page finish drawing
        geometry = dict(line.split("=", 1) for line in self.x("xdotool", "getwindowgeometry", "--shell",
                                                                window).split())
        x, y, w, h = (int(geometry[k]) for k in ("X", "Y", "WIDTH", "HEIGHT"))
        left, top = max(0, x - margin), max(0, y - margin)
        right, bottom = min(SCREEN[0], x + w + margin), min(SCREEN[1], y + h + margin)
        with MssSource(self.display) as source:
            frame = source.grab()
        image = Image.fromarray(frame[top:bottom, left:right, 2::-1].copy())
        image.save(path, optimize=True)
        print(f"wrote {path} ({right - left}x{bottom - top})")

    def close(self, window: str | None) -> None:
        if window is not None:
            from Xlib import X, display, protocol

            d = display.Display(self.display)
            target = d.create_resource_object("window", int(window))
            event = protocol.event.ClientMessage(window=target, client_type=d.intern_atom("WM_PROTOCOLS"),
                                                 data=(32, [d.intern_atom("WM_DELETE_WINDOW"), X.CurrentTime,
                                                            0, 0, 0]))
            target.send_event(event, event_mask=0)
            d.close()
            try:
                self.launcher.wait(20)
            except subprocess.TimeoutExpired:
                pass
        for proc in reversed(self.procs):
            stop_process(proc)
        stop_process(self.xvfb)


def take(lang: str, out: Path) -> None:
    prefix = "launcher" if lang == "pl" else f"launcher-{lang}"
    with tempfile.TemporaryDirectory(prefix="rejnet-shots-") as work:
        session = Session(lang, Path(work))
        window = None
        try:
            window = session.window("terms")
            session.shoot(window, out / f"{prefix}-1-terms.png")
            session.press(window, "scope.control.choice")
            session.press(window, "action.consent")
            window = session.window("waiting")
            creds = _wait(lambda: (c := session.ctl("credentials")).get("ok") and c, 30, "no credentials")
            session.shoot(window, out / f"{prefix}-2-waiting.png")
            password_file = Path(work) / "pw"
            password_file.write_text(creds["password"] + "\n")
            session.spawn("agent.commands.viewer", creds["session"], "--relay", f"127.0.0.1:{session.relay_port}",
                          "--password-file", str(password_file), "--listen", f"127.0.0.1:{_free_port()}")
            window = session.window("session")
            session.shoot(window, out / f"{prefix}-3-session.png", margin=BAR_MARGIN)
            session.press(window, "action.end_session")
            window = session.window("ended")
            session.shoot(window, out / f"{prefix}-4-ended.png")
        finally:
            session.close(window)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs"), help="folder for the PNGs (default: docs/)")
    parser.add_argument("--lang", nargs="+", default=["pl", "en"], choices=sorted(LOCALE))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for lang in args.lang:
        take(lang, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

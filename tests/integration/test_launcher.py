"""rejnet-help on Xvfb, driven like a person drives it: keys through XTest, the clipboard, the window title.

Nothing here reaches into widgets. The window is found by its title (each
page has its own), pressed with xdotool (Alt+letter mnemonics, as a
keyboard user would), read through its copy buttons into the X clipboard
(xclip), and closed with WM_DELETE_WINDOW as a window manager closes it. The
rest of the chain is real: rejnet-relay, the agent the window starts,
rejnet-viewer, vncdotool, all on loopback. Every test runs in Polish and in
English (the English window chosen by LANG=en_US.UTF-8).
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from agent.launcher.catalogue import Catalogue
from tests.support.processes import Lines, free_port, spawn, stop
from tests.support.tools import need, which

pytestmark = [pytest.mark.xvfb, pytest.mark.slow]

LANGS = ["pl", "en"]
LOCALE = {"pl": "pl_PL.UTF-8", "en": "en_US.UTF-8"}
BAR_COLOUR = (0x1F, 0x2A, 0x37)  # theme.COLOURS["bar"]


class Desk:
    """One customer's desktop: an Xvfb display, a relay, the launcher on it, and the technician's tools."""

    def __init__(self, display: str, tmp_path: Path, lang: str) -> None:
        self.display = display
        self.tmp_path = tmp_path
        self.lang = lang
        self.t = Catalogue(lang)
        self.procs: list[subprocess.Popen] = []
        # a short private runtime dir: the control socket path must fit in 107 bytes
        self.runtime = tempfile.mkdtemp(prefix="rh")
        os.chmod(self.runtime, 0o700)
        self.env = {"DISPLAY": display, "HOME": str(tmp_path / "home"), "XDG_RUNTIME_DIR": self.runtime,
                    "XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_DATA_HOME": str(tmp_path / "data"),
                    "LANG": LOCALE[lang], "LC_ALL": "",
                    "LC_MESSAGES": ""}
        (tmp_path / "home").mkdir(exist_ok=True)
        self.relay_port = free_port()
        self.relay: subprocess.Popen | None = None
        self.launcher: subprocess.Popen | None = None
        self.launcher_out: Lines | None = None

    # --- processes ---------------------------------------------------------------------

    def start_relay(self) -> None:
        self.relay = spawn(["agent.commands.relay", "--listen", f"127.0.0.1:{self.relay_port}"])
        self.procs.append(self.relay)
        Lines(self.relay)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.relay_port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("the relay does not listen")

    def start_launcher(self, *extra: str) -> None:
        self.launcher = spawn(["agent.launcher", "--relay", f"127.0.0.1:{self.relay_port}", *extra], env=self.env)
        self.procs.append(self.launcher)
        self.launcher_out = Lines(self.launcher)

    def ctl(self, *args: str, check: bool = True) -> dict:
        result = subprocess.run([sys.executable, "-m", "agent", "ctl", "--json", *args], capture_output=True,
                                text=True, timeout=30, env=dict(os.environ, **self.env))
        if check:
            assert result.returncode == 0, result.stderr
        return json.loads(result.stdout.splitlines()[0]) if result.stdout.strip() else {}

    def viewer(self, password: str, *, session: str | None = None) -> tuple[subprocess.Popen, Lines, int]:
        session = session or self.ctl("credentials")["session"]
        pw_file = self.tmp_path / f"pw-{len(self.procs)}"
        pw_file.write_text(password + "\n")
        port = free_port()
        proc = spawn(["agent.commands.viewer", session, "--relay", f"127.0.0.1:{self.relay_port}",
                      "--password-file", str(pw_file), "--listen", f"127.0.0.1:{port}", "--json"])
        self.procs.append(proc)
        return proc, Lines(proc), port

    def agent_pids(self) -> list[int]:
        """The launcher's child processes (the agent it started)."""
        assert self.launcher is not None
        pids = []
        for task in Path(f"/proc/{self.launcher.pid}/task").glob("*"):
            try:
                pids += [int(p) for p in (task / "children").read_text().split()]
            except OSError:
                pass
        return pids

    def close(self) -> None:
        for proc in reversed(self.procs):
            stop(proc)
        try:
            os.rmdir(os.path.join(self.runtime, "rejnet-agent"))
        except OSError:
            pass

    # --- the window, from outside ---------------------------------------------------------

    def x(self, *args: str, timeout: float = 10) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                              env=dict(os.environ, DISPLAY=self.display))

    def titles(self) -> dict[str, str]:
        """Window id -> title, for every named window on the display."""
        found = {}
        for wid in self.x("xdotool", "search", "--name", ".").stdout.split():
            found[wid] = self.x("xdotool", "getwindowname", wid).stdout.rstrip("\n")
        return found

    def window(self, page: str, timeout: float = 30) -> str:
        """The window id once its title is the one of ``page`` (terms, waiting, session, ended, failed)."""
        title = self.t.text(f"title.{page}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [wid for wid, name in self.titles().items() if name == title]
            if found:
                return found[0]
            if self.launcher is not None and self.launcher.poll() is not None:
                raise AssertionError(f"the launcher exited {self.launcher.returncode}: "
                                     f"{''.join(self.launcher_out.stderr)[-2000:]}")
            time.sleep(0.1)
        raise AssertionError(f"no window titled {title!r} within {timeout}s; windows: {self.titles()}")

    def page(self) -> tuple[str, str] | None:
        """(page, window id) of the launcher's window now, from its title."""
        pages = {self.t.text(f"title.{page}"): page for page in ("terms", "waiting", "session", "ended", "failed")}
        for wid, name in self.titles().items():
            if name in pages:
                return pages[name], wid
        return None

    def press(self, window: str, key: str) -> None:
        """Alt+<the mnemonic of catalogue ``key``> (or a plain xdotool key name), with the window focused."""
        letter = self.t.mnemonic(key) if "." in key else None
        combo = f"alt+{letter}" if letter else key
        assert self.x("xdotool", "windowfocus", "--sync", window).returncode == 0
        assert self.x("xdotool", "key", "--clearmodifiers", combo).returncode == 0

    def clipboard(self) -> str:
        result = self.x("xclip", "-selection", "clipboard", "-o")
        return result.stdout if result.returncode == 0 else ""

    def copied(self, window: str, key: str, timeout: float = 5) -> str:
        """Press a copy button and read what it put on the clipboard."""
        self.press(window, key)
        return _wait(self.clipboard, timeout, f"{key} put nothing on the clipboard")

    def consent(self, scope: str = "view") -> str:
        """On the terms page: choose the scope, press the consent button; returns the credentials window."""
        window = self.window("terms")
        self.press(window, f"scope.{scope}.choice")
        self.press(window, "action.consent")
        return self.window("waiting")

    def screen(self) -> np.ndarray:
        from agent.capture import MssSource

        with MssSource(self.display) as src:
            return np.array(src.grab()[:, :, 2::-1])

    def mouse(self) -> tuple[int, int]:
        out = self.x("xdotool", "getmouselocation").stdout
        fields = dict(part.split(":") for part in out.split() if ":" in part)
        return int(fields["x"]), int(fields["y"])

    def close_window(self, window: str) -> None:
        """WM_DELETE_WINDOW, as a window manager sends it when the customer clicks the close box."""
        from Xlib import X, display, protocol

        d = display.Display(self.display)
        try:
            target = d.create_resource_object("window", int(window))
            protocols, delete = d.intern_atom("WM_PROTOCOLS"), d.intern_atom("WM_DELETE_WINDOW")
            event = protocol.event.ClientMessage(window=target, client_type=protocols,
                                                 data=(32, [delete, X.CurrentTime, 0, 0, 0]))
            target.send_event(event, event_mask=0)
            d.sync()  # a round trip: flushed and closed at once, the request was sometimes never carried out
        finally:
            d.close()


def _wait(predicate, timeout: float, what: str, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"{what} within {timeout}s")


class Technician:
    """A minimal RFB 3.8 client on the bridge's port that stays connected: pointer events only.

    vncdo disconnects after each command, and a disconnect ends the technician's visit (the
    window goes back to the credentials); the switch must be pressed while the visit lasts.
    """

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        assert self._read(12) == b"RFB 003.008\n"
        self.sock.sendall(b"RFB 003.008\n")
        count = self._read(1)[0]
        assert 1 in self._read(count), "security type None offered inside the channel"
        self.sock.sendall(b"\x01")
        assert self._read(4) == b"\x00\x00\x00\x00"
        self.sock.sendall(b"\x01")  # ClientInit, shared
        header = self._read(24)
        self._read(int.from_bytes(header[20:24], "big"))  # the desktop name

    def _read(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            assert chunk, "the server closed the RFB connection"
            data += chunk
        return data

    def move(self, x: int, y: int) -> None:
        self.sock.sendall(bytes([5, 0]) + x.to_bytes(2, "big") + y.to_bytes(2, "big"))

    def close(self) -> None:
        self.sock.close()


def _vncdo(port: int, *cmd: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([which("vncdo") or "vncdo", "-s", f"127.0.0.1::{port}", *cmd], capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(params=LANGS)
def desk(request, xvfb_factory, tmp_path):
    need("xdotool", "xclip", "vncdo", "xsetroot")
    display = xvfb_factory(1024, 768)
    subprocess.run(["xsetroot", "-solid", "#5c3566"], env=dict(os.environ, DISPLAY=display), check=False)
    desk = Desk(display, tmp_path, request.param)
    try:
        yield desk
    finally:
        desk.close()


@pytest.fixture
def started(desk):
    desk.start_relay()
    desk.start_launcher()
    return desk


def _active(desk: Desk, scope: str) -> tuple[subprocess.Popen, Lines, int, str]:
    """Consent with ``scope``, connect the technician, wait for the in-session bar."""
    desk.consent(scope)
    password = desk.ctl("credentials")["password"]
    viewer, out, port = desk.viewer(password)
    out.wait_json(lambda o: o.get("event") == "listening", timeout=30)
    bar = desk.window("session")
    return viewer, out, port, bar


# --- the tests ----------------------------------------------------------------------------------

def test_credentials_on_screen_equal_ctl_credentials(started):
    desk = started
    window = desk.consent("view")
    expected = desk.ctl("credentials")
    shown_id = desk.copied(window, "action.copy_session_id")
    assert shown_id.replace(" ", "") == expected["session"]
    assert re.fullmatch(r"\d{3} \d{3} \d{3}", shown_id), f"the ID is grouped for reading out: {shown_id!r}"
    assert desk.copied(window, "action.copy_password") == expected["password"]
    status = desk.ctl("status")
    assert status["state"] == "waiting" and status["consent"] == "view"
    # the button recorded the consent to the packaged terms: version and digest of the text shown
    from agent.consent.terms import load_terms

    terms = load_terms()
    ledger = subprocess.run([sys.executable, "-m", "agent", "consent-log", "export"], capture_output=True,
                            text=True, timeout=30, env=dict(os.environ, **desk.env))
    assert ledger.returncode == 0, ledger.stderr
    rows = [json.loads(line) for line in ledger.stdout.splitlines() if line.strip()]
    assert any(terms.version in json.dumps(row) and terms.sha256 in json.dumps(row) and "view" in json.dumps(row)
               for row in rows), rows


def test_no_rfb_byte_before_the_consent_button(started):
    desk = started
    desk.window("terms")
    credentials = _wait(lambda: (c := desk.ctl("credentials", check=False)).get("ok") and c, 30, "no credentials")
    viewer, out, port = desk.viewer(credentials["password"], session=credentials["session"])
    out.wait_json(lambda o: o.get("event") == "listening", timeout=30)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as technician:
        technician.settimeout(2.0)
        with pytest.raises(socket.timeout):
            data = technician.recv(64)
            pytest.fail(f"RFB bytes before consent: {data!r}")
        assert desk.ctl("status")["state"] == "consent_pending"
        desk.press(desk.window("terms"), "action.consent")
        technician.settimeout(15.0)
        assert technician.recv(12) == b"RFB 003.008\n", "consent given: the screen may flow now"


def test_the_technician_sees_the_screen(started):
    from PIL import Image

    desk = started
    viewer, out, port, bar = _active(desk, "control")
    time.sleep(0.5)  # the bar has drawn itself
    expected = desk.screen()  # now: when vncdo disconnects the technician is gone and the window changes
    png = desk.tmp_path / "captured.png"
    result = _vncdo(port, "capture", str(png))
    assert result.returncode == 0, result.stderr
    captured = np.array(Image.open(png).convert("RGB"))
    assert captured.shape == expected.shape
    differ = np.count_nonzero((captured != expected).any(axis=2))
    assert differ <= captured.shape[0] * captured.shape[1] // 1000, f"{differ} pixels differ"
    top = captured[:60]
    assert (np.abs(top.astype(int) - BAR_COLOUR).sum(axis=2) < 6).sum() > 2000, "the bar is in the picture"


def test_the_view_only_switch_blocks_input(started):
    desk = started
    viewer, out, port, bar = _active(desk, "control")
    desk.x("xdotool", "mousemove", "500", "500")
    technician = Technician(port)
    try:
        technician.move(321, 234)
        _wait(lambda: desk.mouse() == (321, 234), 5, "the technician's pointer did not land in scope control")
        desk.press(bar, "session.view_only_switch")
        _wait(lambda: desk.ctl("status")["scope"] == "view", 10, "the switch did not set scope view")
        technician.move(50, 60)
        time.sleep(1.0)
        assert desk.mouse() == (321, 234), "a pointer move reached the desktop after the switch to view only"
        desk.press(bar, "session.view_only_switch")
        _wait(lambda: desk.ctl("status")["scope"] == "control", 10, "the switch did not give control back")
        technician.move(70, 80)
        _wait(lambda: desk.mouse() == (70, 80), 5, "control did not come back")
    finally:
        technician.close()


def test_end_session_ends_the_viewer_with_4_within_a_second(started):
    desk = started
    viewer, out, port, bar = _active(desk, "view")
    agents = desk.agent_pids()
    desk.press(bar, "action.end_session")
    pressed = time.monotonic()
    code = viewer.wait(10)
    took = time.monotonic() - pressed
    assert code == 4, "".join(out.stderr)
    assert took < 1.0, f"the viewer took {took:.2f}s to end"
    desk.window("ended")
    _wait(lambda: not set(agents) & set(desk.agent_pids()), 10, "the agent did not end with the session")
    assert desk.launcher.poll() is None, "the window stays to say what was kept"


def test_closing_the_window_ends_the_agent(started):
    desk = started
    window = desk.consent("view")
    agents = _wait(desk.agent_pids, 10, "no agent process")
    control = desk.ctl("status")  # the agent answers
    assert control["state"] == "waiting"
    desk.close_window(window)
    assert desk.launcher.wait(20) == 0
    for pid in agents:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    result = subprocess.run([sys.executable, "-m", "agent", "ctl", "status"], capture_output=True, text=True,
                            timeout=30, env=dict(os.environ, **desk.env))
    assert result.returncode != 0, "an agent still answers after the window closed"


def test_a_rotated_password_appears_on_screen(started):
    desk = started
    window = desk.consent("view")
    first = desk.ctl("credentials")
    assert desk.copied(window, "action.copy_password") == first["password"]
    wrong = "zzzzzz" if first["password"] != "zzzzzz" else "yyyyyy"
    for _ in range(3):
        viewer, out, _port = desk.viewer(wrong, session=first["session"])
        assert viewer.wait(30) == 3, "".join(out.stderr)
    rotated = _wait(lambda: (c := desk.ctl("credentials"))["password"] != first["password"] and c, 15,
                    "the password was not rotated")
    shown = _wait(lambda: (t := desk.copied(window, "action.copy_password")) != first["password"] and t, 15,
                  "the window still shows the old password")
    assert shown == rotated["password"]


def test_the_bar_stays_above_other_windows(started):
    desk = started
    need("xterm")
    viewer, out, port, bar = _active(desk, "view")
    geometry = dict(line.split("=") for line in desk.x("xdotool", "getwindowgeometry", "--shell", bar).stdout.split())
    x, y = int(geometry["X"]), int(geometry["Y"])
    cover = subprocess.Popen(["xterm", "-geometry", "160x10+0+0", "-bg", "white"],
                             env=dict(os.environ, DISPLAY=desk.display), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    desk.procs.append(cover)
    try:
        time.sleep(0.5)

        def bar_visible() -> bool:
            pixel = desk.screen()[y + 5, x + 5]
            return bool(np.abs(pixel.astype(int) - BAR_COLOUR).sum() < 6)

        _wait(bar_visible, 5, "the bar stayed hidden under another window")
    finally:
        stop(cover)


def test_an_unreachable_relay_is_said_plainly_and_retry_works(desk):
    desk.start_launcher()  # the relay is not running yet
    window = desk.window("failed")
    desk.start_relay()
    desk.press(window, "action.retry")
    desk.window("terms")
    assert desk.consent("view")


def test_confirm_each_rejects_when_the_customer_does_not_answer(desk):
    desk.start_relay()
    desk.start_launcher("--confirm-each", "--confirm-timeout", "3")
    desk.consent("view")
    password = desk.ctl("credentials")["password"]
    viewer, out, port = desk.viewer(password)
    out.wait_json(lambda o: o.get("event") == "authenticated", timeout=30)
    asked = time.monotonic()
    assert viewer.wait(20) == 4, "".join(out.stderr)
    took = time.monotonic() - asked
    assert 2.0 < took < 10.0, f"rejected after {took:.1f}s, not after the launcher's 3 s"
    assert desk.ctl("status")["state"] == "waiting"

    # An agent may tie the password and the consent to one technician (DESIGN §4.2 point 5): the
    # window then asks for consent again, and the next technician needs the password shown now.
    page, window = _wait(lambda: (p := desk.page()) and p[0] in ("waiting", "terms") and p, 10, "no page")
    if page == "terms":
        desk.press(window, "action.consent")
        window = desk.window("waiting")
    password = desk.copied(window, "action.copy_password")
    assert password == desk.ctl("credentials")["password"]
    viewer, out, port = desk.viewer(password)
    out.wait_json(lambda o: o.get("event") == "authenticated", timeout=30)
    _wait(lambda: desk.ctl("status")["awaiting"] == ["accept"], 10, "no connection waits for the answer")
    desk.press(window, "action.allow")
    desk.window("session")
    assert desk.ctl("status")["state"] == "active"
    assert viewer.poll() is None


def test_an_agent_that_dies_is_said_plainly_and_retry_starts_a_new_one(started):
    desk = started
    desk.consent("view")
    agents = _wait(desk.agent_pids, 10, "no agent process")
    for pid in agents:
        os.kill(pid, signal.SIGKILL)
    window = desk.window("failed")
    desk.press(window, "action.retry")
    desk.window("terms")
    fresh = _wait(desk.agent_pids, 20, "no new agent")
    assert not set(fresh) & set(agents)
    assert desk.consent("view")


def test_keyboard_only_tab_and_enter(started):
    """No mouse and no mnemonics: Tab moves through the controls in reading order, Enter presses."""
    desk = started
    window = desk.window("terms")
    desk.x("xdotool", "windowfocus", "--sync", window)
    for key in ("Tab", "Tab", "Tab"):  # terms text -> view only -> view and control -> the consent button
        desk.x("xdotool", "key", key)
    desk.x("xdotool", "key", "Return")
    desk.window("waiting")
    assert desk.ctl("status")["consent"] == "view", "Tab moves the focus, it does not change the choice"


def test_ctrl_plus_enlarges_the_text(started):
    desk = started
    window = desk.consent("view")

    def size() -> tuple[int, int]:
        shell = dict(line.split("=") for line in desk.x("xdotool", "getwindowgeometry", "--shell",
                                                          window).stdout.split())
        return int(shell["WIDTH"]), int(shell["HEIGHT"])

    before = size()
    desk.x("xdotool", "windowfocus", "--sync", window)
    for _ in range(3):
        desk.x("xdotool", "key", "ctrl+plus")
    after = _wait(lambda: (s := size())[0] > before[0] * 1.15 and s, 10, f"the window did not grow from {before}")
    desk.x("xdotool", "key", "ctrl+0")
    _wait(lambda: size() == before, 10, f"Ctrl+0 did not bring back {before} from {after}")

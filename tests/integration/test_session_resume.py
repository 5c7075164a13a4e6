"""Resume after a cut path, with the real commands on Xvfb (issue 10, the last "must show" items).

A cutting proxy sits between rejnet-agent and rejnet-relay: it kills every connection on demand (RST, no
authenticated CLOSE: a network drop) and refuses new ones until told to accept again. Through it:

- a cut mid-session resumes on its own: the local VNC client attached through the bridge, or a new one on the
  same bridge port, sees the exact screen (pixel for pixel against a grab of the display, with the screen
  changed while the path was down) within 10 s of the path coming back; again after 10 s of silence. The same
  session: no new password, no new consent row, the scope unchanged.
- a key held through the chain is released on the customer's display while the path is cut.
- a relay restart on the same port: the new relay adopts the agent's ID, and the screen is exact again within
  10 s of it listening.

Every wait is bounded; everything listens on loopback. ``CuttingProxy`` and ``ResumeChain`` are also the
resume-latency benchmark's (benchmarks/resume_latency.py).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from tests.integration.test_e2e import _paint, _vncdo
from tests.support.processes import Lines, free_port, spawn, stop
from tests.support.tools import need

pytestmark = [pytest.mark.xvfb, pytest.mark.slow]

BACK_WITHIN = 10.0     # the issue: the exact screen within 10 s of the path coming back
SHIFT_L = 0xFFE1       # held through the chain: a modifier, so nothing is typed into the xterm
CONTROL_L = 0xFFE3     # pressed during a cut: must never reach the display (the bridge drops it)
COLOURS = ("#4e9a06", "#a40000", "#5c3566", "#c4a000", "#204a87")


# ---------------------------------------------------------------------------------------------- the proxy

class CuttingProxy:
    """A TCP forwarder on 127.0.0.1 that can drop every connection at once and refuse new ones for a while.

    ``cut()`` closes the listening socket (new connections are refused: ECONNREFUSED) and resets every
    forwarded connection on both sides (SO_LINGER 0: an RST, as a network drop looks to the ends, with no
    authenticated CLOSE). ``restore()`` listens again on the same port and returns the moment it did.
    """

    def __init__(self, target: tuple[str, int], port: int = 0) -> None:
        self.target = target
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._silent: set[socket.socket] = set()  # destinations whose bytes are dropped (a dead NAT mapping)
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Event()
        self._state = threading.Condition()
        self._listening = False
        self._closed = False
        self.accepted = 0
        self.cuts = 0
        self.port = self._bind(port).getsockname()[1]  # bound once here so the port is known before the thread
        self._accepting.set()
        self._thread = threading.Thread(target=self._serve, name="cutting-proxy", daemon=True)
        self._thread.start()
        self._wait_listening(True)

    def _bind(self, port: int) -> socket.socket:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(64)
        listener.settimeout(0.05)
        self._first = listener
        return listener

    def _serve(self) -> None:
        listener: socket.socket | None = self._first
        while not self._closed:
            if not self._accepting.is_set():
                if listener is not None:
                    listener.close()  # pending connections in the backlog are reset too
                    listener = None
                    self._set_listening(False)
                self._accepting.wait(0.05)
                continue
            if listener is None:
                try:
                    listener = self._bind(self.port)
                except OSError:
                    time.sleep(0.02)
                    continue
            self._set_listening(True)
            try:
                client, _ = listener.accept()
            except (socket.timeout, OSError):
                continue
            if not self._accepting.is_set():
                _reset(client)
                continue
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:  # the relay is down (a restart): the agent sees a dropped connection and retries
                _reset(client)
                continue
            client.settimeout(None)
            server.settimeout(None)
            with self._lock:
                self.accepted += 1
                self._pairs.append((client, server))
                for src, dst in ((client, server), (server, client)):
                    thread = threading.Thread(target=self._pipe, args=(src, dst), daemon=True)
                    thread.start()
                    self._threads.append(thread)
        if listener is not None:
            listener.close()
        self._set_listening(False)

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if dst not in self._silent:
                    dst.sendall(data)
        except OSError:
            return
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)  # an orderly half-close is passed on; a cut never gets here with data

    def _set_listening(self, value: bool) -> None:
        with self._state:
            self._listening = value
            self._state.notify_all()

    def _wait_listening(self, value: bool, timeout: float = 5.0) -> None:
        with self._state:
            if not self._state.wait_for(lambda: self._listening is value, timeout):
                raise AssertionError(f"the proxy did not {'listen' if value else 'stop listening'} in {timeout} s")

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._pairs)

    def kill_all(self) -> int:
        """Reset every forwarded connection on both sides; the number of connections killed."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
            threads, self._threads = self._threads, []
        for pair in pairs:
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RD)  # wakes the pipe threads without sending anything
        for pair in pairs:
            for sock in pair:
                sock.close()  # linger 0: an RST to each end
        for thread in threads:
            thread.join(2)
        return len(pairs)

    def silence(self) -> int:
        """Every live connection goes silent both ways, with no reset (as when a NAT forgets the mapping);
        new connections still work. Returns how many connections went silent."""
        with self._lock:
            for pair in self._pairs:
                self._silent.update(pair)
            return len(self._pairs)

    def cut(self) -> int:
        """Refuse new connections, then kill every live one; returns how many were killed."""
        self._accepting.clear()
        self._wait_listening(False)
        self.cuts += 1
        return self.kill_all()

    def restore(self) -> float:
        """Accept again on the same port; returns time.monotonic() once the port listens."""
        self._accepting.set()
        self._wait_listening(True)
        return time.monotonic()

    def close(self) -> None:
        self._closed = True
        self._accepting.set()
        self._thread.join(5)
        self.kill_all()


def _reset(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


# ---------------------------------------------------------------------------------------------- the chain

class ResumeChain:
    """rejnet-relay on a port that survives its restart, rejnet-agent reaching it through a CuttingProxy,
    and rejnet-viewer (started by ``viewer``) reaching the relay directly."""

    def __init__(self, tmp_path: Path, display: str, *, consent: str = "control", resume_timeout: float = 60.0,
                 agent_args: tuple[str, ...] = ()) -> None:
        self.tmp_path = tmp_path
        self.display = display
        self.procs: list[subprocess.Popen] = []
        self.relay_port = free_port()
        self.relays: list[Lines] = []
        self.viewer_outs: list[Lines] = []
        self.proxy: CuttingProxy | None = None
        self.agent: subprocess.Popen | None = None
        self.agent_out: Lines | None = None
        try:
            self.start_relay()
            self.proxy = CuttingProxy(("127.0.0.1", self.relay_port))
            self.control = str(tmp_path / "control.sock")
            self.consent_db = str(tmp_path / "consent.db")
            args = ["agent", "--relay", f"127.0.0.1:{self.proxy.port}", "--display", display,
                    "--control", self.control, "--consent-db", self.consent_db, "--json", "-v",
                    "--consent", consent, "--resume-timeout", f"{resume_timeout:g}", *agent_args]
            self.agent = spawn(args, env={"XDG_RUNTIME_DIR": str(tmp_path)})
            self.procs.append(self.agent)
            self.agent_out = Lines(self.agent)
            ready = self.agent_out.wait_json(lambda o: o.get("event") == "ready", timeout=30)
            self.session = ready["session"]
            self.resume_timeout = resume_timeout
        except BaseException:
            self.close()
            raise

    # -- the relay ---------------------------------------------------------------------------------

    @property
    def relay(self) -> subprocess.Popen:
        return self.relays[-1].proc

    @property
    def relay_out(self) -> Lines:
        return self.relays[-1]

    def start_relay(self) -> float:
        """Start rejnet-relay on ``relay_port``; returns time.monotonic() once it accepts connections."""
        proc = spawn(["agent.commands.relay", "--listen", f"127.0.0.1:{self.relay_port}"])
        self.procs.append(proc)
        self.relays.append(Lines(proc))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"the relay exited {proc.returncode}: {''.join(self.relays[-1].stderr)}"
            try:
                socket.create_connection(("127.0.0.1", self.relay_port), timeout=0.5).close()
                return time.monotonic()
            except OSError:
                time.sleep(0.02)
        raise AssertionError(f"the relay did not listen on {self.relay_port} within 20 s")

    def stop_relay(self) -> None:
        """SIGTERM, as a deploy would: the relay tells its agents it is shutting down and exits."""
        stop(self.relay, timeout=10)
        assert self.relay.returncode is not None

    # -- the agent's control socket ----------------------------------------------------------------

    def ctl(self, *args: str) -> dict[str, Any]:
        result = subprocess.run([sys.executable, "-m", "agent", "ctl", "--control", self.control, "--json", *args],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout.splitlines()[0])

    def credentials(self) -> dict[str, Any]:
        return self.ctl("credentials")

    def status(self) -> dict[str, Any]:
        return self.ctl("status")

    def consent_rows(self) -> list[dict[str, Any]]:
        export = subprocess.run([sys.executable, "-m", "agent", "consent-log", "--consent-db", self.consent_db,
                                 "export"], capture_output=True, text=True, timeout=30)
        assert export.returncode == 0, export.stderr
        return [json.loads(line) for line in export.stdout.splitlines() if line.startswith("{")]

    def wait_state(self, wanted: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while (state := self.status()["state"]) != wanted:
            assert time.monotonic() < deadline, f"the agent is {state}, not {wanted}, after {timeout} s"
            time.sleep(0.05)

    # -- the technician ----------------------------------------------------------------------------

    def viewer(self, password: str, *extra: str) -> tuple[subprocess.Popen, Lines, int]:
        pw_file = self.tmp_path / f"pw-{len(self.procs)}"
        pw_file.write_text(password + "\n")
        port = free_port()
        proc = spawn(["agent.commands.viewer", self.session, "--relay", f"127.0.0.1:{self.relay_port}",
                      "--password-file", str(pw_file), "--listen", f"127.0.0.1:{port}", "--json", "-v",
                      "--resume-timeout", f"{self.resume_timeout:g}", *extra])
        self.procs.append(proc)
        self.viewer_outs.append(Lines(proc))
        return proc, self.viewer_outs[-1], port

    def explain(self, lines: int = 8) -> str:
        """The last events and log lines of every process: printed at teardown, so a failed test's report
        says where the chain stood (pytest shows a test's captured output only when it failed)."""
        parts = []
        named = [("agent", self.agent_out)] if self.agent_out is not None else []
        named += [(f"relay {i}", out) for i, out in enumerate(self.relays)]
        named += [(f"viewer {i}", out) for i, out in enumerate(self.viewer_outs)]
        for name, out in named:
            Events(out).mark()  # the events still queued
            events = [line[:160] for line in out.seen if '"event": "link"' not in line]  # link: once a second
            parts.append(f"-- {name} (exit {out.proc.poll()}): events {events[-lines:]}")
            parts += [f"   {l.rstrip()[:200]}" for l in out.stderr[-lines:]]
        if self.proxy is not None:
            parts.append(f"-- proxy: accepted {self.proxy.accepted}, live {self.proxy.connections}, "
                         f"cuts {self.proxy.cuts}")
        return "\n".join(parts)

    def close(self) -> None:
        for proc in reversed(self.procs):
            stop(proc)
        if self.proxy is not None:
            self.proxy.close()


# ---------------------------------------------------------------------------------------------- our client

class LoopThread:
    """An asyncio loop in a thread, so an RFB client of ours stays alive while the test blocks elsewhere."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.probes: list[Probe] = []  # closed with the loop, so a failed test leaves no socket to a later one
        self._thread = threading.Thread(target=self.loop.run_forever, name="rfb-loop", daemon=True)
        self._thread.start()

    def run(self, coro: Any, timeout: float) -> Any:
        future = asyncio.run_coroutine_threadsafe(asyncio.wait_for(coro, timeout), self.loop)
        return future.result(timeout + 5)

    def close(self) -> None:
        for probe in self.probes:
            probe.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


class Probe:
    """A local VNC client of ours on the bridge port (agent.viewer.rfb_client), driven synchronously."""

    def __init__(self, loops: LoopThread, port: int) -> None:
        from agent.viewer.rfb_client import open_rfb

        self.loops = loops
        self.client = loops.run(open_rfb("127.0.0.1", port, timeout=15), 20)
        loops.probes.append(self)

    def update(self, incremental: bool = True, timeout: float = 1.0) -> bool:
        """Ask for an update; True once one arrived and was decoded, False if none came within ``timeout``."""
        try:
            self.loops.run(self.client.update(incremental=incremental, timeout=timeout), timeout + 1)
        except TimeoutError:
            return False
        return True

    def key(self, keysym: int, down: bool) -> None:
        self.loops.run(self.client.key(keysym, down), 5)

    def bgr(self) -> np.ndarray:
        return np.array(self.client.framebuffer[:, :, :3])

    @property
    def updates_received(self) -> int:
        """Updates decoded so far, asked for or not (the bridge's standing request brings changes unasked)."""
        return self.client.updates_received

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.loops.run(self.client.close(), 5)


def grab_bgr(display: str) -> np.ndarray:
    from agent.capture import MssSource

    with MssSource(display) as src:
        return np.array(src.grab()[:, :, :3])


def differing(a: np.ndarray, b: np.ndarray) -> int:
    if a.shape != b.shape:
        return -1
    return int(np.count_nonzero((a != b).any(2)))


def screen_back(probe: Probe, display: str, deadline: float, *, full_first: bool = False,
                since: int | None = None) -> tuple[float, int]:
    """Request updates until one arrived and the client's framebuffer equals the display.

    An update counts whether it answered a request or came unasked (through the bridge a request stands:
    the update after a resume may arrive before the next request, which the bridge then keeps), from
    ``since`` (the probe's ``updates_received`` when the path came back; default: now).
    ``full_first``: the first request is a full one (a new client). Returns (time.monotonic() at that moment,
    updates received); fails at ``deadline``.
    """
    start = probe.updates_received if since is None else since
    incremental = not full_first
    while True:
        left = deadline - time.monotonic()
        updates = probe.updates_received - start
        if left <= 0:
            fb, screen = probe.bgr(), grab_bgr(display)
            raise AssertionError(f"the screen did not come back in time: {updates} updates after the path came "
                                 f"back, {differing(fb, screen)} pixels differ")
        if probe.update(incremental=incremental, timeout=min(1.0, max(0.05, left))):
            incremental = True
        updates = probe.updates_received - start
        if updates and differing(probe.bgr(), grab_bgr(display)) == 0:
            return time.monotonic(), updates


def paint_root(display: str, colour: str) -> None:
    subprocess.run(["xsetroot", "-solid", colour], env=dict(os.environ, DISPLAY=display), check=True, timeout=10)


def vncdo_capture(port: int, path: Path, timeout: float) -> np.ndarray:
    from PIL import Image

    result = _vncdo(port, "capture", str(path), timeout=timeout)
    assert result.returncode == 0, result.stderr
    rgb = np.array(Image.open(path).convert("RGB"))
    return rgb[:, :, ::-1]  # as BGR, like grab_bgr


class Events:
    """A process's JSON lines, searched from a mark, so events can be awaited in any order."""

    def __init__(self, lines: Lines) -> None:
        self.lines = lines

    def mark(self) -> int:
        self._drain()
        return len(self.lines.seen)

    def _drain(self) -> None:
        import queue

        while True:
            try:
                self.lines.seen.append(self.lines.queue.get_nowait())
            except queue.Empty:
                return

    def since(self, mark: int, predicate: Callable[[dict], bool]) -> list[dict]:
        self._drain()
        found = []
        for line in self.lines.seen[mark:]:
            with contextlib.suppress(ValueError):
                obj = json.loads(line)
                if isinstance(obj, dict) and predicate(obj):
                    found.append(obj)
        return found

    def wait(self, mark: int, predicate: Callable[[dict], bool], timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            found = self.since(mark, predicate)
            if found:
                return found[0]
            if time.monotonic() > deadline:
                raise AssertionError(f"no matching event within {timeout} s; saw {self.lines.seen[mark:][-10:]}; "
                                     f"stderr {''.join(self.lines.stderr)[-2000:]}")
            if self.lines.proc.poll() is not None and self.lines.queue.empty():
                raise AssertionError(f"process exited {self.lines.proc.returncode}; saw {self.lines.seen[-10:]}; "
                                     f"stderr {''.join(self.lines.stderr)[-2000:]}")
            time.sleep(0.02)


def is_event(name: str) -> Callable[[dict], bool]:
    return lambda o: o.get("event") == name


def held(display: str, keysym: int) -> bool:
    """Is a key with this keysym down on the X display right now (python-xlib query_keymap)?"""
    from Xlib import display as xdisplay

    conn = xdisplay.Display(display)
    try:
        keymap = conn.query_keymap()
        codes = {code for code, _ in conn.keysym_to_keycodes(keysym)}
        return any(keymap[code // 8] & (1 << (code % 8)) for code in codes)
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------- fixtures

@pytest.fixture
def resume_chain(tmp_path, xvfb):
    need("vncdo", "xterm", "xsetroot")
    painters = _paint(xvfb)
    loops = LoopThread()
    chains: list[ResumeChain] = []

    def make(**kwargs: Any) -> ResumeChain:
        chain = ResumeChain(tmp_path, xvfb, **kwargs)
        chains.append(chain)
        return chain

    yield make, loops
    for chain in chains:
        print(chain.explain())  # shown only if the test failed
        chain.close()
    loops.close()
    for proc in painters:
        stop(proc)
    paint_root(xvfb, "#204a87")


def _started(chain: ResumeChain) -> tuple[subprocess.Popen, Events, Events, int]:
    """A viewer authenticated, the session active in control, the password rotated on its use."""
    viewer, out, port = chain.viewer(chain.credentials()["password"])
    viewer_events, agent_events = Events(out), Events(chain.agent_out)
    viewer_events.wait(0, is_event("listening"), 30)
    agent_events.wait(0, lambda o: o.get("event") == "password_rotated" and o.get("reason") == "used", 30)
    chain.wait_state("active", 15)
    return viewer, viewer_events, agent_events, port


def _attached(resume_chain: Any) -> tuple[ResumeChain, subprocess.Popen, Events, Events, int, Probe]:
    """A started session with our probe client attached to the bridge."""
    make, loops = resume_chain
    chain = make()
    viewer, viewer_events, agent_events, port = _started(chain)
    return chain, viewer, viewer_events, agent_events, port, Probe(loops, port)


def _same_session(chain: ResumeChain, before: tuple[dict, int, dict], agent_events: Events, mark: int) -> None:
    credentials, rows, status = before
    assert chain.credentials() == credentials, "the password changed across the cut"
    assert not agent_events.since(mark, is_event("password_rotated"))
    assert len(chain.consent_rows()) == rows, "a new consent row was written for a resume"
    now = chain.status()
    assert now["state"] == "active" and now["scope"] == status["scope"] == "control", now


def _cut_and_wait(chain: ResumeChain, viewer_events: Events, agent_events: Events) -> int:
    """Kill every agent-relay connection; both ends must say ``reconnecting``. Returns the events mark."""
    mark_v, mark_a = viewer_events.mark(), agent_events.mark()
    assert chain.proxy is not None
    killed = chain.proxy.cut()
    assert killed >= 2, f"expected the registration and the data connection through the proxy, got {killed}"
    agent_events.wait(mark_a, is_event("reconnecting"), 10)
    viewer_events.wait(mark_v, is_event("reconnecting"), 10)
    assert chain.status()["state"] == "reconnecting"
    return mark_a


# ---------------------------------------------------------------------------------------------- tests

def test_a_cut_path_resumes_with_the_exact_screen_twice_and_the_session_unchanged(resume_chain, xvfb, tmp_path):
    make, loops = resume_chain
    chain = make()
    viewer, viewer_events, agent_events, port = _started(chain)
    probe = Probe(loops, port)
    assert probe.update(incremental=False, timeout=15)
    assert differing(probe.bgr(), grab_bgr(xvfb)) == 0
    before = (chain.credentials(), len(chain.consent_rows()), chain.status())
    assert before[1] >= 1 and before[2]["scope"] == "control"

    # 1. mid-session, our client attached: it sees the exact (changed) screen within 10 s of the path's return
    mark_v = viewer_events.mark()
    mark = _cut_and_wait(chain, viewer_events, agent_events)
    paint_root(xvfb, COLOURS[0])  # what the client can only learn from the resumed channel
    time.sleep(1.0)               # the path stays down a while (agent and viewer retry meanwhile)
    since = probe.updates_received
    back = chain.proxy.restore()
    exact, updates = screen_back(probe, xvfb, back + BACK_WITHIN, since=since)
    print(f"cut 1: our attached client exact {exact - back:.2f} s after the path came back ({updates} updates)")
    agent_events.wait(mark, is_event("resumed"), 5)
    viewer_events.wait(mark_v, is_event("resumed"), 5)
    assert viewer.poll() is None
    # a new local client on the same bridge port (takes over from ours): the same screen, no password
    assert differing(vncdo_capture(port, tmp_path / "after-cut-1.png", 30), grab_bgr(xvfb)) == 0
    _same_session(chain, before, agent_events, mark)
    probe.close()

    # 2. after 10 s of silence, cut again; a new client started the moment the path is back sees the exact screen
    time.sleep(10.0)
    mark_v = viewer_events.mark()
    mark = _cut_and_wait(chain, viewer_events, agent_events)
    paint_root(xvfb, COLOURS[1])
    time.sleep(1.0)
    back = chain.proxy.restore()
    fresh = Probe(loops, port)  # a new local client, connected the moment the path is back
    try:
        exact, updates = screen_back(fresh, xvfb, back + BACK_WITHIN, full_first=True)
    finally:
        fresh.close()
    print(f"cut 2: a new client had the exact screen {exact - back:.2f} s after the path came back "
          f"({updates} updates)")
    agent_events.wait(mark, is_event("resumed"), 5)
    viewer_events.wait(mark_v, is_event("resumed"), 5)
    assert differing(vncdo_capture(port, tmp_path / "after-cut-2.png", 30), grab_bgr(xvfb)) == 0
    _same_session(chain, before, agent_events, mark)
    # one pairing per path: the first, then one per resume; the viewer never asked for a password again
    assert chain.proxy.cuts == 2 and viewer.poll() is None
    # the agent's connections: a registration and a data connection per path, so each resume held at once
    assert chain.proxy.accepted == 6, f"{chain.proxy.accepted} connections: a resumed connection failed"
    assert not [o for o in viewer_events.since(0, lambda o: True) if o.get("event") == "authenticated"][1:]


def test_a_key_held_through_the_chain_is_released_while_the_path_is_cut(resume_chain, xvfb):
    make, loops = resume_chain
    chain = make()
    viewer, viewer_events, agent_events, port = _started(chain)
    probe = Probe(loops, port)
    try:
        assert probe.update(incremental=False, timeout=15)
        assert not held(xvfb, SHIFT_L)
        probe.key(SHIFT_L, True)  # pressed and held by the technician
        deadline = time.monotonic() + 10
        while not held(xvfb, SHIFT_L):  # the control: the press did reach the customer's display
            assert time.monotonic() < deadline, "the key press never reached the display"
            time.sleep(0.02)

        mark_v = viewer_events.mark()
        mark = _cut_and_wait(chain, viewer_events, agent_events)
        probe.key(CONTROL_L, True)  # typed blind during the cut: the resume must not replay it
        deadline = time.monotonic() + 5
        while held(xvfb, SHIFT_L):
            assert time.monotonic() < deadline, "the key is still down on the customer's display during the cut"
            time.sleep(0.02)
        assert chain.status()["state"] == "reconnecting"  # released while the path is still cut
        assert chain.proxy is not None and chain.proxy.connections == 0

        since = probe.updates_received
        back = chain.proxy.restore()
        try:
            agent_events.wait(mark, is_event("resumed"), BACK_WITHIN)
        except AssertionError:
            print("RELAY", "".join(chain.relay_out.stderr)[-3000:])
            print("VIEWER", viewer_events.lines.seen[-20:], "".join(viewer_events.lines.stderr)[-3000:])
            print("AGENT", "".join(chain.agent_out.stderr)[-3000:])
            print("PROXY", chain.proxy.accepted, chain.proxy.connections)
            raise
        screen_back(probe, xvfb, back + BACK_WITHIN, since=since)
        assert not held(xvfb, SHIFT_L), "the resume replayed the key press"
        assert not held(xvfb, CONTROL_L), "a key pressed during the cut reached the display after the resume"
        resumed = viewer_events.wait(mark_v, is_event("resumed"), 5)
        assert resumed.get("input_dropped", 0) >= 1, resumed
        # input flows again after the resume: the same client presses and releases
        probe.key(SHIFT_L, False)
        probe.key(SHIFT_L, True)
        deadline = time.monotonic() + 10
        while not held(xvfb, SHIFT_L):
            assert time.monotonic() < deadline, "input did not flow again after the resume"
            time.sleep(0.02)
        probe.key(SHIFT_L, False)
        deadline = time.monotonic() + 10
        while held(xvfb, SHIFT_L):
            assert time.monotonic() < deadline, "the release after the resume did not reach the display"
            time.sleep(0.02)
    finally:
        probe.close()
        subprocess.run(["xdotool", "keyup", "Shift_L", "Control_L"], env=dict(os.environ, DISPLAY=xvfb),
                       check=False, timeout=10)


def test_a_path_that_goes_silent_without_a_reset_resumes_on_its_own(resume_chain, xvfb):
    """A NAT that forgets the mapping sends no reset: both ends notice the silence (30 s, three missed
    keepalives), the agent renews its relay registration, and the session resumes unchanged."""
    chain, viewer, viewer_events, agent_events, port, probe = _attached(resume_chain)
    try:
        assert probe.update(incremental=False, timeout=15)
        before = (chain.credentials(), len(chain.consent_rows()), chain.status())
        mark_v, mark = viewer_events.mark(), agent_events.mark()
        assert chain.proxy is not None and chain.proxy.silence() >= 2
        silent_at = time.monotonic()
        agent_events.wait(mark, is_event("reconnecting"), 45)
        viewer_events.wait(mark_v, is_event("reconnecting"), 50)
        paint_root(xvfb, COLOURS[2])
        since = probe.updates_received
        agent_events.wait(mark, is_event("resumed"), 30)
        viewer_events.wait(mark_v, is_event("resumed"), 10)
        exact, updates = screen_back(probe, xvfb, time.monotonic() + BACK_WITHIN, since=since)
        print(f"silent path: exact screen {exact - silent_at:.1f} s after the path went silent ({updates} updates)")
        _same_session(chain, before, agent_events, mark)
        assert viewer.poll() is None
    finally:
        probe.close()


def test_a_relay_restart_on_the_same_port_resumes_with_the_exact_screen(resume_chain, xvfb, tmp_path):
    chain, viewer, viewer_events, agent_events, port, probe = _attached(resume_chain)
    try:
        assert probe.update(incremental=False, timeout=15)
        before = (chain.credentials(), len(chain.consent_rows()), chain.status())
        mark_v, mark = viewer_events.mark(), agent_events.mark()
        chain.stop_relay()
        agent_events.wait(mark, is_event("reconnecting"), 10)
        viewer_events.wait(mark_v, is_event("reconnecting"), 10)
        paint_root(xvfb, COLOURS[2])
        since = probe.updates_received
        back = chain.start_relay()  # the same port
        exact, updates = screen_back(probe, xvfb, back + BACK_WITHIN, since=since)
        print(f"relay restart: exact screen {exact - back:.2f} s after the new relay listened ({updates} updates)")
        agent_events.wait(mark, is_event("resumed"), 5)
        viewer_events.wait(mark_v, is_event("resumed"), 5)
        assert any("adopted" in line for line in chain.relay_out.stderr), chain.relay_out.stderr
        assert differing(vncdo_capture(port, tmp_path / "after-restart.png", 30), grab_bgr(xvfb)) == 0
        _same_session(chain, before, agent_events, mark)
        assert viewer.poll() is None
    finally:
        probe.close()


def test_a_new_local_client_after_an_unattended_change_gets_the_current_screen_first(resume_chain, xvfb, tmp_path):
    """Found by the cut test: the capture loop sleeps while nobody watches, so a new client's first update
    must come from a fresh grab, not the frame kept from before (vncdotool's capture takes the first one)."""
    make, _ = resume_chain
    chain = make()
    _, _, _, port = _started(chain)
    assert differing(vncdo_capture(port, tmp_path / "before.png", 30), grab_bgr(xvfb)) == 0
    paint_root(xvfb, COLOURS[3])  # no local client attached: the agent captures nothing meanwhile
    time.sleep(1.0)
    assert differing(vncdo_capture(port, tmp_path / "after.png", 30), grab_bgr(xvfb)) == 0

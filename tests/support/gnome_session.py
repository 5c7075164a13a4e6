"""A headless GNOME session for the Wayland tests, a GTK client with known content, and a direct PipeWire grab.

* ``gnome_session`` fixture (one per test module): dbus-run-session + pipewire +
  wireplumber + ``mutter --headless --virtual-monitor 1024x768``
  (agent.capture.gnome_headless); yields the HeadlessGnome, whose ``env`` is
  what a process of that session needs.
* ``GtkClient``: a fullscreen GTK 3 window on that session (this module run as
  ``python -m tests.support.gnome_session client``): colour bands the tests know,
  and a text entry with the focus. It prints JSON lines: ``ready``, ``text``
  (the entry's content after each change), ``motion``, ``button``, ``scroll``.
  The caret does not blink, so the screen is still when nobody types.
* ``direct_grab(env)``: one frame of the monitor through an independent
  ScreenCast session and GStreamer pipeline (``python -m tests.support.gnome_session
  grab OUT.npy``): the reference the agent's picture is compared with.

Every tool missing skips with the package to install; CI installs them all and
turns a skip into a failure.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from tests.support.processes import Lines, stop

ROOT = Path(__file__).resolve().parents[2]
SIZE = (1024, 768)
# (top, bottom, RGB) bands the client paints under its entry
BANDS = ((100, 300, (0xC0, 0x30, 0x30)), (300, 500, (0x30, 0xA0, 0x40)), (500, 768, (0x20, 0x40, 0xB0)))


def need_gnome() -> None:
    """Skip (a failure in CI) unless a headless GNOME session and PyGObject with GStreamer can run here."""
    from agent.capture.gnome_headless import APT_HINT, missing_tools
    from agent.errors import CaptureError

    missing = missing_tools()
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed ({APT_HINT}); .ci/run installs them")
    try:
        from agent.capture.gi_support import load_gst

        load_gst()
        import gi

        gi.require_version("Gtk", "3.0")
    except (CaptureError, ValueError) as exc:
        pytest.skip(f"{exc} (and apt-get install gir1.2-gtk-3.0); .ci/run installs them")


@pytest.fixture(scope="module")
def gnome_session() -> Iterator:
    """A headless GNOME session (1024x768) for one test module."""
    from agent.capture.gnome_headless import HeadlessGnome

    need_gnome()
    session = HeadlessGnome(*SIZE).start()
    try:
        yield session
    finally:
        session.stop()


def spawn_in(session, argv: list[str], **env: str) -> subprocess.Popen:
    full = dict(session.env, PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT), **env)
    full.pop("REJNET_PASSWORD", None)
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=full, cwd=str(ROOT))


class GtkClient:
    """The fullscreen GTK window; ``events`` reads its JSON lines."""

    def __init__(self, session) -> None:
        self.proc = spawn_in(session, [sys.executable, "-m", "tests.support.gnome_session", "client"])
        self.events = Lines(self.proc)
        self.events.wait_json(lambda o: o.get("event") == "ready", timeout=30)
        time.sleep(0.5)  # the first frames after mapping (fullscreen animation-free, but let mutter settle)

    def text(self) -> str:
        """The entry's text as last reported (reads what arrived so far)."""
        text = ""
        for line in self._drain():
            if line.get("event") == "text":
                text = line["text"]
        return text

    def _drain(self) -> list[dict]:
        import queue

        while True:
            try:
                self.events.seen.append(self.events.queue.get_nowait())
            except queue.Empty:
                break
        out = []
        for raw in self.events.seen:
            try:
                out.append(json.loads(raw))
            except ValueError:
                pass
        return out

    def wait_text(self, expected: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.text() == expected:
                return expected
            time.sleep(0.1)
        return self.text()

    def events_of(self, kind: str) -> list[dict]:
        return [e for e in self._drain() if e.get("event") == kind]

    def close(self) -> None:
        stop(self.proc)


def direct_grab(session, timeout: float = 30.0) -> np.ndarray:
    """The monitor as (H, W, 3) RGB, through a ScreenCast session and pipeline of the test's own."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "grab.npy")
        proc = spawn_in(session, [sys.executable, "-m", "tests.support.gnome_session", "grab", out])
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        assert proc.returncode == 0, f"direct grab failed: {err[-2000:]}"
        return np.load(out)


# ---------------------------------------------------------------- the programs (run in the GNOME session)

def _client_main() -> int:
    import gi

    gi.require_version("Gtk", "3.0")
    gi.require_version("Gdk", "3.0")
    from gi.repository import Gdk, GLib, Gtk

    Gtk.Settings.get_default().set_property("gtk-cursor-blink", False)
    Gtk.Settings.get_default().set_property("gtk-enable-animations", False)

    def say(**obj) -> None:
        print(json.dumps(obj), flush=True)

    win = Gtk.Window(title="rejnet-wayland-test")
    win.set_decorated(False)
    box = Gtk.Box(orientation=Gtk.Orientation.VERTICAL)
    entry = Gtk.Entry()
    entry.connect("changed", lambda e: say(event="text", text=e.get_text()))
    area = Gtk.DrawingArea()
    area.set_vexpand(True)

    def draw(widget, cr) -> bool:
        height = widget.get_allocated_height()
        top0 = widget.translate_coordinates(win, 0, 0)[1]
        for top, bottom, rgb in BANDS:
            cr.set_source_rgb(*(c / 255 for c in rgb))
            cr.rectangle(0, top - top0, widget.get_allocated_width(), min(bottom, top0 + height) - top)
            cr.fill()
        return False

    area.connect("draw", draw)
    box.pack_start(entry, False, False, 0)
    box.pack_start(area, True, True, 0)
    win.add(box)
    win.add_events(Gdk.EventMask.POINTER_MOTION_MASK | Gdk.EventMask.BUTTON_PRESS_MASK | Gdk.EventMask.ENTER_NOTIFY_MASK
                   | Gdk.EventMask.SCROLL_MASK | Gdk.EventMask.SMOOTH_SCROLL_MASK)
    # the first motion onto the window arrives as the pointer entering it (wl_pointer.enter)
    for signal in ("motion-notify-event", "enter-notify-event"):
        win.connect(signal, lambda w, e: say(event="motion", x=round(e.x_root), y=round(e.y_root)))
    win.connect("button-press-event", lambda w, e: say(event="button", button=e.button, time=e.time) and False)

    def scroll(w, e) -> bool:
        ok, direction = e.get_scroll_direction()
        say(event="scroll", direction=int(direction) if ok else -1, dy=e.get_scroll_deltas()[2])
        return False

    win.connect("scroll-event", scroll)
    win.connect("destroy", Gtk.main_quit)
    win.fullscreen()
    win.show_all()
    entry.grab_focus()

    def ready() -> bool:
        say(event="ready", width=win.get_allocated_width(), height=win.get_allocated_height())
        return False

    GLib.timeout_add(700, ready)
    Gtk.main()
    return 0


def _grab_main(out: str) -> int:
    from agent.capture.gi_support import load_gio, load_gst

    GLib, Gio = load_gio()
    Gst, GstApp = load_gst()
    conn = Gio.bus_get_sync(Gio.BusType.SESSION, None)
    sc = "org.gnome.Mutter.ScreenCast"

    def call(path, iface, method, args=None):
        return conn.call_sync(sc, path, iface, method, args, None, 0, 5000, None).unpack()

    (session,) = call("/org/gnome/Mutter/ScreenCast", sc, "CreateSession", GLib.Variant("(a{sv})", ({},)))
    (stream,) = call(session, f"{sc}.Session", "RecordMonitor",
                     GLib.Variant("(sa{sv})", ("", {"cursor-mode": GLib.Variant("u", 1)})))
    node: list[int] = []
    conn.signal_subscribe(sc, f"{sc}.Stream", "PipeWireStreamAdded", stream, None, 0,
                          lambda *a: node.append(a[-1].unpack()[0]))
    call(session, f"{sc}.Session", "Start")
    ctx = GLib.MainContext.default()
    deadline = time.monotonic() + 10
    while not node and time.monotonic() < deadline:
        ctx.iteration(False) or time.sleep(0.01)
    assert node, "no PipeWire stream"
    pipeline = Gst.parse_launch(f"pipewiresrc path={node[0]} ! videoconvert ! video/x-raw,format=RGB ! "
                                "appsink name=sink max-buffers=1 drop=true")
    sink = pipeline.get_by_name("sink")
    pipeline.set_state(Gst.State.PLAYING)
    sample = sink.try_pull_sample(10 * Gst.SECOND)
    assert sample is not None, "no frame from PipeWire"
    caps = sample.get_caps().get_structure(0)
    w, h = caps.get_value("width"), caps.get_value("height")
    buf = sample.get_buffer()
    data = buf.extract_dup(0, buf.get_size())
    stride = len(data) // h
    rgb = np.frombuffer(data, np.uint8).reshape(h, stride)[:, :w * 3].reshape(h, w, 3)
    np.save(out, rgb)
    pipeline.set_state(Gst.State.NULL)
    call(session, f"{sc}.Session", "Stop")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["client"]:
        sys.exit(_client_main())
    if sys.argv[1:2] == ["grab"]:
        sys.exit(_grab_main(sys.argv[2]))
    sys.exit("usage: python -m tests.support.gnome_session client | grab OUT.npy")

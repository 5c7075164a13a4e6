"""Interop with independent VNC clients on loopback: vncdotool (Python, Twisted) and vncsnapshot
(TightVNC 1.2.8 code, RFB 3.3, Tight + JPEG), against a real Xvfb screen served by
``python -m agent rfb``. Each test uses its own small Xvfb (xvfb_factory) so the xterm and root
pattern it draws never disturb other tests sharing the session display.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agent.workloads.xvfb import stop_process
from tests.support.processes import free_port, stop_for_stderr
from tests.support.tools import need, which

pytestmark = [pytest.mark.xvfb, pytest.mark.interop]

ROOT = Path(__file__).resolve().parents[2]
WIDTH, HEIGHT = 480, 320
PASSWORD = "interop7"


def _grab(display: str) -> np.ndarray:
    """The screen as RGB, through mss (independent of our capture code path)."""
    import mss

    factory = getattr(mss, "MSS", None) or mss.mss  # mss >= 10.2 deprecates mss.mss()
    with factory(display=display) as sct:
        shot = sct.grab(sct.monitors[0])
        return np.asarray(shot, dtype=np.uint8)[..., [2, 1, 0]].copy()


# A window showing photo-like pixels (smooth colour waves plus noise), so Tight picks JPEG for it.
_PHOTO_WINDOW = textwrap.dedent("""
    import sys
    import numpy as np
    from Xlib import X, display as xdisplay
    d = xdisplay.Display(sys.argv[1])
    s = d.screen()
    h, w = 120, 160
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    rng = np.random.default_rng(1)
    img = np.zeros((h, w, 4), np.float32)
    for c in range(3):
        for _ in range(6):
            fx, fy, ph = rng.uniform(0.01, 0.15), rng.uniform(0.01, 0.15), rng.uniform(0, 6.28)
            img[..., c] += np.sin(x * fx + y * fy + ph) * 40
    img[..., :3] += 128 + rng.normal(0, 8, (h, w, 3))
    data = np.clip(img, 0, 255).astype(np.uint8).tobytes()
    win = s.root.create_window(310, 195, w, h, 0, s.root_depth, X.InputOutput, X.CopyFromParent,
                               event_mask=X.ExposureMask, override_redirect=True)
    gc = win.create_gc()
    win.map()
    d.sync()
    while True:
        ev = d.next_event()
        if ev.type == X.Expose and ev.count == 0:
            win.put_image(gc, 0, 0, w, h, X.ZPixmap, s.root_depth, 0, data)
            d.flush()
""")


@pytest.fixture
def desktop(xvfb_factory):
    """A small Xvfb with a patterned root, an xterm full of text and a photo-like window; yields the display."""
    need("xsetroot", "xterm")
    display = xvfb_factory(WIDTH, HEIGHT)
    env = dict(os.environ, DISPLAY=display)
    subprocess.run(["xsetroot", "-mod", "7", "5", "-fg", "#d04020", "-bg", "#2050a0"], env=env, check=True,
                   timeout=10)
    text = "rejnet interop: The quick brown fox jumps over the lazy dog 0123456789"
    xterm = subprocess.Popen(
        ["xterm", "-geometry", "50x12+30+40", "-bg", "#ffffe0", "-fg", "#102030", "+cm",
         "-e", "sh", "-c", f"for i in 1 2 3 4 5 6 7 8; do echo '{text}' $i; done; exec sleep 600"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    photo = subprocess.Popen([sys.executable, "-c", _PHOTO_WINDOW, display],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        previous = None
        while True:  # wait until the xterm is mapped, drawn and the screen is stable
            frame = _grab(display)
            dark = (frame.sum(axis=2) < 200).sum()
            photo_shown = frame[195:315, 310:470].std() > 30
            if previous is not None and dark > 500 and photo_shown and (frame == previous).all():
                break
            if time.monotonic() > deadline:
                pytest.fail("the xterm never showed up on the Xvfb screen")
            previous = frame
            time.sleep(0.3)
        yield display
    finally:
        for proc in (photo, xterm):
            stop_process(proc)


class _Served:
    def __init__(self, display: str, *extra: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "rfb", "--listen", f"127.0.0.1:{self.port}", "--display", display,
             *extra], cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={k: v for k, v in os.environ.items() if k != "REJNET_PASSWORD"})
        line = self.proc.stdout.readline()
        if not line.startswith("listening on"):
            pytest.fail(f"rejnet-agent rfb did not start: {line!r} {self.stop()}")

    def stop(self) -> str:
        return stop_for_stderr(self.proc)


@pytest.fixture
def served(desktop):
    server = _Served(desktop, "--no-auth")
    yield desktop, server
    stderr = server.stop()
    assert "Traceback" not in stderr, stderr


def _vncdo(port: int, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([which("vncdo") or "vncdo", "-s", f"127.0.0.1::{port}", "-t", "30", "--nocursor", *extra, "capture", str(out)],
                          capture_output=True, text=True, timeout=60)


def _rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.uint8)


def test_vncdotool_raw_capture_equals_screen(served, tmp_path):
    need("vncdo")
    display, server = served
    out = tmp_path / "raw.png"
    result = _vncdo(server.port, out)
    assert result.returncode == 0, result.stderr
    assert (_rgb(out) == _grab(display)).all()


# vncdotool only ever asks for one encoding: pick it in a small script run outside pytest's warning filters.
_VNCDOTOOL_SCRIPT = textwrap.dedent("""
    import sys
    from vncdotool import api, client, rfb
    client.VNCDoToolClient.encoding = getattr(rfb.Encoding, sys.argv[2])
    c = api.connect(sys.argv[1], password=None)
    try:
        c.timeout = 30
        c.captureScreen(sys.argv[3])
    finally:
        c.disconnect()
        api.shutdown()
""")


@pytest.mark.parametrize("encoding", ["RRE", "HEXTILE", "ZRLE"])
def test_vncdotool_encodings_capture_equals_screen(served, tmp_path, encoding):
    # ZRLE: vncdotool <= 1.4.2 unpacks packed-palette tiles ignoring the per-row padding of
    # RFC 6143 7.7.6; our encoder only packs tiles whose rows need none, so it decodes us right.
    display, server = served
    out = tmp_path / f"{encoding}.png"
    result = subprocess.run([sys.executable, "-c", _VNCDOTOOL_SCRIPT, f"127.0.0.1::{server.port}", encoding, str(out)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert (_rgb(out) == _grab(display)).all()


def _vnc_display_port() -> int:
    """A free port in 5900..5999, since vncsnapshot takes a display number."""
    import socket

    for port in range(5990 - os.getpid() % 60, 6000):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    pytest.skip("no free port in 5930..5999 for vncsnapshot")


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    diff = a.astype(np.float64) - b.astype(np.float64)
    mse = float(np.mean(diff * diff))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def test_vncsnapshot_tight_jpeg_capture_close_to_screen(desktop, tmp_path):
    need("vncsnapshot")
    port = _vnc_display_port()
    server = _Served(desktop, "--no-auth", port=port)
    try:
        out = tmp_path / "snap.jpg"
        result = subprocess.run(["vncsnapshot", "-quiet", "-encodings", "tight copyrect", "-vncQuality", "7",
                                 f"127.0.0.1:{port - 5900}", str(out)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr + result.stdout
        assert _psnr(_rgb(out), _grab(desktop)) >= 28  # vncsnapshot re-encodes as JPEG for its output file
    finally:
        stderr = server.stop()
    assert "Traceback" not in stderr, stderr


def test_vnc_auth_with_password_file_and_vncdotool(desktop, tmp_path):
    need("vncdo")
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\n")
    server = _Served(desktop, "--password-file", str(pw))
    try:
        out = tmp_path / "auth.png"
        result = _vncdo(server.port, out, "-p", PASSWORD)
        assert result.returncode == 0, result.stderr
        assert (_rgb(out) == _grab(desktop)).all()
        bad = _vncdo(server.port, tmp_path / "bad.png", "-p", "wrong-pw")
        assert bad.returncode != 0 and not (tmp_path / "bad.png").exists()
    finally:
        stderr = server.stop()
    assert PASSWORD not in stderr and "failed VNC authentication" in stderr


def _vncpasswd_file(password: str) -> bytes:
    """The ~/.vnc/passwd obfuscation (DES with the well-known fixed key, bit-reversal quirk included)."""
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
    from cryptography.hazmat.primitives.ciphers import Cipher, modes

    fixed = bytes([23, 82, 107, 6, 35, 78, 88, 7])
    key = bytes(int(f"{b:08b}"[::-1], 2) for b in fixed)
    enc = Cipher(TripleDES(key * 3), modes.ECB()).encryptor()
    return enc.update(password.encode()[:8].ljust(8, b"\0")) + enc.finalize()


def test_vnc_auth_with_vncsnapshot_rfb33(desktop, tmp_path):
    need("vncsnapshot")
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\n")
    vncpasswd = tmp_path / "passwd"
    vncpasswd.write_bytes(_vncpasswd_file(PASSWORD))
    port = _vnc_display_port()
    server = _Served(desktop, "--password-file", str(pw), port=port)
    try:
        out = tmp_path / "snap.jpg"
        result = subprocess.run(["vncsnapshot", "-quiet", "-passwd", str(vncpasswd), "-encodings", "hextile",
                                 f"127.0.0.1:{port - 5900}", str(out)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr + result.stdout
        assert _psnr(_rgb(out), _grab(desktop)) >= 28
    finally:
        server.stop()


def _wait_equal(grab_a, grab_b, timeout: float = 20.0) -> int:
    """Poll until two screens are pixel-identical; returns the last count of differing pixels."""
    deadline = time.monotonic() + timeout
    while True:
        diff = int((grab_a() != grab_b()).any(axis=2).sum())
        if diff == 0 or time.monotonic() > deadline:
            return diff
        time.sleep(0.3)


@pytest.mark.parametrize("encoding", ["ZRLE", "Tight"])
def test_tigervnc_viewer_shows_the_screen_and_follows_changes(served, xvfb_factory, encoding):
    """The TigerVNC viewer (fences, continuous updates, ExtendedDesktopSize) mirrors the screen exactly."""
    need("xtigervncviewer", "xsetroot")
    display, server = served
    viewer_display = xvfb_factory(WIDTH, HEIGHT)
    viewer = subprocess.Popen(
        ["xtigervncviewer", "-FullScreen", "-SecurityTypes", "None", "-PreferredEncoding", encoding, "-FullColor",
         "-NoJPEG", "-RemoteResize=0", f"127.0.0.1::{server.port}"],
        env=dict(os.environ, DISPLAY=viewer_display), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        # the viewer's "Press F8" hint fades after a few seconds; then both screens must be identical
        assert _wait_equal(lambda: _grab(display), lambda: _grab(viewer_display)) == 0
        subprocess.run(["xsetroot", "-solid", "#30a050"], env=dict(os.environ, DISPLAY=display), check=True, timeout=10)
        assert _wait_equal(lambda: _grab(display), lambda: _grab(viewer_display), timeout=10) == 0
        assert viewer.poll() is None, viewer.stderr.read()
    finally:
        viewer.terminate()
        try:
            viewer.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            viewer.kill()
            viewer.communicate()


_REAL_SERVERS = {
    "x11vnc": lambda display, port: ["x11vnc", "-display", display, "-rfbport", str(port), "-localhost", "-nopw",
                                     "-forever", "-shared", "-quiet", "-noxdamage"],
    "x0vncserver": lambda display, port: ["x0vncserver", "-display", display, "-rfbport", str(port), "-localhost",
                                          "-SecurityTypes", "None"],
}


@pytest.mark.parametrize("server_name", list(_REAL_SERVERS))
def test_our_client_against_real_servers(desktop, server_name):
    """Our client decodes what x11vnc and TigerVNC's x0vncserver send, in every encoding and two formats."""
    import asyncio

    from agent.rfb import constants as C
    from agent.rfb.decode import quantize
    from agent.rfb.pixelformat import NATIVE, RGB565_LE
    from agent.viewer.rfb_client import open_rfb

    command = _REAL_SERVERS[server_name](desktop, 0)[0]
    need(command, "xdotool")
    subprocess.run(["xdotool", "mousemove", str(WIDTH - 1), str(HEIGHT - 1)], env=dict(os.environ, DISPLAY=desktop),
                   check=True, timeout=10)
    port = free_port()
    proc = subprocess.Popen(_REAL_SERVERS[server_name](desktop, port), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    screen = _grab(desktop)
    bgra = np.dstack([screen[..., ::-1], np.full(screen.shape[:2] + (1,), 255, np.uint8)])
    keep = np.ones(screen.shape[:2], bool)
    keep[-24:, -24:] = False  # the pointer sits in that corner; servers differ on drawing it
    extras = [C.ENC_DESKTOP_SIZE, C.ENC_EXTENDED_DESKTOP_SIZE, C.ENC_LAST_RECT, C.ENC_CURSOR, C.ENC_FENCE,
              C.ENC_CONTINUOUS_UPDATES]

    def mismatch(fb: np.ndarray, expected: np.ndarray, pf) -> bool:
        if pf is None:
            return bool(((fb != expected).any(axis=2) & keep).any())
        # Servers quantise to 5/6 bits with rounding or truncation as they like: allow one step.
        step = np.array([256 // (pf.blue_max + 1), 256 // (pf.green_max + 1), 256 // (pf.red_max + 1)])
        far = (np.abs(fb[..., :3].astype(int) - expected[..., :3].astype(int)) > step).any(axis=2)
        return bool((far & keep).any())

    async def check(encoding: int, pf) -> None:
        client = await open_rfb("127.0.0.1", port, encodings=[encoding] + extras, pixel_format=pf)
        try:
            expected = quantize(bgra, pf or NATIVE)
            await client.update(incremental=False)
            deadline = time.monotonic() + 10
            while mismatch(client.framebuffer, expected, pf):
                assert time.monotonic() < deadline, f"{server_name} {encoding} {pf}: framebuffer never matched"
                try:
                    await client.update(incremental=True, timeout=1.0)
                except asyncio.TimeoutError:
                    pass  # nothing changed, nothing sent: ask again
        finally:
            await client.close()

    async def main() -> None:
        deadline = time.monotonic() + 10
        while True:  # wait for the server to listen
            try:
                probe = await open_rfb("127.0.0.1", port, encodings=[C.ENC_RAW])
                await probe.close()
                break
            except OSError:
                assert time.monotonic() < deadline, f"{server_name} did not start"
                await asyncio.sleep(0.2)
        for encoding in (C.ENC_ZRLE, C.ENC_TIGHT, C.ENC_HEXTILE, C.ENC_RRE, C.ENC_RAW):
            for pf in (None, RGB565_LE):
                await check(encoding, pf)

    try:
        asyncio.run(main())
    finally:
        stop_process(proc)

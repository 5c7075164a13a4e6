"""``rejnet-agent rfb``: the command as a subprocess, its refusals, passwords and real displays."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from agent.errors import AuthenticationError
from agent.rfb import constants as C
from agent.viewer.rfb_client import open_rfb
from tests.support.processes import free_port, stop_for_stderr
from tests.support.tools import need

ROOT = Path(__file__).resolve().parents[2]
LOSSLESS = [C.ENC_ZRLE, C.ENC_HEXTILE, C.ENC_RAW, C.ENC_COPYRECT, C.ENC_DESKTOP_SIZE]



def _agent(*args: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "REJNET_PASSWORD"}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "agent", "rfb", *args], cwd=ROOT, env=full_env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, **kw)


@pytest.mark.parametrize("args,env,needle", [
    (["--listen", "0.0.0.0:5900", "--no-auth"], {}, "not a loopback address"),
    (["--listen", "127.0.0.1:5900", "--screen", "synthetic:idle"], {}, "no password"),
    (["--listen", "127.0.0.1:5900", "--no-auth"], {"REJNET_PASSWORD": "x"}, "REJNET_PASSWORD"),
    (["--listen", "127.0.0.1:5900", "--no-auth", "--fps", "0"], {}, "--fps"),
])
def test_command_refusals_exit_2_with_one_line(args, env, needle):
    result = _agent(*args, env=env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in result.stderr


def test_no_auth_and_password_file_are_exclusive(tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("secret\n")
    result = _agent("--listen", "127.0.0.1:5900", "--no-auth", "--password-file", str(pw))
    assert result.returncode == 2 and "not allowed with" in result.stderr


def test_empty_password_file_refused(tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("\n")
    result = _agent("--listen", "127.0.0.1:5900", "--password-file", str(pw), "--screen", "synthetic:idle")
    assert result.returncode == 2 and "empty" in result.stderr


class _Running:
    """``rejnet-agent rfb`` in a subprocess; knows the port it printed."""

    def __init__(self, *args: str, env: dict | None = None) -> None:
        full_env = {k: v for k, v in os.environ.items() if k != "REJNET_PASSWORD"}
        full_env.update(env or {})
        self.proc = subprocess.Popen([sys.executable, "-m", "agent", "rfb", *args], cwd=ROOT, env=full_env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            raise AssertionError(f"no listening line: {line!r} {self.stop()}")
        self.line = line
        self.port = int(line.split()[2].rsplit(":", 1)[1])

    def stop(self) -> tuple[int, str]:
        stderr = stop_for_stderr(self.proc)
        return self.proc.returncode, stderr


def test_command_serves_several_viewers_and_stops_on_sigterm():
    running = _Running("--listen", "127.0.0.1:0", "--screen", "synthetic:idle:240x160", "--no-auth", "-v")
    try:
        assert "127.0.0.1" in running.line and "no authentication" in running.line

        async def main() -> None:
            a = await open_rfb("127.0.0.1", running.port, encodings=LOSSLESS)
            b = await open_rfb("127.0.0.1", running.port, encodings=[C.ENC_TIGHT, C.ENC_RAW])
            for client in (a, b):
                await client.update(incremental=False)
                assert client.framebuffer.shape == (160, 240, 4)
            assert (a.framebuffer == b.framebuffer).all()
            assert len(np.unique(a.framebuffer.reshape(-1, 4), axis=0)) > 10
            await a.close()
            await b.close()

        asyncio.run(main())
    finally:
        code, stderr = running.stop()
    assert code == 0, stderr
    assert "Traceback" not in stderr


def test_command_with_password_file(tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    running = _Running("--listen", "127.0.0.1:0", "--screen", "synthetic:idle:64x48", "--password-file", str(pw))
    try:
        assert "VNC password" in running.line

        async def main() -> None:
            started = time.monotonic()
            with pytest.raises(AuthenticationError):
                await open_rfb("127.0.0.1", running.port, password="wrong")
            assert time.monotonic() - started >= 0.5  # answered after a delay
            with pytest.raises(AuthenticationError):
                await open_rfb("127.0.0.1", running.port)  # no password at all
            client = await open_rfb("127.0.0.1", running.port, password="s3cret", encodings=[C.ENC_RAW])
            await client.update(incremental=False)
            await client.close()

        asyncio.run(main())
    finally:
        code, stderr = running.stop()
    assert code == 0
    assert "s3cret" not in stderr


def test_command_password_from_environment():
    running = _Running("--listen", "127.0.0.1:0", "--screen", "synthetic:idle:64x48", env={"REJNET_PASSWORD": "envpw"})
    try:
        assert "VNC password" in running.line

        async def main() -> None:
            with pytest.raises(AuthenticationError):
                await open_rfb("127.0.0.1", running.port, password="wrong")
            client = await open_rfb("127.0.0.1", running.port, password="envpw", encodings=[C.ENC_RAW])
            update = await client.update(incremental=False)
            assert update.rects and client.framebuffer.shape[:2] == (48, 64)
            await client.close()

        asyncio.run(main())
    finally:
        code, stderr = running.stop()
    assert code == 0
    assert "envpw" not in stderr


def test_command_missing_display_exits_5():
    result = _agent("--listen", f"127.0.0.1:{free_port()}", "--display", ":999", "--no-auth")
    assert result.returncode == 5, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_control_needs_a_real_display():
    result = _agent("--listen", "127.0.0.1:0", "--screen", "synthetic:idle", "--no-auth", "--control")
    assert result.returncode == 2 and "real display" in result.stderr


@pytest.mark.xvfb
def test_control_moves_the_pointer_on_a_real_display(xvfb_factory):
    need("xdotool")
    display = xvfb_factory(320, 240)

    def pointer_after_viewer_moves_it(*mode: str) -> str:
        running = _Running("--listen", "127.0.0.1:0", "--display", display, "--no-auth", *mode)
        try:
            async def main() -> None:
                client = await open_rfb("127.0.0.1", running.port, encodings=[C.ENC_RAW])
                await client.update(incremental=False)
                await client.pointer(123, 45)
                await client.update(incremental=False)  # a round trip: the pointer event was handled
                await client.close()

            asyncio.run(main())
            return subprocess.run(["xdotool", "getmouselocation"], env=dict(os.environ, DISPLAY=display),
                                  capture_output=True, text=True, timeout=10).stdout
        finally:
            code, stderr = running.stop()
            assert code == 0, stderr

    assert "x:123 y:45" not in pointer_after_viewer_moves_it()  # view-only is the default
    assert "x:123 y:45" in pointer_after_viewer_moves_it("--control")

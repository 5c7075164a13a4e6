"""RFBService (library) and ``rejnet-agent rfb`` (command): viewers over TCP and over plain stream pairs."""
from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.workloads.synthetic import SyntheticSource
from agent.errors import AuthenticationError, CaptureError, UsageError
from agent.inputs.base import InputBackend
from agent.rfb import constants as C
from agent.viewer.rfb_client import AsyncRFBClient, open_rfb
from agent.rfb.messages import Bell, ServerCutText
from agent.rfb.pixelformat import BGR233, NATIVE
from agent.commands.rfb import parse_loopback_listen
from agent.inputs.gate import ScopeGate
from agent.service.rfb_service import RFBService
from agent.rfb.decode import quantize
from conftest import free_port
from e2e_helpers import stop_for_stderr

ROOT = Path(__file__).resolve().parent.parent
LOSSLESS = [C.ENC_ZRLE, C.ENC_HEXTILE, C.ENC_RAW, C.ENC_COPYRECT, C.ENC_DESKTOP_SIZE]


# ---------------------------------------------------------------- in-memory streams (no sockets)

class MemoryReader:
    """The reader half of the asyncio streams duck type."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._eof = False
        self._event = asyncio.Event()

    def feed(self, data: bytes) -> None:
        self._buf += data
        self._event.set()

    def feed_eof(self) -> None:
        self._eof = True
        self._event.set()

    async def read(self, n: int) -> bytes:
        while not self._buf and not self._eof:
            self._event.clear()
            await self._event.wait()
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    async def readexactly(self, n: int) -> bytes:
        while len(self._buf) < n:
            if self._eof:
                raise asyncio.IncompleteReadError(bytes(self._buf), n)
            self._event.clear()
            await self._event.wait()
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data


class MemoryWriter:
    """The writer half: what is written lands in the peer's MemoryReader."""

    def __init__(self, peer: MemoryReader) -> None:
        self._peer = peer
        self._closing = False

    def write(self, data: bytes) -> None:
        if self._closing:
            raise ConnectionResetError("writer closed")
        self._peer.feed(bytes(data))

    async def drain(self) -> None:
        await asyncio.sleep(0)

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            self._peer.feed_eof()

    async def wait_closed(self) -> None:
        return None

    def is_closing(self) -> bool:
        return self._closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return "memory-pipe" if name == "peername" else default


def memory_pipe() -> tuple[tuple[MemoryReader, MemoryWriter], tuple[MemoryReader, MemoryWriter]]:
    a, b = MemoryReader(), MemoryReader()
    return (a, MemoryWriter(b)), (b, MemoryWriter(a))


class RecordingInput(InputBackend):
    def __init__(self) -> None:
        self.calls: list = []

    def key(self, keysym: int, down: bool) -> None:
        self.calls.append(("key", keysym, down))

    def pointer(self, x: int, y: int, button_mask: int) -> None:
        self.calls.append(("pointer", x, y, button_mask))

    def release_all(self) -> None:
        self.calls.append(("release_all",))


async def wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


# ---------------------------------------------------------------- the library

def test_service_over_a_plain_stream_pair():
    async def main() -> None:
        source = SyntheticSource("idle", 160, 120, seed=1)
        service = RFBService(source, fps=30)
        seen = []
        service.on_update = lambda viewer, stats: seen.append((viewer.peer, stats.updates_sent))
        await service.start()
        (sr, sw), (cr, cw) = memory_pipe()
        task = asyncio.ensure_future(service.serve_connection(sr, sw))
        client = await AsyncRFBClient.handshake(cr, cw, encodings=LOSSLESS)
        await client.update(incremental=False, timeout=5)
        assert (client.framebuffer[..., :3] == service._capture.frame[..., :3]).all()
        assert len(np.unique(client.framebuffer.reshape(-1, 4), axis=0)) > 10  # a real desktop, not a blank
        assert [v.peer for v in service.viewers] == ["memory-pipe"]
        assert seen and seen[-1] == ("memory-pipe", service.viewers[0].stats.updates_sent)
        assert service.viewers[0].stats.bytes_sent > 0 and service.viewers[0].stats.last_update_time
        await client.close()
        await asyncio.wait_for(task, 5)
        assert service.viewers == []
        await service.close()

    asyncio.run(main())


def test_several_viewers_each_with_its_own_format_and_encodings():
    async def main() -> None:
        source = SyntheticSource("typing", 200, 150, seed=2)
        service = RFBService(source, fps=30)
        await service.start()
        server = await asyncio.start_server(service.serve_connection, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        a = await open_rfb("127.0.0.1", port, encodings=[C.ENC_ZRLE, C.ENC_COPYRECT])
        b = await open_rfb("127.0.0.1", port, encodings=[C.ENC_HEXTILE], pixel_format=BGR233)
        c = await open_rfb("127.0.0.1", port, encodings=[C.ENC_TIGHT, C.ENC_RAW], version=(3, 3))
        await wait_until(lambda: len(service.viewers) == 3)
        for client in (a, b, c):
            await client.update(incremental=False)
        for _ in range(5):
            for client in (a, b, c):
                await client.update()
        assert {v.server.pixel_format for v in service.viewers} == {NATIVE, BGR233}
        for client in (a, b, c):
            assert client.framebuffer.shape == (150, 200, 4) and client.updates_received == 6
            assert client.bytes_received > 0 and client.bytes_sent > 0
        await a.close()
        await wait_until(lambda: len(service.viewers) == 2)
        await b.update()  # the others carry on
        server.close()
        await service.close()
        await b.close()
        await c.close()

    asyncio.run(main())


def test_viewer_converges_to_the_source_once_it_stops_changing():
    async def main() -> None:
        source = SyntheticSource("idle", 160, 120, seed=4)
        service = RFBService(source, fps=60)
        await service.start()
        (sr, sw), (cr, cw) = memory_pipe()
        task = asyncio.ensure_future(service.serve_connection(sr, sw))
        client = await AsyncRFBClient.handshake(cr, cw, encodings=[C.ENC_TIGHT], pixel_format=BGR233)
        await client.update(incremental=False)
        assert (client.framebuffer == quantize(service._capture.frame, BGR233)).all()
        await client.close()
        await asyncio.wait_for(task, 5)
        await service.close()

    asyncio.run(main())


def test_input_passes_only_while_the_scope_gate_allows_and_is_released_on_leave():
    async def main() -> None:
        recorder = RecordingInput()
        gate = ScopeGate(recorder, scope="view")
        service = RFBService(SyntheticSource("idle", 64, 48), input_backend=gate)
        await service.start()
        (sr, sw), (cr, cw) = memory_pipe()
        task = asyncio.ensure_future(service.serve_connection(sr, sw))
        client = await AsyncRFBClient.handshake(cr, cw, encodings=[C.ENC_RAW])
        await client.key(0x61)
        await client.pointer(3, 4, 1)
        await client.update(incremental=False)  # round trip: the input was processed before this answer
        assert recorder.calls == []
        gate.set_scope("control")  # the customer granted control
        await client.key(0x62)
        await client.pointer(5, 6, 0)
        await client.update(incremental=False)
        assert recorder.calls == [("key", 0x62, True), ("key", 0x62, False), ("pointer", 5, 6, 0)]
        await client.close()
        await asyncio.wait_for(task, 5)
        assert recorder.calls[-1] == ("release_all",)
        await service.close()

    asyncio.run(main())


def test_bell_cut_text_both_ways():
    async def main() -> None:
        service = RFBService(SyntheticSource("idle", 64, 48))
        received = []
        service.on_cut_text = lambda viewer, text: received.append((viewer.peer, text))
        await service.start()
        (sr, sw), (cr, cw) = memory_pipe()
        task = asyncio.ensure_future(service.serve_connection(sr, sw))
        client = await AsyncRFBClient.handshake(cr, cw, encodings=[C.ENC_RAW])
        await client.update(incremental=False)
        service.bell()
        service.send_cut_text("zażółć")  # ó is Latin-1; ż, ł, ć are not and become '?'
        assert await client.wait_for(Bell) == Bell()
        assert await client.wait_for(ServerCutText) == ServerCutText("za?ó??")
        await client.cut_text("from the technician")
        await client.update(incremental=False)
        assert received == [("memory-pipe", "from the technician")]
        await client.close()
        await asyncio.wait_for(task, 5)
        await service.close()

    asyncio.run(main())


def test_adaptive_capture_rate_backs_off_when_idle():
    async def rate(workload: str) -> int:
        service = RFBService(SyntheticSource(workload, 64, 48), fps=40)
        await service.start()
        (sr, sw), (cr, cw) = memory_pipe()
        task = asyncio.ensure_future(service.serve_connection(sr, sw))
        client = await AsyncRFBClient.handshake(cr, cw, encodings=[C.ENC_RAW])
        await wait_until(lambda: service.frames_captured > 0)
        start = service.frames_captured
        await asyncio.sleep(1.0)
        frames = service.frames_captured - start
        await client.close()
        await asyncio.wait_for(task, 5)
        await service.close()
        return frames

    async def main() -> None:
        idle, busy = await rate("idle"), await rate("typing")
        assert idle <= 10, f"idle screen polled {idle} times in 1 s"
        assert busy >= 2 * idle, f"changing screen polled only {busy} times vs {idle} idle"

    asyncio.run(main())


def test_no_capture_without_viewers():
    async def main() -> None:
        service = RFBService(SyntheticSource("typing", 64, 48), fps=30)
        await service.start()
        await asyncio.sleep(0.3)
        assert service.frames_captured == 0
        await service.close()

    asyncio.run(main())


class _DyingSource(SyntheticSource):
    def __init__(self) -> None:
        super().__init__("typing", 64, 48)
        self.grabs = 0

    def grab(self) -> np.ndarray:
        self.grabs += 1
        if self.grabs > 3:
            raise CaptureError("display went away")
        return super().grab()


def test_capture_failure_closes_viewers_and_is_reported():
    async def main() -> None:
        service = RFBService(_DyingSource(), fps=60)
        await service.start()
        (sr, sw), (cr, cw) = memory_pipe()
        task = asyncio.ensure_future(service.serve_connection(sr, sw))
        client = await AsyncRFBClient.handshake(cr, cw, encodings=[C.ENC_RAW])
        await asyncio.wait_for(task, 5)
        assert isinstance(service.failure, CaptureError)
        await client.close()
        await service.close()

    asyncio.run(main())


def test_service_argument_checks():
    with pytest.raises(ValueError):
        RFBService(SyntheticSource("idle", 8, 8), fps=0)

    async def main() -> None:
        service = RFBService(SyntheticSource("idle", 8, 8))
        (sr, sw), _ = memory_pipe()
        with pytest.raises(ValueError, match="password"):
            await service.serve_connection(sr, sw, security="vnc")

    asyncio.run(main())


# ---------------------------------------------------------------- loopback check

@pytest.mark.parametrize("value,expected", [
    ("127.0.0.1:5900", ("127.0.0.1", 5900)), ("127.1.2.3:0", ("127.1.2.3", 0)),
    ("localhost:5901", ("localhost", 5901)), ("[::1]:5902", ("::1", 5902)),
])
def test_loopback_addresses_accepted(value, expected):
    assert parse_loopback_listen(value) == expected


@pytest.mark.parametrize("value", ["0.0.0.0:5900", "192.168.1.10:5900", "8.8.8.8:1", "[::]:5900", "5900",
                                   "127.0.0.1:99999", "127.0.0.1:", ":5900", "no.such.host.invalid:5900"])
def test_other_addresses_refused(value):
    with pytest.raises(UsageError):
        parse_loopback_listen(value)


# ---------------------------------------------------------------- the command

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
        async def main() -> None:
            client = await open_rfb("127.0.0.1", running.port, password="envpw", encodings=[C.ENC_RAW])
            await client.update(incremental=False)
            await client.close()

        asyncio.run(main())
    finally:
        running.stop()


def test_command_missing_display_exits_5():
    result = _agent("--listen", f"127.0.0.1:{free_port()}", "--display", ":999", "--no-auth")
    assert result.returncode == 5, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_control_needs_a_real_display():
    result = _agent("--listen", "127.0.0.1:0", "--screen", "synthetic:idle", "--no-auth", "--control")
    assert result.returncode == 2 and "real display" in result.stderr


@pytest.mark.xvfb
def test_control_moves_the_pointer_on_a_real_display(xvfb_factory):
    if shutil.which("xdotool") is None:
        pytest.skip("xdotool is not installed")
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

"""WebConsole against a real RFB service and a stand-in bridge, without a browser: refusals over
real HTTP and WebSocket requests, the page's socket, input in scope, End session."""
from __future__ import annotations

import asyncio
import contextlib
import json
import struct

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from agent.errors import SessionEndedError
from agent.inputs.gate import ScopeGate
from agent.service.rfb_service import RFBService
from agent.viewer.web import ConsoleConfig, WebConsole
from agent.workloads import SyntheticSource
from tests.support.pipes import RecordingInput

TOKEN = "t0ken-for-tests-" + "x" * 30


class StandInBridge:
    """The part of ViewerBridge the console uses: an RFB address, wait() and close()."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.ended: asyncio.Future = asyncio.get_running_loop().create_future()
        self.closed_with: str | None = None

    async def wait(self) -> None:
        exc = await self.ended
        if exc is not None:
            raise exc

    async def close(self, reason: str = "closed") -> None:
        self.closed_with = reason
        if not self.ended.done():
            self.ended.set_result(None)


@contextlib.asynccontextmanager
async def console_on_service(scope: str = "control"):
    source = SyntheticSource("idle", 96, 64, seed=3)  # a still screen: what the page holds can be compared
    recorder = RecordingInput()
    service = RFBService(source, input_backend=ScopeGate(recorder, scope=scope), fps=60)
    await service.start()
    rfb_server = await asyncio.start_server(service.serve_connection, "127.0.0.1", 0)
    bridge = StandInBridge(rfb_server.sockets[0].getsockname()[:2])
    console = WebConsole(ConsoleConfig(session_id="123456789", token=TOKEN))
    console.on_event({"event": "authenticated", "safety_code": "4321"})
    await console.start(bridge)
    try:
        yield console, bridge, recorder
    finally:
        await console.close()
        rfb_server.close()
        await service.close()


async def http_get(port: int, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [f"GET {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in headers.items()] + ["", ""]
    writer.write("\r\n".join(lines).encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    status = int(data.split(b" ", 2)[1])
    return status, data.partition(b"\r\n\r\n")[2]


async def ws_status(port: int, path: str, *, origin: str | None, host: str | None = None) -> int | None:
    """None if the WebSocket opened, else the HTTP status it was refused with."""
    headers = {"Host": host} if host else None
    try:
        async with connect(f"ws://127.0.0.1:{port}{path}", origin=origin, additional_headers=headers,
                           open_timeout=10):
            return None
    except InvalidStatus as exc:
        return exc.response.status_code


async def test_refusals_over_the_wire():
    async with console_on_service() as (console, bridge, recorder):
        port = console.address[1]
        own = f"http://127.0.0.1:{port}"
        host = {"Host": f"127.0.0.1:{port}"}
        status, body = await http_get(port, f"/{TOKEN}/", host)
        assert status == 200 and b"console.js" in body  # the control: the right request works
        assert (await http_get(port, "/", host))[0] == 404  # no token
        assert (await http_get(port, f"/{TOKEN[:-1]}y/", host))[0] == 404  # a wrong token
        assert (await http_get(port, f"/{TOKEN}/", {"Host": f"evil.example:{port}"}))[0] == 403  # DNS rebinding
        assert (await http_get(port, f"/{TOKEN}/", {**host, "Origin": "http://evil.example"}))[0] == 403
        assert (await http_get(port, f"/{TOKEN}/nothing-here", host))[0] == 404
        assert await ws_status(port, f"/{TOKEN}/ws", origin=own) is None  # the control
        assert await ws_status(port, "/ws", origin=own) == 404
        assert await ws_status(port, f"/{'A' * len(TOKEN)}/ws", origin=own) == 404
        assert await ws_status(port, f"/{TOKEN}/ws", origin="http://evil.example") == 403
        assert await ws_status(port, f"/{TOKEN}/ws", origin=None) == 403
        assert await ws_status(port, f"/{TOKEN}/ws", origin=own, host=f"evil.example:{port}") == 403
        assert bridge.closed_with is None and recorder.calls == []


def test_the_console_refuses_a_non_loopback_address():
    from agent.errors import UsageError

    with pytest.raises(UsageError):
        ConsoleConfig(session_id="123456789", listen=("0.0.0.0", 0))


async def _page(port: int):
    return connect(f"ws://127.0.0.1:{port}/{TOKEN}/ws", origin=f"http://127.0.0.1:{port}", open_timeout=10)


async def _until(ws, predicate, timeout: float = 10.0):
    async def loop():
        while True:
            message = await ws.recv()
            if predicate(message):
                return message
    return await asyncio.wait_for(loop(), timeout)


def _is_state(pred):
    return lambda m: isinstance(m, str) and pred(json.loads(m))


async def test_the_page_gets_the_screen_and_its_keys_reach_the_customer():
    async with console_on_service("control") as (console, bridge, recorder):
        async with await _page(console.address[1]) as ws:
            first = json.loads(await ws.recv())
            assert first["session"] == "123 456 789" and first["safety_code"] == "4321"
            size = await _until(ws, lambda m: isinstance(m, bytes) and m[0] == 2)
            assert struct.unpack(">BHH", size) == (2, 96, 64)
            screen = np.zeros((64, 96, 4), np.uint8)
            painted = np.zeros((64, 96), bool)
            while not painted.all():  # the first screen, whole: the console sends nothing before it has one
                m = await _until(ws, lambda m: isinstance(m, bytes))
                _, x, y, w, h = struct.unpack(">BHHHH", m[:9])
                screen[y:y + h, x:x + w] = np.frombuffer(m[9:], np.uint8).reshape(h, w, 4)
                painted[y:y + h, x:x + w] = True
            assert np.array_equal(screen[..., :3], console._rfb.framebuffer[..., 2::-1])
            assert (screen[..., 3] == 255).all()
            await _until(ws, _is_state(lambda s: s["state"] == "active" and s["input"]))
            await ws.send(json.dumps({"t": "k", "s": 0x61, "d": True}))
            await ws.send(json.dumps({"t": "k", "s": 0x61, "d": False}))
            await ws.send(json.dumps({"t": "p", "x": 5000, "y": -3, "b": 1}))
            await ws.send(json.dumps({"t": "k", "s": "junk", "d": True}))
            await ws.send("not json")
            for _ in range(100):
                if len(recorder.calls) >= 3:
                    break
                await asyncio.sleep(0.05)
            assert recorder.calls == [("key", 0x61, True), ("key", 0x61, False), ("pointer", 95, 0, 1)]


async def test_no_input_is_forwarded_when_the_bridge_says_view():
    async with console_on_service("control") as (console, bridge, recorder):
        async with await _page(console.address[1]) as ws:
            await _until(ws, _is_state(lambda s: s["state"] == "active"))
            console.on_event({"event": "state", "state": "active", "scope": "view"})
            await _until(ws, _is_state(lambda s: s["scope"] == "view" and not s["input"]))
            await ws.send(json.dumps({"t": "k", "s": 0x61, "d": True}))
            await ws.send(json.dumps({"t": "p", "x": 1, "y": 1, "b": 0}))
            await asyncio.sleep(0.5)
            assert recorder.calls == []


async def test_end_session_closes_the_bridge_and_the_page_sees_ended():
    async with console_on_service() as (console, bridge, recorder):
        async with await _page(console.address[1]) as ws:
            await _until(ws, _is_state(lambda s: s["state"] == "active"))
            await ws.send(json.dumps({"t": "end"}))
            ended = json.loads(await _until(ws, _is_state(lambda s: s["state"] == "ended")))
            assert bridge.closed_with == "the technician ended the session"
            assert ended["reason"] == "you ended the session"


async def test_the_bridge_ending_reaches_the_page_with_its_reason():
    async with console_on_service() as (console, bridge, recorder):
        async with await _page(console.address[1]) as ws:
            await _until(ws, _is_state(lambda s: s["state"] == "active"))
            bridge.ended.set_result(SessionEndedError("the customer's agent ended the session: ended by the customer"))
            ended = json.loads(await _until(ws, _is_state(lambda s: s["state"] == "ended"), timeout=1.0))
            assert ended["reason"].endswith("ended by the customer")


async def test_a_local_vnc_viewer_taking_the_screen_shows_on_the_page_and_it_can_be_taken_back():
    async with console_on_service("control") as (console, bridge, recorder):
        async with await _page(console.address[1]) as ws:
            await _until(ws, _is_state(lambda s: s["state"] == "active" and s["input"] and not s["elsewhere"]))
            first = console._rfb
            # what the bridge reports when a VNC viewer on its --listen port takes the stream over
            console.on_event({"event": "local_viewer", "connected": True, "peer": "('127.0.0.1', 1)"})
            await _until(ws, _is_state(lambda s: s["elsewhere"] and not s["input"] and s["state"] == "active"))
            await ws.send(json.dumps({"t": "k", "s": 0x61, "d": True}))  # goes nowhere
            await ws.send(json.dumps({"t": "here"}))  # "Show it here"
            await _until(ws, _is_state(lambda s: not s["elsewhere"] and s["input"]))
            assert console._rfb is not first  # a new RFB connection: the bridge gives it the screen
            await ws.send(json.dumps({"t": "k", "s": 0x62, "d": True}))
            for _ in range(100):
                if ("key", 0x62, True) in recorder.calls:
                    break
                await asyncio.sleep(0.05)
            keys = [c for c in recorder.calls if c[0] == "key"]
            assert keys == [("key", 0x62, True)]  # the key typed while the screen was elsewhere went nowhere
            # taken again, then that viewer leaves: the console takes the screen back by itself
            console.on_event({"event": "local_viewer", "connected": True, "peer": "('127.0.0.1', 2)"})
            await _until(ws, _is_state(lambda s: s["elsewhere"]))
            second = console._rfb
            console.on_event({"event": "local_viewer", "connected": False, "peer": "('127.0.0.1', 2)"})
            await _until(ws, _is_state(lambda s: not s["elsewhere"] and s["input"]))
            assert console._rfb is not second

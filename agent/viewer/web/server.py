"""The technician's console: rejnet-viewer's session in a browser tab, served on loopback.

The seam with the bridge is narrow on purpose (the bridge is being reworked, issue 10):

* pixels: the console is an ordinary RFB client (``AsyncRFBClient``) of the bridge's own loopback
  RFB port, with continuous updates; it keeps the decoded framebuffer and sends each page the
  changed rectangles (``frames``);
* session facts: the bridge's ``on_event`` dicts, fed to ``WebConsole.on_event`` (``state``);
* the end: ``ViewerBridge.wait()`` returning or raising is "ended" with its reason, and the page's
  End session button is ``ViewerBridge.close()``.

Input from the page (keys by X keysym, pointer, wheel) goes into the same RFB connection, only
while ``ConsoleState.input_allowed``; the agent's scope gate drops it anyway outside control.

HTTP and WebSocket are the ``websockets`` library's; every request passes ``guard.check`` first.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from http import HTTPStatus
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from agent.net import require_loopback
from agent.rfb import messages as M
from agent.rfb.client import PIXEL_ENCODINGS
from agent.viewer.rfb_client import AsyncRFBClient, open_rfb
from agent.viewer.web import frames, guard
from agent.viewer.web.state import ConsoleState, group_session_id

log = logging.getLogger(__name__)
# websockets logs request lines (with the token in the path) at DEBUG: keep its logger above that.
_wire_log = logging.getLogger("agent.viewer.web.wire")
_wire_log.setLevel(logging.WARNING)

MAX_PAGES = 4                  # browser tabs open at once
MAX_MESSAGE = 4096             # page -> server messages are small JSON
FIGURES_INTERVAL = 1.0         # link figures to the page
FENCE_INTERVAL = 2.0           # RTT probe through the whole chain
FENCE_TIMEOUT = 10.0
END_GRACE = 1.0                # time the pages get to read "ended" before the server stops
ASSETS = {"": ("index.html", "text/html; charset=utf-8"),
          "console.js": ("console.js", "text/javascript; charset=utf-8"),
          "console.css": ("console.css", "text/css; charset=utf-8")}
WS_PATH = "ws"
BUTTONS_MAX = 0xFF
KEYSYM_MAX = 0x1FFFFFFF


class Bridge(Protocol):
    """What the console needs of ``agent.viewer.ViewerBridge``."""

    address: tuple[str, int] | None

    async def wait(self) -> None: ...

    async def close(self, reason: str = ...) -> None: ...


@dataclass(frozen=True)
class ConsoleConfig:
    session_id: str
    listen: tuple[str, int] = ("127.0.0.1", 0)
    token: str | None = None  # None: a fresh random one (tests pass their own)

    def __post_init__(self) -> None:
        require_loopback(*self.listen)


def _asset(name: str) -> bytes:
    return resources.files("agent.viewer.web").joinpath("static", name).read_bytes()


def _content_security_policy(port: int) -> str:
    ws = " ".join(f"ws://{name}:{port}" for name in guard.LOOPBACK_NAMES)
    return ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            f"connect-src 'self' {ws}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


class _Page:
    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.dirty = frames.Dirty()
        self.wake = asyncio.Event()
        self.wake.set()


class WebConsole:
    """Serves the console page and its WebSocket; see the module docstring."""

    def __init__(self, config: ConsoleConfig) -> None:
        self.config = config
        self.token = config.token or guard.new_token()
        self.state = ConsoleState(group_session_id(config.session_id))
        self.address: tuple[str, int] | None = None
        self._bridge: Bridge | None = None
        self._server: Server | None = None
        self._rfb: AsyncRFBClient | None = None
        self._pages: set[_Page] = set()
        self._tasks: list[asyncio.Task[Any]] = []
        self._pump: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._fences: dict[bytes, float] = {}
        self._updates = 0
        self._redirect_dir: str | None = None
        self._take_back: asyncio.Future[None] | None = None
        self._attaching = asyncio.Lock()  # one take-back at a time (a page opening, a click, a viewer leaving)
        self._closed = False
        self.ended = asyncio.Event()

    # ---------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        assert self.address is not None, "start() first"
        host, port = self.address
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}/{self.token}/"

    def on_event(self, event: dict) -> None:
        """The bridge's ``on_event``: may be called before ``start``."""
        if self.state.apply(event):
            self._broadcast_state()
            if self.state.state == "ended":
                self.ended.set()
        if event.get("event") == "local_viewer" and self.state.elsewhere and self.state.taken_by is None:
            # the VNC viewer that took the screen over has gone: show it here again
            self._take_back = asyncio.ensure_future(self._reattach())
            self._take_back.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def start(self, bridge: Bridge) -> None:
        """Connect to the bridge's RFB port and serve the page; call after ``bridge.start()``."""
        self._bridge = bridge
        assert bridge.address is not None, "the bridge must be listening"
        self._rfb = await open_rfb(*bridge.address, timeout=30.0)
        self.state.attached(self._rfb.local_address)
        self._server = await serve(self._serve_page, *self.config.listen, process_request=self._check,
                                   compression=None, max_size=MAX_MESSAGE, max_queue=64, server_header=None,
                                   logger=_wire_log)
        sock = self._server.sockets[0].getsockname()
        self.address = (sock[0], sock[1])
        self._pump = asyncio.create_task(self._pump_pixels())
        self._watcher = asyncio.create_task(self._watch_bridge())
        self._tasks = [asyncio.create_task(self._figures()), self._watcher]

    async def _reattach(self) -> None:
        """Take the screen back after another local VNC viewer took it over (the bridge gives its port to
        the newest local viewer): when a page opens, when the technician asks, or when that viewer left."""
        async with self._attaching:
            if self._bridge is None or self._bridge.address is None or self.state.state == "ended":
                return
            if self._rfb is not None and self._rfb.error is None and not self._pump.done() \
                    and not self.state.elsewhere:
                return
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._pump
            if self._rfb is not None:
                await self._rfb.close()
            self._rfb = await open_rfb(*self._bridge.address, timeout=30.0)
            if self.state.attached(self._rfb.local_address):
                self._broadcast_state()
            self._pump = asyncio.create_task(self._pump_pixels())

    async def close(self) -> None:
        """Tell the pages the session ended (if it did), then stop serving."""
        if self._closed:
            return
        self._closed = True
        if self._watcher is not None:  # the bridge's end and its reason, when that is why we close
            await asyncio.wait([self._watcher], timeout=END_GRACE)
        if self.state.state != "ended":
            self.state.end("rejnet-viewer stopped")
        tasks = self._tasks + [t for t in (self._pump, self._take_back) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        pages = list(self._pages)
        await asyncio.gather(*(self._close_page(p) for p in pages), return_exceptions=True)
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), END_GRACE + 1)
        if self._rfb is not None:
            await self._rfb.close()
        self._remove_redirect()

    async def _close_page(self, page: _Page) -> None:
        async def last_words() -> None:
            await page.ws.send(json.dumps(self.state.snapshot()))
            await page.ws.close(1000, "session ended")

        with contextlib.suppress(Exception):
            await asyncio.wait_for(last_words(), END_GRACE)

    async def _watch_bridge(self) -> None:
        assert self._bridge is not None
        try:
            await self._bridge.wait()
            reason = "the session was closed"
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # SessionEndedError, ChannelError: their text is the reason
            reason = str(exc) or type(exc).__name__
        if self.state.end(reason):
            self._broadcast_state()
        self.ended.set()

    # ---------------------------------------------------------------- browser

    def redirect_file(self) -> Path:
        """A 0600 file that forwards the browser to the console's URL.

        Opening this file instead of the URL keeps the token out of the browser's command line,
        which every local user can read in ``ps`` (Jupyter does the same)."""
        if self._redirect_dir is None:
            self._redirect_dir = tempfile.mkdtemp(prefix="rejnet-console-")  # 0700
        path = Path(self._redirect_dir) / "console.html"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(f'<!doctype html><meta charset="utf-8"><meta name="referrer" content="no-referrer">'
                      f'<meta http-equiv="refresh" content="0;url={self.url}">'
                      f'<title>rejnet</title><a href="{self.url}">rejnet console</a>\n')
        return path

    def _remove_redirect(self) -> None:
        if self._redirect_dir is not None:
            with contextlib.suppress(OSError):
                os.unlink(Path(self._redirect_dir) / "console.html")
            with contextlib.suppress(OSError):
                os.rmdir(self._redirect_dir)
            self._redirect_dir = None

    # ---------------------------------------------------------------- HTTP

    def _check(self, connection: ServerConnection, request: Request) -> Response | None:
        assert self.address is not None
        peer = connection.remote_address[0] if connection.remote_address else None
        websocket = "upgrade" in request.headers.get("Connection", "").lower()
        refusal, resource = guard.check(path=request.path, headers=request.headers, peer=peer,
                                        port=self.address[1], token=self.token, websocket=websocket)
        if refusal is not None:
            log.info("console request refused: %s", refusal.reason)  # no path: it may hold a token guess
            return self._response(refusal.status, refusal.reason.encode() + b"\n", "text/plain; charset=utf-8")
        if resource == WS_PATH and websocket:
            if len(self._pages) >= MAX_PAGES:
                return self._response(503, b"too many console tabs are open\n", "text/plain; charset=utf-8")
            return None  # go on with the WebSocket handshake
        if resource in ASSETS and not websocket:
            name, ctype = ASSETS[resource]
            return self._response(200, _asset(name), ctype)
        return self._response(404, b"not found\n", "text/plain; charset=utf-8")

    def _response(self, status: int, body: bytes, content_type: str) -> Response:
        assert self.address is not None
        headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body))),
                           ("Cache-Control", "no-store"), ("Referrer-Policy", "no-referrer"),
                           ("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY"),
                           ("Cross-Origin-Resource-Policy", "same-origin"),
                           ("Content-Security-Policy", _content_security_policy(self.address[1]))])
        return Response(status, HTTPStatus(status).phrase, headers, body)

    # ---------------------------------------------------------------- the page's socket

    async def _serve_page(self, ws: ServerConnection) -> None:
        page = _Page(ws)
        self._pages.add(page)
        sender = asyncio.create_task(self._send_pixels(page))
        try:
            with contextlib.suppress(Exception):
                await self._reattach()
            await ws.send(json.dumps(self.state.snapshot()))
            async for message in ws:
                if isinstance(message, str):
                    await self._handle(message)
        except ConnectionClosed:
            pass
        finally:
            self._pages.discard(page)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender

    async def _send_pixels(self, page: _Page) -> None:
        while True:
            await page.wake.wait()
            page.wake.clear()
            rfb = self._rfb
            if rfb is None or not page.dirty or self.state.width == 0:
                continue  # nothing to send, or no screen yet (pixels() wakes every page when it comes)
            for message in page.dirty.take(rfb.framebuffer):
                await page.ws.send(message)

    def _broadcast_state(self) -> None:
        text = json.dumps(self.state.snapshot())
        for page in list(self._pages):
            task = asyncio.ensure_future(page.ws.send(text))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _handle(self, text: str) -> None:
        """One message from the page: input, or the End session button."""
        try:
            msg = json.loads(text)
        except ValueError:
            return
        if not isinstance(msg, dict):
            return
        kind = msg.get("t")
        if kind == "end":
            await self.end_session()
            return
        if kind == "here":  # "Show it here": take the screen back from another local VNC viewer
            await self._reattach()
            return
        rfb = self._rfb
        if rfb is None or not self.state.input_allowed:
            return
        if kind == "k":
            keysym, down = msg.get("s"), msg.get("d")
            if isinstance(keysym, int) and 0 < keysym <= KEYSYM_MAX and isinstance(down, bool):
                await rfb.key(keysym, down)
        elif kind == "p":
            x, y, buttons = msg.get("x"), msg.get("y"), msg.get("b")
            if all(isinstance(v, int) and not isinstance(v, bool) for v in (x, y, buttons)):
                x = min(max(x, 0), max(rfb.width - 1, 0))
                y = min(max(y, 0), max(rfb.height - 1, 0))
                await rfb.pointer(x, y, buttons & BUTTONS_MAX)

    async def end_session(self) -> None:
        """The End session button: the bridge closes the channel with our reason."""
        if self._bridge is None or self.state.state == "ended":
            return
        self.state.end("you ended the session")
        self._broadcast_state()
        self.ended.set()
        await self._bridge.close("the technician ended the session")

    # ---------------------------------------------------------------- pixels and figures

    async def _pump_pixels(self) -> None:
        rfb = self._rfb
        assert rfb is not None
        try:
            await rfb.update(incremental=False, timeout=None)
            self._screen_changed(rfb)
            await rfb.enable_continuous_updates(True)
            while True:
                event = await rfb.next_event(None)
                if isinstance(event, M.FramebufferUpdate):
                    if (rfb.width, rfb.height) != (self.state.width, self.state.height):
                        self._screen_changed(rfb)
                        continue
                    rects = [(x, y, w, h) for (x, y, w, h, enc) in event.rects
                             if enc in PIXEL_ENCODINGS and w > 0 and h > 0]
                    if rects:
                        self._updates += 1
                        for page in self._pages:
                            page.dirty.add(rects)
                            page.wake.set()
                elif isinstance(event, M.DesktopResized):
                    self._screen_changed(rfb)
                elif isinstance(event, M.Fence):
                    sent = self._fences.pop(bytes(event.payload), None)
                    if sent is not None and self.state.measured(rtt_ms=1000 * (time.monotonic() - sent)):
                        self._broadcast_state()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the bridge closed our connection: its wait() says why
            log.info("the console's RFB connection ended: %s", exc)

    def _screen_changed(self, rfb: AsyncRFBClient) -> None:
        if self.state.pixels(rfb.width, rfb.height):
            self._broadcast_state()
        self._updates += 1
        for page in self._pages:
            page.dirty.mark_all()
            page.wake.set()

    async def _figures(self) -> None:
        rfb = self._rfb
        assert rfb is not None
        last_t, last_bytes, last_updates = time.monotonic(), rfb.bytes_received, self._updates
        next_fence = 0.0
        serial = 0
        while True:
            await asyncio.sleep(FIGURES_INTERVAL)
            if rfb is not self._rfb:  # reattached: a new connection, new counters
                rfb = self._rfb
                assert rfb is not None
                last_bytes = rfb.bytes_received
            now = time.monotonic()
            span = max(now - last_t, 1e-3)
            kbit = 8 * (rfb.bytes_received - last_bytes) / span / 1000
            fps = (self._updates - last_updates) / span
            last_t, last_bytes, last_updates = now, rfb.bytes_received, self._updates
            if self.state.measured(kbit_s=kbit, fps=fps):
                self._broadcast_state()
            self._fences = {k: t for k, t in self._fences.items() if now - t < FENCE_TIMEOUT}
            if now >= next_fence and rfb.error is None:
                serial += 1
                payload = b"rejnet-rtt" + serial.to_bytes(4, "big")
                self._fences[payload] = time.monotonic()
                with contextlib.suppress(Exception):
                    await rfb.fence(M.FENCE_REQUEST, payload)
                next_fence = now + FENCE_INTERVAL

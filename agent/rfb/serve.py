"""Serving RFB over asyncio streams: RFBService (library) and ``rejnet-agent rfb`` (command).

RFBService runs one capture loop (grab + change detection in a worker thread;
the kernels release the GIL) feeding every connected viewer, each with its own
RFBServer, ViewerUpdater, tracker and encoder state. ``serve_connection``
works on any (reader, writer) pair with the asyncio streams duck type, so the
session layer runs it over the encrypted channel and this module over TCP.

A viewer that misbehaves (malformed bytes, a dying link, an encoder failure)
is closed with a logged reason; the others and the service carry on.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import time
from typing import Any, Callable, Optional

import numpy as np

from agent.addresses import parse_address, read_password, require_loopback
from agent.capture.base import CursorShape, ScreenSource
from agent.encode.manager import EncodeManager
from agent.errors import CaptureError, UsageError
from agent.inputs.base import InputBackend, InputError, NullInput
from agent.rfb import messages as M
from agent.rfb import vncauth
from agent.rfb.errors import RemoteProtocolError
from agent.rfb.server import NEED_DATA, RFBServer
from agent.rfb.updater import UpdateStats, ViewerUpdater
from agent.streams import close_stream, stop_server

log = logging.getLogger(__name__)

READ_SIZE = 64 * 1024
HANDSHAKE_TIMEOUT = 30.0    # seconds from connect to ClientInit
AUTH_FAILURE_DELAY = 1.0    # seconds before answering a wrong password
MAX_IDLE_INTERVAL = 0.25    # slowest capture poll while nothing changes (no damage hint)
DAMAGE_SETTLE = 0.004       # seconds between X's first damage report and the grab (TigerVNC: DeferUpdate)
HINT_CONFIRM_INTERVAL = 1.0 # with a damage hint: grab at least this often anyway (a hint is never trusted alone)
IDLE_BACKOFF = 1.5          # poll interval growth per unchanged frame
MAX_VIEWERS = 16
MAX_FPS = 120.0


class Viewer:
    """One connected viewer: its protocol state, update logic and I/O task."""

    def __init__(self, peer: str, server: RFBServer, updater: ViewerUpdater) -> None:
        self.peer = peer
        self.server = server
        self.updater = updater
        self.connected_at = time.monotonic()
        self._kick = asyncio.Event()

    @property
    def stats(self) -> UpdateStats:
        return self.updater.stats

    def kick(self) -> None:
        """Ask this viewer's sender to try an update now (new frame, request, link has room)."""
        self._kick.set()

    def __repr__(self) -> str:
        return f"<Viewer {self.peer} {self.server.width}x{self.server.height}>"


class RFBService:
    """Capture once, serve many viewers over any stream pair."""

    def __init__(self, source: ScreenSource, *, input_backend: Optional[InputBackend] = None,
                 password: Optional[str] = None, view_only: bool = True, fps: float = 30,
                 name: str = "rejnet") -> None:
        if not 0 < fps <= MAX_FPS:
            raise ValueError(f"fps must be in (0, {MAX_FPS}], got {fps}")
        self.source = source
        self.input_backend = input_backend if input_backend is not None else NullInput()
        self.__password = password
        self.view_only = view_only  # the session flips this with the consent scope
        self.fps = fps
        self.name = name
        self.auth_failure_delay = AUTH_FAILURE_DELAY
        self.on_update: Optional[Callable[[Viewer, UpdateStats], None]] = None
        self.on_cut_text: Optional[Callable[[Viewer, str], None]] = None
        self.frames_captured = 0
        self.frames_skipped = 0  # ticks where the damage hint spared a grab
        self._hint: Any = None  # None: not probed yet; False: the source has no damage hint
        self.failure: Optional[BaseException] = None  # set when capture died
        self._viewers: set[Viewer] = set()
        self._frame: Optional[np.ndarray] = None
        self._cursor: Optional[CursorShape] = None
        self._detector: Any = None
        self._detector_size = (0, 0)
        self._wake = asyncio.Event()
        self._input_seen = False  # input usually changes the screen: poll at full rate again
        self._task: Optional[asyncio.Task] = None
        self._closing = False
        self._connections: set[asyncio.Task] = set()

    @property
    def viewers(self) -> list[Viewer]:
        return list(self._viewers)

    # ---------------------------------------------------------------- capture

    async def start(self) -> None:
        """Start the capture loop (idempotent)."""
        if self._task is None:
            self._task = asyncio.ensure_future(self._capture_loop())

    def _damage_hint(self) -> Optional[Callable[[], Optional[bool]]]:
        """The source's "anything drawn since the last grab?" query (X DAMAGE), if it has a working one."""
        if self._hint is None:
            query = getattr(self.source, "damaged", None)
            self._hint = query if callable(query) and query() is not None else False
        return self._hint or None

    def _grab(self, force: bool = True) -> Optional[tuple[np.ndarray, Any, Optional[CursorShape]]]:
        """Worker thread: capture, detect, and copy the frame only when it changed.

        Returns None, without grabbing, when the damage hint says nothing was
        drawn and ``force`` is off; the tile hashes confirm every grab.
        """
        from agent.detect import ChangeDetector

        hint = self._damage_hint()
        if not force and hint is not None and hint() is False:
            return None
        frame = self.source.grab()
        height, width = frame.shape[:2]
        if self._detector is None:
            self._detector = ChangeDetector(width, height)
        elif self._detector_size != (width, height):
            self._detector.resize(width, height)
        self._detector_size = (width, height)
        changes = self._detector.update(frame)
        owned = self._frame
        if owned is None or not changes.is_empty() or owned.shape != frame.shape:
            # viewers encode from a frame nobody writes to; a source that may reuse its buffer is copied
            owned = frame if self.source.fresh_frames else frame.copy()
        return owned, changes, self.source.cursor()

    async def _wait_for_damage(self, timeout: float) -> None:
        """Sleep until the X connection has news (a DAMAGE event), a wake-up, or ``timeout``."""
        fileno = getattr(self.source, "hint_fileno", None)
        fd = fileno() if callable(fileno) else None
        if fd is None or timeout <= 0:
            await asyncio.sleep(min(max(timeout, 0.0), 1.0 / self.fps))
            return
        loop = asyncio.get_running_loop()
        readable = loop.create_future()
        loop.add_reader(fd, lambda: readable.done() or readable.set_result(None))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({readable, waker}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            loop.remove_reader(fd)
            waker.cancel()
            readable.cancel()
        if readable.done() and not readable.cancelled():
            # one keystroke is several X drawing requests (glyph, cursor, status line):
            # a short pause lets one grab catch them all instead of one now and one a frame later
            await asyncio.sleep(DAMAGE_SETTLE)

    async def _capture_loop(self) -> None:
        loop = asyncio.get_running_loop()
        interval = 1.0 / self.fps
        last_grab = float("-inf")
        try:
            while not self._closing:
                if not self._viewers:
                    self._wake.clear()
                    await self._wake.wait()  # nobody to serve: no capture at all
                    continue
                started = loop.time()
                self._wake.clear()  # wake-ups during the grab count for the next wait
                input_seen, self._input_seen = self._input_seen, False
                force = input_seen or self._frame is None or started - last_grab >= HINT_CONFIRM_INTERVAL
                grabbed = await asyncio.to_thread(self._grab, force)
                if grabbed is None:  # the damage hint says idle: sleep until X reports drawing
                    self.frames_skipped += 1
                    await self._wait_for_damage(last_grab + HINT_CONFIRM_INTERVAL - loop.time())
                    await asyncio.sleep(max(0.0, 1.0 / self.fps - (loop.time() - started)))
                    continue
                frame, changes, cursor = grabbed
                last_grab = started
                self.frames_captured += 1
                self._frame, self._cursor = frame, cursor
                for viewer in list(self._viewers):
                    viewer.updater.on_frame(frame, changes)
                    viewer.updater.on_cursor(cursor)
                    viewer.kick()
                if changes.is_empty() and not input_seen and self._hint is False:
                    # no damage hint: back off polling an idle screen (with one, ticks are cheap hint checks)
                    interval = min(interval * IDLE_BACKOFF, MAX_IDLE_INTERVAL)
                else:
                    interval = 1.0 / self.fps
                delay = max(0.0, interval - (loop.time() - started))
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
                rest = 1.0 / self.fps - (loop.time() - started)
                if rest > 0:  # woken early (input, new viewer): still never above --fps
                    await asyncio.sleep(rest)
        except CaptureError as exc:
            log.error("capture failed, closing all viewers: %s", exc)
            self.failure = exc
            for task in list(self._connections):
                task.cancel()
        except Exception as exc:  # a bug must not leave viewers hanging on a dead loop
            log.exception("capture loop crashed")
            self.failure = exc
            for task in list(self._connections):
                task.cancel()

    # ---------------------------------------------------------------- connections

    async def serve_connection(self, reader: Any, writer: Any, *, security: str = "none",
                               may_send: Optional[Callable[[], bool]] = None, outer_compression: bool = False) -> None:
        """Serve one viewer until it leaves or misbehaves; never raises for the viewer's faults.

        ``outer_compression``: the transport compresses again (the secure channel's ZDATA), so the
        encoders leave repetition to it (see EncodeManager.outer_compression).
        """
        peer = str(writer.get_extra_info("peername", None) or "stream")
        if security == "vnc" and not self.__password:
            raise ValueError("security='vnc' needs the service to have a password")
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        viewer: Optional[Viewer] = None
        width, height = self.source.size if self._frame is None else self._frame.shape[1::-1]
        server = RFBServer(width, height, self.name, security=security,
                           password=self.__password if security == "vnc" else None)
        try:
            refusal = ("service closing" if self._closing else "screen capture failed" if self.failure is not None
                       else "too many viewers" if len(self._viewers) >= MAX_VIEWERS else None)
            if refusal is not None:
                log.warning("refusing viewer %s: %s", peer, refusal)
                return
            await self._write(writer, server)
            if not await asyncio.wait_for(self._handshake(reader, writer, server, peer), HANDSHAKE_TIMEOUT):
                return
            manager = EncodeManager()
            manager.outer_compression = outer_compression
            viewer = Viewer(peer, server, ViewerUpdater(server, may_send=may_send, manager=manager))
            viewer.updater.on_update = lambda stats, v=viewer: self._notify(v, stats)
            if self._frame is not None:
                viewer.updater.on_frame(self._frame, None)
                viewer.updater.on_cursor(self._cursor)
            self._viewers.add(viewer)
            self._wake.set()
            log.info("viewer %s connected (RFB %d.%d)", peer, *server.version)
            await self._run_viewer(reader, writer, viewer)
        except RemoteProtocolError as exc:
            log.warning("closing viewer %s: %s", peer, exc.reason)
        except asyncio.TimeoutError:
            log.warning("closing viewer %s: handshake not completed within %g s", peer, HANDSHAKE_TIMEOUT)
        except (ConnectionError, OSError, asyncio.IncompleteReadError) as exc:
            log.info("viewer %s connection lost: %s", peer, exc or type(exc).__name__)
        except asyncio.CancelledError:
            log.info("closing viewer %s: service stopping", peer)
            if not self._closing and self.failure is None:
                raise
        except Exception:
            log.exception("closing viewer %s after an internal error", peer)
        finally:
            if viewer is not None:
                self._viewers.discard(viewer)
                if not self.view_only:
                    with contextlib.suppress(InputError):
                        self.input_backend.release_all()  # no stuck keys after a viewer leaves
            if task is not None:
                self._connections.discard(task)
            await self._close_writer(writer, server)

    def bell(self) -> None:
        """Ring every viewer's bell."""
        for viewer in self._viewers:
            viewer.server.send_bell()
            viewer.kick()

    def send_cut_text(self, text: str) -> None:
        """Put ``text`` on every viewer's clipboard (Latin-1, as RFB defines it; at most 1 MiB)."""
        for viewer in self._viewers:
            viewer.server.send_server_cut_text(text)
            viewer.kick()

    def kick_all(self) -> None:
        """Let every viewer try an update now, e.g. when the link's ``may_send`` turned true again."""
        for viewer in self._viewers:
            viewer.kick()

    def _notify(self, viewer: Viewer, stats: UpdateStats) -> None:
        if self.on_update is not None:
            self.on_update(viewer, stats)

    async def _write(self, writer: Any, server: RFBServer) -> None:
        data = server.data_to_send()
        if data:
            writer.write(data)
            await writer.drain()

    async def _close_writer(self, writer: Any, server: RFBServer) -> None:
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            data = server.data_to_send()  # e.g. a SecurityResult with its reason
            if data and not writer.is_closing():
                writer.write(data)
                await asyncio.wait_for(writer.drain(), 1.0)
        with contextlib.suppress(RuntimeError):  # a transport whose loop is already gone
            await close_stream(writer)

    async def _handshake(self, reader: Any, writer: Any, server: RFBServer, peer: str) -> bool:
        """Up to ClientInit; False when the viewer failed authentication or left."""
        while True:
            event = server.next_event()
            if event is NEED_DATA:
                await self._write(writer, server)
                server.receive_data(await reader.read(READ_SIZE))
                continue
            if isinstance(event, M.ClientInit):
                return True
            if isinstance(event, M.AuthenticationFailed):
                log.warning("viewer %s failed VNC authentication", peer)
                await asyncio.sleep(self.auth_failure_delay)
                return False
            if isinstance(event, M.ConnectionClosed):
                log.info("viewer %s left during the handshake", peer)
                return False

    async def _run_viewer(self, reader: Any, writer: Any, viewer: Viewer) -> None:
        receiver = asyncio.ensure_future(self._receive_loop(reader, viewer))
        sender = asyncio.ensure_future(self._send_loop(writer, viewer))
        try:
            done, _ = await asyncio.wait({receiver, sender}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (receiver, sender):
                task.cancel()
            for task in (receiver, sender):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for task in done:
            task.result()  # re-raise the reason, for serve_connection to log

    async def _receive_loop(self, reader: Any, viewer: Viewer) -> None:
        server = viewer.server
        while True:
            event = server.next_event()
            if event is NEED_DATA:
                viewer.kick()  # answer requests and flush fence replies before blocking
                server.receive_data(await reader.read(READ_SIZE))
                continue
            if isinstance(event, M.ConnectionClosed):
                log.info("viewer %s disconnected", viewer.peer)
                return
            self._dispatch(viewer, event)

    def _dispatch(self, viewer: Viewer, event: object) -> None:
        if isinstance(event, M.KeyEvent):
            if not self.view_only:
                self._inject(self.input_backend.key, event.keysym, event.down)
        elif isinstance(event, M.PointerEvent):
            if not self.view_only:
                self._inject(self.input_backend.pointer, event.x, event.y, event.button_mask)
        elif isinstance(event, M.ClientCutText):
            if self.on_cut_text is not None:
                self.on_cut_text(viewer, event.text)
        else:
            viewer.updater.handle_event(event)

    def _inject(self, fn: Callable[..., None], *args: int) -> None:
        try:
            fn(*args)
        except InputError as exc:
            log.warning("input dropped: %s", exc)
            return
        if not self._input_seen:
            self._input_seen = True
            self._wake.set()  # look at the screen now rather than after an idle back-off

    async def _send_loop(self, writer: Any, viewer: Viewer) -> None:
        loop = asyncio.get_running_loop()
        updater = viewer.updater
        timer: Optional[asyncio.TimerHandle] = None
        while True:
            await viewer._kick.wait()
            viewer._kick.clear()
            now = loop.time()
            job = updater.prepare_update(now)
            if job is not None:
                # Encoding releases the GIL: other viewers, input and capture go on meanwhile.
                encoded = await asyncio.to_thread(updater.encode_job, job)
                updater.finish_update(job, encoded, loop.time())
            if updater.close_reason is not None:
                raise RemoteProtocolError(updater.close_reason)
            await self._write(writer, viewer.server)
            if timer is not None:
                timer.cancel()
                timer = None
            due = updater.refresh_due_at(now)
            if due is not None and due > now and updater.wants_update:
                timer = loop.call_at(due, viewer.kick)  # the lossless refresh of JPEG areas

    async def close(self) -> None:
        """Stop capturing and close every viewer."""
        self._closing = True
        self._wake.set()
        for task in list(self._connections):
            task.cancel()
        for task in list(self._connections):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None


# -------------------------------------------------------------------- the command

def parse_loopback_listen(value: str) -> tuple[str, int]:
    """HOST:PORT where HOST resolves only to loopback addresses; UsageError otherwise."""
    host, port = parse_address(value, allow_port_zero=True)
    require_loopback(host, port)
    return host, port


def _read_password(args: argparse.Namespace) -> Optional[str]:
    env = os.environ.get("REJNET_PASSWORD")
    if args.no_auth:
        if env:
            raise UsageError("--no-auth conflicts with REJNET_PASSWORD being set; unset one of them")
        return None
    password = read_password(args.password_file, prompt="VNC password for viewers: ", hint=", or pass --no-auth")
    if vncauth.password_truncated(password):
        log.warning("VNC authentication only uses the first 8 characters of the password")
    return password


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", required=True, metavar="127.0.0.1:PORT",
                        help="loopback address to listen on (non-loopback addresses are refused)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--display", metavar=":N", help="X display to capture (default $DISPLAY)")
    where.add_argument("--screen", metavar="synthetic:WORKLOAD", help="a synthetic screen instead of a display")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--view-only", action="store_true", default=True,
                      help="drop viewers' keyboard and mouse input (the default)")
    mode.add_argument("--control", action="store_true",
                      help="let viewers drive this display's keyboard and mouse (X11 XTest)")
    auth = parser.add_mutually_exclusive_group()
    auth.add_argument("--no-auth", action="store_true", help="no VNC password (anyone on this machine can view)")
    auth.add_argument("--password-file", metavar="F",
                      help="file whose first line is the VNC password (else REJNET_PASSWORD, else a prompt)")
    parser.add_argument("--fps", type=float, default=30.0, help="capture rate while the screen changes (default 30)")


async def _serve(source: ScreenSource, host: str, port: int, password: Optional[str], fps: float,
                 input_backend: Optional[InputBackend]) -> int:
    service = RFBService(source, password=password, input_backend=input_backend,
                         view_only=input_backend is None, fps=fps)
    security = "vnc" if password else "none"
    await service.start()
    server = await asyncio.start_server(
        lambda r, w: service.serve_connection(r, w, security=security), host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    bound = server.sockets[0].getsockname()
    shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    print(f"listening on {shown}:{bound[1]} ({source.description or 'screen'}, "
          f"{'VNC password' if password else 'no authentication'})", flush=True)
    try:
        while not stop.is_set() and service.failure is None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
    finally:
        await stop_server(server)
        await service.close()
        await server.wait_closed()
    if isinstance(service.failure, CaptureError):
        raise service.failure
    return 0 if service.failure is None else 1


def run(args: argparse.Namespace) -> int:
    if not 0 < args.fps <= MAX_FPS:
        raise UsageError(f"--fps must be in (0, {MAX_FPS:g}]")
    host, port = parse_loopback_listen(args.listen)
    password = _read_password(args)
    from agent.capture import open_source

    if args.control and args.screen:
        raise UsageError("--control needs a real display, not a synthetic screen")
    source = open_source(args.screen, args.display)
    input_backend: Optional[InputBackend] = None
    try:
        if args.control:
            from agent.inputs import open_input_backend

            try:
                input_backend = open_input_backend(args.display)
            except InputError as exc:
                raise CaptureError(f"cannot inject input: {exc}") from None
        return asyncio.run(_serve(source, host, port, password, args.fps, input_backend))
    finally:
        if input_backend is not None:
            input_backend.close()
        source.close()

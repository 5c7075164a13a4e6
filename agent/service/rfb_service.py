"""RFBService: capture once, serve many RFB connections over any stream pair (the library API).

One CaptureLoop feeds every connected client, each with its own RFBServer,
ViewerUpdater, tracker and encoder state (service/connection.py).
``serve_connection`` works on any (reader, writer) pair with the asyncio
streams duck type, so the session runs it over the encrypted channel and
``rejnet-agent rfb`` over TCP.

Input goes to ``input_backend`` as it comes: the consent gate is the backend
(a ``ScopeGate`` in a session, a ``NullInput`` for a view-only ``rfb``), never
a flag here. A client that misbehaves (malformed bytes, a dying link, an
encoder failure) is closed with a logged reason; the others and the service
carry on.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Callable, Optional

import numpy as np

from agent.capture.base import ScreenSource
from agent.changes.detector import Changes
from agent.encode.manager import EncodeManager
from agent.inputs.base import InputBackend, InputError, NullInput
from agent.models import CursorShape
from agent.rfb import messages as M
from agent.rfb.server import RFBServer
from agent.sansio import RemoteProtocolError
from agent.service.capture_loop import CHURN_FPS, ONE_FRAME_MIN_BYTES, CaptureLoop
from agent.service.priority import LinkState
from agent.service.connection import RFBConnection, close_connection, flush, handshake
from agent.service.updater import UpdateStats, ViewerUpdater

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 30.0    # seconds from connect to ClientInit
AUTH_FAILURE_DELAY = 1.0    # seconds before answering a wrong password
MAX_VIEWERS = 16
MAX_FPS = 120.0


class RFBService:
    """Capture once, serve many RFB clients over any stream pair."""

    def __init__(self, source: ScreenSource, *, input_backend: Optional[InputBackend] = None,
                 password: Optional[str] = None, fps: float = 30, name: str = "rejnet",
                 one_frame_min_bytes: int = ONE_FRAME_MIN_BYTES, churn_fps: float = CHURN_FPS) -> None:
        """``one_frame_min_bytes``: screens of this many bytes (4 x width x height) or more keep one frame
        in memory instead of two (agent.service.capture_loop); 0 for every screen. ``churn_fps``: grabs
        a second of areas that never stop changing, such as a scrolling log (agent.service.churn_damage);
        0 grabs them at ``fps`` like the rest of the screen."""
        if not 0 < fps <= MAX_FPS:
            raise ValueError(f"fps must be in (0, {MAX_FPS}], got {fps}")
        if not 0 <= churn_fps <= MAX_FPS:
            raise ValueError(f"churn_fps must be in [0, {MAX_FPS}], got {churn_fps}")
        if isinstance(one_frame_min_bytes, bool) or not isinstance(one_frame_min_bytes, int) or one_frame_min_bytes < 0:
            raise ValueError(f"one_frame_min_bytes must be a whole number of bytes >= 0, got {one_frame_min_bytes!r}")
        self.source = source
        self.input_backend = input_backend if input_backend is not None else NullInput()
        self.__password = password
        self.fps = fps
        self.name = name
        self.auth_failure_delay = AUTH_FAILURE_DELAY
        self.on_update: Optional[Callable[[RFBConnection, UpdateStats], None]] = None
        self.on_cut_text: Optional[Callable[[RFBConnection, str], None]] = None
        self.failure: Optional[BaseException] = None  # set when capture died
        self._quality_cap: Optional[int] = None
        self._viewers: set[RFBConnection] = set()
        self._closing = False
        self._connections: set[asyncio.Task[Any]] = set()
        self._capture = CaptureLoop(source, fps, on_frame=self._on_frame, wanted=lambda: bool(self._viewers),
                                    on_failure=self._on_capture_failure, one_frame_min_bytes=one_frame_min_bytes,
                                    churn_fps=churn_fps)

    @property
    def viewers(self) -> list[RFBConnection]:
        return list(self._viewers)

    @property
    def frames_captured(self) -> int:
        return self._capture.frames_captured

    @property
    def frames_skipped(self) -> int:
        return self._capture.frames_skipped

    async def start(self) -> None:
        """Start the capture loop (idempotent)."""
        self._capture.start()

    async def close(self) -> None:
        """Stop capturing and close every connection."""
        self._closing = True
        for task in list(self._connections):
            task.cancel()
        for task in list(self._connections):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._capture.close()

    def set_link_quality(self, quality_cap: Optional[int]) -> None:
        """The JPEG quality ceiling the link can afford now (flow control), for every client; kicks them."""
        self._quality_cap = quality_cap
        for viewer in self._viewers:
            viewer.updater.manager.quality_cap = quality_cap
            viewer.kick()

    def bell(self) -> None:
        """Ring every client's bell."""
        for viewer in self._viewers:
            viewer.server.send_bell()
            viewer.kick()

    def send_cut_text(self, text: str) -> None:
        """Put ``text`` on every client's clipboard (Latin-1, as RFB defines it; at most 1 MiB)."""
        for viewer in self._viewers:
            viewer.server.send_server_cut_text(text)
            viewer.kick()

    def kick_all(self) -> None:
        """Let every client try an update now, e.g. when the link's ``may_send`` turned true again."""
        for viewer in self._viewers:
            viewer.kick()

    def refresh_all(self) -> None:
        """Every client gets one full frame with its next update (a resumed session: mosh's model, the
        current state rather than what was missed) and may send it now."""
        for viewer in self._viewers:
            viewer.refresh()

    async def serve_connection(self, reader: Any, writer: Any, *, security: str = "none",
                               may_send: Optional[Callable[[], bool]] = None, outer_compression: bool = False,
                               link: Optional[Callable[[], Optional[LinkState]]] = None,
                               link_sent: Optional[Callable[[], Optional[int]]] = None) -> None:
        """Serve one client until it leaves or misbehaves; never raises for the client's faults.

        ``outer_compression``: the transport compresses again (the secure channel's ZDATA), so the
        encoders leave repetition to it (see EncodeManager.outer_compression). ``link``: what flow
        control knows of the link now, which paces the bulk while the technician interacts so an echo
        never waits behind it (agent.service.priority); ``link_sent``: its ``sent`` alone, read around
        every update's flush (cheaper than the whole state).
        """
        peer = str(writer.get_extra_info("peername", None) or "stream")
        if security == "vnc" and not self.__password:
            raise ValueError("security='vnc' needs the service to have a password")
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        viewer: Optional[RFBConnection] = None
        width, height = self._capture.size
        server = RFBServer(width, height, self.name, security=security,
                           password=self.__password if security == "vnc" else None)
        try:
            refusal = ("service closing" if self._closing else "screen capture failed" if self.failure is not None
                       else "too many viewers" if len(self._viewers) >= MAX_VIEWERS else None)
            if refusal is not None:
                log.warning("refusing viewer %s: %s", peer, refusal)
                return
            await flush(writer, server)
            if not await asyncio.wait_for(handshake(reader, writer, server, peer, self.auth_failure_delay),
                                          HANDSHAKE_TIMEOUT):
                return
            manager = EncodeManager()
            manager.outer_compression = outer_compression
            manager.quality_cap = self._quality_cap
            updater = ViewerUpdater(server, may_send=may_send, manager=manager, link=link, link_sent=link_sent)
            updater.push_echoes = link is not None  # a session's channel: see ViewerUpdater.push_echoes
            viewer = RFBConnection(peer, server, updater, reader, writer, gate=self._capture.gate)
            viewer.updater.on_update = lambda stats, v=viewer: self._notify(v, stats)
            # The loop captures only while someone watches: the last frame is current only if others do.
            watched = bool(self._viewers)
            if watched and self._capture.frame is not None:
                viewer.updater.on_frame(self._capture.frame, None, asyncio.get_running_loop().time())
                viewer.updater.on_cursor(self._capture.cursor)
            self._viewers.add(viewer)
            if watched:
                self._capture.wake()
            else:
                self._capture.grab_now()  # the new client's first update is what the screen shows now
            log.info("viewer %s connected (RFB %d.%d)", peer, *server.version)
            await viewer.run(self._dispatch)
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
                with contextlib.suppress(InputError):
                    self.input_backend.release_all()  # no stuck keys after a viewer leaves
            if task is not None:
                self._connections.discard(task)
            await close_connection(writer, server)

    def _on_frame(self, frame: np.ndarray, changes: Optional[Changes], cursor: Optional[CursorShape]) -> None:
        now = asyncio.get_running_loop().time()
        for viewer in list(self._viewers):
            viewer.updater.on_frame(frame, changes, now)
            viewer.updater.on_cursor(cursor)
            viewer.send_now()

    def _on_capture_failure(self, exc: BaseException) -> None:
        self.failure = exc
        for task in list(self._connections):
            task.cancel()

    def _notify(self, viewer: RFBConnection, stats: UpdateStats) -> None:
        if self.on_update is not None:
            self.on_update(viewer, stats)

    def _dispatch(self, viewer: RFBConnection, event: object) -> None:
        if isinstance(event, M.KeyEvent):
            self._inject(self.input_backend.key, event.keysym, event.down)
        elif isinstance(event, M.PointerEvent):
            self._inject(self.input_backend.pointer, event.x, event.y, event.button_mask, pointer=(event.x, event.y))
        elif isinstance(event, M.ClientCutText):
            if self.on_cut_text is not None:
                self.on_cut_text(viewer, event.text)
        else:
            viewer.updater.handle_event(event)

    def _inject(self, fn: Callable[..., None], *args: int, pointer: Optional[tuple[int, int]] = None) -> None:
        try:
            fn(*args)
        except InputError as exc:
            log.warning("input dropped: %s", exc)
            return
        if self.input_backend.allows_input:  # dropped at the gate, nothing will change on screen
            self._capture.note_input(pointer is not None)
            now = asyncio.get_running_loop().time()
            for viewer in self._viewers:  # what changes next is the technician's: it goes first
                viewer.updater.note_input(now, pointer)

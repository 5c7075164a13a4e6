"""A thin asyncio wrapper of the sans-IO RFBClient, for tests, benchmarks and the demo.

It only moves bytes: a reader task feeds the RFBClient and queues its events;
methods write what the client produced. Works on any (reader, writer) pair
with the asyncio streams duck type, so it runs over TCP or the secure channel.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any, Optional, Sequence, Tuple, Type, TypeVar

import numpy as np

from agent.errors import AuthenticationError, SessionEndedError
from agent.net import close_stream
from agent.rfb import messages as M
from agent.rfb.client import DEFAULT_ENCODINGS, RFBClient
from agent.rfb.pixelformat import PixelFormat
from agent.sansio import NEED_DATA, ProtocolError

READ_SIZE = 256 * 1024
MAX_KEPT_EVENTS = 1000  # non-update events kept for inspection (Bell, cut text, cursor, ...)

E = TypeVar("E")


class AsyncRFBClient:
    """An RFB viewer connection after its handshake; see ``open_rfb``."""

    def __init__(self, reader: Any, writer: Any, client: RFBClient) -> None:
        self._reader = reader
        self._writer = writer
        self.client = client
        self.bytes_received = 0
        self.bytes_sent = 0
        self.updates_received = 0
        self.events: deque = deque(maxlen=MAX_KEPT_EVENTS)
        self._queue: asyncio.Queue = asyncio.Queue()
        self.error: Optional[BaseException] = None  # why the connection ended, once it has
        self._task: Optional[asyncio.Task] = None

    @property
    def local_address(self) -> str:
        """This end's address, as the server's peername names it (the bridge's ``local_viewer`` events)."""
        return str(self._writer.get_extra_info("sockname"))

    # ---------------------------------------------------------------- setup

    @classmethod
    async def handshake(cls, reader: Any, writer: Any, *, encodings: Optional[Sequence[int]] = DEFAULT_ENCODINGS,
                        pixel_format: Optional[PixelFormat] = None, password: Optional[str] = None,
                        version: Tuple[int, int] = (3, 8), timeout: float = 10.0) -> "AsyncRFBClient":
        """Run the RFB handshake on an open stream pair; raises AuthenticationError on a wrong password."""
        client = RFBClient(password=password, pixel_format=pixel_format, encodings=encodings, version=version)
        conn = cls(reader, writer, client)
        await asyncio.wait_for(conn._handshake(), timeout)
        conn._task = asyncio.ensure_future(conn._read_loop())
        return conn

    async def _handshake(self) -> None:
        while True:
            event = self.client.next_event()
            await self._flush()
            if isinstance(event, M.ServerInit):
                return
            if isinstance(event, M.AuthenticationFailed):
                raise AuthenticationError(f"RFB server refused us: {event.reason}")
            if isinstance(event, M.ConnectionClosed):
                raise SessionEndedError(f"RFB server closed the connection during the handshake: "
                                        f"{event.reason or 'no reason given'}")
            if event is NEED_DATA:
                data = await self._reader.read(READ_SIZE)
                self.bytes_received += len(data)
                self.client.receive_data(data)

    async def _flush(self) -> None:
        data = self.client.data_to_send()
        if data:
            self.bytes_sent += len(data)
            self._writer.write(data)
            await self._writer.drain()

    async def _read_loop(self) -> None:
        try:
            while True:
                event = self.client.next_event()
                if event is NEED_DATA:
                    await self._flush()
                    data = await self._reader.read(READ_SIZE)
                    self.bytes_received += len(data)
                    self.client.receive_data(data)
                    continue
                if isinstance(event, M.ConnectionClosed):
                    raise SessionEndedError(f"RFB server closed the connection{': ' + event.reason if event.reason else ''}")
                if isinstance(event, M.FramebufferUpdate):
                    self.updates_received += 1
                else:
                    self.events.append(event)
                self._queue.put_nowait(event)
        except (ProtocolError, SessionEndedError, ConnectionError, OSError) as exc:
            self.error = exc
            self._queue.put_nowait(exc)

    # ---------------------------------------------------------------- state

    @property
    def framebuffer(self) -> np.ndarray:
        """(H, W, 4) uint8 BGRA, alpha 255: what the server has shown us so far."""
        return self.client.framebuffer

    @property
    def width(self) -> int:
        return self.client.width

    @property
    def height(self) -> int:
        return self.client.height

    @property
    def name(self) -> str:
        return self.client.name

    # ---------------------------------------------------------------- waiting

    async def next_event(self, timeout: Optional[float] = 10.0) -> object:
        """The next event the server sent (FramebufferUpdate, Bell, DesktopResized, ...)."""
        event = await asyncio.wait_for(self._queue.get(), timeout)
        if isinstance(event, BaseException):
            self._queue.put_nowait(event)  # every later waiter sees the failure too
            raise event
        return event

    async def wait_for(self, event_type: Type[E], timeout: Optional[float] = 10.0) -> E:
        """Skip events until one of ``event_type`` arrives."""
        async def _wait() -> E:
            while True:
                event = await self.next_event(None)
                if isinstance(event, event_type):
                    return event

        return await asyncio.wait_for(_wait(), timeout)

    async def update(self, incremental: bool = True, timeout: Optional[float] = 10.0,
                     region: Optional[Tuple[int, int, int, int]] = None) -> M.FramebufferUpdate:
        """Request an update and wait until it has been decoded into ``framebuffer``."""
        self._drop_queued_updates()
        self.client.request_update(incremental, region)
        await self._flush()
        return await self.wait_for(M.FramebufferUpdate, timeout)

    def _drop_queued_updates(self) -> None:
        kept = []
        while not self._queue.empty():
            event = self._queue.get_nowait()
            if not isinstance(event, M.FramebufferUpdate):
                kept.append(event)
        for event in kept:
            self._queue.put_nowait(event)

    # ---------------------------------------------------------------- sending

    async def key(self, keysym: int, down: Optional[bool] = None) -> None:
        """Press (down=True), release (False) or tap (None) a key."""
        for state in ((True, False) if down is None else (down,)):
            self.client.key_event(keysym, state)
        await self._flush()

    async def pointer(self, x: int, y: int, button_mask: int = 0) -> None:
        self.client.pointer_event(x, y, button_mask)
        await self._flush()

    async def cut_text(self, text: str) -> None:
        self.client.cut_text(text)
        await self._flush()

    async def enable_continuous_updates(self, enable: bool = True,
                                        region: Optional[Tuple[int, int, int, int]] = None) -> None:
        self.client.enable_continuous_updates(enable, region)
        await self._flush()

    async def fence(self, flags: int, payload: bytes = b"") -> None:
        self.client.send_fence(flags, payload)
        await self._flush()

    async def set_pixel_format(self, pf: PixelFormat) -> None:
        self.client.set_pixel_format(pf)
        await self._flush()

    async def set_encodings(self, encodings: Sequence[int]) -> None:
        self.client.set_encodings(encodings)
        await self._flush()

    async def send_raw(self, data: bytes) -> None:
        """Bytes straight to the server, bypassing the client state machine (malformed-input tests)."""
        self.bytes_sent += len(data)
        self._writer.write(data)
        await self._writer.drain()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        await close_stream(self._writer)

    async def __aenter__(self) -> "AsyncRFBClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def open_rfb(host: str, port: int, *, encodings: Optional[Sequence[int]] = DEFAULT_ENCODINGS,
                   pixel_format: Optional[PixelFormat] = None, password: Optional[str] = None,
                   version: Tuple[int, int] = (3, 8), timeout: float = 10.0) -> AsyncRFBClient:
    """Connect to an RFB server over TCP and complete the handshake."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        return await AsyncRFBClient.handshake(reader, writer, encodings=encodings, pixel_format=pixel_format,
                                              password=password, version=version, timeout=timeout)
    except BaseException:
        await close_stream(writer)
        raise

"""Viewer bridge: one authenticated channel to the agent, plain RFB on loopback.

The channel is opened (and the password checked) before any local viewer
connects, so a wrong password fails fast with exit code 3 and the safety code
can be read out while the technician starts a VNC viewer. Each local VNC
connection is one inner RFB session; when it ends, the next local connection
gets a fresh channel (a new PAKE with the same session password), because an
RFB stream cannot be restarted inside one channel.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Callable

from agent.errors import RejnetError, SessionEndedError, UsageError
from agent.net import close_stream, require_loopback, stop_server
from agent.secure.errors import ChannelError, TruncatedError
from agent.secure.stream import SecureStream, connect_viewer

log = logging.getLogger(__name__)

DEFAULT_LISTEN = ("127.0.0.1", 5901)
PENDING_LIMIT = 1 << 20  # inner bytes buffered while no local viewer is attached
LOCAL_READ = 64 * 1024
BRIDGE_PING_INTERVAL = 10.0
BUSY_RETRIES = 10           # reconnecting right after a local viewer left: the relay may still
BUSY_RETRY_DELAY = 0.3      # be tearing down our previous pairing


@dataclass
class BridgeConfig:
    """Where the session is and where to serve it. The password is never logged."""

    session_id: str
    password: str = field(repr=False)
    relay: tuple[str, int] | None = None
    direct: tuple[str, int] | None = None
    listen: tuple[str, int] = DEFAULT_LISTEN
    timeout: float = 30.0

    def __post_init__(self) -> None:
        if (self.relay is None) == (self.direct is None):
            raise UsageError("give exactly one of a relay address or a direct agent address")
        require_loopback(*self.listen)


class ViewerBridge:
    """Serves one customer session as plain RFB on a loopback port."""

    def __init__(self, config: BridgeConfig, *, on_event: Callable[[dict], None] | None = None) -> None:
        self.config = config
        self._on_event = on_event or (lambda event: None)
        self._stream: SecureStream | None = None
        self._pump: asyncio.Task[None] | None = None
        self._pending = bytearray()
        self._local: asyncio.StreamWriter | None = None
        self._local_gone = asyncio.Event()
        self._server: asyncio.base_events.Server | None = None
        self._ended: asyncio.Future[BaseException | None] | None = None
        self.safety_code: str | None = None
        self.address: tuple[str, int] | None = None
        self.bytes_from_agent = 0
        self.bytes_to_agent = 0
        self.connections = 0

    async def start(self) -> None:
        """Authenticate (raises WrongPasswordError on a wrong password), then listen locally."""
        self._ended = asyncio.get_running_loop().create_future()
        await self._open_channel()
        self._server = await asyncio.start_server(self._serve_local, *self.config.listen)
        sock = self._server.sockets[0].getsockname()
        self.address = (sock[0], sock[1])
        self._on_event({"event": "listening", "host": sock[0], "port": sock[1]})

    async def _open_channel(self) -> None:
        cfg = self.config
        if cfg.relay is not None:
            from agent.relay.client import open_viewer
            from agent.relay.protocol import SessionBusyError

            for attempt in range(BUSY_RETRIES + 1):
                try:
                    reader, writer = await open_viewer(cfg.relay[0], cfg.relay[1], cfg.session_id,
                                                       timeout=cfg.timeout)
                    break
                except SessionBusyError:
                    # our previous channel may still be closing at the relay
                    if attempt == BUSY_RETRIES:
                        raise
                    await asyncio.sleep(BUSY_RETRY_DELAY)
        else:
            assert cfg.direct is not None
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(*cfg.direct), cfg.timeout)
            except (OSError, asyncio.TimeoutError) as exc:
                raise ChannelError(f"cannot reach the agent at {cfg.direct[0]}:{cfg.direct[1]}: {exc}") from None
        # The agent measures RTT for its flow control; the bridge's own PINGs only need to keep the
        # channel alive, and each costs a PONG on the customer's (slow) uplink.
        stream = await connect_viewer(reader, writer, cfg.session_id, cfg.password, timeout=cfg.timeout,
                                      ping_interval=BRIDGE_PING_INTERVAL)
        self._stream = stream
        self._pending.clear()
        self.safety_code = stream.safety_code
        self._pump = asyncio.create_task(self._pump_from_agent(stream))
        self._on_event({"event": "authenticated", "safety_code": stream.safety_code})

    async def _pump_from_agent(self, stream: SecureStream) -> None:
        """Agent -> local viewer; buffers while no local viewer is attached."""
        try:
            while True:
                data = await stream.recv()
                if not data:
                    self._finish(SessionEndedError(f"the customer's agent ended the session: {stream.close_reason or 'no reason given'}"))
                    return
                self.bytes_from_agent += len(data)
                local = self._local
                if local is None:
                    if len(self._pending) + len(data) > PENDING_LIMIT:
                        self._finish(ChannelError("the agent sent too much before a local viewer connected"))
                        return
                    self._pending += data
                    continue
                local.write(data)
                with contextlib.suppress(ConnectionError):
                    await local.drain()
        except TruncatedError:
            self._finish(SessionEndedError("the connection to the customer's agent was cut"))
        except ChannelError as exc:
            self._finish(exc)
        except asyncio.CancelledError:
            raise

    def _finish(self, exc: BaseException | None) -> None:
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(exc)
        if self._local is not None:
            self._local.close()

    async def _serve_local(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._local is not None or (self._ended is not None and self._ended.done()):
            await close_stream(writer)
            return
        self._local = writer
        self.connections += 1
        peer = writer.get_extra_info("peername")
        self._on_event({"event": "local_viewer", "connected": True, "peer": str(peer)})
        try:
            if self._stream is None:
                try:
                    await self._open_channel()
                except (RejnetError, OSError, asyncio.TimeoutError) as exc:
                    # e.g. the password was rotated or the session ended meanwhile: nothing left to serve
                    self._finish(exc if isinstance(exc, RejnetError) else ChannelError(f"cannot reconnect: {exc}"))
                    return
            stream = self._stream
            assert stream is not None
            if self._pending:
                writer.write(bytes(self._pending))
                self._pending.clear()
                await writer.drain()
            while True:
                data = await reader.read(LOCAL_READ)
                if not data:
                    break
                self.bytes_to_agent += len(data)
                await stream.send(data)
        except (ConnectionError, ChannelError) as exc:
            if isinstance(exc, ChannelError) and self._ended is not None:
                self._finish(exc)
            log.info("local viewer connection ended: %s", exc)
        finally:
            self._local = None
            writer.close()
            self._on_event({"event": "local_viewer", "connected": False, "peer": str(peer)})
            await self._drop_channel("the technician's viewer disconnected")
            await close_stream(writer)

    async def _drop_channel(self, reason: str) -> None:
        stream, pump = self._stream, self._pump
        self._stream = self._pump = None
        if pump is not None:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump
        if stream is not None:
            with contextlib.suppress(Exception):
                await stream.close(reason)

    async def wait(self) -> None:
        """Return when the session ends; raise SessionEndedError/ChannelError if the agent ended it."""
        assert self._ended is not None, "start() first"
        exc = await self._ended
        if exc is not None:
            raise exc

    def stop(self) -> None:
        """End the bridge normally (technician closed it)."""
        self._finish(None)

    async def close(self, reason: str = "the technician closed the session") -> None:
        if self._server is not None:
            await stop_server(self._server)
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        await self._drop_channel(reason)
        self._finish(None)

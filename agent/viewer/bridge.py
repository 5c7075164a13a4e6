"""Viewer bridge: one authenticated channel for the whole session, plain RFB on loopback.

The channel is opened once, with the password, before any local viewer
connects (a wrong password fails fast with exit code 3, and the safety code
can be read out while the technician starts a VNC viewer). It stays open
until the session ends, whatever local VNC clients come and go:

- each local VNC connection opens a new RFB stream inside the channel
  (agent.secure.mux); no new PAKE. A second local connection while one is
  attached *takes over*: the older one is closed. The bridge is loopback-only,
  so both are the technician's own; the newest window wins, and a viewer that
  hangs or is half-closed can never lock the technician out.
- the session's end (the agent's authenticated CLOSE, with its reason) is
  seen at once, attached or not, and ends the bridge.
- a cut connection (no CLOSE) is resumed on a new connection with the
  channel's resumption secret (agent.secure.resume), with backoff, for at
  most ``resume_timeout`` seconds; local viewers stay connected meanwhile.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from agent.errors import RejnetError, SessionEndedError, UsageError
from agent.net import close_stream, require_loopback, stop_server
from agent.rfb import constants as C
from agent.secure.errors import ChannelError
from agent.secure.resume_io import connect_resume
from agent.secure.session_channel import MuxStream, SessionChannel
from agent.secure.stream import SecureStream, connect_viewer
from agent.viewer.input_filter import InputFilter

log = logging.getLogger(__name__)

DEFAULT_LISTEN = ("127.0.0.1", 5901)
LOCAL_READ = 64 * 1024
BRIDGE_PING_INTERVAL = 10.0
# While fewer than LAZY_ACK_BYTES of the agent's updates wait for our ACK (typing's echoes: tens of bytes
# each), the ACK goes alone only after LAZY_ACK_DELAY: the agent's window has room, and every ACK wakes
# the customer's PC. Its delay field keeps the agent's RTT samples true; more bytes get the usual grace.
LAZY_ACK_BYTES = 2048
LAZY_ACK_DELAY = 1.0
_STREAM_OPTIONS: dict[str, Any] = {"ping_interval": BRIDGE_PING_INTERVAL, "lazy_ack": (LAZY_ACK_BYTES, LAZY_ACK_DELAY)}
BUSY_RETRIES = 10           # the relay may still be tearing down a pairing when we (re)connect
BUSY_RETRY_DELAY = 0.3
RESUME_TIMEOUT = 120.0      # seconds to get a cut channel back before the session is given up
RESUME_BACKOFF = (0.1, 2.0)  # first and longest pause between resume attempts

_REFUSALS = {
    "consent_refused": "the customer refused the connection",
    "confirmation timed out": "the customer did not confirm the connection in time",
}


def _ended_text(reason: str | None) -> str:
    reason = reason or "no reason given"
    return "the customer's agent ended the session: " + _REFUSALS.get(reason, reason)


@dataclass
class BridgeConfig:
    """Where the session is and where to serve it. The password is never logged."""

    session_id: str
    password: str = field(repr=False)
    relay: tuple[str, int] | None = None
    direct: tuple[str, int] | None = None
    listen: tuple[str, int] = DEFAULT_LISTEN
    timeout: float = 30.0
    resume_timeout: float = RESUME_TIMEOUT
    standing_requests: bool = True  # the viewer's first request stands, if the agent knows how (input_filter)

    def __post_init__(self) -> None:
        if (self.relay is None) == (self.direct is None):
            raise UsageError("give exactly one of a relay address or a direct agent address")
        require_loopback(*self.listen)


class ViewerBridge:
    """Serves one customer session as plain RFB on a loopback port; see the module docstring."""

    def __init__(self, config: BridgeConfig, *, on_event: Callable[[dict], None] | None = None) -> None:
        self.config = config
        self._on_event = on_event or (lambda event: None)
        self._session: SessionChannel | None = None
        self._server: asyncio.base_events.Server | None = None
        self._ended: asyncio.Future[BaseException | None] | None = None
        self._local: tuple[asyncio.StreamWriter, MuxStream] | None = None
        self._reconnect: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.safety_code: str | None = None
        self.address: tuple[str, int] | None = None
        self.bytes_from_agent = 0
        self.bytes_to_agent = 0
        self.connections = 0
        self.pairings = 0   # connections to the agent: 1 plus one per resume
        self.resumes = 0
        self.input_dropped = 0  # keys and pointer events the local viewers sent while the link was cut
        self.requests_kept = 0  # the local viewers' update requests a standing request made needless
        self._dropped_at_cut = 0
        self._standing = False  # the agent said it lets requests stand (its "rfb" session message)

    async def start(self) -> None:
        """Authenticate (raises WrongPasswordError on a wrong password), then listen locally."""
        self._ended = asyncio.get_running_loop().create_future()
        cfg = self.config
        reader, writer = await self._connect()
        # The agent measures RTT for its flow control; the bridge's own PINGs only need to keep the
        # channel alive, and each costs a PONG on the customer's (slow) uplink.
        stream = await connect_viewer(reader, writer, cfg.session_id, cfg.password, timeout=cfg.timeout,
                                      **_STREAM_OPTIONS)
        self._session = SessionChannel(stream, "viewer", on_message=self._message,  # input padded on a tick
                                       on_transport_end=self._transport_ended, pace_input=True)
        self.safety_code = stream.safety_code
        self._on_event({"event": "authenticated", "safety_code": stream.safety_code})
        self._server = await asyncio.start_server(self._serve_local, *cfg.listen)
        sock = self._server.sockets[0].getsockname()
        self.address = (sock[0], sock[1])
        self._on_event({"event": "listening", "host": sock[0], "port": sock[1]})

    @property
    def reconnecting(self) -> bool:
        """The link to the agent is cut and a resume is under way."""
        return self._reconnect is not None and not self._reconnect.done()

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        cfg = self.config
        if cfg.relay is not None:
            from agent.relay.client import open_viewer
            from agent.relay.protocol import SessionBusyError

            for attempt in range(BUSY_RETRIES + 1):
                try:
                    pair = await open_viewer(cfg.relay[0], cfg.relay[1], cfg.session_id, timeout=cfg.timeout)
                    break
                except SessionBusyError:
                    if attempt == BUSY_RETRIES:
                        raise
                    await asyncio.sleep(BUSY_RETRY_DELAY)
        else:
            assert cfg.direct is not None
            try:
                pair = await asyncio.wait_for(asyncio.open_connection(*cfg.direct), cfg.timeout)
            except (OSError, asyncio.TimeoutError) as exc:
                raise ChannelError(f"cannot reach the agent at {cfg.direct[0]}:{cfg.direct[1]}: {exc}") from None
        self.pairings += 1
        return pair

    # -- the session channel ---------------------------------------------------------------------

    def _message(self, message: dict[str, Any]) -> None:
        if message.get("type") == C.RFB_MESSAGE:  # what the agent's RFB server knows beyond RFB
            accepts = message.get("accepts")
            self._standing = isinstance(accepts, list) and C.STANDING_REQUEST_FEATURE in accepts
        elif message.get("type") == "state":
            self._on_event({"event": "state", "state": str(message.get("state"))[:32],
                            "scope": message.get("scope") if message.get("scope") in ("view", "control") else None})

    def _transport_ended(self, cut: bool) -> None:
        session = self._session
        if session is None or (self._ended is not None and self._ended.done()):
            return
        if not cut:
            if session.peer_closed:
                self._finish(SessionEndedError(_ended_text(session.close_reason)))
            elif session.error is not None:
                self._finish(session.error)
            return
        if self._reconnect is None or self._reconnect.done():
            self._dropped_at_cut = self.input_dropped
            self._on_event({"event": "reconnecting", "reason": str(session.error or "connection lost")})
            self._reconnect = asyncio.get_running_loop().create_task(self._resume(session))

    async def _resume(self, session: SessionChannel) -> None:
        from agent.secure.resume import ResumeRefusedError

        cfg = self.config
        loop = asyncio.get_running_loop()
        deadline = loop.time() + cfg.resume_timeout
        delay = RESUME_BACKOFF[0]
        while not session.closed:
            try:
                reader, writer = await asyncio.wait_for(self._connect(), max(0.1, deadline - loop.time()))
                stream, peer_received = await connect_resume(
                    reader, writer, cfg.session_id, session.resumption_secret, session.inner_received,
                    timeout=min(cfg.timeout, max(0.1, deadline - loop.time())), **_STREAM_OPTIONS)
                session.resume(stream, peer_received)
            except ResumeRefusedError:
                session.fail("the customer's agent no longer has this session")
                self._finish(SessionEndedError("the customer's agent ended the session while the connection was down"))
                return
            except (RejnetError, OSError, asyncio.TimeoutError) as exc:
                if loop.time() + delay >= deadline:
                    reason = (f"the connection to the customer's agent was lost and did not come back "
                              f"within {cfg.resume_timeout:g} s")
                    session.fail(reason)
                    self._finish(SessionEndedError(reason))
                    return
                log.info("resume attempt failed: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RESUME_BACKOFF[1])
                continue
            self.resumes += 1
            self._on_event({"event": "resumed", "input_dropped": self.input_dropped - self._dropped_at_cut})
            return

    def _finish(self, exc: BaseException | None) -> None:
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(exc)
        local, self._local = self._local, None
        if local is not None:
            local[0].close()

    # -- local VNC viewers -----------------------------------------------------------------------

    async def _serve_local(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = self._session
        if session is None or session.closed or (self._ended is not None and self._ended.done()):
            await close_stream(writer)
            return
        old, self._local = self._local, None
        if old is not None:  # take over: the newest local viewer wins
            old[1].close("replaced by a new local viewer")
            old[0].close()
        rfb = session.open_stream("rfb")
        # no keys or pointer moves replayed from a cut; requests stand if the agent knows how
        keys = InputFilter(standing=lambda: self._standing and self.config.standing_requests)
        self._local = (writer, rfb)
        self.connections += 1
        peer = writer.get_extra_info("peername")
        self._on_event({"event": "local_viewer", "connected": True, "peer": str(peer)})
        down = asyncio.ensure_future(self._agent_to_local(rfb, writer))
        try:
            while True:
                data = await reader.read(LOCAL_READ)
                if not data or rfb.closed:
                    break
                self.bytes_to_agent += len(data)
                dropped, kept = keys.dropped, keys.requests_kept
                data = keys.feed(data, drop_input=self.reconnecting)
                self.input_dropped += keys.dropped - dropped
                self.requests_kept += keys.requests_kept - kept
                if data:
                    await rfb.send(data, user_input=keys.user_input)
        except (ConnectionError, OSError) as exc:
            log.info("local viewer connection ended: %s", exc)
        finally:
            if self._local is not None and self._local[1] is rfb:
                self._local = None
            rfb.close("the local viewer disconnected")
            down.cancel()
            with contextlib.suppress(BaseException):
                await down
            self._on_event({"event": "local_viewer", "connected": False, "peer": str(peer)})
            with contextlib.suppress(Exception):
                await close_stream(writer)

    async def _agent_to_local(self, rfb: MuxStream, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await rfb.recv()
                if not data:
                    break
                self.bytes_from_agent += len(data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        writer.close()

    # -- the end ---------------------------------------------------------------------------------

    async def wait(self) -> None:
        """Return when the session ends; raise SessionEndedError/ChannelError if the agent ended it."""
        assert self._ended is not None, "start() first"
        exc = await self._ended
        if exc is not None:
            raise exc

    def stop(self) -> None:
        """End the bridge normally (technician closed it)."""
        self._finish(None)

    async def close(self, reason: str = "the technician ended the session") -> None:
        """End the session for both sides (the authenticated CLOSE) and stop serving."""
        self._finish(None)
        reconnect, self._reconnect = self._reconnect, None
        if reconnect is not None and not reconnect.done():
            reconnect.cancel()
            with contextlib.suppress(BaseException):
                await reconnect
        session = self._session
        if session is not None:
            with contextlib.suppress(Exception):
                await session.close(reason)
        if self._server is not None:
            server, self._server = self._server, None
            await stop_server(server)
            with contextlib.suppress(Exception):
                await server.wait_closed()


__all__ = ["BridgeConfig", "DEFAULT_LISTEN", "SecureStream", "ViewerBridge"]

"""rejnet-relay: pairs agents and viewers by session ID and forwards their bytes (DESIGN §4.1).

The relay only ever sees the opening JSON lines and then opaque, end-to-end
encrypted bytes; it holds no password and writes nothing to disk. Each
connection is an asyncio BufferedProtocol reading into its own fixed buffer
(2 KiB before pairing, 64 KiB after), so one read never exceeds that.
Forwarding writes straight into the other transport; when that transport's
buffer passes the high-water mark it calls ``pause_writing`` and we stop
reading the source until it drains. So the relay holds at most high-water +
one read per direction, whatever the peers do.

Timeouts, chosen here:
- hello within ``hello_timeout`` (10 s) of connecting;
- a waiting viewer's ticket must be answered by the agent within ``ticket_timeout`` (15 s);
- a paired connection with no byte either way for ``idle_timeout`` (10 min) is closed
  (the channel's own PINGs, one a second, keep a live session well clear of it);
- an agent that lost its control connection keeps its ID for ``reregister_window`` (60 s).
"""
from __future__ import annotations

import asyncio
import enum
import hmac
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from agent.relay import protocol as p
from agent.net import stop_server

log = logging.getLogger("agent.relay")

_SMALL_READ = 2 * p.MAX_LINE


class _State(enum.Enum):
    HELLO = "hello"
    CONTROL = "control"  # an agent's long-lived control connection
    WAITING = "waiting"  # a viewer waiting for the agent's data connection
    PAIRED = "paired"
    CLOSED = "closed"


@dataclass
class RelayStats:
    """Instrumentation counters (tests and operators read them; nothing is stored)."""

    connections: int = 0
    sessions: int = 0
    paired: int = 0
    bytes_forwarded: int = 0
    peak_write_buffer: int = 0  # largest write buffer any single connection reached, in bytes


@dataclass(eq=False)
class _Session:
    id: str
    token: str = field(repr=False)
    control: _Conn | None = None
    viewer: _Conn | None = None
    data: _Conn | None = None
    ticket: str | None = field(default=None, repr=False)
    ticket_sent: bool = False
    ticket_timer: asyncio.TimerHandle | None = None
    expiry: asyncio.TimerHandle | None = None
    expired: bool = False


class RelayServer:
    """The relay; ``await start()``, then ``await close()`` (or use ``serve_forever``)."""

    def __init__(self, host: str = "0.0.0.0", port: int = p.DEFAULT_PORT, *, hello_timeout: float = 10.0,
                 ticket_timeout: float = 15.0, keepalive_interval: float = 20.0, reregister_window: float = 60.0,
                 idle_timeout: float = 600.0, max_per_source: int = 32, high_water: int = 256 * 1024,
                 read_size: int = 64 * 1024, early_data_limit: int = 64 * 1024) -> None:
        self.host = host
        self.port = port
        self.hello_timeout = hello_timeout
        self.ticket_timeout = ticket_timeout
        self.keepalive_interval = keepalive_interval
        self.reregister_window = reregister_window
        self.idle_timeout = idle_timeout
        self.max_per_source = max_per_source
        self.high_water = high_water
        self.read_size = read_size
        self.early_data_limit = early_data_limit
        self.stats = RelayStats()
        self._sessions: dict[str, _Session] = {}
        self._conns: set[_Conn] = set()
        self._per_source: Counter[str] = Counter()
        self._server: asyncio.base_events.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False

    async def start(self) -> None:
        """Listen; raises OSError if the address cannot be bound."""
        self._loop = asyncio.get_running_loop()
        self._server = await self._loop.create_server(lambda: _Conn(self), self.host, self.port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        _event("listening", host=self.host, port=self.port)

    async def serve_forever(self) -> None:
        if self._server is None:
            await self.start()
        assert self._server is not None
        await self._server.serve_forever()

    async def close(self) -> None:
        """Stop listening and close every connection."""
        self._closing = True
        if self._server is not None:
            await stop_server(self._server)
        for conn in list(self._conns):
            conn.fail(p.SHUTTING_DOWN)
        for session in self._sessions.values():
            for timer in (session.ticket_timer, session.expiry):
                if timer is not None:
                    timer.cancel()
        self._sessions.clear()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        _event("stopped")

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) actually listened on (port 0 asks the system for a free one)."""
        return self.host, self.port

    def buffered_bytes(self) -> int:
        """Bytes the relay holds right now: write buffers plus early data of waiting viewers."""
        return sum(conn.buffered() for conn in self._conns)

    def session_count(self) -> int:
        return len(self._sessions)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None
        return self._loop

    # -- admission -----------------------------------------------------------------------------

    def _admit(self, conn: _Conn) -> bool:
        if self._per_source[conn.source] >= self.max_per_source:
            return False
        self._per_source[conn.source] += 1
        self._conns.add(conn)
        self.stats.connections = len(self._conns)
        return True

    def _release(self, conn: _Conn) -> None:
        if conn in self._conns:
            self._conns.discard(conn)
            self._per_source[conn.source] -= 1
            if self._per_source[conn.source] <= 0:
                del self._per_source[conn.source]
            self.stats.connections = len(self._conns)

    # -- hellos --------------------------------------------------------------------------------

    def _dispatch(self, conn: _Conn, hello: p.Hello, trailing: bytes) -> None:
        if isinstance(hello, p.AgentHello):
            self._on_agent(conn, hello)
        elif isinstance(hello, p.ViewerHello):
            self._on_viewer(conn, hello, trailing)
        else:
            self._on_agent_data(conn, hello, trailing)

    def _on_agent(self, conn: _Conn, hello: p.AgentHello) -> None:
        if hello.session is None:
            session_id = p.new_session_id()
            while session_id in self._sessions:
                session_id = p.new_session_id()
            session = _Session(session_id, p.new_secret())
            self._sessions[session_id] = session
            self.stats.sessions = len(self._sessions)
            _event("registered", session=p.short_session_id(session_id))
        else:
            found = self._sessions.get(hello.session)
            if found is None or found.expired:
                conn.fail(p.NO_SUCH_SESSION)
                return
            if not hmac.compare_digest(found.token.encode(), (hello.token or "").encode()):
                conn.fail(p.BAD_TOKEN)
                return
            session = found
            if session.expiry is not None:
                session.expiry.cancel()
                session.expiry = None
            old = session.control
            session.control = None
            if old is not None:  # a half-dead connection the agent gave up on
                old.session = None
                old.close()
            _event("reregistered", session=p.short_session_id(session.id))
        session.control = conn
        conn.session = session
        conn.state = _State.CONTROL
        conn.send(p.Registered(session.id, session.token).encode())
        conn.start_keepalive()
        if session.ticket is not None and not session.ticket_sent:
            self._notify_agent(session)

    def _on_viewer(self, conn: _Conn, hello: p.ViewerHello, trailing: bytes) -> None:
        session = self._sessions.get(hello.session)
        if session is None or session.expired:
            conn.fail(p.NO_SUCH_SESSION)
            return
        if session.viewer is not None:
            conn.fail(p.SESSION_BUSY)
            return
        session.viewer = conn
        session.ticket = p.new_secret()
        session.ticket_sent = False
        session.ticket_timer = self.loop.call_later(self.ticket_timeout, self._ticket_expired, session, conn)
        conn.session = session
        conn.state = _State.WAITING
        conn.send(p.Waiting().encode())
        conn.hold_early(trailing)
        _event("viewer-waiting", session=p.short_session_id(session.id))
        if session.control is not None:
            self._notify_agent(session)

    def _notify_agent(self, session: _Session) -> None:
        assert session.control is not None and session.ticket is not None
        session.control.send(p.ViewerArrived(session.ticket).encode())
        session.ticket_sent = True

    def _ticket_expired(self, session: _Session, viewer: _Conn) -> None:
        session.ticket_timer = None
        if session.viewer is viewer and viewer.state is _State.WAITING:
            _event("ticket-expired", session=p.short_session_id(session.id))
            viewer.fail(p.AGENT_DID_NOT_ANSWER)

    def _on_agent_data(self, conn: _Conn, hello: p.AgentDataHello, trailing: bytes) -> None:
        session = self._sessions.get(hello.session)
        if session is None:
            conn.fail(p.NO_SUCH_SESSION)
            return
        ticket = session.ticket
        viewer = session.viewer
        if ticket is None or viewer is None or not hmac.compare_digest(ticket.encode(), hello.ticket.encode()):
            conn.fail(p.NO_SUCH_TICKET)
            return
        session.ticket = None
        if session.ticket_timer is not None:
            session.ticket_timer.cancel()
            session.ticket_timer = None
        session.data = conn
        conn.session = session
        self.stats.paired += 1
        _event("paired", session=p.short_session_id(session.id))
        _Pair(self, viewer, conn, trailing)

    # -- connection ends -----------------------------------------------------------------------

    def _lost(self, conn: _Conn) -> None:
        self._release(conn)
        session = conn.session
        conn.session = None
        if session is None or self._closing:
            return
        if session.control is conn:
            session.control = None
            session.expiry = self.loop.call_later(self.reregister_window, self._expire, session)
            _event("agent-disconnected", session=p.short_session_id(session.id))
        if session.viewer is conn:
            session.viewer = None
            session.ticket = None
            if session.ticket_timer is not None:
                session.ticket_timer.cancel()
                session.ticket_timer = None
        if session.data is conn:
            session.data = None
        self._maybe_forget(session)

    def _expire(self, session: _Session) -> None:
        session.expiry = None
        if session.control is None:
            session.expired = True
            if session.viewer is not None and session.viewer.state is _State.WAITING:
                session.viewer.fail(p.NO_SUCH_SESSION)
            self._maybe_forget(session)

    def _maybe_forget(self, session: _Session) -> None:
        # An ID stays reserved while any connection still uses it, so it is never handed out twice.
        if session.expired and session.control is None and session.viewer is None and session.data is None:
            if self._sessions.get(session.id) is session:
                del self._sessions[session.id]
                self.stats.sessions = len(self._sessions)
                _event("session-ended", session=p.short_session_id(session.id))


class _Pair:
    """A viewer and an agent data connection forwarding to each other, with the idle timer."""

    def __init__(self, server: RelayServer, viewer: _Conn, agent: _Conn, agent_trailing: bytes) -> None:
        self.server = server
        self.conns = (viewer, agent)
        self.last_activity = server.loop.time()
        self.timer = server.loop.call_later(server.idle_timeout, self._check_idle)
        early = viewer.take_early()
        for conn, peer in ((viewer, agent), (agent, viewer)):
            conn._view = memoryview(bytearray(server.read_size))
            conn.state = _State.PAIRED
            conn.peer = peer
            conn.pair = self
            conn.send(p.Paired().encode())
        if early:
            agent.forward(early)
        if agent_trailing:
            viewer.forward(agent_trailing)
        viewer.resume("early")

    def touch(self) -> None:
        self.last_activity = self.server.loop.time()

    def _check_idle(self) -> None:
        remaining = self.last_activity + self.server.idle_timeout - self.server.loop.time()
        if remaining > 0:
            self.timer = self.server.loop.call_later(remaining, self._check_idle)
            return
        _event("idle-closed")
        for conn in self.conns:
            conn.close()

    def stop(self) -> None:
        self.timer.cancel()


class _Conn(asyncio.BufferedProtocol):
    """One TCP connection to the relay, in whatever role its hello gave it."""

    def __init__(self, server: RelayServer) -> None:
        self.server = server
        self.state = _State.HELLO
        self.transport: asyncio.Transport | None = None
        self.source = "?"
        self.session: _Session | None = None
        self.peer: _Conn | None = None
        self.pair: _Pair | None = None
        self.lines = p.LineReader()
        self.early = bytearray()
        self.eof = False
        self.paused: set[str] = set()
        self.peak_write_buffer = 0
        # Small reads until paired: an idle agent's control connection costs 2 KiB, not a whole read buffer.
        self._view = memoryview(bytearray(_SMALL_READ))
        self._timer: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        return f"_Conn(state={self.state.value})"

    # -- asyncio callbacks ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.source = str(peer[0]) if isinstance(peer, tuple) else str(peer)
        transport.set_write_buffer_limits(high=self.server.high_water)
        if not self.server._admit(self):
            self.fail(p.TOO_MANY_CONNECTIONS)
            return
        self._timer = self.server.loop.call_later(self.server.hello_timeout, self.fail, p.HELLO_TIMEOUT)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        # Copy out of the reused buffer: a transport may keep a reference to what it is given.
        data = bytes(self._view[:nbytes])
        if self.state is _State.PAIRED:
            assert self.peer is not None and self.pair is not None
            self.peer.forward(data)
            self.pair.touch()
        elif self.state is _State.HELLO:
            self._on_hello_bytes(data)
        elif self.state is _State.WAITING:
            self.hold_early(data)
        # CONTROL: an agent has nothing to say on its control connection; CLOSED: ignore.

    def eof_received(self) -> bool:
        self.eof = True
        if self.state is _State.PAIRED and self.peer is not None:
            peer = self.peer
            if peer.eof or peer.transport is None or not peer.transport.can_write_eof():
                self.close()
                peer.close()
                return False
            peer.transport.write_eof()  # half-close: the other side still may send
            return True
        self.close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = _State.CLOSED
        self._cancel_timer()
        if self.pair is not None:
            self.pair.stop()
        if self.peer is not None:
            self.peer.close()  # flushes what it still has to deliver, then closes
        self.server._lost(self)

    def pause_writing(self) -> None:
        if self.peer is not None:
            self.peer.pause("peer-full")

    def resume_writing(self) -> None:
        if self.peer is not None:
            self.peer.resume("peer-full")

    # -- helpers -------------------------------------------------------------------------------

    def _on_hello_bytes(self, data: bytes) -> None:
        self.lines.receive_data(data)
        try:
            line = self.lines.next_line()
            if line is None:
                return
            hello = p.parse_hello(line)
        except p.RelayProtocolError as exc:
            self.fail(exc.reason or p.MALFORMED)
            return
        self._cancel_timer()
        self.server._dispatch(self, hello, self.lines.trailing())

    def send(self, line: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(line)

    def forward(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(data)
        size = transport.get_write_buffer_size()
        if size > self.peak_write_buffer:
            self.peak_write_buffer = size
            if size > self.server.stats.peak_write_buffer:
                self.server.stats.peak_write_buffer = size
        self.server.stats.bytes_forwarded += len(data)

    def hold_early(self, data: bytes) -> None:
        """Keep a waiting viewer's first channel bytes for the agent, within a bound."""
        if data:
            self.early += data
            if len(self.early) >= self.server.early_data_limit:
                self.pause("early")

    def take_early(self) -> bytes:
        out = bytes(self.early)
        self.early = bytearray()
        return out

    def buffered(self) -> int:
        size = len(self.early)
        if self.transport is not None:
            size += self.transport.get_write_buffer_size()
        return size

    def pause(self, reason: str) -> None:
        if not self.paused and self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()
        self.paused.add(reason)

    def resume(self, reason: str) -> None:
        self.paused.discard(reason)
        if not self.paused and self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def start_keepalive(self) -> None:
        self._cancel_timer()
        self._timer = self.server.loop.call_later(self.server.keepalive_interval, self._keepalive)

    def _keepalive(self) -> None:
        self.send(p.Keepalive().encode())
        self._timer = self.server.loop.call_later(self.server.keepalive_interval, self._keepalive)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def fail(self, reason: str) -> None:
        """Send the error line (only before pairing: after it the bytes are the peers' own), then close."""
        if self.state not in (_State.PAIRED, _State.CLOSED):
            if reason != p.SHUTTING_DOWN:
                _event("refused", reason=reason, state=self.state.value)
            self.send(p.ErrorReply(reason).encode())
        self.close()

    def close(self) -> None:
        self._cancel_timer()
        self.state = _State.CLOSED
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


def _event(name: str, **fields: Any) -> None:
    """One log record per relay event; session IDs only ever appear truncated."""
    text = " ".join(f"{key}={value}" for key, value in fields.items())
    log.info("%s%s%s", name, " " if text else "", text, extra={"relay_event": name, "relay_fields": fields})

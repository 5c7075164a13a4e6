"""rejnet-relay: pairs agents and viewers by session ID and forwards their bytes (DESIGN §4.1).

The relay only ever sees the opening JSON lines and then opaque, end-to-end
encrypted bytes; it holds no password and writes nothing to disk. This file
is the registry: sessions and their IDs, tokens and tickets, admission per
source address, and who pairs with whom. What happens on each TCP connection
(the hello line, forwarding with backpressure, keepalives, closing) lives in
agent/relay/connection.py; each connection reads into its own fixed buffer
(2 KiB before pairing, 64 KiB after) and stops reading while its peer's write
buffer is past the high-water mark, so the relay holds at most high-water +
one read per direction, whatever the peers do.

Timeouts, chosen here:
- hello within ``hello_timeout`` (10 s) of connecting;
- a waiting viewer's ticket must be answered by the agent within ``ticket_timeout`` (15 s); an agent
  that re-registers is sent every waiting ticket again (one sent into a dead connection is lost);
- a paired connection with no byte either way for ``idle_timeout`` (10 min) is closed
  (the channel's own PINGs, one a second, keep a live session well clear of it);
- an agent that lost its control connection keeps its ID for ``reregister_window`` (60 s).

A restarted relay knows no sessions, but its agents come back within their
re-registration window with an ID and token it never issued. Within
``adopt_window`` seconds of the relay's start (default: the re-registration
window, the longest an agent keeps trying), such an agent is *adopted*: it
keeps its ID and token, so a technician's viewer can resume the session
through the new relay. A stranger cannot take over a live ID with this: only
an ID the relay does not know is adopted (a known one still needs its token,
compared in constant time), only while the window is open, only with a token
of full strength, and at most ``adopt_per_source`` times per source address in
the window; and whatever answers on an adopted ID, the viewer's resume proves
the channel's keys end to end, so a squatter gets nothing but a refusal.
"""
from __future__ import annotations

import asyncio
import hmac
from collections import Counter
from dataclasses import dataclass, field

from agent.net import stop_server
from agent.relay import protocol as p
from agent.relay.connection import Connection, ConnState, Pair, relay_event
from agent.relay.limits import RateLimiter


@dataclass
class RelayStats:
    """Instrumentation counters (tests and operators read them; nothing is stored)."""

    connections: int = 0
    sessions: int = 0
    paired: int = 0
    bytes_forwarded: int = 0
    adopted: int = 0            # agents that came back with an ID this relay never issued (after a restart)
    peak_write_buffer: int = 0  # largest write buffer any single connection reached, in bytes


# Per-source limits (issue #11 B); a source is an IPv6 /64 or an IPv4 address (protocol.source_key).
REGISTER_BURST, REGISTER_RATE = 20, 0.5
"""New sessions one source may register: 20 at once, then one every 2 s (30 a minute). An agent
registers once per support session; even a large office behind one NAT starts far fewer."""
LOOKUP_BURST, LOOKUP_RATE = 10, 0.2
"""Session IDs the relay does not know that one source may name (viewer, agent-data or re-registration
hellos): 10 at once, then one every 5 s. A technician mistypes an ID a few times; a prober of the
9e8 IDs gets 12 a minute per /64. The check comes before the look-up, so past the limit every answer
is "rate limited", whether the ID exists or not: the limit is the answer, not an oracle."""
MAX_SESSIONS = 100_000
"""Sessions the relay holds, counting dropped registrations that keep their ID for the re-registration
window (60 s): about 1 KiB each, and a 9-digit ID space that stays 99.99 % free for fresh IDs."""

# Several viewers may ask for one session at once (issue #11 A): the relay cannot tell the technician
# from a stranger who knows the 9-digit ID, so it hands the agent a ticket for each and the agent keeps
# the first that proves the password. A silent asker costs one slot for at most the agent's
# pre-authentication deadline (agent.session.agent.PREAUTH_TIMEOUT, 5 s).
MAX_VIEWERS_PER_SESSION = 8
"""Viewer connections (waiting or paired) one session may have: the technician, a resume, and room for
the technician to get in past a few silent strangers; beyond it a viewer is told "session busy"."""
MAX_VIEWERS_PER_SESSION_PER_SOURCE = 4
"""Of those, from one source (an IPv6 /64 or an IPv4 address): one attacker's address cannot take
every slot; the technician's own client needs one or two (a resume overlaps the cut connection)."""


@dataclass(eq=False)
class _Ticket:
    viewer: Connection
    timer: asyncio.TimerHandle | None = None


@dataclass(eq=False)
class _Session:
    id: str
    token: str = field(repr=False)
    control: Connection | None = None
    waiting: dict[str, _Ticket] = field(default_factory=dict, repr=False)  # ticket -> the viewer asking
    paired: set[Connection] = field(default_factory=set)  # viewer and agent-data connections of live pairs
    expiry: asyncio.TimerHandle | None = None
    expired: bool = False

    def viewers(self) -> list[Connection]:
        return [t.viewer for t in self.waiting.values()] + [c for c in self.paired if c.state_role == "viewer"]


class RelayServer:
    """The relay; ``await start()``, then ``await close()`` (or use ``serve_forever``)."""

    def __init__(self, host: str = "0.0.0.0", port: int = p.DEFAULT_PORT, *, hello_timeout: float = 10.0,
                 ticket_timeout: float = 15.0, keepalive_interval: float = 20.0, reregister_window: float = 60.0,
                 idle_timeout: float = 600.0, max_per_source: int = 32, high_water: int = 256 * 1024,
                 read_size: int = 64 * 1024, early_data_limit: int = 64 * 1024,
                 adopt_window: float | None = None, adopt_per_source: int = 16,
                 max_sessions: int = MAX_SESSIONS, register_limit: tuple[float, float] = (REGISTER_BURST, REGISTER_RATE),
                 lookup_limit: tuple[float, float] = (LOOKUP_BURST, LOOKUP_RATE)) -> None:
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
        self.adopt_window = reregister_window if adopt_window is None else adopt_window
        self.adopt_per_source = adopt_per_source
        self._adoptions: Counter[str] = Counter()  # per source, while the adopt window is open
        self._adopt_until = 0.0
        self.stats = RelayStats()
        self.max_sessions = max_sessions
        self._register_limit = register_limit
        self._lookup_limit = lookup_limit
        self._registrations: RateLimiter | None = None  # made in start(), on the loop's clock
        self._lookups: RateLimiter | None = None
        self._sessions: dict[str, _Session] = {}
        self._conns: set[Connection] = set()
        self._per_source: Counter[str] = Counter()
        self._server: asyncio.base_events.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False

    async def start(self) -> None:
        """Listen; raises OSError if the address cannot be bound."""
        self._loop = asyncio.get_running_loop()
        self._server = await self._loop.create_server(lambda: Connection(self), self.host, self.port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        self._adopt_until = self._loop.time() + self.adopt_window
        self._registrations = RateLimiter(*self._register_limit, clock=self._loop.time)
        self._lookups = RateLimiter(*self._lookup_limit, clock=self._loop.time)
        relay_event("listening", host=self.host, port=self.port)

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
            timers = [t.timer for t in session.waiting.values()] + [session.expiry]
            for timer in timers:
                if timer is not None:
                    timer.cancel()
        self._sessions.clear()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        relay_event("stopped")

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

    def _admit(self, conn: Connection) -> bool:
        if self._per_source[conn.source] >= self.max_per_source:
            return False
        self._per_source[conn.source] += 1
        self._conns.add(conn)
        self.stats.connections = len(self._conns)
        return True

    def _release(self, conn: Connection) -> None:
        if conn in self._conns:
            self._conns.discard(conn)
            self._per_source[conn.source] -= 1
            if self._per_source[conn.source] <= 0:
                del self._per_source[conn.source]
            self.stats.connections = len(self._conns)

    # -- hellos --------------------------------------------------------------------------------

    def _dispatch(self, conn: Connection, hello: p.Hello, trailing: bytes) -> None:
        assert self._registrations is not None and self._lookups is not None
        if hello.session is not None and not self._lookups.peek(conn.source_key):
            # Checked before the look-up: past the limit a known and an unknown ID get the same answer.
            conn.fail(p.RATE_LIMITED)
            return
        if isinstance(hello, p.AgentHello):
            self._on_agent(conn, hello)
        elif isinstance(hello, p.ViewerHello):
            self._on_viewer(conn, hello, trailing)
        else:
            self._on_agent_data(conn, hello, trailing)

    def _unknown(self, conn: Connection) -> None:
        """A hello named an ID the relay does not hold: it costs the source a look-up token."""
        assert self._lookups is not None
        self._lookups.allow(conn.source_key)
        conn.fail(p.NO_SUCH_SESSION)

    def _room(self, conn: Connection) -> bool:
        # Every held ID counts, dropped registrations in their re-registration window too.
        if len(self._sessions) < self.max_sessions:
            return True
        relay_event("refused-full", sessions=len(self._sessions))
        conn.fail(p.RELAY_FULL)
        return False

    def _on_agent(self, conn: Connection, hello: p.AgentHello) -> None:
        assert self._registrations is not None
        if hello.session is None:
            if not self._registrations.allow(conn.source_key):
                conn.fail(p.RATE_LIMITED)
                return
            if not self._room(conn):
                return
            session_id = p.new_session_id()
            while session_id in self._sessions:
                session_id = p.new_session_id()
            session = _Session(session_id, p.new_secret())
            self._sessions[session_id] = session
            self.stats.sessions = len(self._sessions)
            relay_event("registered", session=p.short_session_id(session_id))
        elif hello.session not in self._sessions and self._may_adopt(conn, hello):
            if not self._room(conn):
                return
            session = _Session(hello.session, hello.token or "")
            self._sessions[session.id] = session
            self.stats.sessions = len(self._sessions)
            self.stats.adopted += 1
            relay_event("adopted", session=p.short_session_id(session.id))
        else:
            found = self._sessions.get(hello.session)
            if found is None or found.expired:
                self._unknown(conn)
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
            relay_event("reregistered", session=p.short_session_id(session.id))
        session.control = conn
        conn.session = session
        conn.state = ConnState.CONTROL
        conn.send(p.Registered(session.id, session.token).encode())
        conn.start_keepalive()
        # Every waiting ticket, also those sent before: a ticket sent into a connection that died (a cut the
        # relay saw late, a NAT that forgot it) is lost, and its viewer would wait out ticket_timeout. The
        # agent answers a ticket once; a second answer gets NO_SUCH_TICKET.
        for ticket in session.waiting:
            self._notify_agent(session, ticket)

    def _may_adopt(self, conn: Connection, hello: p.AgentHello) -> bool:
        """May this agent keep an ID (free here) and token it got from the relay before a restart?"""
        if self.loop.time() > self._adopt_until or len(hello.token or "") < p.MIN_TOKEN_LENGTH:
            return False
        if self._adoptions[conn.source] >= self.adopt_per_source:
            relay_event("adopt-refused", reason="rate")
            return False
        self._adoptions[conn.source] += 1
        return True

    def _on_viewer(self, conn: Connection, hello: p.ViewerHello, trailing: bytes) -> None:
        session = self._sessions.get(hello.session)
        if session is None or session.expired:
            self._unknown(conn)
            return
        viewers = session.viewers()
        if len(viewers) >= MAX_VIEWERS_PER_SESSION or \
                sum(v.source_key == conn.source_key for v in viewers) >= MAX_VIEWERS_PER_SESSION_PER_SOURCE:
            conn.fail(p.SESSION_BUSY)
            return
        ticket = p.new_secret()
        pending = _Ticket(conn)
        pending.timer = self.loop.call_later(self.ticket_timeout, self._ticket_expired, session, ticket)
        session.waiting[ticket] = pending
        conn.session = session
        conn.state_role = "viewer"
        conn.state = ConnState.WAITING
        conn.send(p.Waiting().encode())
        conn.hold_early(trailing)
        relay_event("viewer-waiting", session=p.short_session_id(session.id))
        if session.control is not None:
            self._notify_agent(session, ticket)

    def _notify_agent(self, session: _Session, ticket: str) -> None:
        assert session.control is not None
        session.control.send(p.ViewerArrived(ticket).encode())

    def _ticket_expired(self, session: _Session, ticket: str) -> None:
        pending = session.waiting.pop(ticket, None)
        if pending is not None:
            pending.timer = None
            relay_event("ticket-expired", session=p.short_session_id(session.id))
            pending.viewer.fail(p.AGENT_DID_NOT_ANSWER)

    def _on_agent_data(self, conn: Connection, hello: p.AgentDataHello, trailing: bytes) -> None:
        session = self._sessions.get(hello.session)
        if session is None:
            self._unknown(conn)
            return
        # Every waiting ticket is compared (constant time each), so the look-up leaks nothing of any of them.
        found: str | None = None
        for ticket in session.waiting:
            if hmac.compare_digest(ticket.encode(), hello.ticket.encode()):
                found = ticket
        if found is None:
            conn.fail(p.NO_SUCH_TICKET)
            return
        pending = session.waiting.pop(found)
        if pending.timer is not None:
            pending.timer.cancel()
        viewer = pending.viewer
        session.paired.update((viewer, conn))
        conn.session = session
        self.stats.paired += 1
        relay_event("paired", session=p.short_session_id(session.id))
        Pair(self, viewer, conn, trailing)

    # -- connection ends -----------------------------------------------------------------------

    def _lost(self, conn: Connection) -> None:
        self._release(conn)
        session = conn.session
        conn.session = None
        if session is None or self._closing:
            return
        if session.control is conn:
            session.control = None
            session.expiry = self.loop.call_later(self.reregister_window, self._expire, session)
            relay_event("agent-disconnected", session=p.short_session_id(session.id))
        for ticket, pending in list(session.waiting.items()):
            if pending.viewer is conn:
                del session.waiting[ticket]
                if pending.timer is not None:
                    pending.timer.cancel()
        session.paired.discard(conn)
        self._maybe_forget(session)

    def _expire(self, session: _Session) -> None:
        session.expiry = None
        if session.control is None:
            session.expired = True
            for pending in list(session.waiting.values()):
                pending.viewer.fail(p.NO_SUCH_SESSION)
            self._maybe_forget(session)

    def _maybe_forget(self, session: _Session) -> None:
        # An ID stays reserved while any connection still uses it, so it is never handed out twice.
        if session.expired and session.control is None and not session.waiting and not session.paired:
            if self._sessions.get(session.id) is session:
                del self._sessions[session.id]
                self.stats.sessions = len(self._sessions)
                relay_event("session-ended", session=p.short_session_id(session.id))

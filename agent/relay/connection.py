"""One relay connection (a BufferedProtocol) and the forwarding between a paired viewer and agent.

Split from agent/relay/server.py, which keeps the registry (sessions, IDs,
tickets, admission) and decides who pairs with whom; this file owns what
happens on each TCP connection: the hello line, waiting, forwarding with
backpressure, keepalives and closing (DESIGN §4.1). Both are internal to the
relay; ``RelayServer`` is the public face.

Memory bound: each connection reads into its own fixed buffer (2 KiB before
pairing, ``read_size`` after) and forwards straight into the other
transport; past that transport's high-water mark ``pause_writing`` stops
reading the source until it drains. So the relay holds at most high-water +
one read per direction, whatever the peers do.
"""
from __future__ import annotations

import asyncio
import enum
import logging
from typing import Any, Protocol, cast

from agent.relay import protocol as p

log = logging.getLogger("agent.relay")

_SMALL_READ = 2 * p.MAX_LINE


class RelayServer(Protocol):
    """What a connection needs of the relay server (agent.relay.server.RelayServer, which imports us)."""

    hello_timeout: float
    keepalive_interval: float
    idle_timeout: float
    high_water: int
    read_size: int
    early_data_limit: int
    stats: Any  # RelayStats: peak_write_buffer and bytes_forwarded are counted here

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    def _admit(self, conn: Connection) -> bool:
        """Count the connection against its source's cap; False refuses it."""

    def _dispatch(self, conn: Connection, hello: p.Hello, trailing: bytes) -> None:
        """A valid hello arrived: register, wait or pair (``trailing``: bytes after the hello line)."""

    def _lost(self, conn: Connection) -> None:
        """The connection is gone: forget it and its place in its session."""


class ConnState(enum.Enum):
    HELLO = "hello"
    CONTROL = "control"  # an agent's long-lived control connection
    WAITING = "waiting"  # a viewer waiting for the agent's data connection
    PAIRED = "paired"
    CLOSED = "closed"


class Pair:
    """A viewer and an agent data connection forwarding to each other, with the idle timer."""

    def __init__(self, server: RelayServer, viewer: Connection, agent: Connection, agent_trailing: bytes) -> None:
        self.server = server
        self.conns = (viewer, agent)
        self.last_activity = server.loop.time()
        self.timer = server.loop.call_later(server.idle_timeout, self._check_idle)
        early = viewer.take_early()
        for conn, peer in ((viewer, agent), (agent, viewer)):
            conn._view = memoryview(bytearray(server.read_size))
            conn.state = ConnState.PAIRED
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
        relay_event("idle-closed")
        for conn in self.conns:
            conn.close()

    def stop(self) -> None:
        self.timer.cancel()


class Connection(asyncio.BufferedProtocol):
    """One TCP connection to the relay, in whatever role its hello gave it."""

    def __init__(self, server: RelayServer) -> None:
        self.server = server
        self.state = ConnState.HELLO
        self.transport: asyncio.Transport | None = None
        self.source = "?"
        self.source_key = "?"  # the source as rate limits count it: an IPv6 /64 or an IPv4 address
        self.state_role = ""   # "viewer" once a viewer hello was accepted
        self.session: Any = None  # the server's record of the session this connection belongs to
        self.peer: Connection | None = None
        self.pair: Pair | None = None
        self.lines = p.LineReader()
        self.early = bytearray()
        self.eof = False
        self.paused: set[str] = set()
        self.peak_write_buffer = 0
        # Small reads until paired: an idle agent's control connection costs 2 KiB, not a whole read buffer.
        self._view = memoryview(bytearray(_SMALL_READ))
        self._timer: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        return f"Connection(state={self.state.value})"

    # -- asyncio callbacks ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's TCP transport is one, though no subclass
        peer = transport.get_extra_info("peername")
        self.source = str(peer[0]) if isinstance(peer, tuple) else str(peer)
        self.source_key = p.source_key(self.source)
        self.transport.set_write_buffer_limits(high=self.server.high_water)
        if not self.server._admit(self):
            self.fail(p.TOO_MANY_CONNECTIONS)
            return
        self._timer = self.server.loop.call_later(self.server.hello_timeout, self.fail, p.HELLO_TIMEOUT)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        # Copy out of the reused buffer: a transport may keep a reference to what it is given.
        data = bytes(self._view[:nbytes])
        if self.state is ConnState.PAIRED:
            assert self.peer is not None and self.pair is not None
            self.peer.forward(data)
            self.pair.touch()
        elif self.state is ConnState.HELLO:
            self._on_hello_bytes(data)
        elif self.state is ConnState.WAITING:
            self.hold_early(data)
        # CONTROL: an agent has nothing to say on its control connection; CLOSED: ignore.

    def eof_received(self) -> bool:
        self.eof = True
        if self.state is ConnState.PAIRED and self.peer is not None:
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
        self.state = ConnState.CLOSED
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
        if self.state not in (ConnState.PAIRED, ConnState.CLOSED):
            if reason != p.SHUTTING_DOWN:
                relay_event("refused", reason=reason, state=self.state.value)
            self.send(p.ErrorReply(reason).encode())
        self.close()

    def close(self) -> None:
        self._cancel_timer()
        self.state = ConnState.CLOSED
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


def relay_event(name: str, **fields: Any) -> None:
    """One log record per relay event; session IDs only ever appear truncated."""
    text = " ".join(f"{key}={value}" for key, value in fields.items())
    log.info("%s%s%s", name, " " if text else "", text, extra={"relay_event": name, "relay_fields": fields})

"""asyncio clients of rejnet-relay: the agent's registration and data connections, and the viewer's.

Each helper speaks the opening JSON lines (``protocol``) and hands back plain
asyncio streams once the relay has paired the two ends; from then on the
secure channel runs over them and the relay only forwards bytes.
"""
from __future__ import annotations

import asyncio
import logging
from typing import AsyncIterator

from agent.relay import protocol as p
from agent.relay.protocol import NoSuchSessionError, RelayError, RelayProtocolError, SessionBusyError
from agent.net import close_stream

__all__ = ["AgentRegistration", "NoSuchSessionError", "RelayError", "SessionBusyError", "open_agent_data",
           "open_viewer"]

log = logging.getLogger(__name__)

REREGISTER_WINDOW = 60.0  # the relay keeps a dropped agent's ID this long
KEEPALIVE_TIMEOUT = 65.0  # the relay sends a keepalive every ~20 s: three missed means the connection is dead


async def _connect(host: str, port: int, timeout: float) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    try:
        return await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, asyncio.TimeoutError) as exc:
        detail = "timed out" if isinstance(exc, asyncio.TimeoutError) else (exc.strerror or type(exc).__name__)
        raise RelayError(f"cannot reach the relay at {host}:{port}: {detail}") from None


async def _read_reply(reader: asyncio.StreamReader) -> p.Reply:
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError:
        raise RelayError("the relay closed the connection") from None
    except asyncio.LimitOverrunError:
        raise RelayProtocolError("the relay sent a line longer than 1 KiB", p.LINE_TOO_LONG) from None
    if len(line) > p.MAX_LINE:
        raise RelayProtocolError("the relay sent a line longer than 1 KiB", p.LINE_TOO_LONG)
    return p.parse_reply(line[:-1])


async def _hello(host: str, port: int, hello: p.Hello, expect: tuple[type, ...], timeout: float,
                 session_id: str | None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, p.Reply]:
    """Connect, send ``hello`` and read replies until one of ``expect``; errors close the connection."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    reader, writer = await _connect(host, port, timeout)
    try:
        writer.write(hello.encode())
        while True:
            reply = await asyncio.wait_for(_read_reply(reader), max(0.0, deadline - loop.time()))
            if isinstance(reply, p.ErrorReply):
                raise p.error_for(reply.reason, session_id)
            if isinstance(reply, expect):
                return reader, writer, reply
            if not isinstance(reply, (p.Waiting, p.Keepalive)):
                raise RelayProtocolError(f"unexpected reply from the relay: {type(reply).__name__}", p.MALFORMED)
    except asyncio.TimeoutError:
        await close_stream(writer)
        raise RelayError(f"the relay at {host}:{port} did not answer in time") from None
    except (OSError, ConnectionError) as exc:
        await close_stream(writer)
        raise RelayError(f"lost the connection to the relay: {exc.strerror or type(exc).__name__}") from None
    except BaseException:
        await close_stream(writer)
        raise


async def open_viewer(host: str, port: int, session_id: str, *, timeout: float = 30
                      ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """The viewer's connection to a session, once the relay paired it with the agent.

    Raises NoSuchSessionError, SessionBusyError or RelayError (exit code 1).
    """
    canonical = p.parse_session_id(session_id)
    reader, writer, _ = await _hello(host, port, p.ViewerHello(canonical), (p.Paired,), timeout, canonical)
    return reader, writer


async def open_agent_data(host: str, port: int, session_id: str, ticket: str, *, timeout: float = 10
                          ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """The agent's data connection answering one viewer's ticket, paired with that viewer."""
    canonical = p.parse_session_id(session_id)
    reader, writer, _ = await _hello(host, port, p.AgentDataHello(canonical, ticket), (p.Paired,), timeout, None)
    return reader, writer


class AgentRegistration:
    """The agent's long-lived control connection: holds the session ID and yields a ticket per viewer."""

    def __init__(self, host: str, port: int, session_id: str, token: str, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, *, timeout: float = 10, reregister_window: float = REREGISTER_WINDOW,
                 keepalive_timeout: float = KEEPALIVE_TIMEOUT) -> None:
        self.host = host
        self.port = port
        self.session_id = session_id
        self._token = token
        self._reader = reader
        self._writer = writer
        self._timeout = timeout
        self._window = reregister_window
        self._keepalive_timeout = keepalive_timeout
        self._closed = False

    def __repr__(self) -> str:
        return f"AgentRegistration(session={p.short_session_id(self.session_id)})"

    @classmethod
    async def register(cls, host: str, port: int, *, timeout: float = 10, **options: float) -> AgentRegistration:
        """Register with the relay and get a fresh session ID (``options``: reregister_window, keepalive_timeout)."""
        reader, writer, reply = await _hello(host, port, p.AgentHello(), (p.Registered,), timeout, None)
        assert isinstance(reply, p.Registered)
        return cls(host, port, reply.session, reply.token, reader, writer, timeout=timeout, **options)

    async def tickets(self) -> AsyncIterator[str]:
        """Yield a ticket each time a viewer arrives; re-register with the token if the connection drops.

        A relay that shuts down is treated like a dropped connection (it may be restarting; a restarted
        relay adopts this ID and token). Raises RelayError if the relay refuses (e.g. the ID expired) or
        stays unreachable for the whole re-registration window.
        """
        while not self._closed:
            try:
                reply = await asyncio.wait_for(_read_reply(self._reader), self._keepalive_timeout)
            except (RelayError, OSError, ConnectionError, asyncio.TimeoutError) as exc:
                if self._closed:
                    return
                log.info("relay control connection lost (%s); re-registering", type(exc).__name__)
                await self._reregister()
                continue
            if isinstance(reply, p.ViewerArrived):
                yield reply.ticket
            elif isinstance(reply, p.ErrorReply) and reply.reason == p.SHUTTING_DOWN:
                # A relay restart (a deploy): the new one adopts this ID and token (agent.relay.server).
                log.info("the relay is shutting down; re-registering")
                await self._reregister()
            elif isinstance(reply, p.ErrorReply):
                await close_stream(self._writer)
                raise p.error_for(reply.reason)  # the agent side never puts the whole ID in a message
            elif not isinstance(reply, p.Keepalive):
                raise RelayProtocolError(f"unexpected line from the relay: {type(reply).__name__}", p.MALFORMED)

    async def _reregister(self) -> None:
        await close_stream(self._writer)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._window
        delay = 0.1
        hello = p.AgentHello(self.session_id, self._token)
        while True:
            remaining = deadline - loop.time()
            try:
                reader, writer, reply = await _hello(self.host, self.port, hello, (p.Registered,),
                                                     max(0.1, min(self._timeout, remaining)), None)
            except RelayError as exc:
                if exc.reason is not None:  # the relay answered and refused (e.g. bad token): no retry
                    raise
                if loop.time() + delay >= deadline:
                    raise RelayError(f"lost the relay connection and could not re-register within "
                                     f"{self._window:g} s: {exc}") from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            assert isinstance(reply, p.Registered)
            self._reader, self._writer = reader, writer
            log.info("re-registered with the relay")
            return

    def renew(self) -> None:
        """Drop the control connection now and re-register with the token (``tickets()`` does it): the
        session's path died without a reset, and this connection, through the same NAT, most likely did
        too; waiting for three missed keepalives would keep a resuming viewer from reaching us."""
        if not self._closed:
            self._writer.transport.abort()

    async def close(self) -> None:
        """Drop the registration; the relay frees the ID after its re-registration window."""
        self._closed = True
        await close_stream(self._writer)

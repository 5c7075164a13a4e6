"""How viewers reach this agent: a relay registration and its ticket loop, or a direct listener.

Split from ``Agent`` (agent/session/agent.py) because it is one job with its
own failures (the relay unreachable or lost, a port in use) and its own
tasks. ``Link`` opens the way in, gives the session its ID, and hands every
connection a viewer opens to ``on_viewer(reader, writer, peer)``; what
happens on that connection (the PAKE, consent, RFB) is the session's
business. ``peer`` is ``"relay"`` through a relay (the agent never learns the
viewer's address there, DESIGN §4.4) and ``"host:port"`` in direct mode.

``can_accept()`` (the machine's ``can_accept_viewer``: waiting, or fewer
handshakes running than its cap, or a resumable channel) is asked before a
ticket costs a data connection, and a direct connection arriving while it is
false is closed at once; the session decides which handshake wins.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import Any, Awaitable, Callable

from agent.errors import UsageError
from agent.models import parse_address
from agent.net import stop_server

log = logging.getLogger(__name__)

OnViewer = Callable[[asyncio.StreamReader, asyncio.StreamWriter, str], Awaitable[None]]


class Link:
    """The agent's way in for viewers; ``await open()`` for the session ID, ``await close()`` at the end.

    ``on_lost(reason)`` is called if the relay registration is lost for good
    (the relay client already retried within the re-registration window).
    """

    def __init__(self, *, relay: str | None, listen: str | None, on_viewer: OnViewer,
                 can_accept: Callable[[], bool], on_lost: Callable[[str], None]) -> None:
        if bool(relay) == bool(listen):
            raise ValueError("a Link needs exactly one of relay and listen")  # AgentConfig tells the user
        self._relay = relay
        self._listen = listen
        self._on_viewer = on_viewer
        self._can_accept = can_accept
        self._on_lost = on_lost
        self._registration: Any = None
        self._listener: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def open(self) -> str:
        """Register with the relay or start listening; returns the session ID (raises UsageError, RelayError)."""
        if self._relay:
            from agent.relay.client import AgentRegistration
            from agent.relay.protocol import DEFAULT_PORT

            host, port = parse_address(self._relay, DEFAULT_PORT)
            self._registration = await AgentRegistration.register(host, port)
            self._spawn(self._ticket_loop(host, port))
            return self._registration.session_id
        assert self._listen is not None
        host, port = parse_address(self._listen, allow_port_zero=True)
        try:
            self._listener = await asyncio.start_server(self._on_direct, host, port)
        except OSError as exc:
            raise UsageError(f"cannot listen on {self._listen}: {exc.strerror}") from None
        # Direct mode has no relay to assign an ID: make one locally (it binds the PAKE).
        return str(secrets.randbelow(900_000_000) + 100_000_000)

    @property
    def listen_address(self) -> tuple[str, int] | None:
        """The bound address in direct mode (port 0 picks one)."""
        if self._listener is None or not self._listener.sockets:
            return None
        host, port = self._listener.sockets[0].getsockname()[:2]
        return host, port

    def path_died_silently(self) -> None:
        """A viewer's channel heard nothing for its silence limit: renew the relay registration too."""
        if self._registration is not None:
            self._registration.renew()

    async def close(self) -> None:
        """Stop listening first (so no new connection starts), end the ticket loop and viewer
        attempts in progress, then leave the relay."""
        if self._listener is not None:
            await stop_server(self._listener)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        if self._registration is not None:
            with contextlib.suppress(Exception):
                await self._registration.close()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _ticket_loop(self, host: str, port: int) -> None:
        from agent.relay.client import RelayError, open_agent_data
        from agent.relay.protocol import NO_SUCH_TICKET

        try:
            async for ticket in self._registration.tickets():
                if not self._can_accept():
                    log.info("a viewer asked while the session is busy; ignoring its ticket")
                    continue
                try:
                    reader, writer = await open_agent_data(host, port, self._registration.session_id, ticket)
                except (RelayError, OSError, asyncio.TimeoutError) as exc:
                    if isinstance(exc, RelayError) and exc.reason == NO_SUCH_TICKET:
                        # the relay sends waiting tickets again after a re-registration; answered once already
                        log.info("a viewer's ticket was already answered or has expired")
                    else:
                        log.warning("could not open the data connection for a viewer: %s", exc)
                    continue
                self._spawn(self._on_viewer(reader, writer, "relay"))
        except RelayError as exc:
            self._on_lost(f"relay lost: {exc}")

    async def _on_direct(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._can_accept():
            writer.close()
            return
        peer = writer.get_extra_info("peername")
        await self._on_viewer(reader, writer, f"{peer[0]}:{peer[1]}" if peer else "direct")

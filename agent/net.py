"""The edges where we touch the network: addresses, the loopback rule, ending connections for good.

One parser and one loopback check for every command (relay, agent, viewer,
rfb), so an address is accepted or refused the same way everywhere.

``StreamWriter.close()`` only schedules the close: the socket is released a
loop iteration later, or only once buffered bytes drain. A server that returns
from its shutdown before that leaves sockets open behind a stopped loop, and a
peer that never reads can hold one forever. Every connection we own ends in
``close_stream`` and every server we run stops in ``stop_server``.
"""
from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import socket
from typing import Any

from agent.errors import UsageError

CLOSE_TIMEOUT = 1.0  # seconds a closing peer gets to take our last bytes before the socket is dropped


async def close_stream(writer: Any, timeout: float = CLOSE_TIMEOUT) -> None:
    """Close ``writer`` and wait until it is released; abort if the peer holds it past ``timeout``.

    ``writer``: an asyncio StreamWriter, or anything with its close/wait_closed/is_closing
    (our channel's writer); one without a transport to abort is left to its own close.
    """
    if not writer.is_closing():
        writer.close()
    # Shielded: timing out must not cancel the writer's own close future, which a second wait needs.
    waiter = asyncio.ensure_future(writer.wait_closed())
    waiter.add_done_callback(_retrieve)
    try:
        await asyncio.wait_for(asyncio.shield(waiter), timeout)
        return
    except asyncio.TimeoutError:
        pass
    except OSError:  # the connection's own failure (reset, broken pipe): it is closed all the same
        return
    transport = getattr(writer, "transport", None)
    if transport is not None:
        transport.abort()
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(waiter), timeout)
    if not waiter.done():
        waiter.cancel()


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Mark a close's outcome as seen: a reset while nobody waits any more is not worth a log line."""
    if not task.cancelled():
        task.exception()


ACCEPT_TURNS = 4  # accept -> transport -> connection_made -> handler task: three loop turns, one spare


async def stop_server(server: asyncio.AbstractServer) -> None:
    """Stop accepting without leaking a connection the loop is accepting right now.

    On Python 3.11 a connection accepted in the same loop turn as ``close()``
    fails to attach to the closed server and its socket is never closed. So
    stop listening first, let in-flight accepts reach their handler (which
    sees the server is closing and ends them), and only then close.
    """
    loop = asyncio.get_running_loop()
    for sock in server.sockets or ():
        loop.remove_reader(sock.fileno())
    for _ in range(ACCEPT_TURNS):
        await asyncio.sleep(0)
    server.close()


_ADDRESS = re.compile(r"\[([0-9A-Fa-f:.]+)\](?::(\d+))?|([^:\[\]\s]+)(?::(\d+))?")


class AddressError(UsageError):
    """A HOST:PORT argument could not be understood."""


def parse_address(text: str, default_port: int | None = None, *, allow_port_zero: bool = False) -> tuple[str, int]:
    """``HOST:PORT``, ``[IPv6]:PORT`` or, with a default port, ``HOST`` -> (host, port).

    Port 0 ("pick a free one") is only meaningful for addresses we listen on.
    """
    match = _ADDRESS.fullmatch(text.strip())
    if match is None:
        raise AddressError(f"invalid address {text!r}: expected HOST:PORT")
    host = match.group(1) or match.group(3)
    port_text = match.group(2) or match.group(4)
    if port_text is None and default_port is None:
        raise AddressError(f"invalid address {text!r}: expected HOST:PORT (the port is required)")
    port = int(port_text) if port_text else default_port
    assert port is not None
    if not (0 if allow_port_zero else 1) <= port < 65536:
        raise AddressError(f"invalid port in {text!r}: expected 1-65535")
    return host, port


def require_loopback(host: str, port: int = 0) -> None:
    """Refuse to serve anything unauthenticated beyond loopback: every address ``host`` resolves to must be one."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UsageError(f"cannot resolve {host!r}: {exc.strerror}") from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if not address.is_loopback:
            raise UsageError(f"refusing to serve plain RFB on {host} ({address} is not a loopback address); "
                             "use 127.0.0.1 (and an SSH tunnel or a support session to reach it from elsewhere)")

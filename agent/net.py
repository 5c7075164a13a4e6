"""The edges where we touch the network: the loopback rule, ending connections for good.

One loopback check for every command that serves something unauthenticated
(rfb, the viewer's plain-RFB port), so an address is refused the same way
everywhere.

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

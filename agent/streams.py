"""Closing an asyncio stream for good.

``StreamWriter.close()`` only schedules the close: the socket is released a
loop iteration later, or only once buffered bytes drain. A server that returns
from its shutdown before that leaves sockets open behind a stopped loop, and a
peer that never reads can hold one forever. Every connection we own ends here.
"""
from __future__ import annotations

import asyncio
import contextlib

CLOSE_TIMEOUT = 1.0  # seconds a closing peer gets to take our last bytes before the socket is dropped


async def close_stream(writer: asyncio.StreamWriter, timeout: float = CLOSE_TIMEOUT) -> None:
    """Close ``writer`` and wait until its socket is released; abort if the peer holds it past ``timeout``."""
    if not writer.is_closing():
        writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), timeout)
    except asyncio.TimeoutError:
        writer.transport.abort()
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), timeout)
    except OSError:  # the connection's own failure (reset, broken pipe): it is closed all the same
        pass


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

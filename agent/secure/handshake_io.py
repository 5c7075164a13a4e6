"""Running a handshake state machine over an asyncio (reader, writer) pair, with a time bound.

Split from agent.secure.stream (which re-exports these) so that module stays about the record layer.
"""
from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Callable

from agent.net import close_stream
from agent.secure.errors import HandshakeError
from agent.secure.handshake import AuthFailed, Established, _Handshake
from agent.secure.records import NEED_DATA

_HANDSHAKE_READ_SIZE = 4096


async def _handshake(handshake: _Handshake, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     timeout: float, *, failure_delay: float,
                     on_failure: Callable[[], None] | None = None) -> Established | AuthFailed:
    async def run() -> Established | AuthFailed:
        while True:
            event = handshake.next_event()
            out = handshake.data_to_send()
            if isinstance(event, AuthFailed):
                if on_failure is not None:
                    on_failure()  # counted first: nothing the viewer does from here on can undo it
                await asyncio.sleep(failure_delay)
                with contextlib.suppress(ConnectionError, OSError):  # a viewer gone by now still failed
                    writer.write(out)
                    await writer.drain()
                return event
            if out:
                writer.write(out)
                await writer.drain()
            if event is not NEED_DATA:
                assert isinstance(event, (Established, AuthFailed))
                return event
            handshake.receive_data(await reader.read(_HANDSHAKE_READ_SIZE))

    outcome = await run_bounded(run(), writer, timeout, "secure")
    if isinstance(outcome, AuthFailed):
        await close_stream(writer)
    return outcome


async def run_bounded(handshake: Any, writer: asyncio.StreamWriter, timeout: float, what: str) -> Any:
    """Run a handshake coroutine within ``timeout``; a lost connection becomes a HandshakeError naming
    ``what`` (secure, resume), and any failure or timeout closes the connection before it propagates."""
    try:
        try:
            return await asyncio.wait_for(handshake, timeout)
        except (ConnectionError, OSError) as exc:
            if isinstance(exc, TimeoutError):
                raise
            raise HandshakeError(f"the connection was lost during the {what} handshake ({type(exc).__name__})") \
                from None
    except BaseException:
        await close_stream(writer)
        raise

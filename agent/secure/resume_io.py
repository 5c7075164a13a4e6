"""The resume handshake (agent.secure.resume) over a connection: a cut session's new transport.

The asyncio edge of the sans-IO resume machines, as ``handshake_io`` is for the PAKE: run the
machine over a (reader, writer) pair within a deadline and hand back an established SecureStream.
"""
from __future__ import annotations

import asyncio
from typing import Any, Callable

from agent.net import close_stream
from agent.secure.errors import AuthFailedError
from agent.secure.handshake_io import _HANDSHAKE_READ_SIZE, run_bounded
from agent.secure.records import NEED_DATA
from agent.secure.stream import SecureStream


async def peek_first_message(reader: asyncio.StreamReader, timeout: float) -> bytes:
    """Agent side: the first 4 bytes the viewer sent (the message prefix), to tell a PAKE HELLO from a RESUME."""
    return await asyncio.wait_for(reader.readexactly(4), timeout)


async def connect_resume(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, session_id: str,
                         secret: bytes, received: int, *, timeout: float = 30, compression: bool = True,
                         **options: Any) -> tuple[SecureStream, int]:
    """Viewer side of agent.secure.resume: (the new stream, inner bytes the agent had received).

    ``compression``: at most what the first handshake agreed (SessionChannel.resume narrows it to that).
    Raises ResumeRefusedError (the session is gone), ChannelError or asyncio.TimeoutError."""
    from agent.secure.resume import ViewerResume

    machine = ViewerResume(session_id, secret, received, compression=compression)
    outcome = await _run_resume(machine, reader, writer, timeout, b"")
    return SecureStream(reader, writer, outcome.channel, **options), outcome.peer_received


async def accept_resume(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, session_id: str,
                        secret: bytes, received: Callable[[], int], first: bytes, *, timeout: float = 30,
                        compression: bool = False, **options: Any) -> tuple[SecureStream, int]:
    """Agent side of agent.secure.resume; ``first`` = bytes already read. Raises AuthFailedError if refused.

    ``compression``: what the session's first handshake agreed (SessionChannel.compression_agreed)."""
    from agent.secure.resume import AgentResume

    machine = AgentResume(session_id, secret, received, compression=compression)
    outcome = await _run_resume(machine, reader, writer, timeout, first)
    return SecureStream(reader, writer, outcome.channel, **options), outcome.peer_received


async def _run_resume(machine: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      timeout: float, first: bytes) -> Any:
    from agent.secure.resume import Refused

    if first:
        machine.receive_data(first)

    async def run() -> Any:
        while True:
            event = machine.next_event()
            out = machine.data_to_send()
            if out:
                writer.write(out)
                await writer.drain()
            if event is not NEED_DATA:
                return event
            machine.receive_data(await reader.read(_HANDSHAKE_READ_SIZE))

    outcome = await run_bounded(run(), writer, timeout, "resume")
    if isinstance(outcome, Refused):
        await close_stream(writer)
        raise AuthFailedError("a resume for an unknown session was refused")
    return outcome

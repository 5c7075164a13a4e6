"""What a control-socket subscriber sees: the events an Agent publishes while a block runs."""
from __future__ import annotations

import asyncio
import contextlib
from typing import Any, AsyncIterator


@contextlib.asynccontextmanager
async def agent_events(agent: Any) -> AsyncIterator[list[dict]]:
    """Yield a list that fills with ``agent.events()`` in order until the block ends."""
    seen: list[dict] = []

    async def collect() -> None:
        async for event in agent.events():
            seen.append(event)

    task = asyncio.ensure_future(collect())
    try:
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

"""The event loop every command runs on: uvloop (libuv) where it is installed, else asyncio's own.

Why: on the customer's PC a large share of the agent's CPU while someone
types is the loop, not the pixels. Each keystroke's echo is about a dozen
loop iterations (X's damage report, the settle pause, the update, the
viewer's request and acknowledgement), and asyncio's selector loop runs
each in Python. uvloop runs the loop, its timers and its socket transports
in C. The link benchmark's typing run, four runs each, interleaved: 0.16-0.21 s
of agent CPU on asyncio's loop, 0.16-0.20 s on uvloop (about 7% less); the
churn run is the same within its noise (``python -m benchmarks.linkbench
--workloads typing,churn --servers rejnet``).

It is a drop-in (the same asyncio API, streams and tasks) with two
differences our code must not lean on: its transports are not subclasses
of ``asyncio.Transport``, and ``loop.time()`` moves in whole milliseconds.
The tests run on it too (tests/conftest.py).
"""
from __future__ import annotations

import asyncio
from typing import Any, Coroutine, TypeVar

try:
    import uvloop
except ImportError:  # not built for this platform: asyncio's loop does the same job, in Python
    uvloop = None

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)``, on uvloop when it is installed."""
    if uvloop is None:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)

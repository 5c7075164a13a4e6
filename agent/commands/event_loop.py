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

It is a drop-in (the same asyncio API, streams and tasks) with differences
our code must not lean on: its transports are not subclasses of
``asyncio.Transport``, and ``loop.time()`` moves in whole milliseconds.
One we mend here: it rounds a timer's delay to the nearest millisecond, so
about half the timers fired up to a millisecond before their time on that
clock; code that wakes at a deadline, finds it not reached and sets the
timer again spun until the millisecond turned (the input pacer sent a chaff
record on every turn). Our loop rounds up. The tests run on it too
(tests/conftest.py).
"""
from __future__ import annotations

import asyncio
import math
from typing import Any, Callable, Coroutine, Optional, TypeVar

try:
    import uvloop
except ImportError:  # not built for this platform: asyncio's loop does the same job, in Python
    uvloop = None

T = TypeVar("T")

if uvloop is not None:
    class Loop(uvloop.Loop):  # type: ignore[misc, name-defined]
        """uvloop's loop, whose timers never fire before their time on ``time()``."""

        def call_later(self, delay: float, callback: Callable[..., object], *args: Any,
                       context: Optional[Any] = None) -> asyncio.TimerHandle:
            # uvloop takes round(delay * 1000) milliseconds: hand it the next whole one up
            return super().call_later(math.ceil(delay * 1000 - 1e-6) / 1000, callback, *args, context=context)

        def call_at(self, when: float, callback: Callable[..., object], *args: Any,
                    context: Optional[Any] = None) -> asyncio.TimerHandle:
            return self.call_later(when - self.time(), callback, *args, context=context)


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)``, on uvloop when it is installed."""
    if uvloop is None:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=Loop) as runner:
        return runner.run(main)

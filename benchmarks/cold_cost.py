"""What one small step of a keystroke's path costs with the CPU's caches cold, as between two keys.

``python -m benchmarks.cold_cost [--rounds 150]``

The agent's typing CPU is a few hundred small steps a key, 150 ms apart;
between them the X server, the terminal, the relay and the viewer run, and
the agent's code and data leave the caches. A hot micro-benchmark then says
little: a numpy reduction on a tile grid takes 1 us in a loop and ~30 us
cold. Each step here is timed both ways: hot (the mean of a tight loop) and
cold (the median of single calls, each after the caches were flushed by
touching 48 MB and running unrelated code, then a 2 ms sleep). The anchor is
a ten-iteration Python loop measured the same way, in the same run: the
ratios say what to avoid on the per-key path (numpy calls on a few elements,
task wake-ups), whatever the machine.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import time
from typing import Callable

import numpy as np
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from agent.commands.event_loop import Loop
from agent.secure.compress import Deflater

_flush_area = np.ones(48 << 20, np.uint8)
_junk = [{"a": i, "b": str(i), "c": [i, i + 1]} for i in range(3000)]


def _pollute() -> None:
    global _flush_area
    _flush_area += 1  # data caches
    json.dumps(_junk)  # and other code: instruction caches
    re.compile(r"(a|b)+c" + str(time.perf_counter_ns()))
    time.sleep(0.002)


def cold(step: Callable[[], object], rounds: int) -> float:
    """Median microseconds of one call after the caches were flushed."""
    times = []
    for _ in range(rounds):
        _pollute()
        start = time.perf_counter_ns()
        step()
        times.append(time.perf_counter_ns() - start)
    return statistics.median(times) / 1000


def hot(step: Callable[[], object], calls: int = 2000) -> float:
    """Mean microseconds of a call in a tight loop."""
    step()
    start = time.perf_counter_ns()
    for _ in range(calls):
        step()
    return (time.perf_counter_ns() - start) / calls / 1000


def _steps() -> dict[str, Callable[[], object]]:
    grid = np.zeros((34, 60), np.float32)  # ActivityMap's tiles at 1080p
    mask = np.zeros((34, 60), bool)
    aead = AESGCM(os.urandom(32))
    nonce, record = os.urandom(12), os.urandom(80)
    deflater = Deflater(max_piece=16000)
    glyphs = [os.urandom(100) for _ in range(64)]
    turn = iter(range(1 << 30))

    def python_loop() -> int:
        total = 0
        for i in range(10):
            total += i
        return total

    return {
        "python loop of 10 (anchor)": python_loop,
        "numpy scalar read grid[3, 4]": lambda: grid[3, 4],
        "numpy zeros (34, 60)": lambda: np.zeros((34, 60), bool),
        "numpy mask.any()": mask.any,
        "numpy (grid > 2).any()": lambda: (grid > 2.0).any(),
        "AES-GCM seal, 80 bytes": lambda: aead.encrypt(nonce, record, b"ab"),
        "zstd write + flush of a glyph (channel's Deflater)": lambda: deflater.compress(glyphs[next(turn) % 64]),
    }


async def _wakeups(rounds: int) -> dict[str, float]:
    """A task woken by an Event (as a reader task waits for bytes) against a direct callback."""
    event = asyncio.Event()
    woke: list[int] = []

    async def reader() -> None:
        while True:
            await event.wait()
            event.clear()
            woke.append(time.perf_counter_ns())

    task = asyncio.ensure_future(reader())
    await asyncio.sleep(0)
    via_task, direct = [], []
    for _ in range(rounds):
        _pollute()
        woke.clear()
        start = time.perf_counter_ns()
        event.set()
        while not woke:
            await asyncio.sleep(0)
        via_task.append(woke[0] - start)
        _pollute()
        start = time.perf_counter_ns()
        woke.append(time.perf_counter_ns())
        direct.append(woke[-1] - start)
    task.cancel()
    return {"task woken by an Event": statistics.median(via_task) / 1000,
            "the same work as a direct call": statistics.median(direct) / 1000}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cold_cost", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=150, help="cold calls per step (the median is reported)")
    args = parser.parse_args(argv)
    rows = [(name, hot(step), cold(step, args.rounds)) for name, step in _steps().items()]
    with asyncio.Runner(loop_factory=Loop) as runner:
        wakeups = runner.run(_wakeups(args.rounds))
    anchor = rows[0][2]
    print("| step | hot us | cold us | cold / anchor's cold |")
    print("|---|---|---|---|")
    for name, hot_us, cold_us in rows:
        print(f"| {name} | {hot_us:.2f} | {cold_us:.2f} | {cold_us / anchor:.1f} |")
    for name, cold_us in wakeups.items():
        print(f"| {name} | - | {cold_us:.2f} | {cold_us / anchor:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

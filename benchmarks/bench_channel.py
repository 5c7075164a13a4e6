"""Record-layer throughput (seal + open) against raw AES-256-GCM encrypt + decrypt of the same sizes.

The anchor is measured in the same run, interleaved with the record layer, so
the ratio holds on a shared machine whose absolute speed drifts. Target: the
record layer at >= 0.8x the raw AEAD. The record layer pays, per record, one
copy (header + ciphertext) and about a microsecond of Python for two state
machine calls; that is ~10% of a 64 KiB record but ~20-25% of a 16 KiB one.

Event-loop lag (``--lag``): a real compressing SecureStream pair over loopback sends one novel,
weakly compressible 8 MB frame (a 1080p Raw update) while a task measures how late a 5 ms timer
fires; the largest lateness is how long the loop could not read input or answer a PING. Then 20,000
small (100-byte) compressed writes, timed, to show the worker costs small writes nothing. ``--inline``
compresses on the loop (the offload threshold set beyond any write), as before the worker.

Paced input (``--paced``): the agent's CPU per record of a viewer's padded input (agent.secure.pacing),
the cost issue 14 counts while the technician types (50 records a second, most of them chaff). A viewer
SessionChannel in a child process paces a KeyEvent every 25 ticks, its tick shortened to 2 ms so a few
seconds hold thousands of records, each still its own socket read; the agent's SessionChannel, in this
process, echoes each key. Printed: the agent's CPU seconds (user + system, getrusage) per record opened.
The floor is the event loop's own wake-up (~60-80 us a read on a 2-core VM, most of it in the kernel).

    python -m pytest benchmarks/bench_channel.py       # pytest-benchmark
    python benchmarks/bench_channel.py                 # a table of both and their ratio
    python benchmarks/bench_channel.py --lag [--inline]
    python benchmarks/bench_channel.py --paced [SECONDS]
"""
from __future__ import annotations

import asyncio
import inspect
import os
import random
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: E402

from agent.secure.handshake import AgentHandshake, ViewerHandshake  # noqa: E402
from agent.secure.keyschedule import derive_session_keys  # noqa: E402
from agent.secure.records import Channel, Data, Role  # noqa: E402

SIZES = (16 * 1024, 64 * 1024)
TARGET = 0.8
_KEYS = derive_session_keys(os.urandom(32), os.urandom(32), os.urandom(32))


def raw_round(size: int) -> Callable[[], bytes]:
    """One AES-256-GCM encrypt + decrypt of ``size`` bytes with a 5-byte associated header."""
    aead = AESGCM(os.urandom(32))
    nonce, header, data = os.urandom(12), os.urandom(5), os.urandom(size)

    def round_trip() -> bytes:
        return aead.decrypt(nonce, aead.encrypt(nonce, data, header), header)

    return round_trip


def channel_round(size: int) -> Callable[[], bytes]:
    """One DATA record sealed by one channel end and opened by the other."""
    sender, receiver = Channel(Role.VIEWER, _KEYS), Channel(Role.AGENT, _KEYS)
    data = os.urandom(size)

    def round_trip() -> bytes:
        receiver.receive_data(sender.send_data(data))
        event = receiver.next_event()
        assert isinstance(event, Data)
        return event.data

    return round_trip


def test_raw_aesgcm_16k(benchmark) -> None:  # type: ignore[no-untyped-def]
    benchmark(raw_round(16 * 1024))


def test_record_layer_16k(benchmark) -> None:  # type: ignore[no-untyped-def]
    benchmark(channel_round(16 * 1024))


def test_raw_aesgcm_64k(benchmark) -> None:  # type: ignore[no-untyped-def]
    benchmark(raw_round(64 * 1024))


def test_record_layer_64k(benchmark) -> None:  # type: ignore[no-untyped-def]
    benchmark(channel_round(64 * 1024))


def test_handshake(benchmark) -> None:  # type: ignore[no-untyped-def]
    benchmark(handshake_once)


def handshake_once() -> None:
    viewer, agent = ViewerHandshake("123456789", "k3mx7q"), AgentHandshake("123456789", "k3mx7q")
    agent.receive_data(viewer.data_to_send())
    agent.next_event()
    viewer.receive_data(agent.data_to_send())
    viewer.next_event()
    agent.receive_data(viewer.data_to_send())
    agent.next_event()
    viewer.receive_data(agent.data_to_send())
    viewer.next_event()


def _best(fn: Callable[[], object], number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def compare(size: int, rounds: int = 150, number: int = 20) -> tuple[float, float]:
    """Best seconds per record of (raw, record layer), in many short interleaved rounds so that
    the drift of a shared machine hits both alike."""
    raw, ours = raw_round(size), channel_round(size)
    best_raw = best_ours = float("inf")
    for _ in range(rounds):
        best_raw = min(best_raw, _best(raw, number))
        best_ours = min(best_ours, _best(ours, number))
    return best_raw, best_ours


FRAME = 1920 * 1080 * 4  # a 1080p Raw update in 32-bit pixels
_WEAK = bytes(b & 0x33 for b in range(256))  # 4 bits of entropy a byte: zstd works hard, gains little


async def _stream_pair(inline: bool) -> tuple[object, object]:
    from agent.secure.stream import SecureStream, accept_agent, connect_viewer

    accepted: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = \
        asyncio.get_running_loop().create_future()
    server = await asyncio.start_server(lambda r, w: accepted.set_result((r, w)), "127.0.0.1", 0)
    client = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
    options: dict[str, object] = {"compress": True}
    if inline and "offload_threshold" in inspect.signature(SecureStream.__init__).parameters:
        options["offload_threshold"] = 1 << 62
    viewer, agent = await asyncio.gather(
        connect_viewer(*client, "123456789", "k3mx7q", timeout=10, **options),
        accept_agent(*(await accepted), "123456789", "k3mx7q", timeout=10, failure_delay=0, **options))
    server.close()
    return viewer, agent


async def _lag_run(inline: bool) -> tuple[float, float, float]:
    """(max loop lag in s, seconds until the 8 MB frame arrived, seconds for the small writes)."""
    viewer, agent = await _stream_pair(inline)
    frame = random.Random(1).randbytes(FRAME).translate(_WEAK)
    loop = asyncio.get_running_loop()
    worst, done = 0.0, False

    async def ticker() -> None:
        nonlocal worst
        while not done:
            due = loop.time() + 0.005
            await asyncio.sleep(0.005)
            worst = max(worst, loop.time() - due)

    async def receive(size: int) -> None:
        got = 0
        while got < size:
            got += len(await viewer.recv())  # type: ignore[attr-defined]

    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(0.05)
    start = time.perf_counter()
    receiving = asyncio.create_task(receive(FRAME))
    await agent.send(frame)  # type: ignore[attr-defined]
    await receiving
    frame_time = time.perf_counter() - start
    done = True
    await ticking
    small = b"typing echo " * 8 + b"1234"
    start = time.perf_counter()
    receiving = asyncio.create_task(receive(20_000 * len(small)))
    for i in range(20_000):
        agent._send_nowait(small)  # type: ignore[attr-defined]
        if i % 100 == 99:
            await agent._drain()  # type: ignore[attr-defined]
    await receiving
    small_time = time.perf_counter() - start
    await asyncio.gather(viewer.close(), agent.close())  # type: ignore[attr-defined]
    return worst, frame_time, small_time


def lag_main(inline: bool) -> int:
    print(f"8 MB weakly compressible frame over a compressing SecureStream pair on loopback "
          f"({'compressed on the loop' if inline else 'big writes compressed in the worker'})")
    for run in range(3):
        worst, frame_time, small_time = asyncio.run(_lag_run(inline))
        print(f"  run {run + 1}: max loop lag {worst * 1000:6.1f} ms   frame delivered in {frame_time * 1000:6.1f} ms"
              f"   20,000 small writes in {small_time * 1000:6.1f} ms ({small_time / 20_000 * 1e6:.1f} us each)")
    return 0


PACED_TICK = 0.002  # seconds: 500 records a second instead of 50, each still its own read
_KEY = b"\x04\x01\x00\x00\x00\x00\x00a"  # an RFB KeyEvent


async def _paced_viewer(port: int, seconds: float) -> None:
    from agent.secure.session_channel import SessionChannel
    from agent.secure.stream import connect_viewer

    stream = await connect_viewer(*await asyncio.open_connection("127.0.0.1", port), "123456789", "k3mx7q",
                                  timeout=10)
    channel = SessionChannel(stream, "viewer", on_message=lambda m: None, pace_input=True)
    assert channel._pacer is not None
    channel._pacer.tick = PACED_TICK
    rfb = channel.open_stream("rfb")

    async def drain() -> None:
        while await rfb.recv():
            pass

    draining = asyncio.ensure_future(drain())
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        rfb.write(_KEY)
        await asyncio.sleep(25 * PACED_TICK)
    await channel.close("done")
    draining.cancel()


async def _paced_agent(seconds: float) -> tuple[int, float, float]:
    """(records opened, CPU seconds, of which user) of the agent's side while the viewer types."""
    import resource
    import subprocess

    from agent.secure.session_channel import SessionChannel
    from agent.secure.stream import accept_agent

    accepted: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = \
        asyncio.get_running_loop().create_future()
    server = await asyncio.start_server(lambda r, w: accepted.set_result((r, w)), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    child = subprocess.Popen([sys.executable, __file__, "--paced-viewer", str(port), str(seconds + 2)])
    stream = await accept_agent(*await accepted, "123456789", "k3mx7q", timeout=10, failure_delay=0,
                                compress=True, ack_delay=1.0)
    server.close()
    opened: list[object] = []
    SessionChannel(stream, "agent", on_message=lambda m: None, on_open=opened.append)
    while not opened:
        await asyncio.sleep(0.01)
    rfb = opened[0]

    async def echo() -> None:
        while await rfb.recv():  # type: ignore[attr-defined]
            rfb.write(b"x" * 200)  # type: ignore[attr-defined]

    echoing = asyncio.ensure_future(echo())

    def cpu() -> tuple[float, float]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime, usage.ru_utime

    await asyncio.sleep(1.0)
    (cpu0, user0), records0 = cpu(), stream._channel._opener.counter
    await asyncio.sleep(seconds)
    (cpu1, user1), records1 = cpu(), stream._channel._opener.counter
    child.wait()
    echoing.cancel()
    return records1 - records0, cpu1 - cpu0, user1 - user0


def paced_main(seconds: float) -> int:
    print(f"paced input, tick {PACED_TICK * 1000:g} ms, a key every 25 ticks: the agent's CPU per record")
    for run in range(3):
        records, total, user = asyncio.run(_paced_agent(seconds))
        print(f"  run {run + 1}: {records} records in {seconds:g} s, {total:.3f} s CPU: "
              f"{total / max(records, 1) * 1e6:.1f} us a record ({user / max(records, 1) * 1e6:.1f} us user)")
    return 0


def main() -> int:
    if "--lag" in sys.argv:
        return lag_main("--inline" in sys.argv)
    if "--paced-viewer" in sys.argv:
        at = sys.argv.index("--paced-viewer")
        asyncio.run(_paced_viewer(int(sys.argv[at + 1]), float(sys.argv[at + 2])))
        return 0
    if "--paced" in sys.argv:
        at = sys.argv.index("--paced")
        return paced_main(float(sys.argv[at + 1]) if len(sys.argv) > at + 1 else 4.0)
    print(f"{'record':>7} {'raw AES-GCM MB/s':>17} {'record layer MB/s':>18} {'ratio':>6}   "
          f"(seal + open; target ratio >= {TARGET})")
    for size in SIZES:
        raw, ours = compare(size)
        print(f"{size // 1024:>5} K {size / raw / 1e6:>17.0f} {size / ours / 1e6:>18.0f} {raw / ours:>6.2f}")
    start = time.perf_counter()
    for _ in range(10):
        handshake_once()
    print(f"handshake (both ends, SPAKE2 + X25519 + HKDF): {(time.perf_counter() - start) / 10 * 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())

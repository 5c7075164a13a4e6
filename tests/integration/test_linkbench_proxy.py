"""The link benchmark's shaping proxy: rate, delay, byte integrity and bounded memory."""
from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.linkbench.proxy import (  # noqa: E402
    SEGMENT,
    Direction,
    LinkSpec,
    ShapingProxy,
    TokenBucket,
    parse_rate,
    rate_label,
)

# ---------------------------------------------------------------- arithmetic


def test_token_bucket_passes_a_burst_then_paces_at_the_rate():
    bucket = TokenBucket(1000.0, 100)
    assert bucket.reserve(100, 0.0) == 0.0          # a full bucket lets one burst through
    assert bucket.reserve(100, 0.0) == pytest.approx(0.1)
    assert bucket.reserve(100, 0.0) == pytest.approx(0.2)
    assert bucket.backlog(0.0) == pytest.approx(200.0)
    assert bucket.reserve(50, 5.0) == 5.0           # idle long enough: refilled, no wait
    assert bucket.backlog(5.0) == 0.0


def test_token_bucket_never_reorders_and_handles_segments_above_its_depth():
    bucket = TokenBucket(1000.0, 10)
    first = bucket.reserve(500, 0.0)
    second = bucket.reserve(1, 0.0)
    assert first == pytest.approx(0.49)   # 10 bytes of burst, 490 at 1000 B/s
    assert second >= first


def test_direction_charges_headers_adds_delay_and_keeps_order():
    import random

    d = Direction(LinkSpec(8000.0, delay=0.5, burst=1, overhead=52), random.Random(0), 0.0)
    first = d.admit(1448, 0.0)
    assert first == pytest.approx((1500 - 1) / 1000 + 0.5)  # 1000 B/s, headers charged, then the delay line
    assert d.admit(0, 0.0) >= first                      # the EOF marker never overtakes data
    jittery = Direction(LinkSpec(None, delay=0.1, jitter=0.05), random.Random(1), 0.0)
    times = [jittery.admit(100, t / 1000) for t in range(50)]
    assert times == sorted(times) and all(t >= 0.1 for t in times)


def test_unlimited_bucket_is_transparent():
    bucket = TokenBucket(None, SEGMENT)
    assert bucket.reserve(10**6, 3.0) == 3.0
    assert bucket.backlog(3.0) == 0.0


@pytest.mark.parametrize("text, bps", [("256k", 256e3), ("1m", 1e6), ("10M", 10e6), ("2.5mbit", 2.5e6),
                                       ("64000", 64e3), ("1g", 1e9)])
def test_parse_rate(text, bps):
    assert parse_rate(text) == bps


@pytest.mark.parametrize("text", ["", "fast", "-1m", "0k", "1x"])
def test_parse_rate_refuses_nonsense(text):
    with pytest.raises(ValueError):
        parse_rate(text)


def test_rate_label_round_trips():
    for text in ("256k", "1m", "10m", "2.5m"):
        assert rate_label(parse_rate(text)) == text


def test_link_spec_refuses_impossible_links():
    with pytest.raises(ValueError):
        LinkSpec(0.0)
    with pytest.raises(ValueError):
        LinkSpec(1e6, delay=-0.1)
    with pytest.raises(ValueError):
        LinkSpec(1e6, queue_bytes=10)


# ---------------------------------------------------------------- over real sockets


async def _echo_server():
    async def echo(reader, writer):
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _sink_server(done: asyncio.Future, expect: int):
    """Counts bytes; resolves ``done`` with (first byte time, last byte time, bytes)."""
    async def sink(reader, writer):
        got, first = 0, None
        while got < expect:
            data = await reader.read(65536)
            if not data:
                break
            first = first or time.monotonic()
            got += len(data)
        done.set_result((first, time.monotonic(), got))
        writer.close()

    server = await asyncio.start_server(sink, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_throughput_is_near_the_set_rate():
    rate = 4e6  # 4 Mbit/s: 400 KB takes 0.8 s
    total = 400_000
    done = asyncio.get_running_loop().create_future()
    server, port = await _sink_server(done, total)
    proxy = ShapingProxy(("127.0.0.1", port), LinkSpec(rate, delay=0.02), LinkSpec(rate, delay=0.02))
    await proxy.start()
    try:
        _, writer = await asyncio.open_connection(*proxy.address)
        writer.write(os.urandom(total))
        await writer.drain()
        first, last, got = await asyncio.wait_for(done, 20)
        writer.close()
    finally:
        await proxy.close()
        server.close()
    assert got == total
    measured = got * 8 / (last - first)
    assert 0.85 * rate <= measured <= 1.1 * rate, f"measured {measured / 1e6:.2f} Mbit/s for a {rate / 1e6:g} Mbit/s link"
    assert proxy.forward_bytes == total


async def test_one_way_delay_is_added_each_way():
    server, port = await _echo_server()
    delay = 0.08
    proxy = ShapingProxy(("127.0.0.1", port), LinkSpec(None, delay=delay), LinkSpec(None, delay=delay))
    await proxy.start()
    try:
        reader, writer = await asyncio.open_connection(*proxy.address)
        rtts = []
        for i in range(5):
            t = time.monotonic()
            writer.write(b"ping %d\n" % i)
            await writer.drain()
            assert await asyncio.wait_for(reader.readexactly(7), 5) == b"ping %d\n" % i
            rtts.append(time.monotonic() - t)
        writer.close()
    finally:
        await proxy.close()
        server.close()
    assert min(rtts) >= 2 * delay - 0.003  # the writer may release up to GRANULARITY early
    assert sorted(rtts)[2] <= 2 * delay + 0.05


async def test_bytes_arrive_intact_and_in_order_both_ways_with_jitter():
    server, port = await _echo_server()
    spec = LinkSpec(20e6, delay=0.005, jitter=0.01)
    proxy = ShapingProxy(("127.0.0.1", port), spec, spec, seed=7)
    await proxy.start()
    payload = os.urandom(300_000)
    try:
        reader, writer = await asyncio.open_connection(*proxy.address)

        async def send():
            for off in range(0, len(payload), 7000):
                writer.write(payload[off:off + 7000])
                await writer.drain()

        sender = asyncio.ensure_future(send())
        echoed = await asyncio.wait_for(reader.readexactly(len(payload)), 20)
        await sender
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # half-close travels through and back
        writer.close()
    finally:
        await proxy.close()
        server.close()
    assert echoed == payload
    assert proxy.forward_bytes == proxy.backward_bytes == len(payload)


async def test_memory_stays_bounded_when_the_source_outruns_the_link():
    rate, delay = 2e6, 0.05
    spec = LinkSpec(rate, delay=delay, queue_bytes=32 * 1024)
    total = 300_000
    done = asyncio.get_running_loop().create_future()
    server, port = await _sink_server(done, total)
    proxy = ShapingProxy(("127.0.0.1", port), spec, spec)
    await proxy.start()
    try:
        _, writer = await asyncio.open_connection(*proxy.address)
        writer.write(os.urandom(total))  # all at once: the proxy must not swallow it
        await writer.drain()
        await asyncio.wait_for(done, 20)
        writer.close()
    finally:
        await proxy.close()
        server.close()
    bound = spec.queue_bytes + 64 * 1024 + rate / 8 * delay + 2 * SEGMENT
    assert 0 < proxy.forward.max_in_flight <= bound
    assert proxy.forward.in_flight == 0


async def test_directions_are_shaped_independently_and_counted_in_a_series():
    done = asyncio.get_running_loop().create_future()
    server, port = await _sink_server(done, 50_000)
    proxy = ShapingProxy(("127.0.0.1", port), LinkSpec(2e6), LinkSpec(None))
    await proxy.start()
    proxy.reset_clock()
    try:
        _, writer = await asyncio.open_connection(*proxy.address)
        writer.write(bytes(50_000))
        await writer.drain()
        first, last, _ = await asyncio.wait_for(done, 10)
        writer.close()
    finally:
        await proxy.close()
        server.close()
    assert last - first >= 0.15  # 50 KB at 2 Mbit/s is 0.2 s
    series = proxy.forward.counter.series
    assert series[0] == (0.0, 0) and series[-1][1] == 50_000
    assert all(b[0] >= a[0] and b[1] >= a[1] for a, b in zip(series, series[1:]))
    assert proxy.backward_bytes == 0


async def test_unreachable_target_closes_the_client_cleanly():
    from tests.support.processes import free_port

    proxy = ShapingProxy(("127.0.0.1", free_port()), LinkSpec(None), LinkSpec(None))
    await proxy.start()
    try:
        reader, writer = await asyncio.open_connection(*proxy.address)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
    finally:
        await proxy.close()

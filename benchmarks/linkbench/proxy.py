"""A shaping TCP proxy: the customer's slow link, emulated in user space.

Each direction is a token bucket (the bottleneck: bytes leave at the set
rate, at most ``burst`` at once; each segment can be charged its TCP/IP
headers, so the payload rate is what a real link of that rate would carry)
followed by a delay line (every segment is
released ``delay`` (+ jitter) seconds after it left the bucket, never before
the segment ahead of it: TCP does not reorder). Both directions are shared
by every connection through the proxy, as a real uplink is shared by the
agent's control and data connections.

Memory is bounded: a direction stops reading from its source while its
bottleneck backlog exceeds ``queue_bytes`` (the router buffer), and then
the source's own socket buffers fill and its writes block, as on a real
link. Bytes sitting in the delay line are at most rate x (delay + jitter).

What a user-space proxy cannot do: the sending server still talks TCP over
loopback to us, so its kernel send buffer grows as on a fast LAN (up to
``net.ipv4.tcp_wmem``), deeper than it would on a real 256 kbit/s line.
Servers that pace themselves (measured RTT, fences, ACKs) do not care;
servers that write as fast as the socket takes see a deeper queue than on a
real link. ``netem.py`` cross-checks the proxy against the kernel's shaper.
"""
from __future__ import annotations

import asyncio
import contextlib
import random
import re
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Optional

SEGMENT = 1448               # bytes per shaped segment: a TCP payload on a 1500-byte MTU
TCP_IP_OVERHEAD = 52         # IPv4 + TCP headers with timestamps: what a real link carries per segment
READ_SIZE = 64 * 1024
DEFAULT_QUEUE = 64 * 1024    # bottleneck buffer in bytes (a home router's per-flow queue)
SOCKET_BUFFER = 64 * 1024    # SO_RCVBUF/SO_SNDBUF on the proxy's own sockets: keep hidden queues short
SERIES_STEP = 0.01           # seconds between points of the bytes-over-time series
GRANULARITY = 0.002          # segments due this soon go out with the one due now (fewer wake-ups)
CONNECT_TIMEOUT = 10.0
_RATE = re.compile(r"^(\d+(?:\.\d+)?)([kKmMgG]?)(?:bit|bps|b)?(?:/s)?$")
_UNITS = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}


def parse_rate(text: str) -> float:
    """'256k', '1m', '10Mbit', '2.5m' -> bits per second (decimal units, as link rates are quoted)."""
    m = _RATE.match(text.strip())
    if m is None:
        raise ValueError(f"a link rate looks like 256k, 1m or 10mbit, got {text!r}")
    bps = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if bps <= 0:
        raise ValueError(f"a link rate must be positive, got {text!r}")
    return bps


def rate_label(bps: float) -> str:
    """The inverse of parse_rate for display: 256000 -> '256k', 1e6 -> '1m'."""
    for unit, scale in (("g", 1e9), ("m", 1e6), ("k", 1e3)):
        if bps >= scale:
            value = bps / scale
            return f"{value:g}{unit}"
    return f"{bps:g}"


@dataclass(frozen=True)
class LinkSpec:
    """One direction of the emulated link. ``rate_bps=None`` means unlimited."""

    rate_bps: Optional[float]
    delay: float = 0.0
    jitter: float = 0.0
    queue_bytes: int = DEFAULT_QUEUE
    burst: int = SEGMENT + TCP_IP_OVERHEAD  # one full-size packet
    overhead: int = 0  # header bytes charged per segment (52 = IPv4 + TCP with timestamps)

    def __post_init__(self) -> None:
        if self.rate_bps is not None and self.rate_bps <= 0:
            raise ValueError(f"rate must be positive or None, got {self.rate_bps}")
        if self.delay < 0 or self.jitter < 0:
            raise ValueError("delay and jitter cannot be negative")
        if self.queue_bytes < SEGMENT or self.burst < 1 or self.overhead < 0:
            raise ValueError(f"queue_bytes must be at least {SEGMENT}, burst at least 1, overhead >= 0")

    @property
    def rate_Bps(self) -> Optional[float]:
        return None if self.rate_bps is None else self.rate_bps / 8.0

    def describe(self) -> str:
        rate = "unlimited" if self.rate_bps is None else rate_label(self.rate_bps) + "bit/s"
        jitter = f" +-{self.jitter * 1e3:g} ms" if self.jitter else ""
        return f"{rate}, {self.delay * 1e3:g} ms{jitter}"


class TokenBucket:
    """Departure times for a FIFO bottleneck: ``rate`` bytes/s, ``depth`` bytes of burst.

    Pure arithmetic on the times it is given, so tests can drive it without
    a clock. ``reserve`` never lets a segment leave before the one ahead.
    """

    def __init__(self, rate_Bps: Optional[float], depth: int) -> None:
        self.rate = rate_Bps
        self.depth = float(depth)
        self._tokens = float(depth)
        self._last = float("-inf")

    def reserve(self, nbytes: int, now: float) -> float:
        """Take ``nbytes`` through the bucket at ``now`` or later; returns when they have left."""
        if self.rate is None:
            self._last = max(self._last, now)
            return self._last
        t = max(now, self._last)
        refill = (t - self._last) * self.rate if self._last != float("-inf") else self.depth
        tokens = min(self.depth, self._tokens + refill)
        if tokens < nbytes:
            t += (nbytes - tokens) / self.rate
            tokens = float(nbytes)
        self._tokens = tokens - nbytes
        self._last = t
        return t

    def backlog(self, now: float) -> float:
        """Bytes admitted but not yet through the bottleneck at ``now`` (the router queue)."""
        if self.rate is None or self._last <= now:
            return 0.0
        return (self._last - now) * self.rate


@dataclass
class Counter:
    """Bytes delivered in one direction, in total and as a (seconds, cumulative bytes) series."""

    total: int = 0
    series: list = field(default_factory=list)
    t0: float = field(default_factory=time.monotonic)

    def add(self, nbytes: int, now: float) -> None:
        self.total += nbytes
        t = now - self.t0
        if len(self.series) > 1 and t - self.series[-1][0] < SERIES_STEP:  # keep the origin point
            self.series[-1] = (self.series[-1][0], self.total)
        else:
            self.series.append((t, self.total))


class Direction:
    """One direction of the link: its bucket, jitter source, delivery order and byte counter."""

    def __init__(self, spec: LinkSpec, rng: random.Random, t0: float) -> None:
        self.spec = spec
        self.bucket = TokenBucket(spec.rate_Bps, max(spec.burst, 1))
        self.rng = rng
        self.counter = Counter(t0=t0)
        self.in_flight = 0       # admitted, not yet delivered (proxy memory for this direction)
        self.max_in_flight = 0
        self._last_delivery = float("-inf")

    def admit(self, nbytes: int, now: float) -> float:
        """When a segment of ``nbytes`` arriving at ``now`` reaches the far end."""
        left = self.bucket.reserve(nbytes + self.spec.overhead if nbytes else 0, now)
        self.in_flight += nbytes
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        jitter = self.rng.uniform(0.0, self.spec.jitter) if self.spec.jitter else 0.0
        self._last_delivery = max(self._last_delivery, left + self.spec.delay + jitter)
        return self._last_delivery

    def wait_for_room(self, now: float) -> float:
        """Seconds to stop reading so the bottleneck queue stays within ``queue_bytes``."""
        rate = self.bucket.rate
        over = self.bucket.backlog(now) - self.spec.queue_bytes
        return over / rate if rate and over > 0 else 0.0


class _Pipe:
    """Bytes from one socket to another through a Direction, with a bounded timed queue."""

    def __init__(self, direction: Direction, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.direction = direction
        self.reader = reader
        self.writer = writer
        self.queue: deque = deque()  # (deliver_at, bytes); b"" marks EOF
        self.ready = asyncio.Event()

    async def read_side(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                pause = self.direction.wait_for_room(loop.time())
                if pause > 0:
                    await asyncio.sleep(pause)
                data = await self.reader.read(READ_SIZE)
                if not data:
                    break
                now = loop.time()
                view = memoryview(data)
                for off in range(0, len(data), SEGMENT):
                    piece = bytes(view[off:off + SEGMENT])
                    self.queue.append((self.direction.admit(len(piece), now), piece))
                self.ready.set()
        except (ConnectionError, OSError):
            pass
        finally:
            self.queue.append((self.direction.admit(0, loop.time()), b""))
            self.ready.set()

    async def write_side(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                while not self.queue:
                    self.ready.clear()
                    await self.ready.wait()
                due = self.queue[0][0] - loop.time()
                if due > 0:
                    await asyncio.sleep(due)
                now = loop.time()
                chunks, eof = [], False
                while self.queue and self.queue[0][0] <= now + GRANULARITY:
                    piece = self.queue.popleft()[1]
                    if not piece:
                        eof = True
                        break
                    chunks.append(piece)
                if chunks:
                    data = b"".join(chunks)
                    self.writer.write(data)
                    self.direction.in_flight -= len(data)
                    self.direction.counter.add(len(data), time.monotonic())
                    await self.writer.drain()
                if eof:
                    with contextlib.suppress(OSError):
                        if self.writer.can_write_eof():
                            self.writer.write_eof()
                    return
        except (ConnectionError, OSError):
            return


class ShapingProxy:
    """Listens on ``listen``; every connection is forwarded to ``target`` through the shaped link.

    ``forward`` shapes bytes from the connecting side to the target,
    ``backward`` the answers. Call ``await start()``, read ``address``,
    ``await close()`` when done; ``forward_bytes``/``backward_bytes`` count
    what was delivered.
    """

    def __init__(self, target: tuple[str, int], forward: LinkSpec, backward: LinkSpec, *,
                 listen: tuple[str, int] = ("127.0.0.1", 0), seed: int = 0) -> None:
        self.target = target
        self.listen = listen
        t0 = time.monotonic()
        self.forward = Direction(forward, random.Random(seed), t0)
        self.backward = Direction(backward, random.Random(seed + 1), t0)
        self.address: Optional[tuple[str, int]] = None
        self.connections = 0
        self._server: Optional[asyncio.base_events.Server] = None
        self._tasks: set[asyncio.Task] = set()
        self._writers: list[asyncio.StreamWriter] = []

    @property
    def forward_bytes(self) -> int:
        return self.forward.counter.total

    @property
    def backward_bytes(self) -> int:
        return self.backward.counter.total

    def reset_clock(self) -> None:
        """Make the byte series start at zero seconds from now (the start of a measurement)."""
        now = time.monotonic()
        for d in (self.forward, self.backward):
            d.counter.t0 = now
            d.counter.series = [(0.0, d.counter.total)]

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        _small_buffers(sock)  # accepted sockets inherit these
        sock.bind(self.listen)
        self._server = await asyncio.start_server(self._serve, sock=sock)
        host, port = self._server.sockets[0].getsockname()[:2]
        self.address = (host, port)

    async def _serve(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(c_writer)
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            _small_buffers(sock)
            sock.setblocking(False)
            await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, self.target), CONNECT_TIMEOUT)
            t_reader, t_writer = await asyncio.open_connection(sock=sock)
        except (OSError, asyncio.TimeoutError):
            sock.close()
            c_writer.close()
            return
        self._writers.append(t_writer)
        pipes = (_Pipe(self.forward, c_reader, t_writer), _Pipe(self.backward, t_reader, c_writer))
        tasks = [asyncio.ensure_future(coro) for p in pipes for coro in (p.read_side(), p.write_side())]
        self._tasks.update(tasks)
        try:
            await asyncio.gather(*tasks, return_exceptions=True)
        except asyncio.CancelledError:
            pass  # the loop is shutting down: this handler is the edge, nobody awaits it
        finally:
            self._tasks.difference_update(tasks)
            for w in (c_writer, t_writer):
                w.close()

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for w in self._writers:
            w.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._writers.clear()
        if server is not None:
            await server.wait_closed()

    async def __aenter__(self) -> "ShapingProxy":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _small_buffers(sock: socket.socket) -> None:
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)

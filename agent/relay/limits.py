"""Per-source rate limits of the relay (issue #11 B): token buckets keyed by source, bounded in memory.

A source is what ``protocol.source_key`` makes of the peer address: an IPv6
address counts by its /64 (one subscriber's network hands its hosts 2^64
addresses, so counting single IPv6 addresses would bound nothing), an IPv4
address by itself. Each limit is a token bucket: ``burst`` requests at once,
then ``rate`` a second. The table holds at most ``max_sources`` entries, in
the order they last spent a token; past that the least recently active is
forgotten (O(1)), so memory stays bounded even under a spray of source
addresses, at the price of a quiet limited source starting afresh only then.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable

MAX_SOURCES = 65_536
"""Buckets one limiter keeps (about 100 bytes each): far more sources than are active at once."""


class RateLimiter:
    """``allow(source)`` spends one token, False when the source's bucket is empty; ``peek`` only looks."""

    def __init__(self, burst: float, rate: float, clock: Callable[[], float], *,
                 max_sources: int = MAX_SOURCES) -> None:
        if burst < 1 or rate <= 0 or max_sources < 1:
            raise ValueError("a rate limit needs burst >= 1, rate > 0 and room for one source")
        self.burst = float(burst)
        self.rate = float(rate)
        self._clock = clock
        self._max = max_sources
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # source -> (tokens, when)

    def _tokens(self, source: str, now: float) -> float:
        tokens, when = self._buckets.get(source, (self.burst, now))
        return min(self.burst, tokens + (now - when) * self.rate)

    def peek(self, source: str) -> bool:
        """True if ``source`` has a token left (nothing is spent)."""
        return self._tokens(source, self._clock()) >= 1.0

    def allow(self, source: str) -> bool:
        """Spend a token of ``source``'s; False (nothing spent) when it has none."""
        now = self._clock()
        tokens = self._tokens(source, now)
        if tokens < 1.0:
            return False
        self._buckets[source] = (tokens - 1.0, now)
        self._buckets.move_to_end(source)
        while len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
        return True

    def __len__(self) -> int:
        return len(self._buckets)

"""Flow control for the agent -> viewer stream: how many bytes may be in flight.

Sans-IO: the session feeds it what the secure channel reports (cumulative
ACKs, RTT samples from PING/PONG) and asks ``may_send(in_flight)`` before
each framebuffer update. Keeping the unacknowledged bytes near the
bandwidth-delay product means an update never queues behind stale ones in
socket buffers: on a slow link the agent simply sends fewer, fresher updates.

The delivery-rate estimate is a windowed maximum of ACK-rate samples (as
BBR does): an ACK sample can only under-estimate the link when the sender
was idle, so the maximum over a few seconds tracks the real bottleneck.
"""
from __future__ import annotations

from collections import deque
from operator import itemgetter

MIN_WINDOW = 16 * 1024          # always allow one modest update in flight
INITIAL_WINDOW = 64 * 1024      # before the first estimate
MAX_WINDOW = 8 * 1024 * 1024
WINDOW_GAIN = 2.0               # window = gain x bandwidth x RTT
RATE_FILTER_SECONDS = 4.0       # windowed-max horizon of rate samples
PEAK_FILTER_SECONDS = 30.0      # horizon of peak_bandwidth
MIN_SAMPLE_SECONDS = 0.2        # rate samples span at least this (and one RTT): a receiver that was busy
# for a moment (a shared CPU) reads and ACKs a burst at once, and a short sample would see a link far
# faster than the real one; the windowed maximum would then keep that error for RATE_FILTER_SECONDS.
DEFAULT_RTT = 0.1
# JPEG quality ceilings by estimated bandwidth (bytes/s): below the viewer's own
# quality hint on slow links, where a sharper frame would arrive much later.
# Areas sent lossy get a lossless refresh once they settle (agent.service.updater).
QUALITY_STEPS = ((48_000, 3), (160_000, 5), (600_000, 7))
_RATE = itemgetter(1)


class FlowController:
    """Bandwidth and RTT estimate from ACKs; a congestion window derived from them."""

    def __init__(self, *, min_window: int = MIN_WINDOW, initial_window: int = INITIAL_WINDOW,
                 max_window: int = MAX_WINDOW) -> None:
        self.min_window = min_window
        self.max_window = max_window
        self._window = initial_window
        self._acked = 0
        self._last_ack: tuple[float, int] | None = None
        self._samples: deque[tuple[float, float]] = deque()  # (time, bytes/s), the last PEAK_FILTER_SECONDS
        self._peak: float | None = None  # their best, once asked (the updater asks on every frame and ACK)
        self._rate: float | None = None  # the best of the last RATE_FILTER_SECONDS of them, once asked
        self.rtt: float | None = None
        self.min_rtt: float | None = None

    @property
    def window(self) -> int:
        return self._window

    @property
    def peak_bandwidth(self) -> float | None:
        """The best rate seen over PEAK_FILTER_SECONDS: the link's rate while the sender holds itself back
        on purpose (pacing the bulk while the technician types), when ACKs show only what it chose to send."""
        if self._peak is None and self._samples:
            self._peak = max(map(_RATE, self._samples))
        return self._peak

    @property
    def bandwidth(self) -> float | None:
        """Estimated bottleneck rate in bytes per second (the best of the last RATE_FILTER_SECONDS of
        samples), or None before enough ACKs."""
        if self._rate is None and self._samples:
            samples = self._samples
            since = samples[-1][0] - RATE_FILTER_SECONDS
            best = 0.0
            for at, rate in reversed(samples):  # newest first: the rest are older than the horizon
                if at < since:
                    break
                if rate > best:
                    best = rate
            self._rate = best
        return self._rate

    def on_rtt(self, rtt: float) -> None:
        if rtt <= 0:
            return
        self.rtt = rtt
        self.min_rtt = rtt if self.min_rtt is None else min(self.min_rtt, rtt)
        self._update_window()

    def on_ack(self, total_acked: int, now: float) -> None:
        """A cumulative ACK (bytes the peer received so far) arrived at ``now``."""
        if total_acked <= self._acked and self._last_ack is not None:
            return
        self._acked = max(self._acked, total_acked)
        if self._last_ack is None:
            self._last_ack = (now, total_acked)
            return
        then, acked_then = self._last_ack
        elapsed = now - then
        if elapsed < max(MIN_SAMPLE_SECONDS, self.min_rtt or 0.0):
            return
        self._samples.append((now, (total_acked - acked_then) / elapsed))
        self._last_ack = (now, total_acked)
        while self._samples[0][0] < now - PEAK_FILTER_SECONDS:
            self._samples.popleft()
        self._peak = self._rate = None
        self._update_window()

    def _update_window(self) -> None:
        rate = self.bandwidth
        if rate is None:
            return
        rtt = self.min_rtt if self.min_rtt is not None else DEFAULT_RTT
        self._window = int(min(self.max_window, max(self.min_window, WINDOW_GAIN * rate * rtt)))

    @property
    def quality_cap(self) -> int | None:
        """Highest JPEG quality level worth sending over this link now (None: the viewer's choice)."""
        rate = self.bandwidth
        if rate is None:
            return None
        for limit, cap in QUALITY_STEPS:
            if rate < limit:
                return cap
        return None

    def may_send(self, in_flight: int) -> bool:
        """True while ``in_flight`` unacknowledged bytes are below the window."""
        return in_flight < self._window


"""ViewerChannel alone, with a recording stream and service: the stream's notifications drive flow control.

No polling: an ACK or an RTT sample reaches the service (``set_link_quality`` or
``kick_all``) in the same call, with no task of its own; the only timer is the
``link`` statistics event.
"""
from __future__ import annotations

import asyncio
from typing import Any, Callable

import pytest

from agent.session.channel import ViewerChannel
from agent.session.flow import MIN_WINDOW


class RecordingStream:
    """The part of SecureStream a ViewerChannel uses; the test fires the notifications itself."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.rtt: float | None = None
        self.bytes_sent = 0
        self.bytes_received = 0
        self.on_ack: Callable[[int], None] | None = None
        self.on_rtt: Callable[[float], None] | None = None
        self.on_end: Callable[[], None] | None = None

    def watch(self, *, on_ack=None, on_rtt=None, on_end=None) -> None:
        self.on_ack, self.on_rtt, self.on_end = on_ack, on_rtt, on_end

    def ack(self, total: int) -> None:
        self.in_flight = self.bytes_sent - total
        assert self.on_ack is not None
        self.on_ack(total)


class RecordingService:
    """The service's narrow interface, recorded."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def set_link_quality(self, quality_cap: int | None) -> None:
        self.calls.append(("set_link_quality", quality_cap))

    def kick_all(self) -> None:
        self.calls.append(("kick_all", None))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _channel(**options: Any) -> tuple[ViewerChannel, RecordingStream, RecordingService, Clock, list, list]:
    stream, service, clock = RecordingStream(), RecordingService(), Clock()
    reports: list[dict[str, Any]] = []
    ended: list[ViewerChannel] = []
    channel = ViewerChannel(stream, service, report=reports.append, on_end=ended.append, clock=clock, **options)
    return channel, stream, service, clock, reports, ended


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 10))


def test_a_new_channel_starts_at_the_viewers_own_quality_and_watches_the_stream() -> None:
    async def main() -> None:
        channel, stream, service, *_ = _channel()
        assert service.calls == [("set_link_quality", None)]  # whatever the last viewer's link afforded
        assert stream.on_ack is not None and stream.on_rtt is not None and stream.on_end is not None
        channel.stop()

    run(main())


def test_an_ack_updates_the_link_quality_without_any_polling_task() -> None:
    async def main() -> None:
        tasks_before = asyncio.all_tasks()
        channel, stream, service, clock, *_ = _channel()
        service.calls.clear()
        stream.bytes_sent = 10_000_000
        stream.ack(0)                       # the first ACK only starts the rate sample
        clock.now = 0.5
        stream.ack(5_000)                   # 10 kB/s: a slow link
        assert channel.flow.bandwidth == pytest.approx(10_000)
        assert service.calls[-1] == ("set_link_quality", channel.flow.quality_cap)
        assert channel.flow.quality_cap is not None and channel.flow.quality_cap <= 3
        calls = len(service.calls)
        clock.now = 1.0
        stream.ack(10_000)                  # same rate, same cap: the window it opened is used at once
        assert service.calls[calls:] == [("kick_all", None)]
        clock.now = 1.5
        stream.ack(10_000 + 5_000_000)      # 10 MB/s: no ceiling any more
        assert service.calls[-1] == ("set_link_quality", None)
        assert asyncio.all_tasks() == tasks_before  # the notifications ran in the caller; nothing polls
        channel.stop()

    run(main())


def test_an_rtt_sample_that_widens_the_window_kicks_the_service() -> None:
    async def main() -> None:
        channel, stream, service, clock, *_ = _channel()
        stream.bytes_sent = 1_000_000
        stream.ack(0)
        clock.now = 1.0
        stream.ack(10_000)                  # 10 kB/s with the default RTT: the minimum window
        assert channel.flow.window == MIN_WINDOW
        service.calls.clear()
        assert stream.on_rtt is not None
        stream.on_rtt(2.0)                  # 10 kB/s x 2 s x gain: wider than the minimum
        assert channel.flow.window > MIN_WINDOW
        assert service.calls == [("kick_all", None)]
        stream.on_rtt(2.0)                  # the same window: nothing new to send into
        assert service.calls == [("kick_all", None)]
        channel.stop()

    run(main())


def test_may_send_follows_the_window_and_the_bytes_in_flight() -> None:
    async def main() -> None:
        channel, stream, *_ = _channel()
        stream.in_flight = channel.flow.window - 1
        assert channel.may_send()
        stream.in_flight = channel.flow.window
        assert not channel.may_send()
        channel.stop()

    run(main())


def test_link_events_on_a_timer_until_the_stream_ends() -> None:
    async def main() -> None:
        channel, stream, _, _, reports, ended = _channel(link_event_interval=0.02)
        stream.rtt, stream.bytes_sent, stream.bytes_received, stream.in_flight = 0.0123, 5000, 40, 1000
        while len(reports) < 2:
            await asyncio.sleep(0.01)
        event = reports[-1]
        assert event == {"event": "link", "rtt_ms": 12.3, "bandwidth_kbit": None, "window": channel.flow.window,
                         "in_flight": 1000, "bytes_sent": 5000, "bytes_received": 40}
        assert stream.on_end is not None
        stream.on_end()
        assert ended == [channel]
        count = len(reports)
        await asyncio.sleep(0.1)
        assert len(reports) == count  # no event after the end

    run(main())


def test_stop_ends_the_link_events() -> None:
    async def main() -> None:
        channel, _, _, _, reports, ended = _channel(link_event_interval=0.02)
        channel.stop()
        await asyncio.sleep(0.1)
        assert reports == [] and ended == []

    run(main())

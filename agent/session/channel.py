"""The authenticated viewer's channel as the session sees it: flow control, link statistics, the end.

Split from ``Agent`` (agent/session/agent.py) because it is one job with its
own clock: while a viewer is connected, what the secure stream reports drives
how much the service may send and at what quality. Nothing here polls. The
stream notifies us (``SecureStream.watch``):

- an ACK feeds the FlowController, then the service learns the JPEG quality
  the link affords (``set_link_quality``, which kicks every client) or, when
  that did not change and the service may have been waiting for the link, may
  try an update now (``kick_all``): the window the ACK opened is used at once.
  Once the link has a rate estimate, an ACK that found fewer bytes in flight
  than could hold anything back (below the window, and below half a round trip
  at the link's peak rate, under the service's backlog bar) kicks nobody: while
  the technician types, the viewer ACKs every small echo, and each kick costs
  the service an update attempt;
- an RTT sample (PONG) feeds the FlowController; a window it widened kicks too;
- the end of the stream goes to the owner's ``on_end``.

The only timer is the ``link`` statistics event for control-socket
subscribers, every LINK_EVENT_INTERVAL seconds while the stream lives
(DESIGN §4.4). The service is reached only through its narrow interface
(``set_link_quality``, ``kick_all``), never through its internals.
"""
from __future__ import annotations

import asyncio
from typing import Any, Callable, Protocol

from agent.session.flow import DEFAULT_RTT, FlowController

LINK_EVENT_INTERVAL = 2.0   # seconds between "link" statistics events to control-socket subscribers
HOLD_FRACTION = 0.5  # of peak rate x RTT: less in flight than that holds nothing back. The service's bar
# (agent.service.priority.LinkState.backlogged) is rate x (RTT + an update slice), so this stays below it.


class LinkQualitySink(Protocol):
    """What the channel needs of the RFB service (agent.service.rfb_service.RFBService has it)."""

    def set_link_quality(self, quality_cap: int | None) -> None: ...

    def kick_all(self) -> None: ...


class ViewerChannel:
    """One authenticated viewer's SecureStream, watched for flow control; see the module docstring.

    ``report(event)`` receives the ``link`` event every ``link_event_interval``
    seconds; ``on_end(channel)`` is called once when the stream has ended (the
    stream's ``peer_closed``, ``close_reason`` and ``error`` say how).
    ``clock`` (default: the event loop's) times the ACKs for the bandwidth
    estimate; tests pin it.
    """

    def __init__(self, stream: Any, service: LinkQualitySink, *, report: Callable[[dict[str, Any]], None],
                 on_end: Callable[[ViewerChannel], None], link_event_interval: float = LINK_EVENT_INTERVAL,
                 clock: Callable[[], float] | None = None) -> None:
        self.stream = stream
        self.flow = FlowController()
        self._service = service
        self._report = report
        self._on_end = on_end
        self._interval = link_event_interval
        self._loop = asyncio.get_running_loop()
        self._clock = clock if clock is not None else self._loop.time
        # A new link starts at the viewer's own quality choice, whatever the last viewer's link afforded.
        self._quality_cap = self.flow.quality_cap
        self._acked: int | None = None  # the latest ACK's total
        service.set_link_quality(self._quality_cap)
        self._timer: asyncio.TimerHandle | None = self._loop.call_later(self._interval, self._tick)
        stream.watch(on_ack=self._on_ack, on_rtt=self._on_rtt, on_end=self._ended)

    def __repr__(self) -> str:
        return f"ViewerChannel({self.stream!r}, window={self.flow.window})"

    def may_send(self) -> bool:
        """True while the bytes in flight are below the flow-control window (the service asks before each update)."""
        return self.flow.may_send(self.stream.in_flight)

    def link_event(self) -> dict[str, Any]:
        """The ``link`` event's link fields (the owner adds its own, e.g. ``updates``)."""
        stream, flow = self.stream, self.flow
        bandwidth = flow.bandwidth
        return {"event": "link", "rtt_ms": None if stream.rtt is None else round(1000 * stream.rtt, 1),
                "bandwidth_kbit": None if bandwidth is None else round(8 * bandwidth / 1000, 1),
                "window": flow.window, "in_flight": stream.in_flight,
                "bytes_sent": stream.bytes_sent, "bytes_received": stream.bytes_received}

    def stop(self) -> None:
        """Stop the ``link`` events (the stream's end does this too)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- the stream's notifications ------------------------------------------------------------

    def _on_ack(self, acked: int) -> None:
        flow = self.flow
        # In flight before this ACK: what the service last saw, at most (it sent nothing since unseen).
        before = self.stream.in_flight + (acked - self._acked if self._acked is not None else 0)
        held = before >= self._hold_bar()
        self._acked = acked
        flow.on_ack(acked, self._clock())
        cap = flow.quality_cap
        if cap != self._quality_cap:
            self._quality_cap = cap
            self._service.set_link_quality(cap)  # kicks every client too
        elif held:
            self._service.kick_all()

    def _hold_bar(self) -> float:
        """Bytes in flight below which the link holds nothing of the service's back: under the window
        (``may_send``) and under HOLD_FRACTION of a round trip at the peak rate (the updater's backlog)."""
        flow = self.flow
        peak = flow.peak_bandwidth
        if peak is None:  # no rate estimate yet (the link's first ACKs): every ACK kicks, as it always did
            return 0.0
        return min(flow.window, HOLD_FRACTION * peak * (flow.min_rtt or DEFAULT_RTT))

    def _on_rtt(self, rtt: float) -> None:
        window = self.flow.window
        self.flow.on_rtt(rtt)
        if self.flow.window > window:
            self._service.kick_all()

    def _ended(self) -> None:
        self.stop()
        self._on_end(self)

    def _tick(self) -> None:
        self._timer = self._loop.call_later(self._interval, self._tick)
        self._report(self.link_event())

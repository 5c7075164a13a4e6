"""FlowController: the window follows bandwidth x RTT, measured from ACKs."""
from __future__ import annotations

from agent.session.flow import INITIAL_WINDOW, MIN_WINDOW, FlowController


def _feed(flow: FlowController, rate: float, rtt: float, seconds: float, step: float = 0.05) -> None:
    flow.on_rtt(rtt)
    t, acked = 0.0, 0.0
    while t < seconds:
        t += step
        acked += rate * step
        flow.on_ack(int(acked), t)


def test_initial_window_before_any_estimate():
    flow = FlowController()
    assert flow.window == INITIAL_WINDOW
    assert flow.bandwidth is None
    assert flow.may_send(0) and not flow.may_send(INITIAL_WINDOW)


def test_slow_link_shrinks_window_to_about_twice_the_bdp():
    flow = FlowController()
    _feed(flow, rate=32_000, rtt=0.1, seconds=2)  # 256 kbit/s, 100 ms
    assert abs(flow.bandwidth - 32_000) / 32_000 < 0.05
    assert flow.window == MIN_WINDOW  # 2 x 3.2 KB is below the floor


def test_fast_link_grows_window():
    flow = FlowController()
    _feed(flow, rate=1_250_000, rtt=0.1, seconds=2)  # 10 Mbit/s
    assert 200_000 < flow.window < 300_000


def test_windowed_max_forgets_old_samples():
    flow = FlowController()
    _feed(flow, rate=1_250_000, rtt=0.1, seconds=1)
    fast = flow.window
    t, acked = 1.0, 1_250_000
    while t < 7.0:  # the link slows to 1 Mbit/s for longer than the filter's horizon
        t += 0.05
        acked += 125_000 * 0.05
        flow.on_ack(int(acked), t)
    assert flow.window < fast / 5


def test_duplicate_and_bunched_acks_are_ignored():
    flow = FlowController()
    flow.on_ack(1000, 1.0)
    flow.on_ack(1000, 2.0)   # nothing new acknowledged
    flow.on_ack(900, 2.5)    # stale
    assert flow.bandwidth is None
    flow.on_ack(5000, 2.501)  # 1.5 s after the first ACK: one sample
    assert abs(flow.bandwidth - 4000 / 1.501) < 1e-6
    flow.on_ack(9000, 2.502)  # too short an interval to be a rate sample
    assert abs(flow.bandwidth - 4000 / 1.501) < 1e-6


def test_quality_cap_drops_on_slow_links():
    slow, fast = FlowController(), FlowController()
    assert slow.quality_cap is None
    _feed(slow, rate=32_000, rtt=0.1, seconds=2)
    _feed(fast, rate=1_250_000, rtt=0.1, seconds=2)
    assert slow.quality_cap is not None and slow.quality_cap <= 3
    assert fast.quality_cap is None



def test_the_peak_rate_outlives_a_paced_spell_the_windowed_rate_does_not() -> None:
    from agent.session.flow import PEAK_FILTER_SECONDS, RATE_FILTER_SECONDS

    flow = FlowController()
    t, acked = 0.0, 0
    for _ in range(20):  # 2 s at 125 kB/s
        t, acked = t + 0.25, acked + 31_250
        flow.on_ack(acked, t)
    for _ in range(int(RATE_FILTER_SECONDS * 4) + 4):  # then paced at half of it
        t, acked = t + 0.25, acked + 15_625
        flow.on_ack(acked, t)
    assert flow.bandwidth is not None and flow.bandwidth < 70_000
    assert flow.peak_bandwidth is not None and flow.peak_bandwidth > 120_000
    for _ in range(int(PEAK_FILTER_SECONDS * 4)):
        t, acked = t + 0.25, acked + 15_625
        flow.on_ack(acked, t)
    assert flow.peak_bandwidth < 70_000  # a link that really got slower is believed in the end

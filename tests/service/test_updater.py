"""ViewerUpdater: one viewer's update logic, driven through real server bytes and the real client decoder.

The central test: while scrolling and window-drag workloads run, a viewer that
asks only every k-th frame still decodes exactly the source frame each time.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import pytest

from agent.capture.base import CursorShape
from agent.workloads.synthetic import SyntheticSource
from agent.rfb.decode import quantize
from agent.changes.detector import ChangeDetector
from agent.rfb import constants as C
from agent.rfb import messages as M
from agent.rfb.client import RFBClient
from agent.rfb.pixelformat import NATIVE, PixelFormat
from agent.rfb.server import RFBServer
from agent.service.priority import LinkState
from agent.service.updater import LOSSLESS_REFRESH_DELAY, ViewerUpdater
from tests.support.rfb_links import drain_events, psnr

LOSSLESS = [C.ENC_ZRLE, C.ENC_HEXTILE, C.ENC_RAW]


class ViewerLink:
    """Source -> detector -> updater/server bytes -> client decoder, with a deterministic clock."""

    def __init__(self, source: SyntheticSource, encodings: Sequence[int],
                 pixel_format: Optional[PixelFormat] = None, version: tuple[int, int] = (3, 8)) -> None:
        self.source = source
        width, height = source.size
        self.detector = ChangeDetector(width, height)
        self.server = RFBServer(width, height, "link")
        self.updater = ViewerUpdater(self.server)
        self.client = RFBClient(encodings=list(encodings), pixel_format=pixel_format, version=version)
        self.client_events: list = []
        self.frame: Optional[np.ndarray] = None
        self.now = 0.0
        self.exchange()
        self.next_frame()

    def next_frame(self) -> np.ndarray:
        frame = self.source.grab().copy()
        if frame.shape[:2] != (self.detector.size[1], self.detector.size[0]):
            self.detector.resize(frame.shape[1], frame.shape[0])
        self.updater.on_frame(frame, self.detector.update(frame))
        self.frame = frame
        self.now += 1 / 30
        return frame

    def exchange(self) -> list:
        """Deliver bytes both ways (server events to the updater) until quiet; returns new client events."""
        new: list = []
        for _ in range(1000):
            to_server = self.client.data_to_send()
            if to_server:
                self.server.receive_data(to_server)
                for event in drain_events(self.server):
                    self.updater.handle_event(event)
            idle = self.updater.idle(self.now)
            written = self.updater.write_update(self.now)
            assert not (idle and written), "idle() said nothing would go, and an update went"
            to_client = self.server.data_to_send()
            if to_client:
                self.client.receive_data(to_client)
                new += drain_events(self.client)
            if not to_server and not to_client:
                self.client_events += new
                return new
        raise AssertionError("link never went quiet")

    def request(self, incremental: bool = True, region=None) -> list:
        self.client.request_update(incremental, region)
        return self.exchange()

    def updates(self, events: list) -> list:
        return [e for e in events if isinstance(e, M.FramebufferUpdate)]

    def expected(self) -> np.ndarray:
        assert self.frame is not None
        return quantize(self.frame, self.client.pixel_format)


@pytest.mark.parametrize("workload", ["scrolling", "window-drag"])
@pytest.mark.parametrize("k", [1, 2, 5])
@pytest.mark.parametrize("copyrect", [True, False], ids=["copyrect", "no-copyrect"])
def test_viewer_asking_every_kth_frame_decodes_exact_frames(workload, k, copyrect):
    encodings = ([C.ENC_COPYRECT] if copyrect else []) + LOSSLESS
    link = ViewerLink(SyntheticSource(workload, 320, 240, seed=3), encodings)
    link.request(incremental=False)
    assert (link.client.framebuffer == link.expected()).all()
    checked = 0
    copies_seen = 0
    for i in range(1, 41):
        link.next_frame()
        if i % k:
            continue
        updates = link.updates(link.request())
        assert len(updates) <= 1
        copies_seen += sum(1 for u in updates for r in u.rects if r[4] == C.ENC_COPYRECT)
        mismatch = np.argwhere((link.client.framebuffer != link.expected()).any(axis=2))
        assert not len(mismatch), f"frame {i}: {len(mismatch)} pixels differ, first at {mismatch[0]}"
        checked += 1
    assert checked == 40 // k
    if not copyrect:
        assert copies_seen == 0
    elif workload == "scrolling":
        assert copies_seen > 0, "scrolling should be sent as CopyRect when the viewer offers it"


def test_nothing_pending_keeps_request_outstanding():
    link = ViewerLink(SyntheticSource("idle", 160, 120), LOSSLESS)
    assert link.updates(link.request(incremental=False))
    link.next_frame()
    assert link.updates(link.request()) == []  # idle: nothing to send, request stays
    assert link.updater.wants_update
    link.updater.on_frame(link.frame, None)  # something changed (unknown what)
    assert len(link.updates(link.exchange())) == 1
    assert not link.updater.wants_update


def test_idle_says_when_a_request_would_find_nothing_to_send():
    """The connection skips waking its sender while ``idle()``: it must be False whenever anything at all
    could go (ViewerLink checks the other half, that nothing goes while it is True, at every step)."""
    link = ViewerLink(SyntheticSource("typing", 160, 120, seed=2), LOSSLESS + [C.ENC_CURSOR])
    link.request(incremental=False)
    assert link.updater.idle(link.now)  # everything sent
    link.next_frame()
    assert not link.updater.idle(link.now)  # the typed text changed
    link.request()
    assert link.updater.idle(link.now)
    link.updater.on_cursor(CursorShape(np.zeros((4, 4, 4), np.uint8), 0, 0, serial=7))
    assert not link.updater.idle(link.now)
    assert len(link.updates(link.request())) == 1
    assert link.updater.idle(link.now)
    link.client.request_update(True, (500, 500, 10, 10))  # outside the screen: an empty reply is owed
    link.server.receive_data(link.client.data_to_send())
    for event in drain_events(link.server):
        link.updater.handle_event(event)
    assert not link.updater.idle(link.now)
    link.exchange()
    assert link.updater.idle(link.now)
    link.updater.on_frame(link.frame, None)  # something changed, unknown what: all of it is owed
    assert not link.updater.idle(link.now)


def test_region_limited_request_is_honoured():
    link = ViewerLink(SyntheticSource("typing", 320, 240, seed=1), LOSSLESS)
    region = (0, 0, 160, 120)
    updates = link.updates(link.request(incremental=False, region=region))
    assert len(updates) == 1
    for x, y, w, h, _ in updates[0].rects:
        assert x >= 0 and y >= 0 and x + w <= 160 and y + h <= 120
    assert (link.client.framebuffer[:120, :160] == link.expected()[:120, :160]).all()
    link.request()  # the rest of the screen is still pending for this viewer
    assert (link.client.framebuffer == link.expected()).all()


def test_request_outside_the_screen_gets_an_empty_update():
    link = ViewerLink(SyntheticSource("idle", 64, 48), LOSSLESS)
    link.request(incremental=False)
    updates = link.updates(link.request(True, (500, 500, 10, 10)))
    assert updates == [M.FramebufferUpdate([], 4)]


def test_may_send_hook_holds_updates_back():
    link = ViewerLink(SyntheticSource("typing", 160, 120), LOSSLESS)
    congested = [True]
    link.updater.may_send = lambda: not congested[0]
    assert link.updates(link.request(incremental=False)) == []
    for _ in range(3):
        link.next_frame()
    congested[0] = False
    assert len(link.updates(link.exchange())) == 1
    assert (link.client.framebuffer == link.expected()).all()


def test_continuous_updates_flow_without_requests_and_end():
    encodings = LOSSLESS + [C.ENC_FENCE, C.ENC_CONTINUOUS_UPDATES]
    link = ViewerLink(SyntheticSource("typing", 160, 120, seed=2), encodings)
    assert M.EndOfContinuousUpdates() in link.client_events  # announced, as TigerVNC does
    assert any(isinstance(e, M.Fence) for e in link.client_events)
    link.client.enable_continuous_updates(True)
    link.exchange()
    for _ in range(5):
        link.next_frame()
        link.exchange()
        assert (link.client.framebuffer == link.expected()).all()
    n = len(link.updates(link.client_events))
    link.client.enable_continuous_updates(False)
    assert M.EndOfContinuousUpdates() in link.exchange()
    link.next_frame()
    link.exchange()
    assert len(link.updates(link.client_events)) == n  # no more unrequested updates


def test_a_standing_request_sends_every_change_as_it_comes_and_the_window_still_holds_it():
    """Our bridge's viewer (ENC_STANDING_REQUEST): after its first request, each change goes without another
    request, and nothing RFB's ContinuousUpdates would say (no EndOfContinuousUpdates) reaches the viewer."""
    link = ViewerLink(SyntheticSource("typing", 160, 120, seed=4), LOSSLESS + [C.ENC_STANDING_REQUEST])
    assert link.updates(link.client_events) == []  # nothing before the first request
    link.next_frame()
    assert link.updates(link.exchange()) == []
    assert len(link.updates(link.request(incremental=False))) == 1
    for _ in range(4):
        link.next_frame()
        assert len(link.updates(link.exchange())) == 1  # no request in between
        assert (link.client.framebuffer == link.expected()).all()
    congested = [True]
    link.updater.may_send = lambda: not congested[0]
    for _ in range(3):
        link.next_frame()
        assert link.updates(link.exchange()) == []
    congested[0] = False
    assert len(link.updates(link.exchange())) == 1  # what changed meanwhile, in one update
    assert (link.client.framebuffer == link.expected()).all()
    assert M.EndOfContinuousUpdates() not in link.client_events


def test_without_the_standing_encoding_each_update_waits_for_its_request_again():
    link = ViewerLink(SyntheticSource("typing", 160, 120, seed=4), LOSSLESS + [C.ENC_STANDING_REQUEST])
    link.request(incremental=False)
    link.client.set_encodings(LOSSLESS)  # a viewer that no longer offers it (our bridge never does this)
    link.exchange()
    link.next_frame()
    assert link.updates(link.exchange()) == []
    assert len(link.updates(link.request())) == 1
    link.next_frame()
    assert link.updates(link.exchange()) == []


def test_a_standing_request_outlives_continuous_updates_turned_off():
    """A CU viewer behind our bridge turns CU off: its requests are still kept by the bridge, so updates
    must keep coming (after RFB's EndOfContinuousUpdates), or its screen would freeze."""
    encodings = LOSSLESS + [C.ENC_FENCE, C.ENC_CONTINUOUS_UPDATES, C.ENC_STANDING_REQUEST]
    link = ViewerLink(SyntheticSource("typing", 160, 120, seed=5), encodings)
    link.request(incremental=False)
    link.client.enable_continuous_updates(True)
    link.exchange()
    link.client.enable_continuous_updates(False)
    assert M.EndOfContinuousUpdates() in link.exchange()
    link.next_frame()
    assert len(link.updates(link.exchange())) == 1
    assert (link.client.framebuffer == link.expected()).all()


def _resize_source(link: ViewerLink, width: int, height: int) -> np.ndarray:
    frame = np.zeros((height, width, 4), np.uint8)
    frame[..., 1] = 128
    frame[10:20, 10:30, 2] = 255
    link.updater.on_frame(frame, None)
    link.frame = frame
    return frame


@pytest.mark.parametrize("enc", [C.ENC_DESKTOP_SIZE, C.ENC_EXTENDED_DESKTOP_SIZE])
def test_resize_sent_then_full_refresh(enc):
    link = ViewerLink(SyntheticSource("idle", 160, 120), LOSSLESS + [enc])
    link.request(incremental=False)
    _resize_source(link, 200, 100)
    events = link.request()
    resized = [e for e in events if isinstance(e, M.DesktopResized)]
    assert resized and (resized[0].width, resized[0].height) == (200, 100)
    assert link.client.framebuffer.shape == (100, 200, 4)
    link.request()  # the viewer asks again for the new pixels
    assert (link.client.framebuffer == link.expected()).all()


def test_resize_without_support_closes_with_reason():
    link = ViewerLink(SyntheticSource("idle", 160, 120), LOSSLESS)
    link.request(incremental=False)
    _resize_source(link, 200, 100)
    link.request()
    assert link.updater.close_reason and "DesktopSize" in link.updater.close_reason


def test_set_desktop_size_is_refused_politely():
    link = ViewerLink(SyntheticSource("idle", 160, 120), LOSSLESS + [C.ENC_EXTENDED_DESKTOP_SIZE])
    link.request(incremental=False)
    link.client.set_desktop_size(800, 600)
    events = link.request()
    refused = [e for e in events if isinstance(e, M.DesktopResized)]
    assert refused and refused[0].status == M.EDS_STATUS_PROHIBITED and refused[0].reason == M.EDS_REASON_CLIENT
    assert link.client.framebuffer.shape == (120, 160, 4)


def test_cursor_sent_when_offered_and_changed():
    link = ViewerLink(SyntheticSource("idle", 160, 120), LOSSLESS + [C.ENC_CURSOR])
    pixels = np.zeros((4, 3, 4), np.uint8)
    pixels[..., 2] = 200
    pixels[1:3, 1, 3] = 255
    link.updater.on_cursor(CursorShape(pixels, 1, 2, serial=1))
    events = link.request(incremental=False)
    cursors = [e for e in events if isinstance(e, M.CursorChanged)]
    assert len(cursors) == 1 and (cursors[0].hot_x, cursors[0].hot_y) == (1, 2)
    assert (cursors[0].pixels[..., 3] > 0).tolist() == (pixels[..., 3] > 0).tolist()
    link.updater.on_cursor(CursorShape(pixels, 1, 2, serial=1))  # same serial: not resent
    link.next_frame()
    assert not [e for e in link.request() if isinstance(e, M.CursorChanged)]


def test_stats_and_observer():
    link = ViewerLink(SyntheticSource("typing", 160, 120), LOSSLESS)
    seen = []
    link.updater.on_update = lambda stats: seen.append(stats.updates_sent)
    link.request(incremental=False)
    link.next_frame()
    link.request()
    stats = link.updater.stats
    assert stats.updates_sent == 2 and seen == [1, 2]
    assert stats.bytes_sent == sum(u.nbytes for u in link.updates(link.client_events))
    assert stats.last_update_time == link.now


def test_lossy_areas_get_a_lossless_refresh_once_still():
    quality = C.ENC_JPEG_QUALITY_0 + 6
    link = ViewerLink(SyntheticSource("video", 320, 240, seed=0), [C.ENC_TIGHT, quality, C.ENC_RAW])
    link.request(incremental=False)
    for _ in range(3):
        link.next_frame()
        link.request()
    assert link.updater.manager.lossy_region(), "precondition: video at this quality is sent as JPEG"
    assert psnr(link.client.framebuffer, link.expected()) >= 30
    link.client.request_update(True)
    link.exchange()  # nothing changed and too early: the request stays outstanding
    assert link.updater.wants_update and link.updater.stats.refreshes_sent == 0
    due = link.updater.refresh_due_at(link.now)
    assert due is not None and due <= link.now + LOSSLESS_REFRESH_DELAY + 1e-9
    link.now += LOSSLESS_REFRESH_DELAY + 0.01
    link.exchange()
    assert link.updater.stats.refreshes_sent == 1
    assert (link.client.framebuffer == link.expected()).all()
    assert not link.updater.manager.lossy_region()


def test_no_lossless_refresh_of_video_that_kept_changing_while_the_link_was_congested():
    # A stall longer than the refresh delay is not the area settling: the video went on changing.
    quality = C.ENC_JPEG_QUALITY_0 + 6
    link = ViewerLink(SyntheticSource("video", 320, 240, seed=0), [C.ENC_TIGHT, quality, C.ENC_RAW])
    link.request(incremental=False)
    link.next_frame()
    link.request()
    assert link.updater.manager.lossy_region(), "precondition: video at this quality is sent as JPEG"
    congested = [True]
    link.updater.may_send = lambda: not congested[0]
    link.client.request_update(True)
    for _ in range(20):  # 0.67 s of frames that could not be sent
        link.next_frame()
        link.exchange()
    assert link.updater.stats.refreshes_sent == 0
    congested[0] = False
    link.exchange()
    assert link.updater.stats.refreshes_sent == 0  # the changed video goes out lossy, and only once
    assert psnr(link.client.framebuffer, link.expected()) >= 30
    link.now += LOSSLESS_REFRESH_DELAY + 0.01  # now it holds still
    link.request()
    assert link.updater.stats.refreshes_sent == 1
    assert (link.client.framebuffer == link.expected()).all()


def test_set_pixel_format_marks_everything():
    link = ViewerLink(SyntheticSource("idle", 64, 48), LOSSLESS, pixel_format=NATIVE)
    link.request(incremental=False)
    bgr233 = PixelFormat(8, 8, False, True, 7, 7, 3, 0, 3, 6)
    link.client.set_pixel_format(bgr233)
    link.request()  # incremental, yet the whole screen comes in the new format
    assert (link.client.framebuffer == quantize(link.frame, bgr233)).all()


def test_full_request_announces_the_screen_layout():
    """rfbproto: a non-incremental request is answered with an ExtendedDesktopSize rect (when offered)."""
    link = ViewerLink(SyntheticSource("idle", 160, 120), LOSSLESS + [C.ENC_EXTENDED_DESKTOP_SIZE])
    events = link.request(incremental=False)
    layout = [e for e in events if isinstance(e, M.DesktopResized)]
    assert layout == [M.DesktopResized(160, 120, M.EDS_REASON_SERVER, M.EDS_STATUS_OK,
                                       (M.Screen(0, 0, 0, 160, 120, 0),))]
    update = link.updates(events)[0]
    assert update.rects[0][4] == C.ENC_EXTENDED_DESKTOP_SIZE and len(update.rects) > 1  # pixels in the same update
    assert (link.client.framebuffer == link.expected()).all()
    link.next_frame()
    assert not [e for e in link.request() if isinstance(e, M.DesktopResized)]  # incremental: no layout


def _typed_beside_churn(link: ViewerLink, seed: int) -> None:
    """The right half churns for a second while the viewer does not ask; then a key, and the frame
    after it has the typed glyph at (10, 200) and fresh churn."""
    rng = np.random.default_rng(seed)
    frame = link.frame.copy()

    def feed(at: float) -> None:
        link.updater.on_frame(frame.copy(), link.detector.update(frame), at)
        link.frame = frame.copy()

    for i in range(30):
        frame[:, 160:, :3] = rng.integers(0, 256, (240, 160, 3), dtype=np.uint8)
        feed(i / 30)
    link.updater.note_input(1.0)
    frame[200:216, 10:18, :3] = 255  # the typed glyph
    frame[:, 160:, :3] = rng.integers(0, 256, (240, 160, 3), dtype=np.uint8)
    feed(1.02)


def test_while_interacting_the_echo_goes_before_churn_and_everything_still_converges():
    link = ViewerLink(SyntheticSource("idle", 320, 240), LOSSLESS)
    link.updater.link = lambda: LinkState(20_000.0)  # a slow link: the smallest update budget
    link.request(incremental=False)
    _typed_beside_churn(link, seed=0)
    link.now = 1.05
    updates = link.updates(link.request())
    assert len(updates) == 1
    expected = link.expected()
    assert (link.client.framebuffer[200:216, 10:18] == expected[200:216, 10:18]).all(), "the echo was not sent"
    sent_area = sum(w * h for x, y, w, h, _ in updates[0].rects)
    assert sent_area < 160 * 240 / 2, "the churning half went whole in front of the echo's next update"
    for _ in range(100):  # no new frames: the rest drains, one bounded update per request
        if (link.client.framebuffer == expected).all():
            break
        link.now += 0.3
        link.request()
    assert (link.client.framebuffer == expected).all()
    assert link.updater.stats.change_latency(0.5) is not None


def test_held_bulk_is_not_planned_again_until_its_bucket_refills():
    """Requests, frames and ACKs come far more often than the bucket refills: each used to plan the whole
    pending area only to hold it again (0.3 ms on the customer's PC, hundreds of times a run)."""
    link = ViewerLink(SyntheticSource("idle", 320, 240), LOSSLESS)
    link.updater.link = lambda: LinkState(20_000.0)
    link.request(incremental=False)
    _typed_beside_churn(link, seed=2)
    link.now = 1.05
    assert len(link.updates(link.request())) == 1
    plans: list[float] = []
    plan_update = link.updater.activity.plan_update
    link.updater.activity.plan_update = lambda rects, now, *a, **k: plans.append(now) or plan_update(rects, now, *a, **k)
    due = link.updater.activity.bulk_due(link.now)
    link.now = (link.now + due) / 2
    assert link.updates(link.request()) == [] and plans == [], "asked before the bucket refilled: no planning"
    link.now = due
    assert len(link.updates(link.exchange())) == 1 and plans == [due], "the bulk's next band goes when due"


def test_an_echo_goes_alone_with_no_request_outstanding_or_the_window_full_but_only_in_a_session():
    link = ViewerLink(SyntheticSource("idle", 320, 240), LOSSLESS)
    link.request(incremental=False)
    link.updater.link = lambda: LinkState(20_000.0)
    link.updater.may_send = lambda: False  # the flow-control window is full
    _typed_beside_churn(link, seed=1)
    assert link.updater.prepare_update(1.05) is None  # not a session: a pull client gets nothing unasked
    link.updater.push_echoes = True
    link.now = 1.05
    updates = link.updates(link.exchange())  # no request from the client
    assert len(updates) == 1
    assert all(x < 160 for x, y, w, h, _ in updates[0].rects), "only the echo, no churn"
    assert (link.client.framebuffer[200:216, 10:18] == link.expected()[200:216, 10:18]).all()


def test_job_pixels_count_what_is_encoded_not_copies():
    """The send loop encodes small jobs on the event loop by this count: copies cost nothing to encode."""
    from agent.service.updater import UpdateJob

    frame = np.zeros((64, 64, 4), np.uint8)
    job = UpdateJob(frame, [], [(0, 0, 10, 10, 20, 20)], [(0, 0, 8, 4)], [(10, 10, 5, 5)])
    assert job.pixels == 8 * 4 + 5 * 5
    assert UpdateJob(frame, [b"cursor"], [], [], []).pixels == 0


def test_link_sent_reads_the_cheap_counter_when_given_and_the_link_state_otherwise():
    """Read twice around every update's flush: the session hands the counter alone (no LinkState built)."""
    server = RFBServer(64, 48, "t")
    state = lambda: LinkState(1000.0, sent=77)  # noqa: E731
    assert ViewerUpdater(server).link_sent() is None
    assert ViewerUpdater(server, link=state).link_sent() == 77
    assert ViewerUpdater(server, link=state, link_sent=lambda: 99).link_sent() == 99

"""AppSinkFrames on real GStreamer pipelines (videotestsrc): zero-copy views, pacing hint, size changes.

No compositor needed: the same reader that takes Mutter's PipeWire stream is
fed by GStreamer's test source here, so the mapping, the "new frame" pipe and
renegotiation are checked on their own.
"""
from __future__ import annotations

import gc
import select
import time

import numpy as np
import pytest

from agent.errors import CaptureError


def _need_gst():
    try:
        from agent.capture.gi_support import load_gst

        return load_gst()
    except CaptureError as exc:
        pytest.skip(f"{exc}; .ci/run installs it")


def _frames(caps: str = "width=64,height=48", pattern: str = "solid-color foreground-color=0xff336699",
            live: bool = True, rate: int = 50):
    _need_gst()
    from agent.capture.pipewire_frames import AppSinkFrames

    return AppSinkFrames(f"videotestsrc pattern={pattern} is-live={str(live).lower()} ! "
                         f"capsfilter name=caps caps=video/x-raw,format=BGRx,{caps},framerate={rate}/1 ! "
                         "appsink name=sink max-buffers=1 drop=true sync=false emit-signals=true")


def _wait_pending(frames, timeout: float = 5.0) -> None:
    readable, _, _ = select.select([frames.fileno()], [], [], timeout)
    assert readable and frames.pending


def test_frames_are_read_only_views_of_the_mapped_buffer():
    frames = _frames()
    try:
        frame = frames.latest()
        assert frame.shape == (48, 64, 4) and frame.dtype == np.uint8 and frame.flags.c_contiguous
        assert not frame.flags.writeable and not frame.flags.owndata
        assert frames.fallback_reason is None
        with pytest.raises(ValueError):
            frame[0, 0, 0] = 1
        # ARGB 0xff336699 in BGRx byte order, everywhere
        assert np.all(frame[..., :3] == np.array([0x99, 0x66, 0x33], np.uint8))
    finally:
        frames.close()


def test_no_new_frame_means_the_same_frame_and_no_wakeup():
    frames = _frames(live=True, rate=1)
    try:
        first = frames.latest()
        # Settle: a slow start (a loaded machine) may have queued the next second's frame already, and a
        # frame pulled between appsink queueing it and emitting new-sample is signalled once more after
        # it was taken (one wake-up for nothing, harmless to the capture loop); quiet for 0.2 s, it is over.
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < 0.2:
            if frames.pending:
                first = frames.latest()
                quiet_since = time.monotonic()
            time.sleep(0.005)
        assert frames.latest() is first  # nothing new: the same view again, nothing copied
        assert not frames.pending
        assert select.select([frames.fileno()], [], [], 0)[0] == []
        _wait_pending(frames, timeout=3)  # the next frame (1/s) wakes a sleeper on the fd
        assert frames.latest() is not first and not frames.pending
        assert select.select([frames.fileno()], [], [], 0)[0] == []  # drained
    finally:
        frames.close()


def test_a_kept_frame_stays_valid_while_newer_ones_arrive_and_after_close():
    frames = _frames(pattern="ball", rate=100)
    try:
        kept = frames.latest()
        snapshot = kept.copy()
        seen = 0
        deadline = time.monotonic() + 5
        while seen < 20 and time.monotonic() < deadline:
            _wait_pending(frames)
            newer = frames.latest()
            seen += 1
        assert seen == 20 and not np.array_equal(newer, snapshot)  # the ball moved
        assert np.array_equal(kept, snapshot)  # the buffer under the kept frame was not reused
    finally:
        frames.close()
    assert np.array_equal(kept, snapshot)
    del kept, newer
    gc.collect()


def test_a_size_change_yields_frames_of_the_new_size():
    Gst, _ = _need_gst()
    frames = _frames(rate=30)
    try:
        assert frames.latest().shape == (48, 64, 4) and frames.size == (64, 48)
        frames._pipeline.get_by_name("caps").set_property(
            "caps", Gst.Caps.from_string("video/x-raw,format=BGRx,width=80,height=30,framerate=30/1"))
        deadline = time.monotonic() + 5
        while frames.latest().shape != (30, 80, 4) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert frames.latest().shape == (30, 80, 4) and frames.size == (80, 30)
    finally:
        frames.close()


def test_padded_rows_are_copied_and_the_reason_is_kept():
    """A producer whose rows are wider than the picture (GstVideoMeta stride): one contiguous copy."""
    Gst, _ = _need_gst()
    import gi

    gi.require_version("GstVideo", "1.0")
    from gi.repository import GstVideo

    from agent.capture.pipewire_frames import AppSinkFrames

    width, height, stride = 30, 10, 30 * 4 + 24
    rows = np.zeros((height, stride), np.uint8)
    pixels = rows[:, :width * 4].reshape(height, width, 4)
    pixels[...] = np.arange(width, dtype=np.uint8)[None, :, None]
    pixels[:, :, 3] = 255
    rows[:, width * 4:] = 0xEE  # padding that must not show
    frames = AppSinkFrames(f"appsrc name=src format=time caps=video/x-raw,format=BGRx,width={width},"
                           f"height={height},framerate=10/1 ! appsink name=sink max-buffers=1 drop=true sync=false "
                           "emit-signals=true", first_frame_timeout=None)
    with pytest.raises(CaptureError, match="no frame yet"):
        frames.latest()
    buf = Gst.Buffer.new_wrapped(rows.tobytes())
    GstVideo.buffer_add_video_meta_full(buf, GstVideo.VideoFrameFlags.NONE, GstVideo.VideoFormat.BGRX, width,
                                        height, 1, [0, 0, 0, 0], [stride, 0, 0, 0])
    frames._pipeline.get_by_name("src").emit("push-buffer", buf)
    _wait_pending(frames)
    try:
        frame = frames.latest()
        assert frame.shape == (height, width, 4) and frame.flags.c_contiguous
        assert np.array_equal(frame, pixels)
        assert frames.fallback_reason is not None and f"stride of {stride}" in frames.fallback_reason
    finally:
        frames.close()


def test_a_pipeline_that_fails_is_a_capture_error_and_a_closed_reader_refuses():
    _need_gst()
    from agent.capture.pipewire_frames import AppSinkFrames

    with pytest.raises(CaptureError, match="pipeline"):
        AppSinkFrames("no-such-element ! appsink name=sink")
    with pytest.raises(CaptureError, match="appsink named 'sink'"):
        AppSinkFrames("videotestsrc ! fakesink")
    with pytest.raises(CaptureError, match="ended"):
        AppSinkFrames("videotestsrc num-buffers=0 ! appsink name=sink", first_frame_timeout=5)
    with pytest.raises(CaptureError, match="no frame within 0.5 s"):
        AppSinkFrames("appsrc is-live=true caps=video/x-raw,format=BGRx,width=8,height=8 ! appsink name=sink",
                      first_frame_timeout=0.5)
    frames = _frames()
    frames.close()
    with pytest.raises(CaptureError, match="closed"):
        frames.latest()

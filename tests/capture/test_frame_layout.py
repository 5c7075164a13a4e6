"""Buffer layout of a PipeWire frame and the pipeline description (pure)."""
from __future__ import annotations

import pytest

from agent.capture.pipewire_frames import frame_layout, pipewire_pipeline


def test_packed_rows_are_one_contiguous_view():
    assert frame_layout(1024 * 768 * 4, 1024, 768) == (4096, 0, True)
    assert frame_layout(1024 * 768 * 4, 1024, 768, stride=4096, offset=0) == (4096, 0, True)


def test_padded_rows_are_not_contiguous():
    assert frame_layout(1030 * 4 * 768, 1024, 768, stride=1030 * 4) == (4120, 0, False)


def test_a_buffer_too_small_or_a_narrow_stride_is_refused():
    with pytest.raises(ValueError, match="does not fit"):
        frame_layout(1024 * 768 * 4 - 1, 1024, 768)
    with pytest.raises(ValueError, match="does not fit"):
        frame_layout(1024 * 768 * 4, 1024, 768, offset=4)
    with pytest.raises(ValueError, match="narrower"):
        frame_layout(10 ** 7, 1024, 768, stride=4000)
    with pytest.raises(ValueError, match="bad frame size"):
        frame_layout(100, 0, 10)


def test_last_row_needs_only_its_pixels_not_a_whole_stride():
    size = 4120 * 767 + 4096
    assert frame_layout(size, 1024, 768, stride=4120) == (4120, 0, False)


def test_pipeline_reads_the_node_zero_copy_and_keeps_only_the_newest_frame():
    text = pipewire_pipeline(42)
    assert text.startswith("pipewiresrc path=42 always-copy=false ")
    assert "format=BGRx" in text and "max-buffers=1 drop=true" in text and "name=sink" in text
    assert " fd=" not in text
    assert "pipewiresrc path=7 fd=12 " in pipewire_pipeline(7, fd=12)  # a portal's PipeWire socket

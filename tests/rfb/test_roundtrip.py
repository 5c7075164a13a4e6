"""Every encoding x pixel format x workload: our server encodes, our client decodes.

Lossless encodings must give exactly agent.rfb.decode.quantize(source, pf); Tight
with JPEG (quality level >= 6) must stay above 35 dB PSNR against it.
"""
from __future__ import annotations

import numpy as np
import pytest

from agent.workloads.synthetic import SyntheticSource
from agent.rfb import constants as C
from agent.rfb.pixelformat import BGR233, NATIVE, RGB565_BE, RGB565_LE, RGB888_BE
from tests.service.test_updater import ViewerLink
from tests.support.rfb_links import psnr

ENCODINGS = {
    "raw": ([C.ENC_RAW], False),
    "rre": ([C.ENC_RRE], False),
    "hextile": ([C.ENC_HEXTILE], False),
    "zrle": ([C.ENC_ZRLE], False),
    "tight": ([C.ENC_TIGHT], False),
    "tight-jpeg-q6": ([C.ENC_TIGHT, C.ENC_JPEG_QUALITY_0 + 6], True),
    "tight-jpeg-q9": ([C.ENC_TIGHT, C.ENC_JPEG_QUALITY_9], True),
}
FORMATS = {"native": NATIVE, "bgr233": BGR233, "rgb565le": RGB565_LE, "rgb565be": RGB565_BE, "rgb888be": RGB888_BE}
WORKLOADS = ["typing", "window-drag", "video"]
FRAMES = 3
MIN_PSNR = 35.0


@pytest.mark.parametrize("workload", WORKLOADS)
@pytest.mark.parametrize("pf_name", FORMATS)
@pytest.mark.parametrize("enc_name", ENCODINGS)
def test_roundtrip(enc_name, pf_name, workload):
    encodings, lossy = ENCODINGS[enc_name]
    link = ViewerLink(SyntheticSource(workload, 320, 240, seed=7), encodings, pixel_format=FORMATS[pf_name])
    link.request(incremental=False)
    used = set()
    for i in range(FRAMES + 1):
        if i:
            link.next_frame()
            link.request()
        used |= {r[4] for u in link.updates(link.client_events) for r in u.rects}
        expected = link.expected()
        if lossy:
            assert psnr(link.client.framebuffer, expected) >= MIN_PSNR, f"frame {i}"
        else:
            diff = np.argwhere((link.client.framebuffer != expected).any(axis=2))
            assert not len(diff), f"frame {i}: {len(diff)} pixels differ, first at {diff[0]}"
    assert used <= {encodings[0], C.ENC_RAW}, f"server used encodings {used} for {encodings}"
    assert encodings[0] in used, f"{enc_name} was never used"


def test_jpeg_really_used_on_photo_content():
    link = ViewerLink(SyntheticSource("video", 320, 240, seed=7), ENCODINGS["tight-jpeg-q6"][0], pixel_format=NATIVE)
    link.request(incremental=False)
    for _ in range(3):
        link.next_frame()
        link.request()
    assert link.updater.manager.lossy_region(), "photo-like content should go out as JPEG at quality 6"

"""Pixel format conversion: the Cython kernels against plain numpy references, any true-colour format."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent._native import pixconv
from agent.rfb.pixelformat import (
    BGR233,
    NATIVE,
    RGB565_BE,
    RGB565_LE,
    RGB888_BE,
    PixelFormat,
)
from agent.rfb.pixels import PixelCodec, codec_for, quantize
from tests.support.pixel_formats import formats


def frame_of(seed: int, h: int, w: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 4), dtype=np.uint8)


# --- numpy references ---------------------------------------------------------

def ref_to_values(bgra: np.ndarray, pf: PixelFormat) -> np.ndarray:
    b, g, r = (bgra[..., i].astype(np.uint64) for i in range(3))

    def ch(c: np.ndarray, cmax: int, shift: int) -> np.ndarray:
        return ((c * cmax + 127) // 255) << shift

    return (ch(r, pf.red_max, pf.red_shift) | ch(g, pf.green_max, pf.green_shift)
            | ch(b, pf.blue_max, pf.blue_shift)).astype(np.uint32)


def ref_to_bgra(values: np.ndarray, pf: PixelFormat) -> np.ndarray:
    v = values.astype(np.uint64)

    def ch(cmax: int, shift: int) -> np.ndarray:
        return ((((v >> shift) & cmax) * 255 + cmax // 2) // cmax).astype(np.uint8)

    out = np.empty(values.shape + (4,), np.uint8)
    out[..., 0] = ch(pf.blue_max, pf.blue_shift)
    out[..., 1] = ch(pf.green_max, pf.green_shift)
    out[..., 2] = ch(pf.red_max, pf.red_shift)
    out[..., 3] = 255
    return out


def ref_pack(values: np.ndarray, layout: tuple[int, ...]) -> bytes:
    n, shifts = layout[0], layout[1:]
    v = values.reshape(-1).astype(np.uint64)
    return np.stack([(v >> s) & 0xFF for s in shifts[:n]], 1).astype(np.uint8).tobytes()


# --- properties -------------------------------------------------------------------

@settings(max_examples=100, deadline=None)
@given(pf=formats, seed=st.integers(0, 2**32 - 1), h=st.integers(1, 23), w=st.integers(1, 37),
       ox=st.integers(0, 5), oy=st.integers(0, 5))
def test_to_values_matches_reference_on_strided_slices(pf: PixelFormat, seed: int, h: int, w: int,
                                                       ox: int, oy: int) -> None:
    big = frame_of(seed, h + oy + 3, w + ox + 2)
    view = big[oy:oy + h, ox:ox + w]  # rows strided, as the manager passes frame slices
    assert np.array_equal(codec_for(pf).to_values(view), ref_to_values(view, pf))


@settings(max_examples=100, deadline=None)
@given(pf=formats, seed=st.integers(0, 2**32 - 1), h=st.integers(1, 19), w=st.integers(1, 29))
def test_to_bgra_matches_reference_and_writes_into_views(pf: PixelFormat, seed: int, h: int, w: int) -> None:
    values = np.random.default_rng(seed).integers(0, 2**32, (h, w), dtype=np.uint64).astype(np.uint32)
    fb = np.zeros((h + 4, w + 6, 4), np.uint8)
    codec_for(pf).to_bgra(values, fb[2:2 + h, 3:3 + w])
    assert np.array_equal(fb[2:2 + h, 3:3 + w], ref_to_bgra(values, pf))
    assert not fb[:2].any() and not fb[:, :3].any()  # nothing outside the view


@settings(max_examples=100, deadline=None)
@given(pf=formats, seed=st.integers(0, 2**32 - 1), n=st.integers(1, 300))
def test_pack_unpack_every_layout(pf: PixelFormat, seed: int, n: int) -> None:
    codec = codec_for(pf)
    values = ref_to_values(frame_of(seed, 1, n), pf)[0]
    for layout in {codec.pixel, codec.cpixel}:
        data = codec.pack(values, layout)
        assert data == ref_pack(values, layout)
        assert np.array_equal(codec.unpack(data, n, layout), values)
    assert np.array_equal(codec.unpack_tpixels(codec.pack_tpixels(values), n), values)


@settings(max_examples=100, deadline=None)
@given(pf=formats, seed=st.integers(0, 2**32 - 1), h=st.integers(1, 17), w=st.integers(1, 17))
def test_quantize_is_a_projection(pf: PixelFormat, seed: int, h: int, w: int) -> None:
    frame = frame_of(seed, h, w)
    q = quantize(frame, pf)
    assert (q[..., 3] == 255).all()
    assert np.array_equal(quantize(q, pf), q)
    assert np.array_equal(codec_for(pf).to_values(q), codec_for(pf).to_values(frame))


# --- fixed examples -----------------------------------------------------------------

def test_native_is_exact_and_bytes_are_bgrx() -> None:
    frame = frame_of(1, 5, 7)
    codec = codec_for(NATIVE)
    q = quantize(frame, NATIVE)
    assert np.array_equal(q[..., :3], frame[..., :3]) and (q[..., 3] == 255).all()
    px = np.array([[0x00112233]], np.uint32)
    assert codec.pack(px) == bytes([0x33, 0x22, 0x11, 0x00])
    assert codec_for(RGB888_BE).pack(px) == bytes([0x00, 0x11, 0x22, 0x33])


def test_known_values_in_small_formats() -> None:
    red = np.array([[[0, 0, 255, 255]]], np.uint8)  # BGRA
    white = np.full((1, 1, 4), 255, np.uint8)
    assert int(codec_for(RGB565_LE).to_values(red)[0, 0]) == 0xF800
    assert codec_for(RGB565_LE).pack(codec_for(RGB565_LE).to_values(red)) == b"\x00\xf8"
    assert codec_for(RGB565_BE).pack(codec_for(RGB565_BE).to_values(red)) == b"\xf8\x00"
    assert codec_for(BGR233).pack(codec_for(BGR233).to_values(white)) == b"\xff"
    assert int(codec_for(BGR233).to_values(red)[0, 0]) == 0x07
    # 2-bit blue 1 -> 85, 3-bit 3 -> 109 (rounded)
    back = codec_for(BGR233).to_bgra(np.array([[(1 << 6) | (3 << 3)]], np.uint32))
    assert back[0, 0].tolist() == [85, 109, 0, 255]


def test_cpixel_layouts_follow_rfbproto() -> None:
    assert codec_for(NATIVE).cpixel == (3, 0, 8, 16, 0)  # low 3 bytes, little endian
    assert codec_for(RGB888_BE).cpixel == (3, 16, 8, 0, 0)  # low 3 bytes, big endian
    high = PixelFormat(32, 24, False, True, 255, 255, 255, 24, 16, 8)
    assert codec_for(high).cpixel == (3, 8, 16, 24, 0)  # high 3 bytes
    high_be = PixelFormat(32, 24, True, True, 255, 255, 255, 24, 16, 8)
    assert codec_for(high_be).cpixel == (3, 24, 16, 8, 0)
    deep = PixelFormat(32, 32, False, True, 255, 255, 255, 16, 8, 0)
    assert codec_for(deep).cpixel == codec_for(deep).pixel  # depth > 24: full pixels
    spread = PixelFormat(32, 24, False, True, 255, 255, 255, 0, 12, 24)
    assert codec_for(spread).cpixel_size == 4  # bits in both the lowest and the highest byte
    assert codec_for(RGB565_LE).cpixel == codec_for(RGB565_LE).pixel


def test_tpixel_is_rgb_for_888_formats_whatever_the_shifts() -> None:
    px = np.array([[[0x33, 0x22, 0x11, 0]]], np.uint8)  # B, G, R
    for pf in (NATIVE, RGB888_BE, PixelFormat(32, 24, True, True, 255, 255, 255, 4, 12, 20)):
        codec = codec_for(pf)
        assert codec.pack_tpixels(codec.to_values(px)) == b"\x11\x22\x33"
    assert codec_for(RGB565_BE).tpixel == codec_for(RGB565_BE).pixel


def test_kernels_reject_bad_shapes() -> None:
    codec = PixelCodec(NATIVE)
    with pytest.raises(ValueError):
        codec.to_values(np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(ValueError):
        pixconv.unpack_values(np.zeros(7, np.uint8), (4, 0, 8, 16, 24), np.zeros(2, np.uint32))
    with pytest.raises(ValueError):
        pixconv.pack_values(np.zeros((1, 1), np.uint32), (5, 0, 0, 0, 0))

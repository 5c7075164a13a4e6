"""Property tests: every encode/decode kernel equals a plain numpy reference or inverts its partner.

Inputs cover odd sizes from 1x1, strided views, palettes of 1, 2, 3..16,
17..256 and more than 256 colours, and random pixel formats. The decoder
fuzz holds the client's invariant: any bytes give a byte count, None or
DecodeError, nothing else.
"""
from __future__ import annotations

import struct

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from agent._native import analyze as _analyze
from agent._native import decoders as _dec
from agent._native import hextile as _hextile
from agent._native import rre as _rre
from agent._native import tight as _tight
from agent._native import zrle as _zrle
from agent.encode import EncodeManager, codec_for
from agent.rfb import constants as C
from agent.rfb.decode import DecodeError, DecoderState, decode_rect, quantize
from agent.rfb.pixelformat import RGB565_BE, RGB888_BE, PixelFormat
from tests.support.pixel_formats import STANDARD, formats

PALETTE_SIZES = st.one_of(st.just(1), st.just(2), st.integers(3, 16), st.integers(17, 256), st.integers(257, 600))


def values_with_palette(seed: int, h: int, w: int, ncolours: int, mask: int = 0xFFFFFFFF,
                        mean_run: int = 3) -> np.ndarray:
    """(h, w) uint32 values drawn from ``ncolours`` colours (fewer if the mask cannot hold them), in runs."""
    rng = np.random.default_rng(seed)
    colours = np.unique(rng.integers(0, 2**32, ncolours * 2, dtype=np.uint64).astype(np.uint32) & np.uint32(mask))
    colours = rng.permutation(colours)[:ncolours]
    n = h * w
    runs = rng.integers(1, 2 * mean_run, n)
    idx = np.repeat(rng.integers(0, len(colours), n), runs)[:n]
    return colours[idx].reshape(h, w)


def strided(v: np.ndarray, seed: int) -> np.ndarray:
    """The same values as a view with a row stride wider than the row."""
    pad = np.random.default_rng(seed).integers(0, 2**32, (v.shape[0], v.shape[1] + 3), dtype=np.uint64)
    big = pad.astype(np.uint32)
    big[:, 1:1 + v.shape[1]] = v
    return big[:, 1:1 + v.shape[1]]


shapes = st.tuples(st.integers(1, 70), st.integers(1, 90))
seeds = st.integers(0, 2**32 - 1)


# --- analysis ----------------------------------------------------------------------

@settings(max_examples=100, deadline=None)
@given(seed=seeds, shape=shapes, ncol=PALETTE_SIZES, max_colours=st.sampled_from([1, 2, 16, 127, 256]))
def test_analyze_matches_numpy(seed: int, shape: tuple[int, int], ncol: int, max_colours: int) -> None:
    v = strided(values_with_palette(seed, *shape, ncol), seed)
    palette = np.empty(256, np.uint32)
    counts = np.empty(256, np.uint32)
    n, runs = _analyze.analyze(v, max_colours, palette, counts)
    flat = v.reshape(-1)
    assert runs == 1 + int(np.count_nonzero(flat[1:] != flat[:-1]))
    uniq, ucount = np.unique(flat, return_counts=True)
    if len(uniq) > max_colours:
        assert n == max_colours + 1
        return
    assert n == len(uniq)
    got = dict(zip(palette[:n].tolist(), counts[:n].tolist()))
    assert got == dict(zip(uniq.tolist(), ucount.tolist()))
    assert palette[0] == flat[0]  # order of first appearance
    idx = np.empty(v.shape, np.uint8)
    assert _analyze.index_map(v, palette, n, idx) == 0
    assert np.array_equal(palette[:n][idx], v)


@settings(max_examples=60, deadline=None)
@given(seed=seeds, shape=shapes)
def test_index_map_reports_missing_colours(seed: int, shape: tuple[int, int]) -> None:
    v = values_with_palette(seed, *shape, 5)
    uniq = np.unique(v)
    assume(len(uniq) >= 2)
    idx = np.empty(v.shape, np.uint8)
    assert _analyze.index_map(v, np.ascontiguousarray(uniq[1:]), len(uniq) - 1, idx) == -1


@settings(max_examples=60, deadline=None)
@given(seed=seeds, shape=st.tuples(st.integers(1, 120), st.integers(1, 120)), block=st.sampled_from([4, 8, 16]),
       min_area=st.sampled_from([1, 64, 600]))
def test_solid_areas_partition_the_rectangle(seed: int, shape: tuple[int, int], block: int, min_area: int) -> None:
    rng = np.random.default_rng(seed)
    h, w = shape
    v = np.full((h, w), 7, np.uint32)
    for _ in range(rng.integers(0, 6)):  # busy patches on a solid background
        y, x = rng.integers(0, h), rng.integers(0, w)
        v[y:y + rng.integers(1, 30), x:x + rng.integers(1, 40)] = rng.integers(0, 4, dtype=np.uint32)
    solids = np.empty((12, 4), np.int32)
    rest = np.empty((52, 4), np.int32)
    ns, nr = _analyze.find_solid_areas(v, block, min_area, solids, rest)
    cover = np.zeros((h, w), np.int32)
    for x, y, sw, sh in solids[:ns].tolist():
        assert sw * sh >= min_area or (sw, sh) == (w, h)
        assert (v[y:y + sh, x:x + sw] == v[y, x]).all()
        cover[y:y + sh, x:x + sw] += 1
    for x, y, rw, rh in rest[:nr].tolist():
        assert rw > 0 and rh > 0
        cover[y:y + rh, x:x + rw] += 1
    assert (cover == 1).all()


# --- Tight kernels ------------------------------------------------------------------

@settings(max_examples=100, deadline=None)
@given(seed=seeds, shape=shapes)
def test_pack_mono_matches_packbits(seed: int, shape: tuple[int, int]) -> None:
    v = strided(values_with_palette(seed, *shape, 2), seed)
    bg = int(v[0, 0])
    out = np.empty(((shape[1] + 7) // 8) * shape[0], np.uint8)
    assert _tight.pack_mono(v, bg, out) == len(out)
    assert out.tobytes() == np.packbits(v != bg, axis=1).tobytes()
    back = np.empty(v.shape, np.uint32)
    pal = np.array([bg, bg ^ 1], np.uint32)
    assert _dec.palette_expand(out, 1, pal, back) == len(out)
    assert np.array_equal(back == bg, v == bg)


def ref_gradient(v: np.ndarray, pf: PixelFormat) -> np.ndarray:
    out = np.zeros_like(v)
    for shift, cmax in ((pf.red_shift, pf.red_max), (pf.green_shift, pf.green_max), (pf.blue_shift, pf.blue_max)):
        c = ((v.astype(np.int64) >> shift) & cmax)
        p = np.pad(c, ((1, 0), (1, 0)))
        est = np.clip(p[1:, :-1] + p[:-1, 1:] - p[:-1, :-1], 0, cmax)
        out |= (((c - est) & cmax) << shift).astype(np.uint32)
    return out


@settings(max_examples=100, deadline=None)
@given(pf=formats, seed=seeds, shape=st.tuples(st.integers(1, 30), st.integers(1, 40)))
def test_gradient_filter_matches_numpy_and_inverts(pf: PixelFormat, seed: int, shape: tuple[int, int]) -> None:
    frame = np.random.default_rng(seed).integers(0, 256, shape + (4,), dtype=np.uint8)
    v = codec_for(pf).to_values(frame)
    args = (pf.red_shift, pf.green_shift, pf.blue_shift, pf.red_max, pf.green_max, pf.blue_max)
    filtered = np.empty_like(v)
    _tight.gradient_filter(strided(v, seed), *args, filtered)
    assert np.array_equal(filtered, ref_gradient(v, pf))
    back = np.empty_like(v)
    _dec.gradient_unfilter(filtered, *args, back)
    assert np.array_equal(back, v)


# --- tile encoders against their decode loops -------------------------------------------

@settings(max_examples=100, deadline=None)
@given(pf=formats, seed=seeds, shape=st.tuples(st.integers(1, 150), st.integers(1, 150)), ncol=PALETTE_SIZES,
       mean_run=st.sampled_from([1, 4, 40]))
def test_zrle_tiles_round_trip(pf: PixelFormat, seed: int, shape: tuple[int, int], ncol: int, mean_run: int) -> None:
    codec = codec_for(pf)
    mask = (pf.red_max << pf.red_shift) | (pf.green_max << pf.green_shift) | (pf.blue_max << pf.blue_shift)
    v = strided(values_with_palette(seed, *shape, ncol, mask, mean_run), seed)
    h, w = shape
    out = np.empty(_zrle.bound(w, h, codec.cpixel_size), np.uint8)
    n = _zrle.encode_tiles(v, codec.cpixel, out)
    assert n <= (w * h * codec.cpixel_size) + ((w + 63) // 64) * ((h + 63) // 64) * 33
    back = np.empty((h, w), np.uint32)
    assert _dec.zrle_decode(out[:n], codec.cpixel, back) == n
    assert np.array_equal(back, v)


@settings(max_examples=100, deadline=None)
@given(pf=formats, seed=seeds, shape=st.tuples(st.integers(1, 70), st.integers(1, 70)), ncol=PALETTE_SIZES,
       mean_run=st.sampled_from([1, 4, 40]))
def test_hextile_round_trip(pf: PixelFormat, seed: int, shape: tuple[int, int], ncol: int, mean_run: int) -> None:
    codec = codec_for(pf)
    mask = (1 << pf.bits_per_pixel) - 1
    v = strided(values_with_palette(seed, *shape, ncol, mask, mean_run), seed)
    h, w = shape
    out = np.empty(_hextile.bound(w, h, codec.bytes_per_pixel), np.uint8)
    n = _hextile.encode(v, codec.pixel, out)
    assert n <= w * h * codec.bytes_per_pixel + ((w + 15) // 16) * ((h + 15) // 16)
    back = np.empty((h, w), np.uint32)
    assert _dec.hextile_decode(out[:n], codec.pixel, back) == n
    assert np.array_equal(back, v)
    assert _dec.hextile_decode(out[:n - 1], codec.pixel, back) == _dec.NEED_MORE


@settings(max_examples=100, deadline=None)
@given(seed=seeds, shape=st.tuples(st.integers(1, 60), st.integers(1, 60)), ncol=st.integers(1, 6),
       mean_run=st.sampled_from([1, 8, 60]))
def test_rre_round_trip(seed: int, shape: tuple[int, int], ncol: int, mean_run: int) -> None:
    codec = codec_for(RGB565_BE)
    v = values_with_palette(seed, *shape, ncol, 0xFFFF, mean_run)
    h, w = shape
    bg = int(np.bincount(v.reshape(-1)).argmax())
    out = np.empty(4 + 2 + w * h * 10, np.uint8)
    n = _rre.encode(v, bg, codec.pixel, out, len(out))
    assert n > 0
    (nsub,) = struct.unpack(">I", out[:4].tobytes())
    back = np.full((h, w), bg, np.uint32)
    assert _dec.rre_decode(out[6:n], nsub, codec.pixel, back) == n - 6
    assert np.array_equal(back, v)
    assert _rre.encode(v, bg, codec.pixel, out, 6 + 10 * nsub - 1) in (-1, n if nsub == 0 else -1)


# --- the whole chain on random formats and encodings ----------------------------------------

@settings(max_examples=40, deadline=None)
@given(pf=formats, seed=seeds, shape=st.tuples(st.integers(1, 140), st.integers(1, 180)), ncol=PALETTE_SIZES,
       encoding=st.sampled_from([C.ENC_RAW, C.ENC_RRE, C.ENC_HEXTILE, C.ENC_ZRLE, C.ENC_TIGHT]),
       level=st.one_of(st.none(), st.integers(0, 9)))
def test_manager_round_trip(pf: PixelFormat, seed: int, shape: tuple[int, int], ncol: int, encoding: int,
                            level: int | None) -> None:
    rng = np.random.default_rng(seed)
    h, w = shape
    colours = rng.integers(0, 256, (ncol, 4), dtype=np.uint8)
    runs = rng.integers(1, 9, h * w)
    frame = colours[np.repeat(rng.integers(0, ncol, h * w), runs)[:h * w]].reshape(h, w, 4)
    manager = EncodeManager()
    manager.set_pixel_format(pf)
    manager.set_encodings([encoding] + ([] if level is None else [C.ENC_COMPRESS_LEVEL_0 + level]))
    x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
    update = manager.encode(frame, [], [(0, 0, w, h), (x0, y0, w - x0, h - y0)])
    fb = np.zeros_like(frame)
    state = DecoderState()
    for data in update.rects:
        x, y, rw, rh, enc = struct.unpack(">HHHHi", data[:12])
        assert enc in (encoding, C.ENC_RAW)
        assert rw <= 2048 and rw * rh <= 65536
        assert decode_rect(state, enc, memoryview(data)[12:], x, y, rw, rh, fb, pf) == len(data) - 12
    assert np.array_equal(fb, quantize(frame, pf))
    assert update.nbytes == sum(len(r) for r in update.rects) and update.lossy == []


# --- decoder fuzz -------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(encoding=st.sampled_from([C.ENC_RAW, C.ENC_COPYRECT, C.ENC_RRE, C.ENC_HEXTILE, C.ENC_ZRLE, C.ENC_TIGHT]),
       data=st.binary(max_size=300), w=st.integers(0, 40), h=st.integers(0, 40),
       pf=st.sampled_from(STANDARD), prefix=st.sampled_from([b"", b"\x80", b"\x50\x01\x01", b"\x60\x01\x07",
                                                             b"\x40\x02", b"\x90", b"\x00\x00\x00\x10"]))
def test_decoders_never_fail_otherwise(encoding: int, data: bytes, w: int, h: int, pf: PixelFormat,
                                       prefix: bytes) -> None:
    fb = np.zeros((40, 40, 4), np.uint8)
    payload = prefix + data
    try:
        n = decode_rect(DecoderState(), encoding, memoryview(payload), 0, 0, w, h, fb, pf)
    except DecodeError:
        return
    assert n is None or 0 <= n <= len(payload)


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=200), tiles=st.binary(max_size=200), w=st.integers(1, 80), h=st.integers(1, 80))
def test_zrle_fuzz_inside_the_zlib_stream(data: bytes, tiles: bytes, w: int, h: int) -> None:
    import zlib
    z = zlib.compressobj()
    body = z.compress(tiles + data) + z.flush(zlib.Z_SYNC_FLUSH)
    fb = np.zeros((80, 80, 4), np.uint8)
    try:
        n = decode_rect(DecoderState(), C.ENC_ZRLE, memoryview(struct.pack(">I", len(body)) + body),
                        0, 0, w, h, fb, RGB888_BE)
    except DecodeError:
        return
    assert n == 4 + len(body)

"""The encode manager: negotiation, choice of encoder with fallbacks, splitting, lossy tracking, stats."""
from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import simplejpeg

from agent.capture.base import CursorShape
from agent.encode import EncodedUpdate, EncodeManager, EncoderError
from agent.encode.manager import PACKED_MAX_COLOURS
from agent.models import split_rect
from agent.rfb import constants as C
from agent.rfb.decode import DecoderState, decode_rect, quantize
from agent.rfb.pixelformat import BGR233, NATIVE, RGB565_LE, PixelFormat


def headers(update: EncodedUpdate) -> list[tuple[int, int, int, int, int]]:
    return [struct.unpack(">HHHHi", r[:12]) for r in update.rects]


def apply(update: EncodedUpdate, fb: np.ndarray, pf: PixelFormat, state: DecoderState) -> None:
    for data in update.rects:
        x, y, w, h, enc = struct.unpack(">HHHHi", data[:12])
        assert decode_rect(state, enc, memoryview(data)[12:], x, y, w, h, fb, pf) == len(data) - 12


def desktop(h: int = 240, w: int = 320, seed: int = 0) -> np.ndarray:
    """Flat background, a text-like block and a photo-like block."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 4), 230, np.uint8)
    img[20:80, 20:300, :3] = (rng.random((60, 280, 1)) < 0.25) * 30
    yy, xx = np.mgrid[0:120, 0:160]
    img[100:220, 100:260, 0] = (128 + 100 * np.sin(xx / 9.0)).astype(np.uint8)
    img[100:220, 100:260, 1] = (128 + 100 * np.cos(yy / 7.0)).astype(np.uint8)
    img[100:220, 100:260, 2] = rng.integers(0, 256, (120, 160), dtype=np.uint8)
    return img


def manager(*encodings: int, pf: PixelFormat = NATIVE) -> EncodeManager:
    m = EncodeManager()
    m.set_pixel_format(pf)
    m.set_encodings(list(encodings))
    return m


def test_raw_only_clients_get_raw() -> None:
    for encodings in ([], [C.ENC_RAW], [12345, C.ENC_CURSOR]):
        m = manager(*encodings)
        update = m.encode(desktop(), [], [(0, 0, 320, 240)])
        assert {h[4] for h in headers(update)} == {C.ENC_RAW}
        assert update.nbytes == sum(len(r) for r in update.rects)


def test_hextile_client() -> None:
    m = manager(C.ENC_HEXTILE, C.ENC_RAW)
    frame = desktop()
    update = m.encode(frame, [], [(0, 0, 320, 240)])
    assert {h[4] for h in headers(update)} == {C.ENC_HEXTILE}
    fb = np.zeros_like(frame)
    apply(update, fb, NATIVE, DecoderState())
    assert np.array_equal(fb, quantize(frame, NATIVE))


def test_rre_client_falls_back_to_raw_for_busy_areas() -> None:
    m = manager(C.ENC_RRE)
    frame = desktop()
    update = m.encode(frame, [], [(0, 0, 320, 240)])
    used = {h[4] for h in headers(update)}
    assert used == {C.ENC_RRE, C.ENC_RAW}
    fb = np.zeros_like(frame)
    apply(update, fb, NATIVE, DecoderState())
    assert np.array_equal(fb, quantize(frame, NATIVE))


def test_preferred_encoding_decides_and_solids_prefer_tight_fills() -> None:
    frame = desktop()
    update = manager(C.ENC_ZRLE, C.ENC_TIGHT, C.ENC_JPEG_QUALITY_0 + 5).encode(frame, [], [(0, 0, 320, 240)])
    kinds = {h[4] for h in headers(update)}
    assert kinds == {C.ENC_ZRLE, C.ENC_TIGHT} and update.lossy == []  # ZRLE preferred: no JPEG (TigerVNC)
    for data in update.rects:
        if struct.unpack(">i", data[8:12])[0] == C.ENC_TIGHT:
            assert data[12] == 0x80
    tight = manager(C.ENC_TIGHT, C.ENC_ZRLE).encode(frame, [], [(0, 0, 320, 240)])
    assert {h[4] for h in headers(tight)} == {C.ENC_TIGHT}


def test_solid_areas_become_fills() -> None:
    frame = np.full((300, 400, 4), 50, np.uint8)
    frame[140:150, 190:200, :3] = np.random.default_rng(1).integers(0, 256, (10, 10, 3), dtype=np.uint8)
    update = manager(C.ENC_TIGHT).encode(frame, [], [(0, 0, 400, 300)])
    fills = [r for r in update.rects if r[12] == 0x80]
    assert sum(w * h for _, _, w, h, _ in headers(EncodedUpdate(fills))) >= 400 * 300 - 64 * 64
    assert update.nbytes < 2000
    fb = np.zeros_like(frame)
    apply(update, fb, NATIVE, DecoderState())
    assert np.array_equal(fb, quantize(frame, NATIVE))


def test_every_rectangle_respects_the_limits_and_tiles_the_input() -> None:
    m = manager(C.ENC_RAW)
    frame = np.zeros((700, 3000, 4), np.uint8)
    update = m.encode(frame, [], [(0, 0, 3000, 700), (5, 5, 2049, 1)])
    cover = np.zeros((700, 3000), np.int32)
    for x, y, w, h, _ in headers(update):
        assert w <= 2048 and w * h <= 65536
        cover[y:y + h, x:x + w] += 1
    assert cover[5, 5:2054].min() == 2 and cover.min() == 1
    assert split_rect(0, 0, 300, 300) == [(0, 0, 300, 192), (0, 192, 300, 108)]


def test_copies_first_and_only_when_offered() -> None:
    frame = desktop()
    m = manager(C.ENC_COPYRECT, C.ENC_TIGHT)
    update = m.encode(frame, [(0, 0, 10, 20, 30, 40)], [(100, 100, 5, 5)])
    assert update.rects[0] == struct.pack(">HHHHiHH", 10, 20, 30, 40, C.ENC_COPYRECT, 0, 0)
    assert headers(update)[1][4] == C.ENC_TIGHT
    with pytest.raises(EncoderError):
        manager(C.ENC_TIGHT).encode(frame, [(0, 0, 10, 20, 30, 40)], [])
    with pytest.raises(EncoderError):
        m.encode(frame, [(0, 0, 300, 0, 30, 40)], [])  # destination outside the frame


def test_bad_rectangles_and_frames_raise() -> None:
    m = manager(C.ENC_TIGHT)
    for rect in [(0, 0, 0, 5), (-1, 0, 5, 5), (300, 0, 21, 5), (0, 230, 5, 11)]:
        with pytest.raises(EncoderError):
            m.encode(desktop(), [], [rect])
    with pytest.raises(EncoderError):
        m.encode(np.zeros((10, 10, 3), np.uint8), [], [])


def test_lossy_only_with_a_quality_level() -> None:
    frame = desktop()
    rect = [(100, 100, 160, 120)]
    assert manager(C.ENC_TIGHT).encode(frame, [], rect).lossy == []
    m = manager(C.ENC_TIGHT, C.ENC_JPEG_QUALITY_0 + 7)
    update = m.encode(frame, [], rect)
    assert update.lossy and update.lossy == m.lossy_region()
    assert any(r[12] == 0x90 for r in update.rects)
    assert m.encode(frame, [], rect, lossy_allowed=False).lossy == []
    assert m.lossy_region() == []  # the lossless refresh cleared it
    eight = manager(C.ENC_TIGHT, C.ENC_JPEG_QUALITY_0 + 7, pf=BGR233)
    assert eight.encode(frame, [], rect).lossy == []  # never JPEG at 8 bpp


def test_jpeg_needs_a_big_busy_area() -> None:
    frame = desktop()
    m = manager(C.ENC_TIGHT, C.ENC_JPEG_QUALITY_0 + 7)
    assert m.encode(frame, [], [(100, 100, 160, 5)]).lossy == []  # too thin
    assert m.encode(frame, [], [(100, 100, 40, 40)]).lossy == []  # too small
    assert m.encode(frame, [], [(20, 20, 280, 60)]).lossy == []  # two-colour text stays lossless
    ramp = np.zeros((128, 128, 4), np.uint8)
    ramp[..., 1] = np.arange(128, dtype=np.uint8)[:, None] * 2  # 128 colours, one per row
    ramp[::8, ::3, :3] = 0  # with some text-like marks: a run every ~6 pixels
    assert manager(C.ENC_TIGHT, C.ENC_JPEG_QUALITY_0 + 7).encode(ramp, [], [(0, 0, 128, 128)]).lossy == []


def test_lossy_region_follows_copies_and_partial_refreshes() -> None:
    frame = desktop()
    m = manager(C.ENC_COPYRECT, C.ENC_TIGHT, C.ENC_JPEG_QUALITY_0 + 6)
    m.encode(frame, [], [(100, 100, 160, 120)])
    covered = lambda: sum(w * h for _, _, w, h in m.lossy_region())  # noqa: E731
    assert covered() == 160 * 120
    m.encode(frame, [], [(100, 100, 160, 60)], lossy_allowed=False)
    assert covered() == 160 * 60
    m.encode(frame, [(100, 160, 0, 0, 160, 60)], [])  # the lossy half copied to the top-left corner
    assert covered() == 2 * 160 * 60
    cover = np.zeros((240, 320), bool)
    for x, y, w, h in m.lossy_region():
        cover[y:y + h, x:x + w] = True
    assert cover[:60, :160].all() and cover[160:220, 100:260].all()
    m.encode(np.zeros((50, 50, 4), np.uint8), [], [(0, 0, 50, 50)])  # a new screen size forgets it
    assert m.lossy_region() == []


def test_quality_cap_limits_jpeg_quality() -> None:
    frame = desktop()
    rect = [(100, 100, 160, 120)]
    m = manager(C.ENC_TIGHT, C.ENC_JPEG_QUALITY_0 + 9)
    full = m.encode(frame, [], rect)
    m.quality_cap = 1
    capped = m.encode(frame, [], rect)
    assert capped.nbytes < full.nbytes / 2

    def subsampling(update: EncodedUpdate) -> str:
        data = next(r for r in update.rects if r[12] == 0x90)
        start = 14 if not data[13] & 0x80 else (15 if not data[14] & 0x80 else 16)  # after the compact length
        return simplejpeg.decode_jpeg_header(data[start:])[3]

    assert subsampling(full) == "444" and subsampling(capped) == "420"


def test_compression_level_changes_keep_the_client_in_sync() -> None:
    frame = desktop()
    m = manager(C.ENC_TIGHT, C.ENC_ZRLE)
    fb = np.zeros_like(frame)
    state = DecoderState()
    for step, level in enumerate([None, 9, 1, 6, 0, None]):
        m.set_encodings([C.ENC_TIGHT, C.ENC_ZRLE] + ([] if level is None else [C.ENC_COMPRESS_LEVEL_0 + level]))
        frame[..., :3] = np.roll(frame[..., :3], 7, axis=1)
        apply(m.encode(frame, [], [(0, 0, 320, 240)]), fb, NATIVE, state)
        assert np.array_equal(fb, quantize(frame, NATIVE)), step


def test_statistics_per_encoding() -> None:
    m = manager(C.ENC_COPYRECT, C.ENC_TIGHT, C.ENC_JPEG_QUALITY_0 + 6)
    frame = desktop()
    u1 = m.encode(frame, [(0, 0, 5, 5, 10, 10)], [(0, 0, 320, 240)])
    assert set(m.stats) >= {"CopyRect", "Tight", "TightJPEG"}
    for s in m.stats.values():
        assert set(s) == {"rects", "pixels", "bytes", "seconds"} and s["rects"] > 0 and s["seconds"] >= 0
    assert sum(s["bytes"] for s in m.stats.values()) == u1.nbytes
    assert sum(s["pixels"] for k, s in m.stats.items() if k != "CopyRect") == 320 * 240


def test_pixel_format_change_applies_to_the_next_update() -> None:
    frame = desktop()
    m = manager(C.ENC_RAW)
    assert len(m.encode(frame, [], [(0, 0, 10, 10)]).rects[0]) == 12 + 400
    m.set_pixel_format(RGB565_LE)
    assert len(m.encode(frame, [], [(0, 0, 10, 10)]).rects[0]) == 12 + 200


def test_tight_at_8bpp_sends_many_colours_as_full_colour() -> None:
    frame = desktop()
    update = manager(C.ENC_TIGHT, pf=BGR233).encode(frame, [], [(100, 100, 64, 64)])
    assert all(r[12] >> 4 in (0x0, 0x4, 0x8) or r[12] == 0x50 for r in update.rects)  # no indexed (0x60)


def test_encode_cursor_in_the_client_format() -> None:
    px = np.zeros((4, 5, 4), np.uint8)
    px[..., 3] = 255
    m = manager(C.ENC_TIGHT, C.ENC_CURSOR, pf=RGB565_LE)
    data = m.encode_cursor(CursorShape(px, 2, 3, 1))
    assert struct.unpack(">HHHHi", data[:12]) == (2, 3, 5, 4, C.ENC_CURSOR)
    assert len(data) == 12 + 5 * 4 * 2 + 1 * 4


def test_read_only_and_strided_frames() -> None:
    big = desktop(260, 340)
    frame = big[10:250, 10:330]  # a view with row padding
    frame.setflags(write=False)
    m = manager(C.ENC_TIGHT, C.ENC_JPEG_QUALITY_0 + 8)
    update = m.encode(frame, [], [(0, 0, 320, 240)])
    fb = np.zeros((240, 320, 4), np.uint8)
    apply(update, fb, NATIVE, DecoderState())
    lossless = np.ones((240, 320), bool)
    for x, y, w, h in update.lossy:
        lossless[y:y + h, x:x + w] = False
    assert update.lossy and np.array_equal(fb[lossless], quantize(frame, NATIVE)[lossless])


def tight_controls(update: EncodedUpdate, y0: int, y1: int) -> list[int]:
    """Tight compression-control bytes of the rectangles starting in rows y0..y1-1."""
    return [r[12] for r, h in zip(update.rects, headers(update)) if y0 <= h[1] < y1 and h[4] == C.ENC_TIGHT]


@pytest.mark.parametrize("lossy", [False, True])
def test_outer_compression_sends_text_as_stored_tight_palettes_and_keeps_fills_and_photos(lossy: bool) -> None:
    encodings = [C.ENC_TIGHT, C.ENC_ZRLE, C.ENC_COPYRECT] + ([C.ENC_JPEG_QUALITY_0 + 8] if lossy else [])
    m = manager(*encodings)
    m.outer_compression = True
    rng = np.random.default_rng(3)
    frame = np.full((240, 320, 4), 230, np.uint8)
    # antialiased-text-like: dozens of greys in short runs
    frame[8:40, 8:300, :3] = (rng.random((32, 292, 1)) < 0.3) * rng.integers(0, 60, (32, 292, 1))
    frame[100:228, 40:296, :3] = rng.integers(0, 256, (128, 256, 3), dtype=np.uint8)  # photo-like
    update = m.encode(frame, [], [(0, 0, 320, 40), (0, 60, 320, 20), (40, 100, 256, 128)])
    found = headers(update)
    text = [h for h in found if h[1] < 40]
    assert text and {h[4] for h in text} == {C.ENC_TIGHT}
    for ctl, data in zip(tight_controls(update, 0, 40), [r for r, h in zip(update.rects, found) if h[1] < 40]):
        assert ctl & 0xF0 == 0x60 and data[13] == C.TIGHT_FILTER_PALETTE  # stream 2, the palette filter
        ncol = data[14] + 1
        body = data[15 + 3 * ncol:]
        start = 1 if body[0] < 0x80 else 2 if body[1] < 0x80 else 3  # after the compact length
        assert body[start + 2] & 0b110 == 0  # zlib's first block is stored (BTYPE 00)
    assert [h[4] for h in found if h[1] == 60] == [C.ENC_TIGHT]  # a fill
    assert {h[4] for h in found if h[1] >= 100} == {C.ENC_TIGHT}  # gradient/zlib or JPEG, never Raw
    assert all(ctl & 0xF0 != 0x60 for ctl in tight_controls(update, 100, 240))  # photos: no palette
    fb = np.zeros_like(frame)
    apply(update, fb, NATIVE, DecoderState())
    assert np.array_equal(fb[:40, :, :3], frame[:40, :, :3])
    assert np.array_equal(fb[60:80, :, :3], frame[60:80, :, :3])
    assert lossy or np.array_equal(fb[100:228, 40:296, :3], frame[100:228, 40:296, :3])
    m.set_encodings(encodings)  # renegotiation keeps the mode
    assert m.outer_compression


def test_outer_compression_keeps_a_colour_at_its_palette_index_across_rectangles() -> None:
    """The same glyph in the same colours gives the same index bytes, whatever else each rectangle holds."""
    m = manager(C.ENC_TIGHT, C.ENC_COPYRECT)
    m.outer_compression = True
    rng = np.random.default_rng(8)
    greys = np.arange(0, 200, 10, dtype=np.uint8)  # 20 antialiasing greys
    glyph = greys[rng.integers(0, 20, (14, 8))]
    frame = np.full((40, 200, 4), 255, np.uint8)
    frame[2:16, 4:12, :3] = glyph[..., None]
    frame[22:36, 4:12, :3] = glyph[..., None]
    frame[22:36, 100:180, :3] = rng.integers(200, 250, (14, 80, 1), dtype=np.uint8)  # other colours, many of them
    first = m.encode(frame, [], [(0, 0, 200, 20)])
    second = m.encode(frame, [], [(0, 20, 200, 20)])
    indices, stream = [], zlib.decompressobj()  # Tight's indexed stream runs on across rectangles
    for update in (first, second):
        data = update.rects[0]
        ncol = data[14] + 1
        body = data[15 + 3 * ncol:]
        start = 1 if body[0] < 0x80 else 2 if body[1] < 0x80 else 3
        raw = stream.decompress(body[start:])
        indices.append(np.frombuffer(raw, np.uint8).reshape(20, 200)[2:16, 4:12])
    assert np.array_equal(indices[0], indices[1])
    fb = np.zeros_like(frame)
    state = DecoderState()
    apply(first, fb, NATIVE, state)
    apply(second, fb, NATIVE, state)
    assert np.array_equal(fb[..., :3], frame[..., :3])


@pytest.mark.parametrize("encodings", [(C.ENC_ZRLE, C.ENC_COPYRECT), (C.ENC_TIGHT, C.ENC_ZRLE)])
def test_outer_compression_sends_raw_without_tight_or_beyond_its_palette(encodings: tuple[int, ...]) -> None:
    """A viewer without Tight, or more than 256 colours: Raw, whose pixels repeat for zstd."""
    m = manager(*encodings)
    m.outer_compression = True
    rng = np.random.default_rng(5)
    frame = np.full((64, 256, 4), 255, np.uint8)
    if C.ENC_TIGHT in encodings:  # 1024 greys-and-tints in short runs, but no photo
        frame[..., :3] = np.repeat(rng.integers(0, 1024, (64, 128)), 2, axis=1)[..., None].view(np.uint8)[..., :3]
    else:
        frame[..., :3] = (rng.random((64, 256, 1)) < 0.3) * rng.integers(0, 60, (64, 256, 1))
    update = m.encode(frame, [], [(0, 0, 256, 64)])
    assert {h[4] for h in headers(update)} == {C.ENC_RAW}


@pytest.mark.parametrize("colours, tight", [(2, False), (3, True), (PACKED_MAX_COLOURS, True)])
def test_outer_compression_packs_few_colours_in_zrle_tiles_with_zlib_storing(colours: int, tight: bool) -> None:
    """Text without antialiasing and flat dialogs: ZRLE's bit-packed tiles, left to the outer compressor."""
    m = manager(*[C.ENC_TIGHT] * tight, C.ENC_ZRLE, C.ENC_COPYRECT, C.ENC_COMPRESS_LEVEL_0 + 9)
    m.outer_compression = True
    rng = np.random.default_rng(colours)
    greys = np.linspace(0, 250, colours).astype(np.uint8)
    frame = np.zeros((96, 200, 4), np.uint8)
    glyphs = greys[rng.integers(0, colours, (12, 8))]  # one "word", repeated as text repeats
    frame[..., :3] = np.tile(glyphs, (8, 25))[..., None]
    update = m.encode(frame, [], [(0, 0, 200, 96)])
    assert {h[4] for h in headers(update)} == {C.ENC_ZRLE}
    payload = update.rects[0][16:]  # after the rectangle header and ZRLE's length
    # zlib's first deflate block is a stored one (BTYPE 00), whatever level the client asked for
    assert payload[2] & 0b110 == 0
    fb = np.zeros_like(frame)
    apply(update, fb, NATIVE, DecoderState())
    assert np.array_equal(fb[..., :3], frame[..., :3])
    plain = manager(C.ENC_ZRLE, C.ENC_COPYRECT, C.ENC_COMPRESS_LEVEL_0 + 9)  # no outer compressor
    sent = plain.encode(frame, [], [(0, 0, 200, 96)]).rects[0]
    assert headers(EncodedUpdate([sent]))[0][4] == C.ENC_ZRLE and sent[18] & 0b110 != 0  # zlib compresses


def test_outer_compression_sends_two_colours_as_stored_tight_mono_in_a_steady_order() -> None:
    """Two-colour text with Tight offered: 1-bit rows, stored, and a glyph's bits mean the same colour every time."""
    m = manager(C.ENC_TIGHT, C.ENC_ZRLE, C.ENC_COPYRECT, C.ENC_COMPRESS_LEVEL_0 + 9)
    m.outer_compression = True
    rng = np.random.default_rng(2)
    glyph = rng.random((12, 16)) < 0.4
    frame = np.full((24, 64, 4), 255, np.uint8)
    frame[:12, :16, :3][glyph] = 0  # a black glyph on white, in a mostly white band
    frame[12:, 16:, :3] = 0  # a mostly black band: Tight's own order (most frequent first) would flip
    frame[12:, :16] = frame[:12, :16]  # with the same glyph
    first, second = (m.encode(frame, [], [(0, y, 64, 12)]) for y in (0, 12))
    palettes = []
    for update in (first, second):
        data = update.rects[0]
        assert headers(update)[0][4] == C.ENC_TIGHT and data[12] & 0xF0 == 0x50 and data[14] == 1  # mono
        palettes.append(data[15:21])
        start = 21 + (1 if data[21] < 0x80 else 2)
        assert data[start + 2] & 0b110 == 0  # stored
    assert palettes[0] == palettes[1]
    fb = np.zeros_like(frame)
    state = DecoderState()
    apply(first, fb, NATIVE, state)
    apply(second, fb, NATIVE, state)
    assert np.array_equal(fb[..., :3], frame[..., :3])


def test_outer_compression_sends_raw_while_the_palette_churns() -> None:
    """More colours than Tight's palette, rectangle after rectangle: indices stop repeating, so Raw."""
    m = manager(C.ENC_TIGHT, C.ENC_ZRLE, C.ENC_COPYRECT)
    m.outer_compression = True
    rng = np.random.default_rng(6)
    frame = np.zeros((20 * 16, 64, 4), np.uint8)
    for band in range(20):  # each band 200 colours of its own, in runs of 4 (not photo-like)
        colours = rng.choice(1 << 24, 200, replace=False).astype(np.uint32)
        frame[band * 16:(band + 1) * 16] = np.repeat(colours[rng.integers(0, 200, (16, 16))], 4, axis=1) \
            .view(np.uint8).reshape(16, 64, 4)
    used = [headers(m.encode(frame, [], [(0, band * 16, 64, 16)]))[0][4] for band in range(20)]
    assert used[0] == C.ENC_TIGHT and used[-1] == C.ENC_RAW


@pytest.mark.parametrize("width, rows, colours", [(1024, 64, 20), (300, 30, 20), (200, 24, 2)])
def test_outer_compression_marks_the_stored_index_rows_as_matrices(width: int, rows: int, colours: int) -> None:
    """Each stored block holds whole rows of indices (or of mono bits), and ``matrices`` says where: the
    channel sends exactly those bytes in stripes. 1024x64 indices (65,536 bytes) need two blocks."""
    m = manager(C.ENC_TIGHT, C.ENC_COPYRECT)
    m.outer_compression = True
    rng = np.random.default_rng(width)
    greys = np.linspace(0, 250, colours).astype(np.uint8)
    frame = np.full((rows, width, 4), 255, np.uint8)
    frame[..., :3] = greys[rng.integers(0, colours, (rows, width))][..., None]
    update = m.encode(frame, [], [(0, 0, width, rows)])
    data = b"".join(update.rects)
    row = width if colours > 2 else (width + 7) // 8
    assert [w for _, w, _, _, _ in update.matrices] == [row] * len(update.matrices)
    assert sum(r for _, _, r, _, _ in update.matrices) == rows
    assert len(update.matrices) == -(-row * rows // 0xFFFF)
    stream = zlib.decompressobj()
    first = update.matrices[0][0]
    body = stream.decompress(data[first - 7:])  # the zlib header and the first block's header before it
    for offset, w, r, _, _ in update.matrices:  # the matrices are the inflated bytes, in order
        assert data[offset:offset + w * r] == body[:w * r]
        body = body[w * r:]
    assert body == b""
    fb = np.zeros_like(frame)
    apply(update, fb, NATIVE, DecoderState())
    assert np.array_equal(fb[..., :3], frame[..., :3])
    plain = manager(C.ENC_TIGHT, C.ENC_COPYRECT)  # no outer compressor: zlib compresses, no matrices
    assert plain.encode(frame, [], [(0, 0, width, rows)]).matrices == []


def test_matrices_follow_their_rectangles_through_an_update_and_the_rfb_server() -> None:
    from agent.rfb.client_messages import write_update_request
    from agent.rfb.server import NEED_DATA, RFBServer

    m = manager(C.ENC_TIGHT, C.ENC_COPYRECT)
    m.outer_compression = True
    rng = np.random.default_rng(4)
    frame = np.full((64, 256, 4), 255, np.uint8)
    frame[8:40, 8:250, :3] = (rng.random((32, 242, 1)) < 0.3) * rng.integers(0, 60, (32, 242, 1))
    update = m.encode(frame, [(0, 0, 0, 48, 64, 16)], [(0, 0, 128, 40), (128, 0, 128, 40)])
    assert len(update.matrices) == 2
    joined = b"".join(update.rects)
    server = RFBServer(256, 64, "matrices")
    server.receive_data(b"RFB 003.008\n\x01\x01")  # version, security None, ClientInit
    while server.next_event() is not NEED_DATA:
        pass
    server.receive_data(write_update_request(False, 0, 0, 256, 64))
    server.next_event()
    server.data_to_send()
    server.send_update(update.rects, update.matrices)
    sent, matrices = server.data_to_send_with_matrices()
    assert sent[4:] == joined and matrices == [(4 + o, *rest) for o, *rest in update.matrices]
    assert server.data_to_send_with_matrices() == (b"", [])


def test_outer_compression_lays_the_stripes_on_the_texts_character_cells() -> None:
    from tests.encode.test_text_cells import text

    m = manager(C.ENC_TIGHT, C.ENC_COPYRECT)
    m.outer_compression = True
    greys = np.array([255, 200, 150, 100, 50, 0], np.uint8)  # index 0, the background, is white
    frame = np.full((80, 400, 4), 255, np.uint8)
    frame[10:49, 37:37 + 40 * 9, :3] = greys[text(9, 40)][..., None]  # three lines; cells start at 37, 46, ...
    updates = [m.encode(frame, [], [(0, y, 400, 13)]) for y in (10, 23, 36)]  # line by line
    layouts = [{(stripe, first) for _, _, _, stripe, first in u.matrices} for u in updates]
    assert layouts == [{(8, 0)}, {(8, 0)}, {(9, 1)}]  # the third line agrees: cells at 37 = 1 + 4 * 9
    fb = np.zeros_like(frame)
    state = DecoderState()
    for update in updates:
        apply(update, fb, NATIVE, state)
    assert np.array_equal(fb[10:49, :, :3], frame[10:49, :, :3])

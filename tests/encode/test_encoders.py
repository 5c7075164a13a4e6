"""Encoders byte for byte against the spec on hand-made rectangles, and encode/decode round trips.

Layouts follow RFC 6143 (Raw, CopyRect, RRE, Hextile, ZRLE, Cursor) and the
rfbproto Tight section with TigerVNC's TightEncoder/TightDecoder.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from agent.capture.base import CursorShape
from agent.encode import (
    EncodeManager,
    HextileEncoder,
    RawEncoder,
    RectInput,
    RREEncoder,
    TightEncoder,
    TightJPEGEncoder,
    ZRLEEncoder,
    codec_for,
    compact_length,
)
from agent.encode.copyrect import copyrect_rect
from agent.encode.cursor import cursor_rect
from agent.rfb import constants as C
from agent.rfb.decode import (
    DecodeError,
    DecoderState,
    decode_cursor,
    decode_rect,
    quantize,
)
from agent.rfb.pixelformat import (
    BGR233,
    NATIVE,
    RGB565_BE,
    RGB565_LE,
    RGB888_BE,
    PixelFormat,
)
from agent.workloads.synthetic import SyntheticSource
from tests.support.pixel_formats import STANDARD

WHITE = (255, 255, 255)
BLACK = (0, 0, 0)


def image(h: int, w: int, colour: tuple[int, int, int] = WHITE) -> np.ndarray:
    """An (h, w, 4) BGRA image of one RGB colour."""
    out = np.zeros((h, w, 4), np.uint8)
    out[..., 2], out[..., 1], out[..., 0] = colour
    return out


def paint(img: np.ndarray, x: int, y: int, w: int, h: int, colour: tuple[int, int, int]) -> None:
    img[y:y + h, x:x + w, 2], img[y:y + h, x:x + w, 1], img[y:y + h, x:x + w, 0] = colour


def rect_input(img: np.ndarray, pf: PixelFormat = NATIVE, palette: list[tuple[int, int, int]] | None = None,
               runs: int = 1) -> RectInput:
    codec = codec_for(pf)
    pal = None
    if palette is not None:
        pal = codec.to_values(np.array([[(b, g, r, 0) for r, g, b in palette]], np.uint8))[0].copy()
    h, w = img.shape[:2]
    return RectInput(0, 0, w, h, codec.to_values(img), img, codec, pal, runs)


def decode_payload(encoding: int, payload: bytes, w: int, h: int, pf: PixelFormat = NATIVE,
                   state: DecoderState | None = None) -> np.ndarray:
    fb = np.zeros((h, w, 4), np.uint8)
    n = decode_rect(state or DecoderState(), encoding, memoryview(payload), 0, 0, w, h, fb, pf)
    assert n == len(payload)
    return fb


# --- Raw, CopyRect, RRE, cursor --------------------------------------------------

def test_raw_is_pixels_in_client_byte_order() -> None:
    img = image(1, 2, (0x11, 0x22, 0x33))
    assert RawEncoder().encode(rect_input(img)) == bytes([0x33, 0x22, 0x11, 0]) * 2
    assert RawEncoder().encode(rect_input(img, RGB888_BE)) == bytes([0, 0x11, 0x22, 0x33]) * 2


def test_copyrect_rectangle() -> None:
    data = copyrect_rect((1, 2, 30, 40, 5, 6), 100, 100)
    assert data == struct.pack(">HHHHiHH", 30, 40, 5, 6, C.ENC_COPYRECT, 1, 2)


def test_rre_layout() -> None:
    img = image(4, 4, WHITE)
    paint(img, 1, 1, 2, 2, BLACK)
    payload = RREEncoder().encode(rect_input(img, palette=[WHITE, BLACK]))
    assert payload == (b"\x00\x00\x00\x01" + b"\xff\xff\xff\x00" + b"\x00\x00\x00\x00"
                       + struct.pack(">HHHH", 1, 1, 2, 2))
    assert np.array_equal(decode_payload(C.ENC_RRE, payload, 4, 4), quantize(img, NATIVE))


def test_rre_gives_up_past_raw_size() -> None:
    img = np.random.default_rng(0).integers(0, 256, (8, 8, 4), dtype=np.uint8)
    assert RREEncoder().encode(rect_input(img)) is None


def test_cursor_layout_and_decode() -> None:
    px = image(2, 3, (0x11, 0x22, 0x33))
    px[..., 3] = [[255, 0, 255], [0, 255, 0]]
    data = cursor_rect(CursorShape(px, 1, 1, 7), codec_for(NATIVE))
    assert data[:12] == struct.pack(">HHHHi", 1, 1, 3, 2, C.ENC_CURSOR)
    assert data[12:12 + 24] == bytes([0x33, 0x22, 0x11, 0]) * 6
    assert data[36:] == bytes([0b10100000, 0b01000000])
    decoded = decode_cursor(memoryview(data)[12:], 3, 2, NATIVE)
    assert decoded is not None
    img, n = decoded
    assert n == len(data) - 12
    assert np.array_equal(img[..., 3], px[..., 3]) and np.array_equal(img[..., :3], px[..., :3])
    assert decode_cursor(memoryview(data)[12:-1], 3, 2, NATIVE) is None
    with pytest.raises(DecodeError):
        decode_cursor(memoryview(data)[12:], 3, 5000, NATIVE)


# --- Hextile --------------------------------------------------------------------

def test_hextile_two_colour_tile() -> None:
    img = image(16, 32, WHITE)
    paint(img, 2, 5, 4, 3, BLACK)
    paint(img, 10, 10, 1, 1, BLACK)
    paint(img, 16, 0, 16, 1, BLACK)  # second tile: same colours, another shape
    payload = HextileEncoder().encode(rect_input(img))
    tile1 = (bytes([2 | 4 | 8]) + b"\xff\xff\xff\x00" + b"\x00\x00\x00\x00"
             + bytes([2, (2 << 4) | 5, (3 << 4) | 2, (10 << 4) | 10, 0x00]))
    tile2 = bytes([8, 1, 0x00, (15 << 4) | 0])  # background and foreground carried over
    assert payload == tile1 + tile2
    assert np.array_equal(decode_payload(C.ENC_HEXTILE, payload, 32, 16), quantize(img, NATIVE))


def test_hextile_solid_tiles_send_background_once() -> None:
    img = image(16, 48, (1, 2, 3))
    payload = HextileEncoder().encode(rect_input(img, RGB565_BE))
    pixel = codec_for(RGB565_BE).pack(codec_for(RGB565_BE).to_values(img[:1, :1]))
    assert payload == bytes([2]) + pixel + b"\x00\x00"


def test_hextile_noisy_tile_goes_raw_and_background_is_resent() -> None:
    img = image(16, 32, WHITE)
    img[:, :16, :3] = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    payload = HextileEncoder().encode(rect_input(img, BGR233))
    assert payload[0] == 1 and len(payload) == 1 + 256 + 2
    assert payload[257] == 2  # the tile after a raw one specifies its background again
    assert np.array_equal(decode_payload(C.ENC_HEXTILE, payload, 32, 16, BGR233), quantize(img, BGR233))


# --- ZRLE -------------------------------------------------------------------------

def zrle_tiles(payload: bytes) -> bytes:
    (length,) = struct.unpack(">I", payload[:4])
    assert length == len(payload) - 4
    return zlib.decompressobj().decompress(payload[4:])


def test_zrle_solid_tile_uses_cpixel() -> None:
    img = image(64, 64, (0x11, 0x22, 0x33))
    assert zrle_tiles(ZRLEEncoder().encode(rect_input(img))) == bytes([1, 0x33, 0x22, 0x11])
    assert zrle_tiles(ZRLEEncoder().encode(rect_input(img, RGB888_BE))) == bytes([1, 0x11, 0x22, 0x33])
    assert zrle_tiles(ZRLEEncoder().encode(rect_input(img, RGB565_LE))) == bytes([1]) + codec_for(
        RGB565_LE).pack(codec_for(RGB565_LE).to_values(img[:1, :1]))


def test_zrle_packed_palette_two_colours() -> None:
    img = image(2, 16, WHITE)
    img[:, 1::2, :3] = 0
    tiles = zrle_tiles(ZRLEEncoder().encode(rect_input(img)))
    row = bytes([0b01010101, 0b01010101])
    assert tiles == bytes([2]) + b"\xff\xff\xff" + b"\x00\x00\x00" + row + row


def test_zrle_never_pads_packed_rows() -> None:
    """A 10-wide two-colour tile would need padded rows: palette RLE instead (vncdotool <= 1.4.2 ignores padding)."""
    img = image(2, 10, WHITE)
    img[:, 1::2, :3] = 0
    tiles = zrle_tiles(ZRLEEncoder().encode(rect_input(img)))
    assert tiles[0] == 128 + 2 and tiles[7:] == bytes([0, 1] * 10)


def test_zrle_plain_rle_with_long_runs() -> None:
    img = image(64, 64, (1, 1, 1))
    paint(img, 0, 32, 64, 31, (2, 2, 2))
    paint(img, 0, 63, 64, 1, (3, 3, 3))
    tiles = zrle_tiles(ZRLEEncoder().encode(rect_input(img)))
    run_2048 = bytes([255] * 8 + [7])  # 2048 - 1 = 8 * 255 + 7
    run_1984 = bytes([255] * 7 + [1983 - 7 * 255])
    run_64 = bytes([63])
    # 3 runs: plain RLE (27 bytes) beats palette RLE (30) and packed pixels
    assert tiles == bytes([128]) + b"\x01\x01\x01" + run_2048 + b"\x02\x02\x02" + run_1984 + b"\x03\x03\x03" + run_64


def test_zrle_palette_rle() -> None:
    img = image(64, 64)
    colours = [(k * 7, k * 5, 255 - k) for k in range(17)]
    for y in range(64):
        for x in range(0, 64, 4):
            paint(img, x, y, 4, 1, colours[(x // 4 + y) % 17])
    tiles = zrle_tiles(ZRLEEncoder().encode(rect_input(img)))
    expected = bytes([128 + 17]) + b"".join(bytes([b, g, r]) for r, g, b in colours)
    for y in range(64):
        for s in range(16):
            expected += bytes([((s + y) % 17) | 128, 3])  # a run of 4 is stored as 3
    assert tiles == expected


def test_zrle_stream_persists_across_rectangles() -> None:
    enc, state = ZRLEEncoder(), DecoderState()
    img = np.random.default_rng(2).integers(0, 256, (70, 90, 4), dtype=np.uint8)
    first = enc.encode(rect_input(img))
    second = enc.encode(rect_input(img))
    assert len(second) < len(first) // 4  # the second sees the first in zlib's window
    for payload in (first, second):
        assert np.array_equal(decode_payload(C.ENC_ZRLE, payload, 90, 70, state=state), quantize(img, NATIVE))


# --- Tight ------------------------------------------------------------------------

@pytest.mark.parametrize("n,expected", [
    (0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (16383, b"\xff\x7f"),
    (16384, b"\x80\x80\x01"), (4194303, b"\xff\xff\xff"),
])
def test_tight_compact_length(n: int, expected: bytes) -> None:
    assert compact_length(n) == expected


def test_tight_fill_uses_tpixel() -> None:
    img = image(5, 7, (0x11, 0x22, 0x33))
    assert TightEncoder().encode(rect_input(img, palette=[(0x11, 0x22, 0x33)])) == b"\x80\x11\x22\x33"
    assert TightEncoder().encode(rect_input(img, RGB888_BE, palette=[(0x11, 0x22, 0x33)])) == b"\x80\x11\x22\x33"
    red = image(2, 2, (255, 0, 0))
    assert TightEncoder().encode(rect_input(red, RGB565_LE, palette=[(255, 0, 0)])) == b"\x80\x00\xf8"


def test_tight_mono_small_is_sent_uncompressed() -> None:
    img = image(1, 8, WHITE)
    img[:, 1::2, :3] = 0
    payload = TightEncoder().encode(rect_input(img, palette=[WHITE, BLACK]))
    assert payload == bytes([0x50, 0x01, 0x01]) + b"\xff\xff\xff" + b"\x00\x00\x00" + bytes([0b01010101])


def test_tight_mono_compressed_on_stream_1() -> None:
    img = image(8, 32, WHITE)
    paint(img, 3, 2, 9, 4, BLACK)
    payload = TightEncoder().encode(rect_input(img, palette=[WHITE, BLACK]))
    assert payload[:3] == bytes([0x50, 0x01, 0x01])
    body = payload[3 + 6:]
    assert body[0] == len(body) - 1  # one-byte compact length
    bits = zlib.decompressobj().decompress(body[1:])
    row = lambda y: bytes([0b00011111, 0b11110000, 0, 0]) if 2 <= y < 6 else bytes(4)  # noqa: E731
    assert bits == b"".join(row(y) for y in range(8))


def test_tight_indexed_and_full_colour_layouts() -> None:
    img = image(4, 4, (10, 10, 10))
    paint(img, 0, 0, 1, 4, (20, 20, 20))
    paint(img, 3, 0, 1, 4, (30, 30, 30))
    rect = rect_input(img, palette=[(10, 10, 10), (20, 20, 20), (30, 30, 30)], runs=12)
    payload = TightEncoder().indexed(rect, rect.palette)
    assert payload[:3] == bytes([0x60, 0x01, 0x02])
    assert payload[3:12] == bytes([10] * 3 + [20] * 3 + [30] * 3)
    assert zlib.decompressobj().decompress(payload[13:]) == bytes([1, 0, 0, 2] * 4)
    small = image(1, 2, (1, 2, 3))
    assert TightEncoder().encode(rect_input(small)) == b"\x00" + b"\x01\x02\x03" * 2


def test_tight_big_palette_with_few_runs_sends_the_smaller_form() -> None:
    img = image(64, 40)
    for y in range(64):  # a vertical gradient: a new colour every row
        paint(img, 0, y, 40, 1, (y * 3, 255 - y, y))
    colours = [(y * 3, 255 - y, y) for y in range(64)]
    rect = rect_input(img, palette=colours, runs=64)
    chosen = TightEncoder().encode(rect)
    indexed, full = TightEncoder().indexed(rect, rect.palette), TightEncoder().full_colour(rect)
    assert chosen == min(indexed, full, key=len) and len(full) < len(indexed)
    assert np.array_equal(decode_payload(C.ENC_TIGHT, chosen, 40, 64), quantize(img, NATIVE))


def test_tight_new_compression_level_resets_the_stream() -> None:
    enc, state = TightEncoder(), DecoderState()
    img = np.random.default_rng(3).integers(0, 256, (16, 16, 4), dtype=np.uint8)
    rect = rect_input(img)
    first = enc.encode(rect)
    enc.set_compress_level(4)  # full colour moves from zlib level 2 to 3 (no gradient below 5)
    second = enc.encode(rect)
    third = enc.encode(rect)
    assert first[0] == 0x00 and third[0] & 0x0F == 0
    assert second[0] & 0x0F == 0x01  # stream 0 was reset with the new level
    for payload in (first, second, third):
        assert np.array_equal(decode_payload(C.ENC_TIGHT, payload, 16, 16, state=state), quantize(img, NATIVE))


def test_tight_jpeg_layout() -> None:
    img = image(32, 32, (200, 100, 50))
    payload = TightJPEGEncoder().encode(rect_input(img))
    assert payload[0] == 0x90
    length = payload[1] & 0x7F | (payload[2] << 7 if payload[1] & 0x80 else 0)
    start = 3 if payload[1] & 0x80 else 2
    assert len(payload) == start + length and payload[start:start + 2] == b"\xff\xd8"


def test_tight_rejects_wide_rectangles() -> None:
    from agent.encode import EncoderError
    img = image(1, 2049)
    with pytest.raises(EncoderError):
        TightEncoder().encode(rect_input(img))


# --- round trips on screen-like content ------------------------------------------

def screen(seed: int, h: int = 150, w: int = 260) -> np.ndarray:
    """Text-like strokes, a gradient, noise and solid areas (bands of the height), with random alpha."""
    rng = np.random.default_rng(seed)
    img = image(h, w, (236, 236, 236))
    b1, b2, b3 = h // 15, 2 * h // 5, 11 * h // 15
    img[b1:b2, w // 50:3 * w // 4, :3] = (rng.random((b2 - b1, 3 * w // 4 - w // 50, 1)) < 0.3) * np.array(
        [40, 30, 20], np.uint8)
    img[b2:b3, :, 0] = (np.arange(w) % 256).astype(np.uint8)[None, :]
    img[b2:b3, :, 1] = (np.arange(b3 - b2) * 5 % 256).astype(np.uint8)[:, None]
    img[b3:, w // 2:, :3] = rng.integers(0, 256, (h - b3, w - w // 2, 3), dtype=np.uint8)
    paint(img, w // 13, b3 + 2, w // 3, (h - b3) // 2, (0, 90, 200))
    img[..., 3] = rng.integers(0, 256, (h, w), dtype=np.uint8)
    return img


def apply(update_rects: list[bytes], fb: np.ndarray, pf: PixelFormat, state: DecoderState) -> None:
    for data in update_rects:
        x, y, w, h, enc = struct.unpack(">HHHHi", data[:12])
        assert decode_rect(state, enc, memoryview(data)[12:], x, y, w, h, fb, pf) == len(data) - 12


ENCODING_SETS = {
    "raw": [C.ENC_RAW], "rre": [C.ENC_RRE], "hextile": [C.ENC_HEXTILE], "zrle": [C.ENC_ZRLE],
    "tight": [C.ENC_TIGHT], "tight-level9": [C.ENC_TIGHT, C.ENC_COMPRESS_LEVEL_9],
    "tight-level0": [C.ENC_TIGHT, C.ENC_COMPRESS_LEVEL_0],
}


@pytest.mark.parametrize("pf", STANDARD, ids=["native", "bgr233", "rgb565le", "rgb565be", "rgb888be"])
@pytest.mark.parametrize("name", list(ENCODING_SETS))
def test_lossless_round_trip(pf: PixelFormat, name: str) -> None:
    manager, state = EncodeManager(), DecoderState()
    manager.set_pixel_format(pf)
    manager.set_encodings(ENCODING_SETS[name])
    frame = screen(7)
    fb = np.zeros_like(frame)
    apply(manager.encode(frame, [], [(0, 0, 260, 150)]).rects, fb, pf, state)
    frame[30:80, 40:90, :3] = 255 - frame[30:80, 40:90, :3]  # a second update on the same streams
    apply(manager.encode(frame, [], [(40, 30, 50, 50), (0, 140, 260, 10)]).rects, fb, pf, state)
    assert np.array_equal(fb, quantize(frame, pf))


@pytest.mark.parametrize("workload", ["typing", "video", "window-drag"])
@pytest.mark.parametrize("encodings", [[C.ENC_TIGHT], [C.ENC_ZRLE], [C.ENC_HEXTILE]], ids=["tight", "zrle", "hextile"])
def test_round_trip_synthetic_workloads(workload: str, encodings: list[int]) -> None:
    source = SyntheticSource(workload, 320, 200, 3)
    manager, state = EncodeManager(), DecoderState()
    manager.set_encodings(encodings)
    fb = np.zeros((200, 320, 4), np.uint8)
    for _ in range(3):
        frame = source.grab()
        rects = [r for r in source.truth.changed] + [r for r, _, _ in source.truth.moved]
        apply(manager.encode(frame, [], rects).rects, fb, NATIVE, state)
    assert np.array_equal(fb, quantize(frame, NATIVE))


def photo(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w, 4), np.uint8)
    img[..., 0] = 128 + 100 * np.sin(x / 17.0) * np.cos(y / 23.0)
    img[..., 1] = 128 + 90 * np.sin((x + y) / 31.0)
    img[..., 2] = 128 + 80 * np.cos(x / 41.0 - y / 13.0)
    noise = np.random.default_rng(5).integers(-6, 7, (h, w, 3))
    img[..., :3] = np.clip(img[..., :3].astype(np.int64) + noise, 0, 255)
    return img


@pytest.mark.parametrize("quality", [6, 7, 8, 9])
@pytest.mark.parametrize("pf", [NATIVE, RGB565_LE], ids=["native", "rgb565le"])
def test_jpeg_psnr(quality: int, pf: PixelFormat) -> None:
    manager, state = EncodeManager(), DecoderState()
    manager.set_pixel_format(pf)
    manager.set_encodings([C.ENC_TIGHT, C.ENC_JPEG_QUALITY_0 + quality])
    frame = photo(120, 200)
    update = manager.encode(frame, [], [(0, 0, 200, 120)])
    assert update.lossy == [(0, 0, 200, 120)]
    fb = np.zeros_like(frame)
    apply(update.rects, fb, pf, state)
    err = (fb[..., :3].astype(np.float64) - frame[..., :3]) ** 2
    psnr = 10 * np.log10(255 ** 2 / err.mean())
    assert psnr >= 35.0, psnr


# --- decoders: incremental input and malformed data --------------------------------

def payloads() -> list[tuple[int, bytes, int, int, PixelFormat]]:
    """(encoding, payload, w, h, pf) of a few real rectangles."""
    img = screen(11, 40, 70)
    out = []
    for pf in (NATIVE, RGB565_BE):
        manager = EncodeManager()
        manager.set_pixel_format(pf)
        for enc in (C.ENC_RAW, C.ENC_RRE, C.ENC_HEXTILE, C.ENC_ZRLE, C.ENC_TIGHT):
            manager.set_encodings([enc])
            for data in manager.encode(img, [], [(0, 0, 70, 40)]).rects:
                x, y, w, h, e = struct.unpack(">HHHHi", data[:12])
                if e == enc and (x, y) == (0, 0):
                    out.append((enc, data[12:], w, h, pf))
                    break
    return out


def test_decoders_take_input_whole_byte_by_byte_and_with_trailing_bytes() -> None:
    for enc, payload, w, h, pf in payloads():
        whole = decode_payload(enc, payload, w, h, pf)
        fb = np.zeros((h, w, 4), np.uint8)
        state = DecoderState()
        for cut in range(len(payload)):
            assert decode_rect(state, enc, memoryview(payload[:cut]), 0, 0, w, h, fb, pf) is None
        assert not fb.any()  # nothing written while incomplete
        assert decode_rect(state, enc, memoryview(payload + b"junk"), 0, 0, w, h, fb, pf) == len(payload)
        assert np.array_equal(fb, whole)


def decode_bytes(enc: int, payload: bytes, w: int = 8, h: int = 8, pf: PixelFormat = NATIVE,
                 fb_size: tuple[int, int] = (8, 8)) -> int | None:
    fb = np.zeros((fb_size[1], fb_size[0], 4), np.uint8)
    return decode_rect(DecoderState(), enc, memoryview(payload), 0, 0, w, h, fb, pf)


def zlib_sync(data: bytes) -> bytes:
    z = zlib.compressobj()
    return z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH)


@pytest.mark.parametrize("enc,payload,w,h", [
    (C.ENC_TIGHT, b"\xa0", 8, 8),  # compression type 0xA (TightPNG) is not Tight
    (C.ENC_TIGHT, b"\x40\x03", 8, 8),  # filter 3 does not exist
    (C.ENC_TIGHT, b"\x60\x01\x02" + b"\x00" * 9 + bytes([1, 2, 5, 0]), 2, 2),  # index 5 of 3 colours
    (C.ENC_TIGHT, b"\x50\x01\x00" + b"\x00" * 3 + b"\x80\x00", 2, 2),  # bit 1 with a 1-colour palette
    (C.ENC_TIGHT, b"\x00" + compact_length(len(zlib_sync(bytes(12)))) + zlib_sync(bytes(12)), 8, 8),  # too short
    (C.ENC_TIGHT, b"\x00\x7f" + b"\x01" * 127, 8, 8),  # not zlib at all
    (C.ENC_TIGHT, b"\x90\x05" + b"\xff\xd8xyz", 8, 8),  # not a JPEG
    (C.ENC_ZRLE, b"\xff\xff\xff\xff", 8, 8),  # absurd compressed length
    (C.ENC_ZRLE, struct.pack(">I", 6) + b"garbag", 8, 8),
    (C.ENC_ZRLE, b"", 8, 8),  # replaced below: subencoding 17
    (C.ENC_RRE, b"\x00\x01\x00\x00" + b"\x00" * 4, 8, 8),  # 65536 subrects in 64 pixels
    (C.ENC_RRE, b"\x00\x00\x00\x01" + b"\x00" * 8 + struct.pack(">HHHH", 4, 4, 5, 1), 8, 8),
    (C.ENC_HEXTILE, b"\x08\x01\x00\x00", 8, 8),  # subrects before any background
    (C.ENC_HEXTILE, b"\x0e" + b"\x00" * 8 + b"\x01\x70\x11", 8, 8),  # subrect past the 8x8 tile
    (C.ENC_HEXTILE, b"\x20", 8, 8),  # zlibhex bits in plain Hextile
    (C.ENC_COPYRECT, b"\x00\x05\x00\x05", 8, 8),  # source past the framebuffer
    (99, b"\x00" * 64, 8, 8),  # an encoding nobody decodes
])
def test_malformed_rectangles_raise_decode_error(enc: int, payload: bytes, w: int, h: int) -> None:
    if enc == C.ENC_ZRLE and not payload:
        data = zlib_sync(bytes([17]) + b"\x00" * 64)
        payload = struct.pack(">I", len(data)) + data
    with pytest.raises(DecodeError):
        decode_bytes(enc, payload, w, h)


def test_zrle_content_errors() -> None:
    for tiles in (bytes([3]) + b"\x00" * 9 + bytes([0b11000000] + [0] * 7),  # index 3 of a 3-colour palette
                  bytes([128]) + b"\x00\x00\x00" + bytes([255, 255]),  # run past the 64-pixel tile
                  bytes([0]) + b"\x00" * 10,  # raw tile cut short inside the zlib data
                  bytes([129])):  # unused subencoding
        data = zlib_sync(tiles)
        with pytest.raises(DecodeError):
            decode_bytes(C.ENC_ZRLE, struct.pack(">I", len(data)) + data)
    data = zlib_sync(bytes([1, 0, 0, 0]) + bytes(100000))  # far more than an 8x8 rectangle holds
    with pytest.raises(DecodeError):
        decode_bytes(C.ENC_ZRLE, struct.pack(">I", len(data)) + data)
    with pytest.raises(DecodeError):  # an empty rectangle holds nothing at all
        decode_bytes(C.ENC_ZRLE, struct.pack(">I", len(data)) + data, 0, 0)
    empty = zlib_sync(b"")
    assert decode_bytes(C.ENC_ZRLE, struct.pack(">I", len(empty)) + empty, 0, 5) == 4 + len(empty)


def test_geometry_and_format_errors() -> None:
    with pytest.raises(DecodeError):
        decode_bytes(C.ENC_RAW, b"\x00" * 400, 10, 10)  # 10x10 in an 8x8 framebuffer
    with pytest.raises(DecodeError):
        decode_bytes(C.ENC_TIGHT, b"\x00", 2049, 1, fb_size=(3000, 1))
    with pytest.raises(DecodeError):
        decode_bytes(C.ENC_TIGHT, b"\x48\x02", 2, 2, pf=BGR233)  # gradient needs 16 or 32 bpp
    with pytest.raises(DecodeError):
        decode_bytes(C.ENC_RAW, b"", 1, 1, pf=PixelFormat(24, 24, False, True, 255, 255, 255, 16, 8, 0))


def test_tight_reset_bits_and_gradient_decode() -> None:
    state = DecoderState()
    yy, xx = np.mgrid[0:16, 0:16]
    img = np.stack([xx * 3 + yy * 5, xx * 7 + 2 * yy, 200 - xx - yy * 4, xx], -1).astype(np.uint8)
    codec = codec_for(NATIVE)
    values = codec.to_values(img)
    enc = TightEncoder()
    enc.set_compress_level(9)  # levels 8-9 try the gradient filter, which wins on a linear ramp
    payload = enc.encode(RectInput(0, 0, 16, 16, values, img, codec, None, 256))
    assert payload[:2] == bytes([0x70, 0x02])  # stream 3, explicit filter, gradient
    assert np.array_equal(decode_payload(C.ENC_TIGHT, payload, 16, 16, state=state), quantize(img, NATIVE))
    # a reset bit makes the decoder drop stream 3's history: the next rect only decodes with a fresh stream
    again = enc.encode(RectInput(0, 0, 16, 16, values, img, codec, None, 256))
    with pytest.raises(DecodeError):
        decode_payload(C.ENC_TIGHT, bytes([again[0] | 0x08]) + again[1:], 16, 16, state=state)


def test_zrle_decodes_in_vncdotool() -> None:
    """An independent decoder (vncdotool's ZRLE handler, driven in-process) shows the same pixels."""
    rfb = pytest.importorskip("vncdotool.rfb")

    class Client:  # the few attributes the handler touches
        bypp = 4

        def __init__(self, w: int, h: int) -> None:
            self._zlib_stream = zlib.decompressobj()
            self.img = np.zeros((h, w, 4), np.uint8)

        def updateRectangle(self, x: int, y: int, w: int, h: int, data: bytes) -> None:
            self.img[y:y + h, x:x + w] = np.frombuffer(data, np.uint8).reshape(h, w, 4)

        def fillRectangle(self, x: int, y: int, w: int, h: int, colour: bytes) -> None:
            self.img[y:y + h, x:x + w] = np.frombuffer(colour, np.uint8)[:4]

        def _doConnection(self) -> None:
            pass

    rng = np.random.default_rng(8)
    source = SyntheticSource("window-drag", 333, 211, 1)
    frames = [source.grab().copy() for _ in range(2)]
    for ncol in (2, 4, 11):  # 1-, 2- and 4-bit packed palettes, in 13-pixel-wide edge tiles
        colours = rng.integers(0, 256, (ncol, 4), dtype=np.uint8)
        frames.append(colours[rng.integers(0, ncol, (211, 333))])
    manager = EncodeManager()
    manager.set_encodings([C.ENC_ZRLE])
    client = Client(333, 211)
    for frame in frames:
        for data in manager.encode(frame, [], [(0, 0, 333, 211)]).rects:
            x, y, w, h, enc = struct.unpack(">HHHHi", data[:12])
            assert enc == C.ENC_ZRLE
            rfb.RFBClient._handleDecodeZRLEdata(client, data[16:], x, y, w, h)
        assert np.array_equal(client.img[..., :3], frame[..., :3])

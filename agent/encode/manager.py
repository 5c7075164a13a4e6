"""The chooser: one per connection, it encodes updates with what the viewer offered.

Modelled on TigerVNC's EncodeManager.cxx. Every rectangle is converted to the
client's pixel values once, large solid areas are cut out and sent as fills,
the rest is split to the RFB/Tight limits, and each piece is analysed (solid,
two colours, indexed, full colour; runs; photo-like) and that kind mapped to
an encoder from the viewer's preferences, with fallbacks. Encoders keep the
per-connection zlib streams; this class keeps the choice, the JPEG settings,
the lossy region and the statistics.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Sequence

import numpy as np

from agent._native import analyze as _analyze
from agent.encode.base import Encoder, EncoderError, RectInput
from agent.encode.copyrect import NAME as COPYRECT_NAME
from agent.encode.copyrect import copyrect_rect
from agent.encode.cursor import cursor_rect
from agent.encode.hextile import HextileEncoder
from agent.encode.jpeg import TightJPEGEncoder
from agent.encode.lossy import LossyRegion
from agent.encode.raw import RawEncoder
from agent.encode.rre import RREEncoder
from agent.encode.tight import TightEncoder
from agent.encode.zrle import ZRLEEncoder
from agent.models import (
    Copy,
    CursorShape,
    Matrix,
    Rect,
    shift_matrices,
    split_rect,
)
from agent.rfb import constants as C
from agent.rfb.server_messages import write_rect_header
from agent.rfb.pixelformat import NATIVE, PixelFormat
from agent.rfb.pixels import codec_for

# --- tuning -----------------------------------------------------------------
# Solid-area search (TigerVNC findSolidRect): block size, smallest area worth a
# fill of its own, smallest rectangle worth searching, most areas per rectangle.
SOLID_SEARCH_BLOCK = 16
SOLID_BLOCK_MIN_AREA = 2048
SOLID_SEARCH_MIN_AREA = 4096
SOLID_MAX_AREAS = 48
# Palettes are analysed up to Tight's limit, but a palette is only worth
# sending when it is small next to the rectangle: at most area / divisor
# colours, divisor = PALETTE_DIVISOR_PER_LEVEL x compression level (at least
# PALETTE_MIN_DIVISOR). TigerVNC's rule, inherited from the Tight encoder.
ANALYSE_MAX_COLOURS = 256
PALETTE_DIVISOR_PER_LEVEL = 8
PALETTE_MIN_DIVISOR = 4
PALETTE_DEFAULT_LEVEL = 2
# With JPEG on offer, more colours than this make a rectangle "full colour"
# (TigerVNC: 96, or 24 at compression levels 0-1).
JPEG_MAX_COLOURS = 96
JPEG_MAX_COLOURS_FAST = 24
# Photo-like = full colour, at least this big, and busy: no more than this
# many pixels per run of equal pixels. Text over gradients has 100-200 colours
# but a run every 3-8 pixels, and JPEG loses to lossless there; video and
# photos change almost every pixel (measured on the synthetic workloads).
# Below the size limits a JPEG's ~600 bytes of tables and its 8x8 blocks cost
# more than lossless data that zlib's history often already holds.
JPEG_MIN_AREA = 2048
JPEG_MIN_SIDE = 8
PHOTO_MAX_PIXELS_PER_RUN = 2
# Below the channel's zstd, rectangles of at most this many colours go ZRLE with zlib storing: its
# tiles pack 1 or 2 bits a pixel, and those bits recur for zstd as Raw's pixels do, at a 16th to a
# 32nd of the bytes. (Two colours go Tight's 1-bit rows instead when the viewer offered Tight.)
# ``python benchmarks/bench_encode.py --text``, a ZRLE viewer: paging a two-colour terminal 0.32x
# Raw's bytes at a quarter of the CPU, flat dialogs 0.46x; antialiased text 0.99x, hence the limit.
PACKED_MAX_COLOURS = 4
# Up to Tight's 256 colours (antialiased text), Tight's palette filter with stored zlib and indices
# that keep their colour from rectangle to rectangle (encode/stable_palette.py) beats Raw below zstd:
# 22 captured pages of xterm text in less, 0.78x Raw's bytes, and zstd compresses a quarter of the
# bytes. On every rectangle, however small: Raw for small ones only (echoes) cost the link
# benchmark's typing 5.2 kB instead of 3.9, as the glyphs they repeat were sent as indices. (Raw
# everywhere: 3.5 kB; a Tight rectangle carries zlib's stored-block framing.)
# RLE-based encoders (RRE) are picked when runs cut the pixel count this much.
RLE_MIN_PIXELS_PER_RUN = 4
# Split geometry: tile-aligned pieces when a rectangle must be cut.
# ---------------------------------------------------------------------------

_OFFERABLE = (C.ENC_RAW, C.ENC_COPYRECT, C.ENC_RRE, C.ENC_HEXTILE, C.ENC_TIGHT, C.ENC_ZRLE)
_PIXEL_ENCODINGS = (C.ENC_RAW, C.ENC_RRE, C.ENC_HEXTILE, C.ENC_TIGHT, C.ENC_ZRLE)


class Kind(IntEnum):
    """What a rectangle looks like, as far as choosing an encoder goes."""

    SOLID = 0
    BITMAP = 1
    BITMAP_RLE = 2
    INDEXED = 3
    INDEXED_RLE = 4
    FULL = 5


@dataclass
class EncodedUpdate:
    rects: list[bytes] = field(default_factory=list)
    """Complete RFB rectangles (12-byte header + payload), in send order."""
    nbytes: int = 0
    lossy: list[Rect] = field(default_factory=list)
    """Rectangles sent lossy (JPEG) in this update."""
    matrices: list[Matrix] = field(default_factory=list)
    """Byte matrices in the rectangles joined, in order (Encoder.matrices)."""

    def _add(self, data: bytes, matrices: Sequence[Matrix] = ()) -> None:
        """``data`` and where its ``matrices`` are (offsets in ``data``)."""
        self.matrices += shift_matrices(matrices, self.nbytes)
        self.rects.append(data)
        self.nbytes += len(data)


class EncodeManager:
    """Per-connection encoder state (persistent zlib streams, JPEG settings, statistics)."""

    def __init__(self) -> None:
        self._pf = NATIVE
        self._codec = codec_for(NATIVE)
        self._offered: set[int] = {C.ENC_RAW}
        self._preferred = C.ENC_RAW
        self._quality: int | None = None
        self._compress: int | None = None
        self.quality_cap: int | None = None
        """An upper bound on the JPEG quality level (0..9) for bandwidth adaptation; None = the client's."""
        self._outer_compression = False
        self._raw = RawEncoder()
        self._rre = RREEncoder()
        self._hextile = HextileEncoder()
        self._zrle = ZRLEEncoder()
        self._tight = TightEncoder()
        self._jpeg = TightJPEGEncoder()
        self._active: list[Encoder] = [self._raw] * len(Kind)
        self._photo: Encoder | None = None
        self._photo_full: Encoder = self._raw
        self._packed: Encoder | None = None  # ZRLE storing, for few colours below an outer compressor
        self._indexed_below: Encoder | None = None  # Tight with a stable palette, below an outer compressor
        self._lossy = LossyRegion()
        self._fb_size: tuple[int, int] | None = None
        self._palette = np.empty(ANALYSE_MAX_COLOURS, np.uint32)
        self._counts = np.empty(ANALYSE_MAX_COLOURS, np.uint32)
        self._solids = np.empty((SOLID_MAX_AREAS, 4), np.int32)
        self._rest = np.empty((4 * SOLID_MAX_AREAS + 4, 4), np.int32)
        self.stats: dict[str, Any] = {}
        """Per encoder name: {"rects", "pixels", "bytes", "seconds"}."""
        self._prepare()

    # --- negotiation ----------------------------------------------------

    def set_pixel_format(self, pf: PixelFormat) -> None:
        self._codec = codec_for(pf)  # validates
        self._pf = pf
        self._prepare()

    def set_encodings(self, encodings: Sequence[int]) -> None:
        offered: list[int] = []
        quality = compress = None
        for enc in encodings:
            if enc in _OFFERABLE and enc not in offered:
                offered.append(enc)
            elif C.ENC_JPEG_QUALITY_0 <= enc <= C.ENC_JPEG_QUALITY_9:
                quality = enc - C.ENC_JPEG_QUALITY_0
            elif C.ENC_COMPRESS_LEVEL_0 <= enc <= C.ENC_COMPRESS_LEVEL_9:
                compress = enc - C.ENC_COMPRESS_LEVEL_0
        self._offered = set(offered) | {C.ENC_RAW}
        self._preferred = next((e for e in offered if e in _PIXEL_ENCODINGS), C.ENC_RAW)
        self._quality = quality
        self._compress = compress
        for enc in (self._tight, self._zrle):
            enc.set_compress_level(compress)
        self._prepare()

    @property
    def outer_compression(self) -> bool:
        """Whether the bytes are compressed again below RFB (the secure channel's long-window zstd).

        Then zlib inside RFB only hides repetition from the outer compressor: a glyph, a word, a line
        of a page seen a minute ago. Every rectangle that is not a fill, a photo or a photo-like
        full-colour area goes Raw, whose pixels repeat byte for byte wherever the screen does; except
        areas of a few colours (text without antialiasing, flat dialogs), which go ZRLE with zlib
        storing (PACKED_MAX_COLOURS), and, when the viewer offered Tight, areas of up to 256 colours
        (antialiased text), which go Tight with a stable palette and zlib storing.
        """
        return self._outer_compression

    @outer_compression.setter
    def outer_compression(self, value: bool) -> None:
        self._outer_compression = value
        if value:
            self._zrle.store_only()
        self._tight.below_compressor(value)
        self._prepare()

    def _prepare(self) -> None:
        """Map each kind of rectangle to an encoder (TigerVNC prepareEncoders)."""
        o, pref = self._offered, self._preferred
        raw = self._raw
        tight = self._tight if C.ENC_TIGHT in o else None
        zrle = self._zrle if C.ENC_ZRLE in o else None
        hextile = self._hextile if C.ENC_HEXTILE in o else None
        rre = self._rre if C.ENC_RRE in o else None
        solid: Encoder = raw
        bitmap: Encoder = raw
        bitmap_rle: Encoder = raw
        indexed: Encoder = raw
        indexed_rle: Encoder = raw
        full: Encoder = raw
        if pref == C.ENC_RRE:
            bitmap_rle = indexed_rle = self._rre
        elif pref == C.ENC_HEXTILE:
            bitmap_rle = indexed_rle = full = self._hextile
        elif pref == C.ENC_TIGHT:
            bitmap = bitmap_rle = indexed = indexed_rle = full = self._tight
        elif pref == C.ENC_ZRLE:
            bitmap = bitmap_rle = indexed = indexed_rle = full = self._zrle
        jpeg_ok = tight is not None and self._quality is not None and self._pf.bits_per_pixel >= 16
        self._photo = self._jpeg if jpeg_ok and (pref == C.ENC_TIGHT or full is raw) else None
        if full is raw:
            full = zrle or tight or hextile or raw
        if indexed is raw:
            indexed = zrle or tight or hextile or raw
        if indexed_rle is raw:
            indexed_rle = indexed
        if bitmap is raw:
            bitmap = indexed
        if bitmap_rle is raw:
            bitmap_rle = bitmap
        if solid is raw:
            solid = tight or rre or zrle or hextile or raw
        self._photo_full = full
        # below an outer compressor: ZRLE with stored zlib for few colours (see outer_compression)
        self._packed = zrle if self._outer_compression and zrle is not None and zrle.stored else None
        # and Tight's palette filter, storing, with stable indices, for up to 256 colours
        indexes = tight is not None and self._pf.bits_per_pixel > 8
        self._indexed_below = tight if self._outer_compression and indexes else None
        if self._outer_compression:
            bitmap = bitmap_rle = indexed = indexed_rle = full = raw
        self._active = [solid, bitmap, bitmap_rle, indexed, indexed_rle, full]

    # --- update encoding ------------------------------------------------

    def encode(self, frame: np.ndarray, copies: Sequence[Copy], rects: Sequence[Rect], *,
               lossy_allowed: bool = True) -> EncodedUpdate:
        """Encode one update: copies first (as CopyRect), then each changed rectangle."""
        if frame.ndim != 3 or frame.shape[2] != 4 or frame.dtype != np.uint8:
            raise EncoderError("frame must be an (H, W, 4) uint8 BGRA array")
        height, width = frame.shape[:2]
        if width > 0xFFFF or height > 0xFFFF:
            raise EncoderError(f"a {width}x{height} frame exceeds RFB's 65535-pixel sides")
        if self._fb_size != (width, height):
            self._lossy.clear()
            self._fb_size = (width, height)
        update = EncodedUpdate()
        if copies and C.ENC_COPYRECT not in self._offered:
            raise EncoderError("the client did not offer CopyRect; send the copied areas as changed pixels")
        for copy in copies:
            t0 = time.perf_counter()
            data = copyrect_rect(copy, width, height)
            update._add(data)
            self._lossy.copy(copy)
            self._count(COPYRECT_NAME, copy[4] * copy[5], len(data), time.perf_counter() - t0)
        quality = self._quality
        if quality is not None and self.quality_cap is not None:
            quality = max(0, min(quality, self.quality_cap))
        if quality is not None:
            self._jpeg.quality_level = quality
        photo = self._photo if lossy_allowed else None
        for rect in rects:
            x, y, w, h = rect
            if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > width or y + h > height:
                raise EncoderError(f"rectangle {tuple(rect)} is empty or outside the {width}x{height} frame")
            self._encode_rect(update, frame, x, y, w, h, photo)
        return update

    def _encode_rect(self, update: EncodedUpdate, frame: np.ndarray, x: int, y: int, w: int, h: int,
                     photo: Encoder | None) -> None:
        start = time.perf_counter()
        values = self._codec.to_values(frame[y:y + h, x:x + w])
        pieces: list[Rect] = [(0, 0, w, h)]
        solids: list[Rect] = []
        if w * h >= SOLID_SEARCH_MIN_AREA and self._active[Kind.SOLID] is not self._raw:
            nsolid, nrest = _analyze.find_solid_areas(values, SOLID_SEARCH_BLOCK, SOLID_BLOCK_MIN_AREA,
                                                      self._solids, self._rest)
            if nsolid:
                solids = [tuple(r) for r in self._solids[:nsolid].tolist()]
                pieces = [tuple(r) for r in self._rest[:nrest].tolist()]
        # conversion and the solid search are charged to the pieces by area
        per_pixel = (time.perf_counter() - start) / (w * h)
        for sx, sy, sw, sh in solids:
            colour = values[sy:sy + 1, sx:sx + 1].copy().reshape(1)
            for px, py, pw, ph in split_rect(sx, sy, sw, sh):
                self._write(update, frame, values, x, y, (px, py, pw, ph), colour, 1, None,
                            time.perf_counter() - per_pixel * pw * ph)
        for rx, ry, rw, rh in pieces:
            for px, py, pw, ph in split_rect(rx, ry, rw, rh):
                t0 = time.perf_counter() - per_pixel * pw * ph
                sub = values[py:py + ph, px:px + pw]
                ncol, runs = _analyze.analyze(sub, ANALYSE_MAX_COLOURS, self._palette, self._counts)
                palette = None
                if ncol <= ANALYSE_MAX_COLOURS:
                    if self._indexed_below is not None:  # the stable palette orders it: no sort (used at once)
                        palette = self._palette[:ncol]
                    else:  # most frequent first: RRE's background
                        order = np.argsort(self._counts[:ncol], kind="stable")[::-1]
                        palette = np.ascontiguousarray(self._palette[:ncol][order])
                self._write(update, frame, values, x, y, (px, py, pw, ph), palette, runs, photo, t0)

    def _choose(self, palette: np.ndarray | None, runs: int, w: int, h: int,
                photo: Encoder | None) -> tuple[Kind, Encoder]:
        area = w * h
        ncol = ANALYSE_MAX_COLOURS + 1 if palette is None else len(palette)
        use_rle = runs * RLE_MIN_PIXELS_PER_RUN <= area
        level = PALETTE_DEFAULT_LEVEL if self._compress is None else self._compress
        max_colours = max(2, area // max(PALETTE_MIN_DIVISOR, level * PALETTE_DIVISOR_PER_LEVEL))
        if photo is not None:
            limit = JPEG_MAX_COLOURS_FAST if (self._compress is not None and self._compress < 2) else JPEG_MAX_COLOURS
            big = area >= JPEG_MIN_AREA and min(w, h) >= JPEG_MIN_SIDE
            if ncol > limit and big and runs * PHOTO_MAX_PIXELS_PER_RUN >= area:
                return Kind.FULL, photo
        if self._outer_compression and palette is None and runs * PHOTO_MAX_PIXELS_PER_RUN >= area:
            return Kind.FULL, self._photo_full  # lossless photo: the gradient filter beats the outer compressor
        stable = self._indexed_below if palette is not None else None
        if stable is not None and ncol == 2:
            return Kind.BITMAP, stable  # Tight's 1-bit rows: 0.93x ZRLE's tiles on two-colour text
        if self._packed is not None and 2 <= ncol <= PACKED_MAX_COLOURS:
            return (Kind.BITMAP if ncol == 2 else Kind.INDEXED), self._packed
        if stable is not None and ncol > 2:
            return Kind.INDEXED, stable
        if ncol == 1:
            kind = Kind.SOLID
        elif ncol == 2:
            kind = Kind.BITMAP_RLE if use_rle else Kind.BITMAP
        elif ncol <= min(max_colours, ANALYSE_MAX_COLOURS):
            kind = Kind.INDEXED_RLE if use_rle else Kind.INDEXED
        else:
            kind = Kind.FULL
        return kind, self._active[kind]

    def _write(self, update: EncodedUpdate, frame: np.ndarray, values: np.ndarray, ox: int, oy: int,
               piece: Rect, palette: np.ndarray | None, runs: int, photo: Encoder | None, t0: float) -> None:
        """Encode ``piece`` (relative to the rectangle at (ox, oy)) and append it to ``update``.

        ``t0`` is when work on this piece counts as started, for the statistics.
        """
        px, py, pw, ph = piece
        ax, ay = ox + px, oy + py
        rect = RectInput(ax, ay, pw, ph, values[py:py + ph, px:px + pw], frame[ay:ay + ph, ax:ax + pw],
                         self._codec, palette, runs)
        kind, encoder = self._choose(palette, runs, pw, ph, photo)
        if kind == Kind.FULL:
            rect.palette = None  # too many colours for a palette to pay
        payload = encoder.encode(rect)
        if payload is None:  # an RLE encoder lost against Raw: try the plain one for this kind
            fallback = self._active[kind - 1] if kind in (Kind.BITMAP_RLE, Kind.INDEXED_RLE) else self._raw
            encoder = fallback if fallback is not encoder else self._raw
            payload = encoder.encode(rect)
            if payload is None:
                encoder = self._raw
                payload = self._raw.encode(rect)
        header = write_rect_header(ax, ay, pw, ph, encoder.encoding)
        data = header + payload
        update._add(data, shift_matrices(encoder.matrices, len(header)))
        if encoder.lossy:
            self._lossy.add((ax, ay, pw, ph))
            update.lossy.append((ax, ay, pw, ph))
        else:
            self._lossy.subtract((ax, ay, pw, ph))
        self._count(encoder.name, pw * ph, len(data), time.perf_counter() - t0)

    def _count(self, name: str, pixels: int, nbytes: int, seconds: float) -> None:
        s = self.stats.get(name)
        if s is None:
            s = self.stats[name] = {"rects": 0, "pixels": 0, "bytes": 0, "seconds": 0.0}
        s["rects"] += 1
        s["pixels"] += pixels
        s["bytes"] += nbytes
        s["seconds"] += seconds

    # --- the rest of the contract ---------------------------------------

    def lossy_region(self) -> list[Rect]:
        """Areas the viewer currently sees with lossy (JPEG) pixels."""
        return self._lossy.rects()

    @property
    def has_lossy(self) -> bool:
        """Whether the viewer sees lossy pixels anywhere (asked several times an update: no list built)."""
        return bool(self._lossy)

    def encode_cursor(self, cursor: CursorShape) -> bytes:
        """One complete Cursor pseudo-rectangle (-239) in the client's pixel format."""
        return cursor_rect(cursor, self._codec)

"""Tight encoding, lossless part: fill, mono and indexed palettes, full colour, gradient.

Byte layout (rfbproto "Tight", TigerVNC TightEncoder/TightDecoder): a
compression-control byte whose low 4 bits reset zlib streams 0..3 and whose
high 4 bits say 0x8 fill, 0x9 JPEG, or basic compression (bits 4-5 the
stream, bit 6 "a filter byte follows"). Basic data shorter than 12 bytes is
sent as is; longer data is zlib-compressed on its stream (sync-flushed) and
prefixed with a 1-3 byte compact length. Pixels are TPIXELs: R, G, B bytes
when the format is 32 bpp, depth 24, all maxes 255; plain PIXELs otherwise.

Streams: 0 full colour, 1 mono, 2 indexed, 3 gradient (as TigerVNC for
0..2). Python's zlib cannot change a stream's level, so a new compression
level starts a new stream and that stream's reset bit goes out with its
next rectangle: exactly what the reset bits are for.

Below an outer compressor (the secure channel's zstd, ``below_compressor``)
palette data is stored, not deflated, and indexed rectangles share one
StablePalette, so the outer compressor's long window sees a glyph's indices
repeat as it would see Raw's pixels, at a quarter of the bytes. The stored
blocks are written here, each holding whole rows, and ``matrices`` says where
they are: the channel sends them in stripes (agent.secure.stripes), laid on
the text's character cells (agent.encode.text_cells), which the viewer's end
puts back in rows before the client sees them.
"""
from __future__ import annotations

import struct
import zlib
from typing import Any

import numpy as np

from agent._native import analyze as _analyze
from agent._native import tight as _tight
from agent.encode.base import Encoder, EncoderError, RectInput
from agent.encode.stable_palette import StablePalette
from agent.encode.text_cells import CellGrid
from agent.models import MAX_RECT_WIDTH, Matrix, shift_matrices
from agent.rfb import constants as C

# zlib levels per compression level 0..9 for (indexed, mono, full colour),
# TigerVNC's TightEncoder table (tuned by the VirtualGL project).
TIGHT_ZLIB_LEVELS = (
    (0, 0, 0), (1, 1, 1), (3, 3, 2), (5, 5, 2), (6, 7, 3),
    (7, 8, 4), (7, 8, 5), (8, 9, 6), (9, 9, 7), (9, 9, 9),
)
TIGHT_DEFAULT_COMPRESS_LEVEL = 2
# The gradient filter saves ~40% on smooth photos but loses as much on noisy
# or repetitive content (zlib's matches break), which is why TigerVNC dropped
# it. At these levels the client wants bytes over CPU: full-colour data is
# compressed both ways, on copies of the two streams, and the smaller is sent.
TIGHT_GRADIENT_MIN_COMPRESS_LEVEL = 8
# A palette is sent uncompressed, so a big one next to few runs (a gradient
# strip: a new colour every run) can cost more than full-colour data that
# zlib's history already holds. Then both are compressed and the smaller sent.
TIGHT_TRIAL_RUNS_PER_COLOUR = 8
CTL_FILL = C.TIGHT_CTL_FILL
CTL_EXPLICIT_FILTER = C.TIGHT_CTL_EXPLICIT_FILTER
FILTER_PALETTE = C.TIGHT_FILTER_PALETTE
FILTER_GRADIENT = C.TIGHT_FILTER_GRADIENT

STREAM_FULL, STREAM_MONO, STREAM_INDEXED, STREAM_GRADIENT = 0, 1, 2, 3
ZLIB_HEADER = b"\x78\x01"  # deflate, 32 KiB window, level "fastest", as zlib.compressobj(0) starts a stream
MAX_STORED = 0xFFFF  # bytes in one stored deflate block
# Mono bits go in stripes of a byte (8 pixels; cells are not byte-aligned). 22 captured pages of paging
# made two-colour, replayed below zstd: 184.7 kB in rows, stripes of 1 byte 104.0, 2 99.1, 4 146.0, 8 166.0.
MONO_STRIPE = 1
_STORED_BLOCK = struct.Struct("<BHH")  # BFINAL=0 BTYPE=00 (byte-aligned), LEN, NLEN


def stored_blocks(data: bytes | memoryview, row: int) -> tuple[bytes, list[tuple[int, int]]]:
    """``data`` (rows of ``row`` bytes) as stored deflate blocks of whole rows; and (offset, rows) of each
    block's data in them. A block ends byte-aligned, so the inflater delivers it at once (no flush needed)."""
    view = memoryview(data).cast("B")
    per_block = max(1, MAX_STORED // row) * row if row <= MAX_STORED else MAX_STORED
    out = bytearray()
    where: list[tuple[int, int]] = []
    for start in range(0, len(view), per_block):
        piece = view[start:start + per_block]
        out += _STORED_BLOCK.pack(0, len(piece), len(piece) ^ 0xFFFF)
        if row <= MAX_STORED:
            where.append((len(out), len(piece) // row))
        out += piece
    return bytes(out), where


class _StoredStream:
    """A zlib stream at level 0 whose header is out: stored blocks, no state (see ``stored_blocks``).

    Written by hand rather than by ``zlib.compressobj(0)`` so the blocks hold whole rows of a matrix."""

    def compress(self, data: bytes | memoryview) -> bytes:
        return stored_blocks(data, MAX_STORED)[0]

    def flush(self, mode: int = zlib.Z_SYNC_FLUSH) -> bytes:
        return b""

    def copy(self) -> "_StoredStream":
        return self


def compact_length(n: int) -> bytes:
    """Tight's 1-3 byte length: 7 bits a byte, low bits first, top bit = more follows."""
    if not 0 <= n <= C.TIGHT_MAX_COMPACT:
        raise EncoderError(f"Tight data of {n} bytes does not fit a compact length")
    if n < 0x80:
        return bytes((n,))
    if n < 0x4000:
        return bytes((n & 0x7F | 0x80, n >> 7))
    return bytes((n & 0x7F | 0x80, (n >> 7) & 0x7F | 0x80, n >> 14))


class TightEncoder(Encoder):
    encoding = C.ENC_TIGHT
    name = "Tight"
    max_palette = 256

    def __init__(self) -> None:
        self._streams: list[zlib._Compress | None] = [None] * 4
        self._stream_levels = [-1] * 4
        self._levels = TIGHT_ZLIB_LEVELS[TIGHT_DEFAULT_COMPRESS_LEVEL]
        self._gradient = False
        self._compress_level: int | None = None
        self._stable: StablePalette | None = None
        self._cells = CellGrid()  # where text's character cells are, for the indices' stripes

    def set_compress_level(self, level: int | None) -> None:
        self._compress_level = level
        level = TIGHT_DEFAULT_COMPRESS_LEVEL if level is None else level
        indexed, mono, full = TIGHT_ZLIB_LEVELS[level]
        if self._stable is not None:
            indexed = mono = 0  # stored: the outer compressor sees the indices and bits repeat
        self._levels = (indexed, mono, full)
        self._gradient = level >= TIGHT_GRADIENT_MIN_COMPRESS_LEVEL

    def below_compressor(self, below: bool = True) -> None:
        """Store palette data and keep palette indices stable (True), or compress as usual (False).

        Full-colour data keeps the client's level: only photos go that way then, and the gradient
        filter beats the outer compressor on them. A changed level resets its stream (see above).
        """
        if below != (self._stable is not None):
            self._stable = StablePalette() if below else None
            self._cells = CellGrid()
            self.set_compress_level(self._compress_level)

    # byte writers

    def _compressed(self, stream: int, level: int, data: bytes | memoryview,
                    trial: bool = False) -> tuple[int, bytes, "zlib._Compress | None"]:
        """(reset bits, data as sent, the stream that made it): raw below 12 bytes, else compact length + zlib.

        The stream is committed with ``_commit``; a trial works on a copy so a
        losing attempt leaves the live stream as the client's.
        """
        if len(data) < C.TIGHT_MIN_TO_COMPRESS:
            return 0, bytes(data), None
        reset = 0
        z = self._streams[stream]
        if z is None or self._stream_levels[stream] != level:
            if z is not None:
                reset = 1 << stream
            z = zlib.compressobj(level)
        elif trial:
            z = z.copy()
        out = z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH)
        return reset, compact_length(len(out)) + out, z

    def _stored(self, stream: int, data: np.ndarray, stripe: int, first: int) -> tuple[int, bytes, list[Matrix]]:
        """(reset bits, data as sent, matrices in it, to go in ``stripe``s) for a 2-D byte array at level 0,
        committed: stored blocks of whole rows (raw below 12 bytes, as ``_compressed``)."""
        if data.nbytes < C.TIGHT_MIN_TO_COMPRESS:
            return 0, data.tobytes(), []
        reset = 0
        head = b""
        if not isinstance(self._streams[stream], _StoredStream):  # (a stored stream is always at level 0)
            if self._streams[stream] is not None:
                reset = 1 << stream
            head = ZLIB_HEADER
            self._commit(stream, 0, _StoredStream())  # type: ignore[arg-type]
        row = data.shape[1]
        blocks, where = stored_blocks(data.data.cast("B"), row)
        length = compact_length(len(head) + len(blocks))
        skip = len(length) + len(head)
        return reset, length + head + blocks, [(skip + offset, row, rows, stripe, first) for offset, rows in where]

    def _commit(self, stream: int, level: int, z: "zlib._Compress | None") -> None:
        if z is not None:
            self._streams[stream] = z
            self._stream_levels[stream] = level

    def fill(self, rect: RectInput, colour: int) -> bytes:
        return bytes((CTL_FILL,)) + rect.codec.pack_tpixels(np.array([colour], np.uint32))

    def mono(self, rect: RectInput, palette: np.ndarray) -> bytes:
        bits = np.empty((rect.h, (rect.w + 7) // 8), np.uint8)
        _tight.pack_mono(rect.values, int(palette[0]), bits.reshape(-1))
        head = bytes((CTL_EXPLICIT_FILTER, FILTER_PALETTE, 1)) + rect.codec.pack_tpixels(palette[:2])
        if self._stable is not None and self._levels[1] == 0:
            return self._stored_payload(STREAM_MONO, head, bits, MONO_STRIPE, 0)
        reset, body, z = self._compressed(STREAM_MONO, self._levels[1], bits.data.cast("B"))
        self._commit(STREAM_MONO, self._levels[1], z)
        return bytes((head[0] | reset | STREAM_MONO << 4,)) + head[1:] + body

    def indexed(self, rect: RectInput, palette: np.ndarray) -> bytes:
        if self._stable is not None and self._levels[0] == 0:
            n = len(palette)
            idx = np.empty((rect.h, rect.w), np.uint8)
            if _analyze.index_map(rect.values, palette, n, idx) < 0:
                raise EncoderError("palette does not cover the rectangle")
            head = bytes((CTL_EXPLICIT_FILTER, FILTER_PALETTE, n - 1)) + rect.codec.pack_tpixels(palette)
            return self._stored_payload(STREAM_INDEXED, head, idx, *self._cells.layout(idx, rect.x, rect.y))
        payload, *stream = self._indexed(rect, palette, False)
        self._commit(*stream)
        return payload

    def _stored_payload(self, stream: int, head: bytes, data: np.ndarray, stripe: int, first: int) -> bytes:
        """``head`` (its first byte without stream and reset bits) and ``data`` stored, noting the matrices."""
        reset, body, matrices = self._stored(stream, data, stripe, first)
        self.matrices = shift_matrices(matrices, len(head))
        return bytes((head[0] | reset | stream << 4,)) + head[1:] + body

    def full_colour(self, rect: RectInput) -> bytes:
        payload, *stream = self._full_colour(rect, False)
        self._commit(*stream)
        return payload

    def _indexed(self, rect: RectInput, palette: np.ndarray, trial: bool) -> tuple[bytes, int, int, Any]:
        """(payload, stream, level, compressor) for the palette filter; committed by the caller."""
        n = len(palette)
        idx = np.empty((rect.h, rect.w), np.uint8)
        if _analyze.index_map(rect.values, palette, n, idx) < 0:
            raise EncoderError("palette does not cover the rectangle")
        level = self._levels[0]
        reset, body, z = self._compressed(STREAM_INDEXED, level, idx.data.cast("B"), trial)
        head = bytes((reset | (STREAM_INDEXED << 4) | CTL_EXPLICIT_FILTER, FILTER_PALETTE, n - 1))
        return head + rect.codec.pack_tpixels(palette) + body, STREAM_INDEXED, level, z

    def _full_colour(self, rect: RectInput, trial: bool) -> tuple[bytes, int, int, Any]:
        """Copy filter, or the gradient filter where it comes out smaller (levels 8-9)."""
        codec = rect.codec
        level = self._levels[2]
        gradient = self._gradient and codec.bytes_per_pixel > 1
        reset, body, z = self._compressed(STREAM_FULL, level, codec.pack_tpixels(rect.values), trial or gradient)
        best = (bytes((reset | (STREAM_FULL << 4),)) + body, STREAM_FULL, level, z)
        if gradient:
            pf = codec.pf
            filtered = np.empty((rect.h, rect.w), np.uint32)
            _tight.gradient_filter(rect.values, pf.red_shift, pf.green_shift, pf.blue_shift,
                                   pf.red_max, pf.green_max, pf.blue_max, filtered)
            reset, body, z = self._compressed(STREAM_GRADIENT, level, codec.pack_tpixels(filtered), True)
            head = bytes((reset | (STREAM_GRADIENT << 4) | CTL_EXPLICIT_FILTER, FILTER_GRADIENT))
            if len(head) + len(body) < len(best[0]):
                best = (head + body, STREAM_GRADIENT, level, z)
        return best

    def _smaller(self, rect: RectInput, palette: np.ndarray) -> bytes:
        candidates = (self._indexed(rect, palette, True), self._full_colour(rect, True))
        payload, *stream = min(candidates, key=lambda c: len(c[0]))
        self._commit(*stream)
        return payload

    def encode(self, rect: RectInput) -> bytes:
        self.matrices = []
        if rect.w > MAX_RECT_WIDTH:
            raise EncoderError(f"Tight rectangles are at most {MAX_RECT_WIDTH} wide, got {rect.w}")
        palette = rect.palette
        if palette is None or len(palette) > self.max_palette:
            return self.full_colour(rect)
        if len(palette) == 1:
            return self.fill(rect, int(palette[0]))
        if self._stable is not None and rect.codec.bytes_per_pixel > 1:
            slots = self._stable.cover(palette)
            if len(palette) == 2:  # the two colours in slot order: a glyph's bits mean the same every time
                return self.mono(rect, self._stable.in_slot_order(palette))
            if self._stable.churning:
                return None  # Raw's pixels repeat where churning indices would not (see StablePalette)
            return self.indexed(rect, slots)
        if len(palette) == 2:
            return self.mono(rect, palette)
        if rect.codec.bytes_per_pixel == 1:
            return self.full_colour(rect)  # an index byte is no smaller than the pixel (TigerVNC)
        if len(palette) * TIGHT_TRIAL_RUNS_PER_COLOUR >= rect.runs:
            return self._smaller(rect, palette)
        return self.indexed(rect, palette)

"""Long-window compression of the inner stream (ZDATA records, DESIGN §4.2 amendment).

RFB's own zlib sees 32 KiB of history: less than one line of pixels on a
1080p screen. A zstd stream with a 4 MiB window and a deep match search
remembers the last screens' worth of changes, so a glyph, a word or a line of
text that was on screen a moment ago costs a few bytes the next time, wherever
it lands.
On paging through a log file in ``less`` that is about a quarter of Tight's
bytes (``benchmarks/bench_channel.py``, ``python -m benchmarks.linkbench``).

The sender compresses ``CHUNK`` bytes at a time and flushes after each, so
every chunk is decodable from the records that carry it, and no record can
inflate to more than ``CHUNK``. The receiver enforces that bound while it
inflates: a decompression bomb fails the channel after at most one chunk of
output, never after allocating what it claims.

Compressing before encrypting lets an observer learn how compressible the
screen is, which the RFB encodings (zlib, JPEG) already reveal; nothing
secret (password, keys) ever enters this stream.
"""
from __future__ import annotations

import zstandard

from agent.secure.errors import ProtocolViolationError

WINDOW_LOG = 22  # 4 MiB of history: two 1080p screens of text as palette indices (a byte a pixel)
# The window is most of the compressor's memory (hash and chain tables are ~6 MB more). Measured with a
# full window (32 MB through it): 24 -> 21.4 MB anonymous, 23 -> 13.4, 22 -> 9.4, 21 -> 7.4. When text
# went as Raw pixels (4 bytes each) the link benchmark's paging run cost 385.5 kB at 23 and 401.4 at 22
# (+4%), so it was 23. Now text goes as stable palette indices (agent.encode.stable_palette), a quarter
# of the bytes through the window: 22 pages of captured paging cost 293.2 kB at 23 and 296.1 at 22 (+1%),
# 60 frames of the churn workload 398.5 kB at both; the 4K agent's compressor mapping 7.8 -> 4 MB.
# What it gives up: Raw pixels (more than 256 colours) half a 1080p screen back; the screen before last.
MAX_WINDOW_LOG = 24  # the most a peer's stream may ask of our inflater (a peer built with the 16 MiB window)
LEVEL = 8
SEARCH_LOG = 6  # level 8 searches 2^4 candidates; 2^6 finds the far matches of a scrolled page itself
# Why not long-distance matching (LDM): it found those far matches too, but on the small blocks of
# typing it prefers old long matches to recent short ones and costs 43% more (2,730 vs 1,906 bytes for
# the 75 echoes of the link benchmark's typing run, replayed); without it and with the deeper search,
# paging through a log costs the same (438.6 vs 436.7 kB) for about the same CPU.
HASH_LOG, CHAIN_LOG = 19, 18  # level 8's are 20 and 19: 4 + 2 MB of tables, resident on the customer's PC
# Replayed (22 pages of paging, 60 frames of churn, captured from the link benchmark; the 4 MiB window):
# 20/19 119.7 and 123.0 kB at 1.38 and 0.36 ms a frame; 19/18 120.1 and 124.1 kB at 1.32 and 0.34 ms;
# 18/18 120.8 and 126.3 kB; 17/17 122.8 and 130.3 kB. 19/18 gives 3 MB back for +0.3-0.9% bytes.
STRATEGY = zstandard.STRATEGY_LAZY
# Level 8's lazy2 looks two positions ahead for a longer match; on screen pixels that almost never pays:
# 13 pages of antialiased text in less (xterm, captured): lazy2 485.6 kB at 16.3 ms a page, lazy 485.9 kB
# at 13.6 ms, greedy 511.4 kB at 9.8 ms. (btopt, level 16's optimal parser, halves two-colour text but
# costs 7 times the CPU.)
CHUNK = 1 << 20  # raw bytes compressed, and flushed, at a time
MAX_INFLATED = CHUNK  # the most one ZDATA record may inflate to
# The inflater's output buffer. One byte more than a record may yield: legitimate output never
# fills it, so all of it comes out when the input is used up (zstd keeps output back only behind a
# full buffer), while a bomb fills it and is caught after that one buffer.
_OUTPUT_BUFFER = MAX_INFLATED + 1


class Deflater:
    """The sending half: raw inner bytes in, ZDATA record payloads out (one zstd stream per channel)."""

    def __init__(self, level: int = LEVEL, *, max_piece: int) -> None:
        params = zstandard.ZstdCompressionParameters.from_level(level, window_log=WINDOW_LOG, search_log=SEARCH_LOG,
                                                              hash_log=HASH_LOG, chain_log=CHAIN_LOG,
                                                              strategy=STRATEGY)
        self._obj = zstandard.ZstdCompressor(compression_params=params).compressobj()
        self._max_piece = max_piece

    def compress(self, data: bytes | memoryview) -> list[bytes]:
        """Payloads of at most ``max_piece`` bytes; together they decode to exactly ``data``."""
        view = memoryview(data).cast("B")
        pieces: list[bytes] = []
        for offset in range(0, len(view), CHUNK):
            out = self._obj.compress(view[offset:offset + CHUNK]) + self._obj.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
            if len(out) <= self._max_piece:  # (nearly always)
                pieces.append(out)
            else:
                pieces.extend(out[i:i + self._max_piece] for i in range(0, len(out), self._max_piece))
        return pieces


class _TooBig(Exception):
    pass


class _Sink:
    """Collects inflated output and stops the decompressor past the bound."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def write(self, data: bytes | memoryview) -> int:
        self.size += len(data)
        if self.size > MAX_INFLATED:
            raise _TooBig
        self.parts.append(bytes(data))
        return len(data)


class Inflater:
    """The receiving half: ZDATA payloads in, inner bytes out, at most ``MAX_INFLATED`` per record."""

    def __init__(self) -> None:
        self._sink = _Sink()
        self._writer = zstandard.ZstdDecompressor(max_window_size=1 << MAX_WINDOW_LOG).stream_writer(
            self._sink, write_size=_OUTPUT_BUFFER, write_return_read=True, closefd=False)

    def inflate(self, payload: bytes) -> bytes:
        """The bytes this payload completes (possibly b"" for a piece of a chunk)."""
        sink = self._sink
        sink.parts.clear()
        sink.size = 0
        try:
            self._writer.write(payload)
        except _TooBig:
            raise ProtocolViolationError(
                f"a compressed record inflates to more than the {MAX_INFLATED} bytes allowed") from None
        except zstandard.ZstdError:
            raise ProtocolViolationError("a compressed record is not a valid continuation of the peer's stream") \
                from None
        return b"".join(sink.parts)

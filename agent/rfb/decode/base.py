"""What every decoder shares: the error, the per-connection state, bounded inflation.

Decoders read bytes from the network, so nothing they allocate may be sized
by the peer beyond what the rectangle itself bounds: compressed lengths are
capped, inflation stops at what the rectangle can hold, and a stream that
would produce more than that is an error, not a bigger buffer.
"""
from __future__ import annotations

import zlib

import numpy as np

from agent._native import decoders as _dec

MAX_COMPRESSED = 16 << 20
"""Largest compressed payload accepted for one rectangle."""


class DecodeError(Exception):
    """The server sent rectangle data that does not parse; the connection cannot continue."""


class DecoderState:
    """Per-connection decoder state: the ZRLE zlib stream, the four Tight zlib streams."""

    def __init__(self) -> None:
        self.zrle = zlib.decompressobj()
        self.tight = [zlib.decompressobj() for _ in range(4)]

    def reset_tight(self, stream: int) -> None:
        self.tight[stream] = zlib.decompressobj()


def inflate(stream: "zlib._Decompress", data: bytes | memoryview, limit: int) -> bytes:
    """Inflate one sync-flushed chunk completely, producing at most ``limit`` bytes.

    Raises DecodeError on corrupt data, on output past ``limit``, and on a
    stream the server ended (a persistent stream never ends).
    """
    try:
        out = stream.decompress(data, max(limit, 1))  # 0 would mean "no limit" to zlib
        if len(out) > limit:
            raise DecodeError(f"compressed data inflates to more than the {limit} bytes the rectangle holds")
        tail = stream.unconsumed_tail
        # Only the empty block of a sync flush may be left once the limit is hit.
        for _ in range(4):
            if not tail:
                break
            if stream.decompress(tail, 1):
                raise DecodeError(f"compressed data inflates to more than the {limit} bytes the rectangle holds")
            tail = stream.unconsumed_tail
        else:
            raise DecodeError("compressed data does not end where the rectangle does")
    except zlib.error as exc:
        raise DecodeError(f"corrupt zlib data: {exc}") from None
    if stream.eof:
        raise DecodeError("the server ended a zlib stream that must persist")
    return out


_MESSAGES = {
    _dec.BAD_SUBRECT: "a subrectangle reaches outside its tile or rectangle",
    _dec.NO_BACKGROUND: "a tile has no background colour",
    _dec.NO_FOREGROUND: "subrectangles have no foreground colour",
    _dec.BAD_SUBENCODING: "unknown tile subencoding",
    _dec.BAD_INDEX: "a palette index is past the end of the palette",
    _dec.BAD_RUN: "a run is longer than its tile",
    _dec.NEED_MORE: "the data ends in the middle of a tile",
}


def check(code: int, what: str) -> int:
    """Turn a kernel's negative return into DecodeError; pass byte counts through."""
    if code < 0:
        raise DecodeError(f"{what}: {_MESSAGES.get(code, f'error {code}')}")
    return code


def as_array(data: bytes | memoryview | np.ndarray) -> np.ndarray:
    return np.frombuffer(data, np.uint8)

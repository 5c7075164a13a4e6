"""Byte matrices in vertical stripes: the layout of a mux STRIPED frame (agent.secure.mux).

Below the channel's zstd, text goes as one palette index a pixel
(agent.encode.stable_palette), row after row as RFB lays it out. A glyph is
then a dozen short pieces, one per pixel row, each between pieces of its
neighbours: the long window finds only short matches. Sent in vertical stripes
(each stripe top to bottom, the stripes left to right), a column of text
becomes one run of bytes, and a column seen before (a log's timestamps, the
same words at the same place on another page) one long match.

The link benchmark's paging (``python -m benchmarks.linkbench --workloads
paging``, a page a second of a log in ``less`` in an xterm): 309.7 kB row by
row, 210.4 kB in stripes 8 wide. Choosing the width, offline on 22 captured
pages of that run replayed through the detector, the encoder and the
channel's zstd: 296.0 kB row by row; stripes 8 wide 186.5 kB, 6 wide 190.1,
12 wide 193.4, 16 wide 206.2; bands of 16 rows instead of whole columns 198.3.
(Stripes 6 wide laid on the terminal's 6-pixel character cells gave 175.3: a
width found per screen from the text's pitch would gain another 6%.)
The receiver puts the rows back before the RFB client sees a byte: RFB itself
is unchanged.
"""
from __future__ import annotations

import numpy as np

STRIPE_WIDTH = 8
"""Bytes across a stripe: about a glyph of a terminal font (6-9 pixels) at a byte a pixel."""


def _shape(size: int, width: int, stripe: int) -> tuple[int, int]:
    if width < 1 or stripe < 1 or size % width:
        raise ValueError(f"{size} bytes are not a matrix {width} wide in stripes of {stripe}")
    return size // width, width // stripe * stripe


def to_stripes(matrix: bytes | bytearray | memoryview, width: int, stripe: int = STRIPE_WIDTH) -> bytes:
    """A row-major ``width``-wide byte matrix in stripes of ``stripe`` columns; a narrower last stripe
    holds what is left over."""
    rows, full = _shape(len(matrix), width, stripe)
    a = np.frombuffer(matrix, np.uint8).reshape(rows, width)
    striped = a[:, :full].reshape(rows, full // stripe, stripe).transpose(1, 0, 2)
    return striped.tobytes() + a[:, full:].tobytes()


def from_stripes(data: bytes | bytearray | memoryview, width: int, stripe: int = STRIPE_WIDTH) -> bytes:
    """The row-major matrix back from ``to_stripes``; ValueError if ``data`` cannot be one."""
    rows, full = _shape(len(data), width, stripe)
    flat = np.frombuffer(data, np.uint8)
    out = np.empty((rows, width), np.uint8)
    out[:, :full] = flat[:rows * full].reshape(full // stripe, rows, stripe).transpose(1, 0, 2).reshape(rows, full)
    out[:, full:] = flat[rows * full:].reshape(rows, width - full)
    return out.tobytes()

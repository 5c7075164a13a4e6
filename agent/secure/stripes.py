"""Byte matrices in vertical stripes: the layout of a mux STRIPED frame (agent.secure.mux).

Below the channel's zstd, text goes as one palette index a pixel
(agent.encode.stable_palette), row after row as RFB lays it out. A glyph is
then a dozen short pieces, one per pixel row, each between pieces of its
neighbours: the long window finds only short matches. Sent in vertical stripes
(each stripe top to bottom, the stripes left to right), a column of text
becomes one run of bytes; with stripes laid on the character cells
(agent.encode.text_cells) each glyph is whole, and a glyph seen before is one
match wherever it stood.

The link benchmark's paging (``python -m benchmarks.linkbench --workloads
paging``, a page a second of a log in ``less`` in an xterm): 309.7 kB row by
row, 210.4 kB in stripes 8 wide. Choosing fixed widths, offline on 22 captured
pages of that run replayed through the detector, the encoder and the channel's
zstd: 296.0 kB row by row; stripes 8 wide 186.5 kB, 6 wide 190.1, 12 wide
193.4, 16 wide 206.2; bands of 16 rows instead of whole columns 198.3. On the
cells (agent.encode.text_cells) 135.5 kB, and live 150.3 kB. The receiver
puts the rows back before the RFB client sees a byte: RFB itself is unchanged.
"""
from __future__ import annotations

import numpy as np

from agent._native import stripes as _stripes


def _check(size: int, width: int, stripe: int, first: int) -> int:
    if width < 1 or stripe < 1 or not 0 <= first < stripe or size % width:
        raise ValueError(f"{size} bytes are not a matrix {width} wide in stripes of {stripe} (the first {first})")
    return size // width


def to_stripes(matrix: bytes | bytearray | memoryview, width: int, stripe: int, first: int = 0) -> bytes:
    """A row-major ``width``-wide byte matrix in stripes of ``stripe`` columns, each top to bottom, left to
    right: the first ``first`` columns wide (0: a whole stripe), the last holding what is left over."""
    _check(len(matrix), width, stripe, first)
    return _stripes.to_stripes(matrix, width, stripe, min(first, width))


def from_stripes(data: bytes | bytearray | memoryview, width: int, stripe: int, first: int = 0) -> bytes:
    """The row-major matrix back from ``to_stripes``; ValueError if ``data`` cannot be one."""
    rows = _check(len(data), width, stripe, first)
    first = min(first, width)
    full = first + (width - first) // stripe * stripe
    flat = np.frombuffer(data, np.uint8)
    out = np.empty((rows, width), np.uint8)
    out[:, :first] = flat[:rows * first].reshape(rows, first)
    middle = flat[rows * first:rows * full]
    out[:, first:full] = middle.reshape((full - first) // stripe, rows, stripe).transpose(1, 0, 2).reshape(rows, -1)
    out[:, full:] = flat[rows * full:].reshape(rows, width - full)
    return out.tobytes()

"""Hypothesis strategies for RFB pixel formats, shared by the conversion and the encoder properties."""
from __future__ import annotations

from hypothesis import assume
from hypothesis import strategies as st

from agent.rfb.pixelformat import (
    BGR233,
    NATIVE,
    RGB565_BE,
    RGB565_LE,
    RGB888_BE,
    PixelFormat,
)

STANDARD = [NATIVE, BGR233, RGB565_LE, RGB565_BE, RGB888_BE]


@st.composite
def random_formats(draw: st.DrawFn) -> PixelFormat:
    """Any valid true-colour format: 8/16/32 bpp, both byte orders, any channel order, gaps and widths."""
    bpp = draw(st.sampled_from([8, 16, 32]))
    limit = {8: 3, 16: 6, 32: 12}[bpp]
    bits = [draw(st.integers(1, limit)) for _ in range(3)]
    assume(sum(bits) <= bpp)
    free = bpp - sum(bits)
    shifts = [0, 0, 0]
    pos = 0
    for ch in draw(st.permutations([0, 1, 2])):
        gap = draw(st.integers(0, free))
        free -= gap
        pos += gap
        shifts[ch] = pos
        pos += bits[ch]
    depth = draw(st.integers(sum(bits), bpp))
    pf = PixelFormat(bpp, depth, draw(st.booleans()), True, (1 << bits[0]) - 1, (1 << bits[1]) - 1,
                     (1 << bits[2]) - 1, shifts[0], shifts[1], shifts[2])
    pf.validate()
    return pf


formats = st.one_of(st.sampled_from(STANDARD), random_formats())

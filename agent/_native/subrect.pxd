# cython: language_level=3
"""The subrectangle search the Hextile and RRE encoders share.

From an uncovered pixel of colour ``c`` at (x, y): the largest-area rectangle
of colour ``c`` with that top-left corner over pixels not yet covered, grown
row by row (each row can only narrow it); its pixels are then marked covered.
Pixels are uint32 values addressed by byte strides, as in a memoryview.
"""
from libc.stdint cimport uint8_t, uint32_t


cdef struct Extent:
    Py_ssize_t w
    Py_ssize_t h


cdef inline Py_ssize_t _span(const uint8_t* row, Py_ssize_t s1, const uint8_t* cov, Py_ssize_t x, Py_ssize_t end,
                             uint32_t c) noexcept nogil:
    """First x2 >= x, at most ``end``, where the row is no longer uncovered colour ``c``."""
    while x < end and not cov[x] and (<const uint32_t*>(row + x * s1))[0] == c:
        x += 1
    return x


cdef inline Extent cover_rect(const uint8_t* px, Py_ssize_t s0, Py_ssize_t s1, uint8_t* covered, Py_ssize_t cstride,
                              Py_ssize_t w, Py_ssize_t h, Py_ssize_t x, Py_ssize_t y, uint32_t c) noexcept nogil:
    """Find and cover the rectangle at (x, y) of the w x h area at ``px`` (row stride s0, pixel stride s1 bytes).

    ``covered`` holds a byte per pixel, ``cstride`` bytes a row. Returns the rectangle's size (by value:
    out-pointers would keep the caller's variables in memory, as byte stores may alias them).
    """
    cdef Py_ssize_t x2, y2, cur_w, area, best_area
    cdef Extent best
    cur_w = _span(px + y * s0, s1, covered + y * cstride, x, w, c) - x
    best.w = cur_w
    best.h = 1
    best_area = cur_w
    for y2 in range(y + 1, h):
        x2 = _span(px + y2 * s0, s1, covered + y2 * cstride, x, x + cur_w, c)
        if x2 == x:
            break
        cur_w = x2 - x
        area = cur_w * (y2 - y + 1)
        if area > best_area:
            best_area = area
            best.w = cur_w
            best.h = y2 - y + 1
    for y2 in range(y, y + best.h):
        for x2 in range(x, x + best.w):
            covered[y2 * cstride + x2] = 1
    return best

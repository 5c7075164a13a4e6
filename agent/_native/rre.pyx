# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""RRE encoder (RFC 6143 7.7.3): a background and a cover of the other pixels by rectangles.

The cover is greedy in raster order: from each uncovered non-background
pixel, the largest rectangle of its colour with that top-left corner. The
encoder gives up (returns -1) once the output passes a byte limit, so the
manager can fall back to another encoding without paying for a huge cover.
"""
from libc.stdint cimport uint8_t, uint32_t
from libc.stdlib cimport calloc, free

from agent._native.pixelio cimport Layout, make_layout, put_px
from agent._native.subrect cimport Extent, cover_rect


cdef inline void _put_u16(uint8_t* p, Py_ssize_t v) noexcept nogil:
    p[0] = <uint8_t>(v >> 8)
    p[1] = <uint8_t>v


def encode(const uint32_t[:, :] v, uint32_t bg, layout, uint8_t[::1] out, Py_ssize_t limit):
    """Write the RRE payload (count, background, subrects) into ``out``.

    Returns the byte count, or -1 when it would exceed ``limit`` (or out).
    """
    cdef Layout L
    cdef Py_ssize_t h = v.shape[0], w = v.shape[1], x, y
    cdef Extent r
    cdef Py_ssize_t nsub = 0, cap
    cdef uint8_t* covered
    cdef const uint8_t* px
    cdef uint8_t* start
    cdef uint8_t* p
    cdef uint32_t c
    cdef int bpp
    cdef bint over = False
    make_layout(layout, &L)
    bpp = L.nbytes
    cap = out.shape[0] if out.shape[0] < limit else limit
    if cap < 4 + bpp:
        return -1
    if h > 65535 or w > 65535:
        raise ValueError("RRE rectangles are at most 65535 pixels a side")
    start = &out[0]
    p = start + 4
    put_px(p, bg, &L)
    p += bpp
    if w == 0 or h == 0:
        start[0] = start[1] = start[2] = start[3] = 0
        return 4 + bpp
    px = <const uint8_t*>&v[0, 0]
    covered = <uint8_t*>calloc(w * h, 1)
    if covered == NULL:
        raise MemoryError()
    try:
        with nogil:
            for y in range(h):
                for x in range(w):
                    if covered[y * w + x]:
                        continue
                    c = v[y, x]
                    if c == bg:
                        continue
                    r = cover_rect(px, v.strides[0], v.strides[1], covered, w, w, h, x, y, c)
                    if (p - start) + bpp + 8 > cap:
                        over = True
                        break
                    put_px(p, c, &L)
                    p += bpp
                    _put_u16(p, x)
                    _put_u16(p + 2, y)
                    _put_u16(p + 4, r.w)
                    _put_u16(p + 6, r.h)
                    p += 8
                    nsub += 1
                if over:
                    break
    finally:
        free(covered)
    if over:
        return -1
    start[0] = <uint8_t>(nsub >> 24)
    start[1] = <uint8_t>(nsub >> 16)
    start[2] = <uint8_t>(nsub >> 8)
    start[3] = <uint8_t>nsub
    return p - start

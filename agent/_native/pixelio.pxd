# cython: language_level=3
"""Inline helpers shared by the encode and decode kernels.

A pixel *value* is the integer a client's pixel format defines (red at
red-shift, ...). On the wire it takes 1 to 4 bytes; a ``Layout`` says which
bits of the value go in each byte, so one pair of helpers covers PIXEL in both
byte orders, ZRLE's 3-byte CPIXEL and Tight's R,G,B TPIXEL.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t
from libc.string cimport memset


cdef struct Layout:
    int nbytes
    int sh[4]


cdef inline int make_layout(object layout, Layout* out) except -1:
    """Fill ``out`` from a Python (nbytes, sh0, sh1, sh2, sh3) tuple, checking it."""
    cdef int i
    if len(layout) != 5:
        raise ValueError("layout is (nbytes, shift0, shift1, shift2, shift3)")
    out.nbytes = layout[0]
    if out.nbytes < 1 or out.nbytes > 4:
        raise ValueError("layout nbytes must be 1..4")
    for i in range(4):
        out.sh[i] = layout[1 + i]
        if out.sh[i] < 0 or out.sh[i] > 24 or out.sh[i] % 8:
            raise ValueError("layout shifts must be 0, 8, 16 or 24")
    return 0


cdef inline void put_px(uint8_t* p, uint32_t v, const Layout* L) noexcept nogil:
    p[0] = <uint8_t>(v >> L.sh[0])
    if L.nbytes > 1:
        p[1] = <uint8_t>(v >> L.sh[1])
        if L.nbytes > 2:
            p[2] = <uint8_t>(v >> L.sh[2])
            if L.nbytes > 3:
                p[3] = <uint8_t>(v >> L.sh[3])


cdef inline uint32_t get_px(const uint8_t* p, const Layout* L) noexcept nogil:
    cdef uint32_t v = (<uint32_t>p[0]) << L.sh[0]
    if L.nbytes > 1:
        v |= (<uint32_t>p[1]) << L.sh[1]
        if L.nbytes > 2:
            v |= (<uint32_t>p[2]) << L.sh[2]
            if L.nbytes > 3:
                v |= (<uint32_t>p[3]) << L.sh[3]
    return v


# Colour table for palettes of at most 256 colours: open addressing, a
# generation stamp per slot so clearing it between tiles costs nothing.
cdef enum:
    TABLE_BITS = 10
    TABLE_SIZE = 1024
    TABLE_MASK = 1023


cdef struct ColourTable:
    uint32_t keys[TABLE_SIZE]
    uint32_t stamp[TABLE_SIZE]
    uint16_t idx[TABLE_SIZE]
    uint32_t gen
    int n


cdef inline void table_init(ColourTable* t) noexcept nogil:
    memset(t.stamp, 0, sizeof(t.stamp))
    t.gen = 1
    t.n = 0


cdef inline void table_clear(ColourTable* t) noexcept nogil:
    t.gen += 1
    if t.gen == 0:
        memset(t.stamp, 0, sizeof(t.stamp))
        t.gen = 1
    t.n = 0


cdef inline int table_find(const ColourTable* t, uint32_t c) noexcept nogil:
    cdef uint32_t h = (c * <uint32_t>2654435761u) >> (32 - TABLE_BITS)
    while t.stamp[h] == t.gen:
        if t.keys[h] == c:
            return t.idx[h]
        h = (h + 1) & TABLE_MASK
    return -1


cdef inline int table_insert(ColourTable* t, uint32_t c) noexcept nogil:
    """Index of ``c``, adding it if new; the caller keeps n well below TABLE_SIZE."""
    cdef uint32_t h = (c * <uint32_t>2654435761u) >> (32 - TABLE_BITS)
    while t.stamp[h] == t.gen:
        if t.keys[h] == c:
            return t.idx[h]
        h = (h + 1) & TABLE_MASK
    t.stamp[h] = t.gen
    t.keys[h] = c
    t.idx[h] = <uint16_t>t.n
    t.n += 1
    return t.n - 1

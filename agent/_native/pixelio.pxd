# cython: language_level=3
"""Inline helpers shared by the encode and decode kernels.

A pixel *value* is the integer a client's pixel format defines (red at
red-shift, ...). On the wire it takes 1 to 4 bytes; a ``Layout`` says which
bits of the value go in each byte, so one pair of helpers covers PIXEL in both
byte orders, ZRLE's 3-byte CPIXEL and Tight's R,G,B TPIXEL. Also here: the
palette table the encoders and analysis build, and the Tight gradient
prediction the encoder and the decoder share.
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


cdef inline int palette_add(ColourTable* t, uint32_t* palette, int n, int max_n, uint32_t c) noexcept nogil:
    """Index of ``c`` in ``palette``, which holds ``n`` colours so far.

    A new colour goes in at index ``n`` (the caller counts it: the result is
    ``n``), unless the palette already holds ``max_n`` colours: then -1, and
    the caller stops adding (``c`` went into the table but not the palette).
    Scalars go in and out by value, so they stay in registers in the pixel loops.
    """
    cdef int idx = table_insert(t, c)
    if idx == n:
        if n == max_n:
            return -1
        palette[n] = c
    return idx


# Tight gradient filter (rfbproto): per channel, prediction = left + above -
# above-left clamped to 0..max, pixels outside the rectangle taken as 0.
cdef struct Channels:
    int shifts[3]
    int maxes[3]


cdef inline void make_channels(Channels* ch, int red_shift, int green_shift, int blue_shift,
                               int red_max, int green_max, int blue_max) noexcept nogil:
    ch.shifts[0] = red_shift
    ch.shifts[1] = green_shift
    ch.shifts[2] = blue_shift
    ch.maxes[0] = red_max
    ch.maxes[1] = green_max
    ch.maxes[2] = blue_max


cdef inline uint32_t gradient_px(uint32_t cur, uint32_t left, uint32_t up, uint32_t upleft, const Channels* ch,
                                 int sign) noexcept nogil:
    """``cur`` with each channel's prediction subtracted (sign -1, encoding) or added back (+1), modulo max + 1.

    ``left``, ``up`` and ``upleft`` are the neighbouring pixel values, 0 outside the rectangle.
    """
    cdef uint32_t r = 0
    cdef int c, s, m, est
    for c in range(3):
        s = ch.shifts[c]
        m = ch.maxes[c]
        est = <int>((left >> s) & m) + <int>((up >> s) & m) - <int>((upleft >> s) & m)
        if est < 0:
            est = 0
        elif est > m:
            est = m
        r |= (<uint32_t>((<int>((cur >> s) & m) + sign * est) & m)) << s
    return r

# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Hextile encoder (RFC 6143 7.7.4) and the subrectangle search it shares with RRE.

Per 16x16 tile: the most common colour is the background; a solid tile is
just (maybe) a background; two colours give foreground subrects; more give
coloured subrects; a tile whose subrects would not beat raw pixels goes raw.
Background and foreground are only sent when they change, and re-sent after
a raw tile (and the foreground after a coloured tile) so any decoder agrees.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t
from libc.string cimport memset

from agent._native.pixelio cimport ColourTable, Layout, make_layout, put_px, table_clear, table_init, table_insert
from agent._native.subrect cimport Extent, cover_rect

cdef enum:
    TILE = 16
    RAW = 1
    BG_SPECIFIED = 2
    FG_SPECIFIED = 4
    ANY_SUBRECTS = 8
    SUBRECTS_COLOURED = 16


cdef struct State:
    bint bg_valid
    bint fg_valid
    uint32_t bg
    uint32_t fg


def bound(Py_ssize_t w, Py_ssize_t h, int bytes_per_pixel):
    """Largest output ``encode`` can write for a w x h rectangle."""
    cdef Py_ssize_t tiles = ((w + TILE - 1) // TILE) * ((h + TILE - 1) // TILE)
    return w * h * bytes_per_pixel + tiles


cdef uint8_t* _tile(const uint32_t[:, :] v, Py_ssize_t tx, Py_ssize_t ty, int tw, int th, const Layout* L,
                    ColourTable* table, State* st, uint8_t* p) noexcept nogil:
    cdef uint32_t colours[TILE * TILE]
    cdef uint16_t counts[TILE * TILE]
    cdef uint8_t covered[TILE][TILE]
    cdef uint32_t sub_colour[255]
    cdef uint8_t sub_xy[255]
    cdef uint8_t sub_wh[255]
    cdef int x, y, n = 0, i, idx = 0, best = 0, nsub = 0, size, raw_size, cost
    cdef Extent r
    cdef const uint8_t* px
    cdef int bpp = L.nbytes
    cdef uint32_t c, prev, bg, fg = 0
    cdef uint8_t flags = 0
    cdef bint mono, send_bg, send_fg = False

    table_clear(table)
    prev = v[ty, tx]
    idx = table_insert(table, prev)
    colours[0] = prev
    counts[0] = 0
    n = 1
    for y in range(th):
        for x in range(tw):
            c = v[ty + y, tx + x]
            if c != prev:
                prev = c
                idx = table_insert(table, c)
                if idx == n:
                    colours[n] = c
                    counts[n] = 0
                    n += 1
            counts[idx] += 1
    for i in range(1, n):
        if counts[i] > counts[best]:
            best = i
    bg = colours[best]
    send_bg = not st.bg_valid or st.bg != bg

    if n == 1:
        p[0] = BG_SPECIFIED if send_bg else 0
        p += 1
        if send_bg:
            put_px(p, bg, L)
            p += bpp
        st.bg_valid = True
        st.bg = bg
        return p

    mono = n == 2
    raw_size = tw * th * bpp
    size = bpp if send_bg else 0
    if mono:
        fg = colours[1 - best]
        send_fg = not st.fg_valid or st.fg != fg
        if send_fg:
            size += bpp
        cost = 2
    else:
        cost = 2 + bpp
    size += 1  # subrect count

    memset(covered, 0, sizeof(covered))
    px = <const uint8_t*>&v[ty, tx]
    for y in range(th):
        for x in range(tw):
            if covered[y][x]:
                continue
            c = v[ty + y, tx + x]
            if c == bg:
                continue
            # the largest rectangle of colour c with its top-left corner here
            r = cover_rect(px, v.strides[0], v.strides[1], &covered[0][0], TILE, tw, th, x, y, c)
            size += cost
            if size >= raw_size or nsub == 255:
                nsub = -1
                break
            sub_colour[nsub] = c
            sub_xy[nsub] = <uint8_t>((x << 4) | y)
            sub_wh[nsub] = <uint8_t>(((r.w - 1) << 4) | (r.h - 1))
            nsub += 1
        if nsub < 0:
            break

    if nsub < 0:
        p[0] = RAW
        p += 1
        for y in range(th):
            for x in range(tw):
                put_px(p, v[ty + y, tx + x], L)
                p += bpp
        st.bg_valid = False
        st.fg_valid = False
        return p

    flags = ANY_SUBRECTS
    if send_bg:
        flags |= BG_SPECIFIED
    if mono:
        if send_fg:
            flags |= FG_SPECIFIED
    else:
        flags |= SUBRECTS_COLOURED
    p[0] = flags
    p += 1
    if send_bg:
        put_px(p, bg, L)
        p += bpp
    if mono and send_fg:
        put_px(p, fg, L)
        p += bpp
    p[0] = <uint8_t>nsub
    p += 1
    for i in range(nsub):
        if not mono:
            put_px(p, sub_colour[i], L)
            p += bpp
        p[0] = sub_xy[i]
        p[1] = sub_wh[i]
        p += 2
    st.bg_valid = True
    st.bg = bg
    if mono:
        st.fg_valid = True
        st.fg = fg
    else:
        st.fg_valid = False
    return p


def encode(const uint32_t[:, :] v, layout, uint8_t[::1] out):
    """Encode a rectangle as Hextile tiles into ``out``; returns the byte count."""
    cdef Layout L
    cdef Py_ssize_t h = v.shape[0], w = v.shape[1], tx, ty
    cdef int tw, th
    cdef ColourTable table
    cdef State st
    cdef uint8_t* start
    cdef uint8_t* p
    make_layout(layout, &L)
    if out.shape[0] < bound(w, h, L.nbytes):
        raise ValueError("output buffer smaller than hextile.bound()")
    if w == 0 or h == 0:
        return 0
    start = &out[0]
    p = start
    with nogil:
        table_init(&table)
        st.bg_valid = False
        st.fg_valid = False
        st.bg = 0
        st.fg = 0
        ty = 0
        while ty < h:
            th = TILE if ty + TILE <= h else <int>(h - ty)
            tx = 0
            while tx < w:
                tw = TILE if tx + TILE <= w else <int>(w - tx)
                p = _tile(v, tx, ty, tw, th, &L, &table, &st, p)
                tx += tw
            ty += th
    return p - start

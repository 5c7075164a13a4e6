# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Decode loops for the RFB client: Hextile, ZRLE tiles, RRE subrects, Tight palettes and gradient.

They read untrusted bytes, so every read is checked against the buffer
length and every coordinate against the rectangle. Results are pixel values
(uint32, the server's format) in an output the caller allocates; the
caller converts them to BGRA once the whole rectangle decoded, so a short
buffer leaves nothing half-written. Negative returns are the codes below;
agent.decode turns them into DecodeError.
"""
from libc.stdint cimport uint8_t, uint32_t

from agent._native.pixelio cimport Channels, Layout, get_px, gradient_px, make_channels, make_layout

# Return codes shared with agent/decode.
NEED_MORE = -1
BAD_SUBRECT = -2
NO_BACKGROUND = -3
NO_FOREGROUND = -4
BAD_SUBENCODING = -5
BAD_INDEX = -6
BAD_RUN = -7

cdef enum:
    E_NEED_MORE = -1
    E_BAD_SUBRECT = -2
    E_NO_BACKGROUND = -3
    E_NO_FOREGROUND = -4
    E_BAD_SUBENCODING = -5
    E_BAD_INDEX = -6
    E_BAD_RUN = -7


cdef inline void _fill(uint32_t[:, ::1] out, Py_ssize_t x0, Py_ssize_t y0, Py_ssize_t w, Py_ssize_t h,
                       uint32_t c) noexcept nogil:
    cdef Py_ssize_t x, y
    for y in range(y0, y0 + h):
        for x in range(x0, x0 + w):
            out[y, x] = c


cdef inline Py_ssize_t _read_px(const uint8_t* d, Py_ssize_t n, Py_ssize_t pos, const Layout* L, uint32_t* dst,
                                Py_ssize_t count) noexcept nogil:
    """Read ``count`` pixels at d + pos into ``dst``; the new pos, or E_NEED_MORE if the data is short."""
    cdef Py_ssize_t i
    if n - pos < count * L.nbytes:
        return E_NEED_MORE
    for i in range(count):
        dst[i] = get_px(d + pos, L)
        pos += L.nbytes
    return pos


cdef inline Py_ssize_t _read_tile(const uint8_t* d, Py_ssize_t n, Py_ssize_t pos, const Layout* L,
                                  uint32_t[:, ::1] out, Py_ssize_t tx, Py_ssize_t ty, Py_ssize_t tw,
                                  Py_ssize_t th) noexcept nogil:
    """Read a raw tw x th tile into ``out`` at (tx, ty); the new pos, or E_NEED_MORE (nothing written)."""
    cdef Py_ssize_t x, y
    if n - pos < tw * th * L.nbytes:
        return E_NEED_MORE
    for y in range(th):
        for x in range(tw):
            out[ty + y, tx + x] = get_px(d + pos, L)
            pos += L.nbytes
    return pos


ctypedef Py_ssize_t (*TileDecoder)(const uint8_t*, Py_ssize_t, Py_ssize_t, Py_ssize_t, const Layout*,
                                   uint32_t[:, ::1]) noexcept nogil


cdef Py_ssize_t _decode_tiles(TileDecoder decode, const uint8_t[::1] data, layout, uint32_t[:, ::1] out) except? -1:
    """Run a tile decoder over ``data`` into ``out`` (h, w): bytes consumed or a negative code."""
    cdef Layout L
    cdef Py_ssize_t r, n = data.shape[0]
    cdef const uint8_t* d = &data[0] if n > 0 else NULL
    make_layout(layout, &L)
    if out.shape[0] == 0 or out.shape[1] == 0:
        return 0
    if n == 0:
        return E_NEED_MORE
    with nogil:
        r = decode(d, n, out.shape[1], out.shape[0], &L, out)
    return r


cdef Py_ssize_t _hextile(const uint8_t* d, Py_ssize_t n, Py_ssize_t w, Py_ssize_t h, const Layout* L,
                         uint32_t[:, ::1] out) noexcept nogil:
    cdef Py_ssize_t pos = 0, tx, ty, tw, th, need
    cdef int bpp = L.nbytes, flags, nsub, i, sx, sy, sw, sh
    cdef uint32_t bg = 0, fg = 0
    cdef bint have_bg = False, have_fg = False
    ty = 0
    while ty < h:
        th = 16 if ty + 16 <= h else h - ty
        tx = 0
        while tx < w:
            tw = 16 if tx + 16 <= w else w - tx
            if pos >= n:
                return E_NEED_MORE
            flags = d[pos]
            pos += 1
            if flags & 0xE0:
                return E_BAD_SUBENCODING
            if flags & 1:
                pos = _read_tile(d, n, pos, L, out, tx, ty, tw, th)
                if pos < 0:
                    return pos
                tx += tw
                continue
            if flags & 2:
                pos = _read_px(d, n, pos, L, &bg, 1)
                if pos < 0:
                    return pos
                have_bg = True
            if not have_bg:
                return E_NO_BACKGROUND
            if flags & 4:
                pos = _read_px(d, n, pos, L, &fg, 1)
                if pos < 0:
                    return pos
                have_fg = True
            _fill(out, tx, ty, tw, th, bg)
            if flags & 8:
                if pos >= n:
                    return E_NEED_MORE
                nsub = d[pos]
                pos += 1
                if not (flags & 16) and not have_fg:
                    return E_NO_FOREGROUND
                need = nsub * (2 + bpp if flags & 16 else 2)
                if n - pos < need:
                    return E_NEED_MORE
                for i in range(nsub):
                    if flags & 16:
                        fg = get_px(d + pos, L)  # coloured subrects update fg, as TigerVNC
                        have_fg = True
                        pos += bpp
                    sx = d[pos] >> 4
                    sy = d[pos] & 15
                    sw = (d[pos + 1] >> 4) + 1
                    sh = (d[pos + 1] & 15) + 1
                    pos += 2
                    if sx + sw > tw or sy + sh > th:
                        return E_BAD_SUBRECT
                    _fill(out, tx + sx, ty + sy, sw, sh, fg)
            tx += tw
        ty += th
    return pos


def hextile_decode(const uint8_t[::1] data, layout, uint32_t[:, ::1] out):
    """Decode a Hextile payload into ``out`` (h, w); returns bytes consumed or a negative code."""
    return _decode_tiles(_hextile, data, layout, out)


cdef inline Py_ssize_t _run(const uint8_t* d, Py_ssize_t n, Py_ssize_t* pos, Py_ssize_t limit) noexcept nogil:
    """Read a ZRLE run length; -1 if truncated, -2 if longer than ``limit``."""
    cdef Py_ssize_t length = 1
    cdef uint8_t b
    while True:
        if pos[0] >= n:
            return -1
        b = d[pos[0]]
        pos[0] += 1
        length += b
        if length > limit:
            return -2
        if b != 255:
            return length


cdef Py_ssize_t _zrle(const uint8_t* d, Py_ssize_t n, Py_ssize_t w, Py_ssize_t h, const Layout* L,
                      uint32_t[:, ::1] out) noexcept nogil:
    cdef uint32_t palette[128]
    cdef Py_ssize_t pos = 0, tx, ty, tw, th, x, y, i, k, rowbytes, left, run
    cdef int cp = L.nbytes, sub, npal, bits, idx
    cdef uint32_t c
    ty = 0
    while ty < h:
        th = 64 if ty + 64 <= h else h - ty
        tx = 0
        while tx < w:
            tw = 64 if tx + 64 <= w else w - tx
            if pos >= n:
                return E_NEED_MORE
            sub = d[pos]
            pos += 1
            if sub == 0:
                pos = _read_tile(d, n, pos, L, out, tx, ty, tw, th)
                if pos < 0:
                    return pos
            elif sub == 1:
                pos = _read_px(d, n, pos, L, &c, 1)
                if pos < 0:
                    return pos
                _fill(out, tx, ty, tw, th, c)
            elif sub <= 16:
                npal = sub
                pos = _read_px(d, n, pos, L, palette, npal)
                if pos < 0:
                    return pos
                bits = 1 if npal == 2 else (2 if npal <= 4 else 4)
                rowbytes = (tw * bits + 7) // 8
                if n - pos < rowbytes * th:
                    return E_NEED_MORE
                for y in range(th):
                    for x in range(tw):
                        k = x * bits
                        idx = (d[pos + (k >> 3)] >> (8 - bits - (k & 7))) & ((1 << bits) - 1)
                        if idx >= npal:
                            return E_BAD_INDEX
                        out[ty + y, tx + x] = palette[idx]
                    pos += rowbytes
            elif sub == 128 or sub >= 130:
                npal = sub - 128
                pos = _read_px(d, n, pos, L, palette, npal)
                if pos < 0:
                    return pos
                i = 0
                left = tw * th
                while i < left:
                    if npal == 0:
                        pos = _read_px(d, n, pos, L, &c, 1)
                        if pos < 0:
                            return pos
                        run = _run(d, n, &pos, left - i)
                    else:
                        if pos >= n:
                            return E_NEED_MORE
                        idx = d[pos]
                        pos += 1
                        if (idx & 127) >= npal:
                            return E_BAD_INDEX
                        c = palette[idx & 127]
                        run = _run(d, n, &pos, left - i) if idx & 128 else 1
                    if run == -1:
                        return E_NEED_MORE
                    if run < 0:
                        return E_BAD_RUN
                    for k in range(i, i + run):
                        out[ty + k // tw, tx + k % tw] = c
                    i += run
            else:
                return E_BAD_SUBENCODING
            tx += tw
        ty += th
    return pos


def zrle_decode(const uint8_t[::1] data, layout, uint32_t[:, ::1] out):
    """Decode inflated ZRLE tile data into ``out`` (h, w); returns bytes used or a negative code."""
    return _decode_tiles(_zrle, data, layout, out)


def rre_decode(const uint8_t[::1] data, Py_ssize_t nsub, layout, uint32_t[:, ::1] out):
    """Draw ``nsub`` RRE subrects over ``out`` (already filled with the background).

    Returns bytes consumed or a negative code.
    """
    cdef Layout L
    cdef Py_ssize_t n = data.shape[0], pos = 0, i, sx, sy, sw, sh, h = out.shape[0], w = out.shape[1]
    cdef const uint8_t* d
    cdef uint32_t c
    cdef int rc = 0
    make_layout(layout, &L)
    if nsub == 0:
        return 0
    if n < nsub * (L.nbytes + 8):
        return E_NEED_MORE
    d = &data[0]
    with nogil:
        for i in range(nsub):
            c = get_px(d + pos, &L)
            pos += L.nbytes
            sx = (d[pos] << 8) | d[pos + 1]
            sy = (d[pos + 2] << 8) | d[pos + 3]
            sw = (d[pos + 4] << 8) | d[pos + 5]
            sh = (d[pos + 6] << 8) | d[pos + 7]
            pos += 8
            if sx + sw > w or sy + sh > h:
                rc = E_BAD_SUBRECT
                break
            _fill(out, sx, sy, sw, sh, c)
    return rc if rc else pos


def palette_expand(const uint8_t[::1] data, int bits, const uint32_t[::1] palette, uint32_t[:, ::1] out):
    """Tight palette data: 1-bit rows (2 colours or fewer) or one index byte per pixel.

    Returns bytes consumed or a negative code (an index past the palette).
    """
    cdef Py_ssize_t h = out.shape[0], w = out.shape[1], x, y, pos = 0, rowbytes
    cdef Py_ssize_t npal = palette.shape[0], n = data.shape[0]
    cdef const uint8_t* d
    cdef int idx
    cdef bint bad = False
    if bits != 1 and bits != 8:
        raise ValueError("bits must be 1 or 8")
    rowbytes = (w + 7) // 8 if bits == 1 else w
    if n < rowbytes * h:
        return E_NEED_MORE
    if w == 0 or h == 0:
        return 0
    d = &data[0]
    with nogil:
        for y in range(h):
            for x in range(w):
                if bits == 1:
                    idx = (d[pos + (x >> 3)] >> (7 - (x & 7))) & 1
                else:
                    idx = d[pos + x]
                if idx >= npal:
                    bad = True
                    break
                out[y, x] = palette[idx]
            if bad:
                break
            pos += rowbytes
    return E_BAD_INDEX if bad else pos


def gradient_unfilter(const uint32_t[:, ::1] residual, int red_shift, int green_shift, int blue_shift,
                      int red_max, int green_max, int blue_max, uint32_t[:, ::1] out):
    """Undo the Tight gradient filter (see agent/_native/tight.pyx gradient_filter)."""
    cdef Py_ssize_t h = residual.shape[0], w = residual.shape[1], y, x
    cdef Channels ch
    if out.shape[0] != h or out.shape[1] != w:
        raise ValueError("output shape differs from input")
    make_channels(&ch, red_shift, green_shift, blue_shift, red_max, green_max, blue_max)
    with nogil:
        for y in range(h):
            for x in range(w):
                out[y, x] = gradient_px(residual[y, x], out[y, x - 1] if x > 0 else 0, out[y - 1, x] if y > 0 else 0,
                                        out[y - 1, x - 1] if x > 0 and y > 0 else 0, &ch, 1)

# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Rectangle analysis: colours, runs, index maps and solid areas.

The encode manager calls these once per rectangle to choose an encoding
(solid, two colours, indexed, full colour, photo-like), in the spirit of
TigerVNC's EncodeManager::analyseRect. Everything works on pixel values
(uint32, already in the client's format).
"""
from libc.stdint cimport int32_t, uint8_t, uint32_t

from agent._native.pixelio cimport ColourTable, palette_add, table_find, table_init, table_insert


cdef inline int _count_run(ColourTable* table, uint32_t* palette, uint32_t* counts, int n, int max_colours,
                           uint32_t colour, Py_ssize_t run_len) noexcept nogil:
    """Add a run of ``colour`` to its count: the new number of colours, or -1 past ``max_colours``."""
    cdef int idx = palette_add(table, palette, n, max_colours, colour)
    if idx < 0:
        return -1
    if idx == n:
        counts[n] = <uint32_t>run_len
        return n + 1
    counts[idx] += <uint32_t>run_len
    return n


def analyze(const uint32_t[:, :] v, int max_colours, uint32_t[::1] palette, uint32_t[::1] counts):
    """Count colours (up to ``max_colours``) and runs in raster order.

    Fills ``palette`` with the colours in order of first appearance and
    ``counts`` with how many pixels have each. Returns (ncolours, runs);
    ncolours is max_colours + 1 when there are more (palette then
    incomplete). Runs are always counted over the whole rectangle.
    """
    cdef Py_ssize_t h = v.shape[0], w = v.shape[1], y, x
    cdef ColourTable table
    cdef uint32_t cur, c
    cdef Py_ssize_t runs = 0, run_len = 0
    cdef int n = 0  # colours so far; -1 once there are more than max_colours
    cdef uint32_t* pal
    cdef uint32_t* cnt
    if max_colours < 1 or max_colours > 256:
        raise ValueError("max_colours must be 1..256")
    if palette.shape[0] < max_colours or counts.shape[0] < max_colours:
        raise ValueError("palette and counts need max_colours entries")
    if h == 0 or w == 0:
        return 0, 0
    pal = &palette[0]
    cnt = &counts[0]
    with nogil:
        table_init(&table)
        cur = v[0, 0]
        runs = 1
        for y in range(h):
            for x in range(w):
                c = v[y, x]
                if c == cur:
                    run_len += 1
                    continue
                # a run of `cur` ended
                if n >= 0:
                    n = _count_run(&table, pal, cnt, n, max_colours, cur, run_len)
                runs += 1
                run_len = 1
                cur = c
        if n >= 0:
            n = _count_run(&table, pal, cnt, n, max_colours, cur, run_len)
    return (max_colours + 1 if n < 0 else n), runs


def index_map(const uint32_t[:, :] v, const uint32_t[::1] palette, int n, uint8_t[:, ::1] out):
    """Write each pixel's palette index into ``out``; returns -1 if a colour is missing."""
    cdef Py_ssize_t h = v.shape[0], w = v.shape[1], y, x
    cdef ColourTable table
    cdef uint32_t prev, c
    cdef int i, idx = -1
    cdef bint missing = False
    if n < 1 or n > 256 or palette.shape[0] < n:
        raise ValueError("palette must hold 1..256 colours")
    if out.shape[0] != h or out.shape[1] != w:
        raise ValueError("output shape differs from input")
    if h == 0 or w == 0:
        return 0
    with nogil:
        table_init(&table)
        for i in range(n):
            table_insert(&table, palette[i])
        prev = v[0, 0]
        idx = table_find(&table, prev)
        for y in range(h):
            for x in range(w):
                c = v[y, x]
                if c != prev:
                    prev = c
                    idx = table_find(&table, c)
                if idx < 0:
                    missing = True
                    break
                out[y, x] = <uint8_t>idx
            if missing:
                break
    return -1 if missing else 0


cdef bint _solid(const uint32_t[:, :] v, Py_ssize_t x0, Py_ssize_t y0, Py_ssize_t w, Py_ssize_t h,
                 uint32_t colour) noexcept nogil:
    cdef Py_ssize_t x, y
    for y in range(y0, y0 + h):
        for x in range(x0, x0 + w):
            if v[y, x] != colour:
                return False
    return True


def is_solid(const uint32_t[:, :] v):
    """True when every pixel has the same value (empty counts as solid)."""
    cdef Py_ssize_t h = v.shape[0], w = v.shape[1]
    cdef bint r
    if h == 0 or w == 0:
        return True
    with nogil:
        r = _solid(v, 0, 0, w, h, v[0, 0])
    return r


cdef void _extend_by_block(const uint32_t[:, :] v, Py_ssize_t rx, Py_ssize_t ry, Py_ssize_t rw, Py_ssize_t rh,
                           uint32_t colour, int block, Py_ssize_t* bw, Py_ssize_t* bh) noexcept nogil:
    """Largest-area block-aligned extension of a solid block at (rx, ry) within (rw, rh)."""
    cdef Py_ssize_t dx, dy, dw, dh, w_prev = rw, w_best = 0, h_best = 0, wcur
    dy = ry
    while dy < ry + rh:
        dh = block if dy + block <= ry + rh else ry + rh - dy
        # the first block of this band must be solid or the area ends here
        dw = block if rx + block <= rx + w_prev else w_prev
        if not _solid(v, rx, dy, dw, dh, colour):
            break
        dx = rx + dw
        while dx < rx + w_prev:
            dw = block if dx + block <= rx + w_prev else rx + w_prev - dx
            if not _solid(v, dx, dy, dw, dh, colour):
                break
            dx += dw
        w_prev = dx - rx
        if w_prev * (dy + dh - ry) > w_best * h_best:
            w_best = w_prev
            h_best = dy + dh - ry
        dy += dh
    bw[0] = w_best
    bh[0] = h_best


cdef void _extend_by_pixel(const uint32_t[:, :] v, Py_ssize_t cx, Py_ssize_t cy, Py_ssize_t cw, Py_ssize_t ch,
                           uint32_t colour, Py_ssize_t* sx, Py_ssize_t* sy, Py_ssize_t* sw,
                           Py_ssize_t* sh) noexcept nogil:
    """Grow the solid area one row or column at a time within the container rect."""
    cdef Py_ssize_t x0 = sx[0], y0 = sy[0], x1 = sx[0] + sw[0], y1 = sy[0] + sh[0]
    while y0 > cy and _solid(v, x0, y0 - 1, x1 - x0, 1, colour):
        y0 -= 1
    while y1 < cy + ch and _solid(v, x0, y1, x1 - x0, 1, colour):
        y1 += 1
    while x0 > cx and _solid(v, x0 - 1, y0, 1, y1 - y0, colour):
        x0 -= 1
    while x1 < cx + cw and _solid(v, x1, y0, 1, y1 - y0, colour):
        x1 += 1
    sx[0] = x0
    sy[0] = y0
    sw[0] = x1 - x0
    sh[0] = y1 - y0


def find_solid_areas(const uint32_t[:, :] v, int block, Py_ssize_t min_area,
                     int32_t[:, ::1] solids, int32_t[:, ::1] rest):
    """Split the rectangle into large solid areas and the rest (TigerVNC's findSolidRect).

    Scans ``block`` x ``block`` tiles; a solid one is grown by blocks, then by
    pixels, and kept if its area is at least ``min_area``. What remains is
    returned as a partition into rectangles. Outputs are (x, y, w, h) rows;
    returns (nsolid, nrest). Stops looking for solids once ``solids`` is full.
    """
    cdef Py_ssize_t H = v.shape[0], W = v.shape[1]
    cdef Py_ssize_t max_solid = solids.shape[0], max_rest = rest.shape[0]
    cdef Py_ssize_t nsolid = 0, nrest = 0, top = 0
    cdef Py_ssize_t rx, ry, rw, rh, dx, dy, dw, dh, bw, bh, sx, sy, sw, sh
    cdef Py_ssize_t stack[256][4]
    cdef uint32_t colour
    cdef bint found
    if block < 1:
        raise ValueError("block must be positive")
    if solids.shape[1] != 4 or rest.shape[1] != 4:
        raise ValueError("outputs are (n, 4) int32")
    # each solid found pushes at most 3 pieces and emits 1 rest piece
    if max_rest < 4 * max_solid + 4 or max_solid > 60:
        raise ValueError("rest must hold 4 * len(solids) + 4 rows and solids at most 60")
    if H == 0 or W == 0:
        return 0, 0
    with nogil:
        stack[0][0] = 0
        stack[0][1] = 0
        stack[0][2] = W
        stack[0][3] = H
        top = 1
        while top > 0:
            top -= 1
            rx = stack[top][0]
            ry = stack[top][1]
            rw = stack[top][2]
            rh = stack[top][3]
            found = False
            if nsolid < max_solid and rw * rh >= min_area:
                dy = ry
                while dy < ry + rh and not found:
                    dh = block if dy + block <= ry + rh else ry + rh - dy
                    dx = rx
                    while dx < rx + rw:
                        dw = block if dx + block <= rx + rw else rx + rw - dx
                        colour = v[dy, dx]
                        if _solid(v, dx, dy, dw, dh, colour):
                            _extend_by_block(v, dx, dy, rx + rw - dx, ry + rh - dy, colour, block, &bw, &bh)
                            if bw * bh >= min_area or (bw == rw and bh == rh):
                                sx = dx
                                sy = dy
                                sw = bw
                                sh = bh
                                _extend_by_pixel(v, rx, ry, rw, rh, colour, &sx, &sy, &sw, &sh)
                                found = True
                                break
                        dx += dw
                    dy += dh
            if not found:
                rest[nrest, 0] = <int32_t>rx
                rest[nrest, 1] = <int32_t>ry
                rest[nrest, 2] = <int32_t>rw
                rest[nrest, 3] = <int32_t>rh
                nrest += 1
                continue
            solids[nsolid, 0] = <int32_t>sx
            solids[nsolid, 1] = <int32_t>sy
            solids[nsolid, 2] = <int32_t>sw
            solids[nsolid, 3] = <int32_t>sh
            nsolid += 1
            # the band above the solid area was searched already: no solid in it
            if sy > ry:
                rest[nrest, 0] = <int32_t>rx
                rest[nrest, 1] = <int32_t>ry
                rest[nrest, 2] = <int32_t>rw
                rest[nrest, 3] = <int32_t>(sy - ry)
                nrest += 1
            if sy + sh < ry + rh:  # below
                stack[top][0] = rx
                stack[top][1] = sy + sh
                stack[top][2] = rw
                stack[top][3] = ry + rh - sy - sh
                top += 1
            if sx + sw < rx + rw:  # right
                stack[top][0] = sx + sw
                stack[top][1] = sy
                stack[top][2] = rx + rw - sx - sw
                stack[top][3] = sh
                top += 1
            if sx > rx:  # left
                stack[top][0] = rx
                stack[top][1] = sy
                stack[top][2] = sx - rx
                stack[top][3] = sh
                top += 1
    return nsolid, nrest

# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Move kernels: find regions that moved between two frames, to send them as copies.

* ``row_hashes`` + ``vote_shifts``: vertical shifts (scrolling, a window
  dragged up or down) voted by rows whose hash in the new frame equals the hash
  of another row in the previous frame.
* ``find_segments``: 2D moves (a window dragged diagonally or sideways). Short
  pixel runs sampled from the new frame are looked up in the previous frame
  with a rolling hash; each exact hit votes for a motion vector.
* ``match_cells`` and ``grow_copy`` verify a vector exactly: which grid cells
  of the new frame equal the previous frame shifted, and how far a matched
  rectangle extends pixel by pixel.
* ``apply_copy`` performs a copy in place, as a viewer does (CopyRect).

A vector ``(dx, dy)`` means new[y, x] == prev[y - dy, x - dx]. Hashes only
nominate candidates; everything reported as matching was compared exactly.
"""
from libc.stdint cimport uint8_t, uint32_t, int32_t, int64_t, uint64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcmp, memcpy, memmove

from agent._native.hashmix cimport segment_hash

cdef extern from *:
    # The strided row walks below are latency bound without a prefetch; a no-op where the
    # compiler has no builtin for it.
    """
    #if defined(__GNUC__) || defined(__clang__)
    #define REJNET_PREFETCH(p) __builtin_prefetch(p)
    #else
    #define REJNET_PREFETCH(p) ((void)0)
    #endif
    """
    void REJNET_PREFETCH(const void* addr) noexcept nogil

# Rows ahead to prefetch in strided walks down a frame.
cdef enum:
    PREFETCH_ROWS = 8


def row_hashes(const uint8_t[:, :, ::1] frame, Py_ssize_t x0, Py_ssize_t x1,
               Py_ssize_t y0, Py_ssize_t y1, uint64_t[::1] out) -> None:
    """``out[i]`` = hash of row ``y0 + i`` over columns ``x0 <= x < x1`` (same content, same hash)."""
    cdef Py_ssize_t h = frame.shape[0], w = frame.shape[1], y
    if not (0 <= x0 < x1 <= w and 0 <= y0 <= y1 <= h) or frame.shape[2] != 4:
        raise ValueError("row span out of the frame")
    if out.shape[0] < y1 - y0:
        raise ValueError("out is too short")
    cdef Py_ssize_t nbytes = 4 * (x1 - x0), off
    with nogil:
        for y in range(y0, y1):
            if y + PREFETCH_ROWS < y1:
                off = 0
                while off < nbytes:
                    REJNET_PREFETCH(&frame[y + PREFETCH_ROWS, x0, 0] + off)
                    off += 64
            out[y - y0] = segment_hash(&frame[y, x0, 0], x1 - x0, 0)


cdef struct Slot:
    uint64_t h
    int64_t first   # index of the first prev row with this hash; -1 for an empty slot
    int64_t count


def vote_shifts(const uint64_t[::1] prev_hashes, const uint64_t[::1] cur_hashes,
                int max_shift, int max_repeat, int32_t[::1] votes) -> None:
    """Add to ``votes[d + max_shift]`` one vote per pair (i, j) with cur[i] == prev[j], d = i - j.

    ``d == 0`` and ``|d| > max_shift`` are not counted, and a hash that occurs
    more than ``max_repeat`` times in ``prev_hashes`` (blank rows) votes for
    nothing. Linear time: an open-addressing table of the previous hashes,
    each slot chaining the rows that share its hash.
    """
    cdef Py_ssize_t n = prev_hashes.shape[0], m = cur_hashes.shape[0]
    if max_shift < 0 or votes.shape[0] != 2 * max_shift + 1:
        raise ValueError("votes must have 2 * max_shift + 1 entries")
    if n == 0 or m == 0:
        return
    cdef int bits = 1
    while (<Py_ssize_t>1 << bits) < 2 * n:
        bits += 1
    cdef Py_ssize_t size = <Py_ssize_t>1 << bits, mask = size - 1
    cdef Slot* table = <Slot*>malloc(size * sizeof(Slot))
    cdef int64_t* chain = <int64_t*>malloc(n * sizeof(int64_t))
    if table == NULL or chain == NULL:
        free(table); free(chain)
        raise MemoryError()
    cdef Py_ssize_t i, j, s
    cdef int64_t d, r
    cdef uint64_t hv
    with nogil:
        for s in range(size):
            table[s].first = -1
        # Insert from the last row so each chain lists its rows in increasing order.
        for j in range(n - 1, -1, -1):
            hv = prev_hashes[j]
            s = <Py_ssize_t>((hv * <uint64_t>0x9E3779B97F4A7C15ULL) >> (64 - bits))
            while table[s].first >= 0 and table[s].h != hv:
                s = (s + 1) & mask
            if table[s].first < 0:
                table[s].h = hv
                table[s].count = 0
                chain[j] = -1
            else:
                chain[j] = table[s].first
            table[s].first = j
            table[s].count += 1
        for i in range(m):
            hv = cur_hashes[i]
            s = <Py_ssize_t>((hv * <uint64_t>0x9E3779B97F4A7C15ULL) >> (64 - bits))
            while table[s].first >= 0 and table[s].h != hv:
                s = (s + 1) & mask
            if table[s].first < 0 or table[s].count > max_repeat:
                continue
            r = table[s].first
            while r >= 0:
                d = i - r
                if d != 0 and -max_shift <= d <= max_shift:
                    votes[d + max_shift] += 1
                r = chain[r]
    free(table); free(chain)


cdef inline bint _block_equal(const uint8_t[:, :, ::1] prev, const uint8_t[:, :, ::1] cur,
                              Py_ssize_t x0, Py_ssize_t y0, Py_ssize_t x1, Py_ssize_t y1,
                              Py_ssize_t dx, Py_ssize_t dy) noexcept nogil:
    """cur[y0:y1, x0:x1] == prev shifted by (dx, dy); the caller checked both are inside the frames."""
    cdef Py_ssize_t y
    for y in range(y0, y1):
        if y + PREFETCH_ROWS < y1:
            REJNET_PREFETCH(&cur[y + PREFETCH_ROWS, x0, 0])
            REJNET_PREFETCH(&prev[y + PREFETCH_ROWS - dy, x0 - dx, 0])
        if memcmp(&cur[y, x0, 0], &prev[y - dy, x0 - dx, 0], 4 * (x1 - x0)) != 0:
            return False
    return True


def match_cells(const uint8_t[:, :, ::1] prev, const uint8_t[:, :, ::1] cur, int cell,
                Py_ssize_t dx, Py_ssize_t dy, const uint8_t[:, ::1] select, uint8_t[:, ::1] out) -> int:
    """``out[cy, cx] = 1`` where a selected cell of ``cur`` equals ``prev`` shifted by (dx, dy).

    Cells are ``cell`` px squares (partial at the right and bottom edges); a
    cell whose source lies partly outside the frame does not match. Returns
    the number of matching cells.
    """
    cdef Py_ssize_t h = cur.shape[0], w = cur.shape[1]
    cdef Py_ssize_t ch = (h + cell - 1) // cell, cw = (w + cell - 1) // cell
    if prev.shape[0] != h or prev.shape[1] != w or cell < 1:
        raise ValueError("prev and cur must have the same size, cell >= 1")
    if select.shape[0] != ch or select.shape[1] != cw or out.shape[0] != ch or out.shape[1] != cw:
        raise ValueError(f"select and out must have shape ({ch}, {cw})")
    cdef Py_ssize_t cy, cx, x0, y0, x1, y1
    cdef int count = 0
    with nogil:
        for cy in range(ch):
            for cx in range(cw):
                out[cy, cx] = 0
                if not select[cy, cx]:
                    continue
                x0 = cx * cell
                y0 = cy * cell
                x1 = x0 + cell if x0 + cell < w else w
                y1 = y0 + cell if y0 + cell < h else h
                if x0 - dx < 0 or y0 - dy < 0 or x1 - dx > w or y1 - dy > h:
                    continue
                if _block_equal(prev, cur, x0, y0, x1, y1, dx, dy):
                    out[cy, cx] = 1
                    count += 1
    return count


cdef inline bint _hits(const int32_t[:, ::1] avoid, Py_ssize_t x0, Py_ssize_t y0,
                       Py_ssize_t x1, Py_ssize_t y1) noexcept nogil:
    cdef Py_ssize_t k
    for k in range(avoid.shape[0]):
        if x0 < avoid[k, 2] and avoid[k, 0] < x1 and y0 < avoid[k, 3] and avoid[k, 1] < y1:
            return True
    return False


cdef inline bint _column_equal(const uint8_t[:, :, ::1] prev, const uint8_t[:, :, ::1] cur,
                               Py_ssize_t x, Py_ssize_t y0, Py_ssize_t y1,
                               Py_ssize_t dx, Py_ssize_t dy) noexcept nogil:
    cdef Py_ssize_t y
    for y in range(y0, y1):
        if memcmp(&cur[y, x, 0], &prev[y - dy, x - dx, 0], 4) != 0:
            return False
    return True


def grow_copy(const uint8_t[:, :, ::1] prev, const uint8_t[:, :, ::1] cur, Py_ssize_t dx, Py_ssize_t dy,
              int32_t[::1] rect, int max_grow, const int32_t[:, ::1] avoid) -> None:
    """Extend ``rect = (x0, y0, x1, y1)`` in place, up, down, left then right, one line at a time.

    A line is added while it matches exactly, its source stays inside the
    frame, it does not touch any ``avoid`` rectangle ``(x0, y0, x1, y1)``, and
    at most ``max_grow`` lines per side. The caller guarantees the starting
    rectangle already matches.
    """
    cdef Py_ssize_t h = cur.shape[0], w = cur.shape[1]
    if prev.shape[0] != h or prev.shape[1] != w:
        raise ValueError("prev and cur must have the same size")
    if rect.shape[0] != 4 or (avoid.shape[0] and avoid.shape[1] != 4):
        raise ValueError("rect is (x0, y0, x1, y1) and avoid (n, 4)")
    cdef Py_ssize_t x0 = rect[0], y0 = rect[1], x1 = rect[2], y1 = rect[3], n
    if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
        raise ValueError("rect out of the frame")
    with nogil:
        n = 0
        while n < max_grow and y0 > 0 and y0 - 1 - dy >= 0 and y0 - 1 - dy < h \
                and not _hits(avoid, x0, y0 - 1, x1, y0) \
                and _block_equal(prev, cur, x0, y0 - 1, x1, y0, dx, dy):
            y0 -= 1
            n += 1
        n = 0
        while n < max_grow and y1 < h and y1 - dy >= 0 and y1 - dy < h \
                and not _hits(avoid, x0, y1, x1, y1 + 1) \
                and _block_equal(prev, cur, x0, y1, x1, y1 + 1, dx, dy):
            y1 += 1
            n += 1
        n = 0
        while n < max_grow and x0 > 0 and x0 - 1 - dx >= 0 and x0 - 1 - dx < w \
                and not _hits(avoid, x0 - 1, y0, x0, y1) \
                and _column_equal(prev, cur, x0 - 1, y0, y1, dx, dy):
            x0 -= 1
            n += 1
        n = 0
        while n < max_grow and x1 < w and x1 - dx >= 0 and x1 - dx < w \
                and not _hits(avoid, x1, y0, x1 + 1, y1) \
                and _column_equal(prev, cur, x1, y0, y1, dx, dy):
            x1 += 1
            n += 1
    rect[0] = <int32_t>x0
    rect[1] = <int32_t>y0
    rect[2] = <int32_t>x1
    rect[3] = <int32_t>y1


cdef inline uint64_t _gear(const uint8_t* p) noexcept nogil:
    """One pixel mixed into 64 bits (off the rolling chain, so its multiply pipelines)."""
    cdef uint32_t v
    memcpy(&v, p, 4)
    return (<uint64_t>v + 1) * <uint64_t>0x9E3779B97F4A7C15ULL


cdef inline uint64_t _rotl(uint64_t v, int r) noexcept nogil:
    r &= 63
    if r == 0:
        return v
    return (v << r) | (v >> (64 - r))


def find_segments(const uint8_t[:, :, ::1] prev, const uint8_t[:, :, ::1] cur,
                  const int32_t[:, ::1] keys, int length,
                  Py_ssize_t rx0, Py_ssize_t ry0, Py_ssize_t rx1, Py_ssize_t ry1,
                  int32_t[:, :, ::1] hits, int32_t[::1] counts, Py_ssize_t row_step=1) -> None:
    """Look up runs of ``cur`` in a region of ``prev``.

    Key k is the run ``cur[y, x:x + length]`` with ``(x, y) = keys[k]``. Every
    position ``(px, py)`` with ``rx0 <= px``, ``px + length <= rx1``,
    ``ry0 <= py < ry1``, ``(py - ry0) % row_step == 0``, where
    ``prev[py, px:px + length]`` equals key k exactly, is counted in
    ``counts[k]``; the first ``hits.shape[1]`` of them, in raster order, are
    stored as ``hits[k, i] = (px, py)``. With keys from ``row_step``
    consecutive rows, one of them lands on a scanned row wherever the block
    moved: the scan reads 1/row_step of the region.

    The scan is a cyclic-polynomial rolling hash (rotate, xor: two cycles a
    pixel on the dependency chain) with a 4096-bit filter in front of the key
    comparison; every reported hit was compared with memcmp.
    """
    cdef Py_ssize_t h = cur.shape[0], w = cur.shape[1], nkeys = keys.shape[0]
    if prev.shape[0] != h or prev.shape[1] != w or length < 1:
        raise ValueError("prev and cur must have the same size, length >= 1")
    if not (0 <= rx0 <= rx1 <= w and 0 <= ry0 <= ry1 <= h):
        raise ValueError("region out of the frame")
    if hits.shape[0] != nkeys or hits.shape[2] != 2 or counts.shape[0] != nkeys or (nkeys and keys.shape[1] != 2):
        raise ValueError("keys (n, 2), hits (n, m, 2) and counts (n,) disagree")
    if row_step < 1:
        raise ValueError("row_step must be at least 1")
    cdef Py_ssize_t k, i, px, py, maxhits = hits.shape[1]
    for k in range(nkeys):
        counts[k] = 0
        if not (0 <= keys[k, 0] and keys[k, 0] + length <= w and 0 <= keys[k, 1] < h):
            raise ValueError("key run out of the frame")
    if nkeys == 0 or rx1 - rx0 < length:
        return
    cdef uint64_t* key_hash = <uint64_t*>malloc(nkeys * sizeof(uint64_t))
    if key_hash == NULL:
        raise MemoryError()
    cdef uint64_t filt[64]
    cdef uint64_t hv, slot
    cdef const uint8_t* row
    cdef const uint8_t* key_ptr
    with nogil:
        for i in range(64):
            filt[i] = 0
        for k in range(nkeys):
            key_ptr = &cur[keys[k, 1], keys[k, 0], 0]
            hv = 0
            for i in range(length):
                hv = _rotl(hv, 1) ^ _gear(key_ptr + 4 * i)
            key_hash[k] = hv
            slot = hv >> 52
            filt[slot >> 6] |= (<uint64_t>1) << (slot & 63)
        py = ry0
        while py < ry1:
            row = &prev[py, 0, 0]
            hv = 0
            for i in range(length):
                hv = _rotl(hv, 1) ^ _gear(row + 4 * (rx0 + i))
            px = rx0
            while True:
                slot = hv >> 52
                if filt[slot >> 6] & ((<uint64_t>1) << (slot & 63)):
                    for k in range(nkeys):
                        if key_hash[k] == hv and memcmp(row + 4 * px, &cur[keys[k, 1], keys[k, 0], 0], 4 * length) == 0:
                            if counts[k] < maxhits:
                                hits[k, counts[k], 0] = <int32_t>px
                                hits[k, counts[k], 1] = <int32_t>py
                            counts[k] += 1
                if px + length >= rx1:
                    break
                hv = _rotl(hv, 1) ^ _rotl(_gear(row + 4 * px), length) ^ _gear(row + 4 * (px + length))
                px += 1
            py += row_step
    free(key_hash)


def apply_copy(uint8_t[:, :, ::1] frame, Py_ssize_t sx, Py_ssize_t sy, Py_ssize_t x, Py_ssize_t y,
               Py_ssize_t w, Py_ssize_t h) -> None:
    """Copy the w x h block at (sx, sy) to (x, y) in place, as if through a temporary (RFB CopyRect)."""
    cdef Py_ssize_t fh = frame.shape[0], fw = frame.shape[1], i
    if frame.shape[2] != 4 or w < 0 or h < 0 or not (
            0 <= sx and sx + w <= fw and 0 <= x and x + w <= fw
            and 0 <= sy and sy + h <= fh and 0 <= y and y + h <= fh):
        raise ValueError("copy out of the frame")
    if w == 0 or h == 0:
        return
    with nogil:
        # Walk rows away from the overlap so no source row is overwritten before it is read.
        if y > sy:
            for i in range(h - 1, -1, -1):
                memmove(&frame[y + i, x, 0], &frame[sy + i, sx, 0], 4 * w)
        else:
            for i in range(h):
                memmove(&frame[y + i, x, 0], &frame[sy + i, sx, 0], 4 * w)

# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Tile kernels: which tiles of a BGRA frame changed, and where exactly.

Two ways to find changed tiles, both here because they win in different places:

* ``diff_tiles`` compares the new frame with the previous one row by row with
  ``memcmp`` (a whole row first, then per tile only where the row differs) and
  returns, per tile, the exact bounding box of the changed pixels. It reads two
  frames but is exact by construction; ChangeDetector uses it (see
  benchmarks/README.md for the measured comparison).
* ``tile_hashes`` reads one frame and gives a 64-bit hash per tile, for callers
  that keep hashes instead of a previous frame.

Frames are (H, W, 4) uint8, C-contiguous; edge tiles are partial.
"""
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int32_t
from libc.string cimport memcmp, memcpy, memset
from libc.stdlib cimport calloc, malloc, free

from agent._native.hashmix cimport segment_hash

# Words per tile row used to key the rows of a tile apart (128 px / 2).
cdef enum:
    ROW_KEY_STRIDE = 64


cdef inline bint _pixel_differs(const uint8_t* a, const uint8_t* b) noexcept nogil:
    cdef uint32_t u, v
    memcpy(&u, a, 4)
    memcpy(&v, b, 4)
    return u != v


cdef int _check_pair(const uint8_t[:, :, ::1] prev, const uint8_t[:, :, ::1] cur, int tile,
                     int32_t[:, :, ::1] boxes, const uint8_t[:, ::1] select) except -1:
    """The shapes every tile comparison needs, or ValueError."""
    cdef Py_ssize_t h = cur.shape[0], w = cur.shape[1]
    if prev.shape[0] != h or prev.shape[1] != w or prev.shape[2] != 4 or cur.shape[2] != 4:
        raise ValueError("prev and cur must both be (H, W, 4)")
    if tile < 1:
        raise ValueError("tile must be >= 1")
    cdef Py_ssize_t th = (h + tile - 1) // tile, tw = (w + tile - 1) // tile
    if boxes.shape[0] != th or boxes.shape[1] != tw or boxes.shape[2] != 4:
        raise ValueError(f"boxes must have shape ({th}, {tw}, 4)")
    if select is not None and (select.shape[0] != th or select.shape[1] != tw):
        raise ValueError(f"select must have shape ({th}, {tw})")
    return 0


cdef inline void _reset_boxes(int32_t[:, :, ::1] boxes, int tile, Py_ssize_t w) noexcept nogil:
    """Unseen tiles start with an empty column range: x0 at the right edge, x1 at the left."""
    cdef Py_ssize_t ty, tx, x0, x1
    cdef int32_t* box
    for ty in range(boxes.shape[0]):
        for tx in range(boxes.shape[1]):
            box = &boxes[ty, tx, 0]
            x0 = tx * tile
            x1 = x0 + tile
            if x1 > w:
                x1 = w
            box[0] = <int32_t>x1
            box[1] = 0
            box[2] = <int32_t>x0
            box[3] = 0


cdef inline int _finish_boxes(int32_t[:, :, ::1] boxes) noexcept nogil:
    """Zero the boxes of unchanged tiles; returns the changed ones."""
    cdef Py_ssize_t ty, tx
    cdef int32_t* box
    cdef int ndirty = 0
    for ty in range(boxes.shape[0]):
        for tx in range(boxes.shape[1]):
            box = &boxes[ty, tx, 0]
            if box[3] == 0:
                box[0] = 0
                box[2] = 0
            else:
                ndirty += 1
    return ndirty


cdef inline void _widen(int32_t* box, const uint8_t* sp, const uint8_t* cp, Py_ssize_t a, Py_ssize_t b,
                        Py_ssize_t y) noexcept nogil:
    """Columns [a, b) of row y differ somewhere (sp, cp: the source and current pixel at column a): widen box."""
    cdef Py_ssize_t i
    if box[3] == 0:
        box[1] = <int32_t>y
    box[3] = <int32_t>(y + 1)
    i = a
    while i < b and i < box[0]:
        if _pixel_differs(sp + 4 * (i - a), cp + 4 * (i - a)):
            box[0] = <int32_t>i
            break
        i += 1
    i = b - 1
    while i >= a and i >= box[2]:
        if _pixel_differs(sp + 4 * (i - a), cp + 4 * (i - a)):
            box[2] = <int32_t>(i + 1)
            break
        i -= 1


def tile_hashes(const uint8_t[:, :, ::1] frame, int tile, uint64_t[:, ::1] out) -> None:
    """Fill ``out[ty, tx]`` with the 64-bit hash of each tile (content only, not position)."""
    cdef Py_ssize_t h = frame.shape[0], w = frame.shape[1]
    cdef Py_ssize_t th = (h + tile - 1) // tile, tw = (w + tile - 1) // tile
    if frame.shape[2] != 4 or tile < 1:
        raise ValueError("frame must be (H, W, 4) and tile >= 1")
    if out.shape[0] != th or out.shape[1] != tw:
        raise ValueError(f"out must have shape ({th}, {tw})")
    cdef Py_ssize_t y, tx, ty, x0, x1
    with nogil:
        for ty in range(th):
            for tx in range(tw):
                out[ty, tx] = 0
        for y in range(h):
            ty = y // tile
            for tx in range(tw):
                x0 = tx * tile
                x1 = x0 + tile
                if x1 > w:
                    x1 = w
                out[ty, tx] += segment_hash(&frame[y, x0, 0], x1 - x0,
                                            <uint64_t>((y - ty * tile) * ROW_KEY_STRIDE))


def diff_tiles(const uint8_t[:, :, ::1] prev, const uint8_t[:, :, ::1] cur, int tile,
               int32_t[:, :, ::1] boxes, const uint8_t[:, ::1] select=None) -> int:
    """Exact changed-pixel box per tile; returns the number of changed tiles.

    ``boxes[ty, tx] = (x0, y0, x1, y1)`` in frame coordinates (end exclusive),
    or all zeros for an unchanged tile. With ``select`` (shape of the tile
    grid), only tiles whose entry is non-zero are compared; the others are
    reported unchanged.
    """
    _check_pair(prev, cur, tile, boxes, select)
    cdef const uint8_t* sel = NULL
    if select is not None and select.shape[0] > 0 and select.shape[1] > 0:
        sel = &select[0, 0]
    cdef int ndirty
    with nogil:
        ndirty = _diff_selected(prev, cur, tile, boxes, sel, select is not None)
    if ndirty < 0:
        raise MemoryError()
    return ndirty


def diff_damage(const uint8_t[:, :, ::1] prev, const uint8_t[:, :, ::1] cur, int tile,
                int32_t[:, :, ::1] boxes, damage) -> tuple:
    """``diff_tiles`` with the tiles that meet a rectangle of ``damage`` (``(x, y, w, h)``; empty ones and
    what lies outside the frame ignored) selected; returns ``(changed tiles, ty0, ty1, tx0, tx1)``, the part
    of the tile grid around the selected tiles (empty when none).

    One call where a typed glyph took a grid mask, a loop over the damage and the comparison
    (agent.changes.detector's path for X's damage)."""
    _check_pair(prev, cur, tile, boxes, None)
    cdef Py_ssize_t h = cur.shape[0], w = cur.shape[1], th = boxes.shape[0], tw = boxes.shape[1]
    cdef Py_ssize_t x, y, rw, rh, a, b, c, d, ty, tx
    cdef Py_ssize_t ty0 = th, ty1 = 0, tx0 = tw, tx1 = 0
    cdef uint8_t* sel = <uint8_t*>calloc(max(th * tw, 1), 1)
    if sel == NULL:
        raise MemoryError()
    cdef int ndirty
    try:
        for x, y, rw, rh in damage:
            if rw <= 0 or rh <= 0:
                continue
            a, c = max(y, 0) // tile, max(x, 0) // tile
            b, d = min((min(y + rh, h) + tile - 1) // tile, th), min((min(x + rw, w) + tile - 1) // tile, tw)
            if b <= a or d <= c:
                continue
            for ty in range(a, b):
                memset(sel + ty * tw + c, 1, d - c)
            ty0, ty1, tx0, tx1 = min(ty0, a), max(ty1, b), min(tx0, c), max(tx1, d)
        with nogil:
            ndirty = _diff_selected(prev, cur, tile, boxes, sel, True)
    finally:
        free(sel)
    if ndirty < 0:
        raise MemoryError()
    if ty1 <= ty0:
        ty0 = ty1 = tx0 = tx1 = 0
    return ndirty, ty0, ty1, tx0, tx1


cdef int _diff_selected(const uint8_t[:, :, ::1] prev, const uint8_t[:, :, ::1] cur, int tile,
                        int32_t[:, :, ::1] boxes, const uint8_t* sel, bint use_select) noexcept nogil:
    """The comparison of ``diff_tiles``: ``sel`` the grid's (th, tw) mask, C order (NULL with ``use_select``:
    an empty grid, nothing selected). Returns the changed tiles, -1 without memory."""
    cdef Py_ssize_t h = cur.shape[0], w = cur.shape[1]
    cdef Py_ssize_t tw = (w + tile - 1) // tile
    cdef Py_ssize_t y, ty, tx, x0, x1, rowbytes = w * 4, th = boxes.shape[0]
    cdef const uint8_t* p
    cdef const uint8_t* c
    # with a select, per tile row the first and past-the-last selected tile: a typed glyph selects a
    # tile or two, and the rows and columns around them are never visited
    cdef Py_ssize_t* span = NULL
    cdef Py_ssize_t tx_lo = 0, tx_hi = tw
    if use_select:
        span = <Py_ssize_t*>malloc(2 * max(th, 1) * sizeof(Py_ssize_t))
        if span == NULL:
            return -1
    _reset_boxes(boxes, tile, w)
    if use_select:
        for ty in range(th):
            span[2 * ty], span[2 * ty + 1] = tw, 0
            if sel == NULL:
                continue
            for tx in range(tw):
                if sel[ty * tw + tx] != 0:
                    if tx < span[2 * ty]:
                        span[2 * ty] = tx
                    span[2 * ty + 1] = tx + 1
    for y in range(h):
        ty = y // tile
        if use_select:
            tx_lo, tx_hi = span[2 * ty], span[2 * ty + 1]
            if tx_lo >= tx_hi:
                continue
        p = &prev[y, 0, 0]
        c = &cur[y, 0, 0]
        if not use_select and memcmp(p, c, rowbytes) == 0:
            continue
        for tx in range(tx_lo, tx_hi):
            if use_select and sel[ty * tw + tx] == 0:
                continue
            x0 = tx * tile
            x1 = x0 + tile
            if x1 > w:
                x1 = w
            if memcmp(p + 4 * x0, c + 4 * x0, 4 * (x1 - x0)) == 0:
                continue
            _widen(&boxes[ty, tx, 0], p + 4 * x0, c + 4 * x0, x0, x1, y)
    free(span)
    return _finish_boxes(boxes)


def diff_tiles_after_copies(const uint8_t[:, :, ::1] prev, const uint8_t[:, :, ::1] cur, int tile,
                            int32_t[:, :, ::1] boxes, const uint8_t[:, ::1] select,
                            const int32_t[:, ::1] copies) -> int:
    """``diff_tiles`` of the previous frame *with the copies applied* against ``cur``, without building it.

    ``copies[i] = (x0, y0, x1, y1, dx, dy)``: the destination box (end
    exclusive) shows ``prev`` shifted by ``(dx, dy)``; destinations are
    disjoint and every copy reads pixels no other copy writes (the detector
    orders them so), so each destination pixel compares against ``prev[y - dy,
    x - dx]`` and every other pixel against ``prev[y, x]``. Only tiles whose
    ``select`` entry is non-zero are compared; returns the changed tiles.
    """
    cdef Py_ssize_t h = cur.shape[0], w = cur.shape[1], n = copies.shape[0]
    cdef Py_ssize_t tw = (w + tile - 1) // tile if tile > 0 else 0
    if select is None:
        raise ValueError("select is required")
    _check_pair(prev, cur, tile, boxes, select)
    if copies.shape[1] != 6:
        raise ValueError("copies must have shape (n, 6)")
    cdef Py_ssize_t i, k
    for i in range(n):
        if not (0 <= copies[i, 0] <= copies[i, 2] <= w and 0 <= copies[i, 1] <= copies[i, 3] <= h
                and 0 <= copies[i, 0] - copies[i, 4] and copies[i, 2] - copies[i, 4] <= w
                and 0 <= copies[i, 1] - copies[i, 5] and copies[i, 3] - copies[i, 5] <= h):
            raise ValueError(f"copy {i} is out of the frame")
    cdef Py_ssize_t* active = <Py_ssize_t*>malloc((n + 1) * sizeof(Py_ssize_t))
    if active == NULL:
        raise MemoryError()
    cdef Py_ssize_t y, ty, tx, x0, x1, p, e, nact, j, nxt
    cdef const uint8_t* c
    cdef const uint8_t* src
    cdef int ndirty = 0
    with nogil:
        _reset_boxes(boxes, tile, w)
        for y in range(h):
            ty = y // tile
            nact = 0
            for i in range(n):
                if copies[i, 1] <= y < copies[i, 3] and copies[i, 0] < copies[i, 2]:
                    active[nact] = i
                    nact += 1
            c = &cur[y, 0, 0]
            for tx in range(tw):
                if select[ty, tx] == 0:
                    continue
                x0 = tx * tile
                x1 = x0 + tile
                if x1 > w:
                    x1 = w
                p = x0
                while p < x1:
                    # the copy covering p on this row, else the nearest copy starting right of p
                    j = -1
                    nxt = x1
                    for k in range(nact):
                        i = active[k]
                        if copies[i, 0] <= p < copies[i, 2]:
                            j = i
                            break
                        if p < copies[i, 0] < nxt:
                            nxt = copies[i, 0]
                    if j >= 0:
                        e = copies[j, 2] if copies[j, 2] < x1 else x1
                        src = &prev[y - copies[j, 5], p - copies[j, 4], 0]
                    else:
                        e = nxt
                        src = &prev[y, p, 0]
                    if memcmp(src, c + 4 * p, 4 * (e - p)) != 0:
                        _widen(&boxes[ty, tx, 0], src, c + 4 * p, p, e, y)
                    p = e
        ndirty = _finish_boxes(boxes)
    free(active)
    return ndirty

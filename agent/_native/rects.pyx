# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Rectangle kernels: merge per-tile change boxes into few rectangles, the boxes of a bit
mask's tiles, and connected groups of dirty tiles.

Boxes are ``(x0, y0, x1, y1)`` (end exclusive) per tile, all zeros for a clean
tile: the output of ``tiles.diff_tiles`` and of the tracker's ``DirtyBits.tile_boxes``.

Merging is greedy and cost based: a rectangle costs ``overhead`` (its header
and encoder framing, in pixel units) plus its area, and two rectangles are
replaced by their union whenever the union costs no more than the pair. Each
merge therefore never raises the total cost; the union may overlap another
rectangle, which costs pixels sent twice but is bounded by the same rule.
Pass 1 merges left to right within a tile row, pass 2 merges the row strips
downwards. tests/reference.py has the same algorithm in plain Python.
"""
from libc.stdint cimport uint8_t, uint32_t, int32_t, int64_t
from libc.stdlib cimport malloc, free


cdef struct Box:
    int32_t x0
    int32_t y0
    int32_t x1
    int32_t y1


cdef inline int64_t _area(Box b) noexcept nogil:
    return <int64_t>(b.x1 - b.x0) * <int64_t>(b.y1 - b.y0)


cdef inline Box _union(Box a, Box b) noexcept nogil:
    cdef Box u
    u.x0 = a.x0 if a.x0 < b.x0 else b.x0
    u.y0 = a.y0 if a.y0 < b.y0 else b.y0
    u.x1 = a.x1 if a.x1 > b.x1 else b.x1
    u.y1 = a.y1 if a.y1 > b.y1 else b.y1
    return u


cdef inline bint _worth_merging(Box a, Box b, int64_t overhead) noexcept nogil:
    return _area(_union(a, b)) <= _area(a) + _area(b) + overhead


def merge_boxes(const int32_t[:, :, ::1] boxes, long overhead, int32_t[:, ::1] out) -> int:
    """Merge the non-empty boxes into rectangles ``(x, y, w, h)`` written to ``out``; returns their count.

    ``out`` needs at least one row per non-empty box. Rectangles are not split
    to any size limit here.
    """
    cdef Py_ssize_t th = boxes.shape[0], tw = boxes.shape[1]
    if boxes.shape[2] != 4 or out.shape[1] != 4:
        raise ValueError("boxes must be (th, tw, 4) and out (n, 4)")
    if overhead < 0:
        raise ValueError("overhead must be >= 0")
    if th == 0 or tw == 0:
        return 0
    cdef Py_ssize_t nboxes = _count(&boxes[0, 0, 0], 4 * tw, th, tw)
    if out.shape[0] < nboxes:
        raise ValueError(f"out needs at least {nboxes} rows")
    if nboxes == 0:
        return 0
    cdef Py_ssize_t n
    with nogil:
        n = _merge(&boxes[0, 0, 0], 4 * tw, th, tw, nboxes, overhead, &out[0, 0])
    if n < 0:
        raise MemoryError()
    return n


def merge_part(const int32_t[:, :, ::1] boxes, Py_ssize_t ty0, Py_ssize_t ty1, Py_ssize_t tx0, Py_ssize_t tx1,
               long overhead, long max_area) -> tuple:
    """``(area, rects)`` of the part ``boxes[ty0:ty1, tx0:tx1]`` (bounds clipped to the grid): the pixels of
    its boxes added up, and, when that is below ``max_area``, the rectangles ``merge_boxes`` gives for the
    part, as a list of ``(x, y, w, h)``; None at or above it.

    One call where a typed glyph's few tiles took a copy of the part, an output array, the merge and two
    lists: the detector's path for small changes (agent.changes.detector)."""
    if boxes.shape[2] != 4:
        raise ValueError("boxes must be (th, tw, 4)")
    if overhead < 0:
        raise ValueError("overhead must be >= 0")
    ty0, ty1 = max(ty0, 0), min(ty1, boxes.shape[0])
    tx0, tx1 = max(tx0, 0), min(tx1, boxes.shape[1])
    if ty1 <= ty0 or tx1 <= tx0:
        return 0, ([] if max_area > 0 else None)
    cdef Py_ssize_t th = ty1 - ty0, tw = tx1 - tx0, stride = 4 * boxes.shape[1], ty, tx, k, n
    cdef const int32_t* base = &boxes[ty0, tx0, 0]
    cdef const int32_t* box
    cdef int64_t area = 0
    for ty in range(th):
        for tx in range(tw):
            box = base + ty * stride + 4 * tx
            if box[2] > box[0] and box[3] > box[1]:
                area += <int64_t>(box[2] - box[0]) * <int64_t>(box[3] - box[1])
    if area >= max_area:
        return area, None
    cdef Py_ssize_t nboxes = _count(base, stride, th, tw)
    if nboxes == 0:
        return area, []
    cdef int32_t* out = <int32_t*>malloc(4 * nboxes * sizeof(int32_t))
    if out == NULL:
        raise MemoryError()
    with nogil:
        n = _merge(base, stride, th, tw, nboxes, overhead, out)
    if n < 0:
        free(out)
        raise MemoryError()
    rects = [(out[4 * k], out[4 * k + 1], out[4 * k + 2], out[4 * k + 3]) for k in range(n)]
    free(out)
    return area, rects


cdef Py_ssize_t _count(const int32_t* base, Py_ssize_t stride, Py_ssize_t th, Py_ssize_t tw) noexcept nogil:
    """Non-empty boxes of the grid whose box (ty, tx) is at ``base + ty * stride + 4 * tx``."""
    cdef Py_ssize_t ty, tx, n = 0
    cdef const int32_t* box
    for ty in range(th):
        for tx in range(tw):
            box = base + ty * stride + 4 * tx
            if box[2] > box[0] and box[3] > box[1]:
                n += 1
    return n


cdef Py_ssize_t _merge(const int32_t* base, Py_ssize_t stride, Py_ssize_t th, Py_ssize_t tw, Py_ssize_t nboxes,
                       int64_t oh, int32_t* out) noexcept nogil:
    """The merge (module docstring) of ``nboxes`` non-empty boxes laid out as for ``_count``, into ``out``
    (``(x, y, w, h)`` rows, room for ``nboxes``); returns the rectangles written, -1 without memory."""
    cdef Box* strips = <Box*>malloc(nboxes * sizeof(Box))
    cdef Py_ssize_t* row_start = <Py_ssize_t*>malloc((th + 1) * sizeof(Py_ssize_t))
    cdef Box* active = <Box*>malloc(tw * sizeof(Box))
    cdef Box* nxt = <Box*>malloc(tw * sizeof(Box))
    cdef uint8_t* alive = <uint8_t*>malloc(tw)
    cdef Box* tmp
    if strips == NULL or row_start == NULL or active == NULL or nxt == NULL or alive == NULL:
        free(strips); free(row_start); free(active); free(nxt); free(alive)
        return -1
    cdef Py_ssize_t nstrips = 0, nactive = 0, nnext = 0, nout = 0, ty, tx, i, j
    cdef const int32_t* box
    cdef Box b, cur_box
    cdef bint have, merged
    # Pass 1: runs along each tile row.
    for ty in range(th):
        row_start[ty] = nstrips
        have = False
        for tx in range(tw):
            box = base + ty * stride + 4 * tx
            b.x0 = box[0]
            b.y0 = box[1]
            b.x1 = box[2]
            b.y1 = box[3]
            if b.x1 <= b.x0 or b.y1 <= b.y0:
                continue
            if have and _worth_merging(cur_box, b, oh):
                cur_box = _union(cur_box, b)
            else:
                if have:
                    strips[nstrips] = cur_box
                    nstrips += 1
                cur_box = b
                have = True
        if have:
            strips[nstrips] = cur_box
            nstrips += 1
    row_start[th] = nstrips
    # Pass 2: strips grow downwards into the rectangles still open from the row above.
    for ty in range(th):
        nnext = 0
        for i in range(row_start[ty], row_start[ty + 1]):
            b = strips[i]
            merged = False
            for j in range(nactive):
                if alive[j] and _worth_merging(active[j], b, oh):
                    nxt[nnext] = _union(active[j], b)
                    nnext += 1
                    alive[j] = 0
                    merged = True
                    break
            if not merged:
                for j in range(nnext):
                    if _worth_merging(nxt[j], b, oh):
                        nxt[j] = _union(nxt[j], b)
                        merged = True
                        break
            if not merged:
                nxt[nnext] = b
                nnext += 1
        for j in range(nactive):
            if alive[j]:
                _emit(out, nout, active[j])
                nout += 1
        tmp = active
        active = nxt
        nxt = tmp
        nactive = nnext
        for j in range(nactive):
            alive[j] = 1
    for j in range(nactive):
        _emit(out, nout, active[j])
        nout += 1
    free(strips); free(row_start); free(active); free(nxt); free(alive)
    return nout


cdef inline void _emit(int32_t* out, Py_ssize_t k, Box b) noexcept nogil:
    out[4 * k] = b.x0
    out[4 * k + 1] = b.y0
    out[4 * k + 2] = b.x1 - b.x0
    out[4 * k + 3] = b.y1 - b.y0


cdef inline int32_t _find(int32_t* parent, int32_t i) noexcept nogil:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def label_tiles(const uint8_t[:, ::1] mask, int32_t[:, ::1] labels) -> int:
    """Label 8-connected groups of non-zero cells 1..n in raster order of first cell; returns n."""
    cdef Py_ssize_t th = mask.shape[0], tw = mask.shape[1]
    if labels.shape[0] != th or labels.shape[1] != tw:
        raise ValueError("labels must have the shape of mask")
    cdef Py_ssize_t n = th * tw, i, ty, tx, k
    if n == 0:
        return 0
    cdef int32_t* parent = <int32_t*>malloc(n * sizeof(int32_t))
    cdef int32_t* name = <int32_t*>malloc(n * sizeof(int32_t))
    if parent == NULL or name == NULL:
        free(parent); free(name)
        raise MemoryError()
    cdef int32_t a, r, nlabels = 0
    cdef int dy, dx
    cdef Py_ssize_t ny, nx
    with nogil:
        for i in range(n):
            parent[i] = <int32_t>i
            name[i] = 0
        for ty in range(th):
            for tx in range(tw):
                if not mask[ty, tx]:
                    continue
                a = _find(parent, <int32_t>(ty * tw + tx))
                # Join with the already visited neighbours: W, NW, N, NE.
                for k in range(4):
                    if k == 0:
                        dy = 0; dx = -1
                    elif k == 1:
                        dy = -1; dx = -1
                    elif k == 2:
                        dy = -1; dx = 0
                    else:
                        dy = -1; dx = 1
                    ny = ty + dy
                    nx = tx + dx
                    if ny < 0 or nx < 0 or nx >= tw or not mask[ny, nx]:
                        continue
                    r = _find(parent, <int32_t>(ny * tw + nx))
                    if r != a:
                        # Keep the smaller index as root so roots are the first cell in raster order.
                        if r < a:
                            parent[a] = r
                            a = r
                        else:
                            parent[r] = a
        for ty in range(th):
            for tx in range(tw):
                if not mask[ty, tx]:
                    labels[ty, tx] = 0
                    continue
                r = _find(parent, <int32_t>(ty * tw + tx))
                if name[r] == 0:
                    nlabels += 1
                    name[r] = nlabels
                labels[ty, tx] = name[r]
    free(parent); free(name)
    return nlabels


cdef inline int _lowest_bit(uint32_t v) noexcept nogil:
    cdef int i = 0
    while not (v & 1):
        v >>= 1
        i += 1
    return i


cdef inline int _highest_bit(uint32_t v) noexcept nogil:
    cdef int i = 31
    while not (v >> 31):
        v <<= 1
        i -= 1
    return i


def bit_boxes(const uint32_t[:, ::1] words, Py_ssize_t x0, Py_ssize_t y0, Py_ssize_t x1, Py_ssize_t y1, int tile,
              int32_t[:, :, ::1] boxes) -> int:
    """Per tile meeting the box ``(x0, y0, x1, y1)``, the box of its set bits inside it; returns the dirty tiles.

    ``words`` is a bit mask (bit ``x % 32`` of ``words[y, x // 32]`` is pixel (x, y)); a tile is
    ``tile`` rows of one word column, the grid anchored at the screen's corner. ``boxes`` has
    shape (tile rows, word columns, 4) of the tiles the box meets and gets ``(x0, y0, x1, y1)``
    in screen coordinates, all zeros for a tile with no bit set: ``tiles.diff_tiles``'s layout.
    One pass over the box's words; the tracker called it once a request (numpy took 0.27 ms).
    """
    if tile < 1 or not (0 <= x0 < x1 <= 32 * words.shape[1] and 0 <= y0 < y1 <= words.shape[0]):
        raise ValueError("the box must be non-empty and inside the mask, the tile at least a row")
    cdef Py_ssize_t top = y0 // tile * tile, t0 = x0 // 32, t1 = (x1 + 31) // 32
    cdef Py_ssize_t rows = (y1 - top + tile - 1) // tile, ncols = t1 - t0
    if boxes.shape[0] != rows or boxes.shape[1] != ncols or boxes.shape[2] != 4:
        raise ValueError(f"boxes must have the shape ({rows}, {ncols}, 4)")
    cdef uint32_t* ored = <uint32_t*>malloc(ncols * sizeof(uint32_t))
    cdef int32_t* first = <int32_t*>malloc(ncols * sizeof(int32_t))
    cdef int32_t* last = <int32_t*>malloc(ncols * sizeof(int32_t))
    if ored == NULL or first == NULL or last == NULL:
        free(ored); free(first); free(last)
        raise MemoryError()
    cdef uint32_t full = 0xFFFFFFFFu
    cdef uint32_t first_mask = full << <int>(x0 - t0 * 32)
    cdef uint32_t last_mask = full >> <int>(t1 * 32 - x1)
    cdef uint32_t v
    cdef Py_ssize_t tr, r, j, ry0, ry1
    cdef int ndirty = 0
    with nogil:
        for tr in range(rows):
            ry0 = max(top + tr * tile, y0)
            ry1 = min(top + (tr + 1) * tile, y1)
            for j in range(ncols):
                ored[j] = 0
                first[j] = -1
            for r in range(ry0, ry1):
                for j in range(ncols):
                    v = words[r, t0 + j]
                    if j == 0:
                        v &= first_mask
                    if j == ncols - 1:
                        v &= last_mask
                    if v:
                        ored[j] |= v
                        if first[j] < 0:
                            first[j] = <int32_t>r
                        last[j] = <int32_t>r
            for j in range(ncols):
                if ored[j]:
                    ndirty += 1
                    boxes[tr, j, 0] = <int32_t>((t0 + j) * 32 + _lowest_bit(ored[j]))
                    boxes[tr, j, 1] = first[j]
                    boxes[tr, j, 2] = <int32_t>((t0 + j) * 32 + _highest_bit(ored[j]) + 1)
                    boxes[tr, j, 3] = last[j] + 1
                else:
                    boxes[tr, j, 0] = boxes[tr, j, 1] = boxes[tr, j, 2] = boxes[tr, j, 3] = 0
    free(ored); free(first); free(last)
    return ndirty

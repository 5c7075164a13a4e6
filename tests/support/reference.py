"""Plain numpy references for the change-detection kernels and the change invariant.

Each function computes what one kernel in agent/_native computes, the slow and
obvious way, so property tests can hold the two equal. Nothing here is tuned:
clarity is the point.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
ROW_KEY_STRIDE = 64


# -- hashing (agent/_native/hashmix.pxd, tiles.tile_hashes, scroll.row_hashes) ---------------

def mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on a uint64 array (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def _words(pixels: np.ndarray) -> np.ndarray:
    """(..., n, 4) uint8 pixels -> (..., ceil(n/2)) uint64 words, an odd last pixel zero-extended."""
    if pixels.shape[-2] % 2:
        pad = np.zeros(pixels.shape[:-2] + (1, 4), np.uint8)
        pixels = np.concatenate([pixels, pad], axis=-2)
    return np.ascontiguousarray(pixels).reshape(pixels.shape[:-2] + (pixels.shape[-2] * 4,)).view(np.uint64)


def segment_hashes(pixels: np.ndarray, first_index: np.ndarray | int = 0) -> np.ndarray:
    """Hash of each row segment in (..., n, 4): sum of mix64(word_i ^ (first_index + i + 1) * GOLDEN)."""
    words = _words(pixels)
    index = np.arange(words.shape[-1], dtype=np.uint64) + np.asarray(first_index, np.uint64)[..., None]
    keys = (index + np.uint64(1)) * _GOLDEN
    return mix64(words ^ keys).sum(axis=-1, dtype=np.uint64)


def row_hashes(frame: np.ndarray, x0: int, x1: int, y0: int, y1: int) -> np.ndarray:
    return segment_hashes(frame[y0:y1, x0:x1])


def tile_hashes(frame: np.ndarray, tile: int) -> np.ndarray:
    h, w = frame.shape[:2]
    th, tw = -(-h // tile), -(-w // tile)
    out = np.zeros((th, tw), np.uint64)
    for ty in range(th):
        for tx in range(tw):
            block = frame[ty * tile:(ty + 1) * tile, tx * tile:(tx + 1) * tile]
            rows = np.arange(block.shape[0], dtype=np.uint64) * np.uint64(ROW_KEY_STRIDE)
            out[ty, tx] = segment_hashes(block, rows).sum(dtype=np.uint64)
    return out


# -- tiles and rectangles --------------------------------------------------------------------

def _bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _tile_boxes(changed: np.ndarray, tile: int) -> np.ndarray:
    h, w = changed.shape
    th, tw = -(-h // tile), -(-w // tile)
    boxes = np.zeros((th, tw, 4), np.int32)
    for ty in range(th):
        for tx in range(tw):
            box = _bbox(changed[ty * tile:(ty + 1) * tile, tx * tile:(tx + 1) * tile])
            if box is not None:
                boxes[ty, tx] = (box[0] + tx * tile, box[1] + ty * tile, box[2] + tx * tile, box[3] + ty * tile)
    return boxes


def diff_tiles(prev: np.ndarray, cur: np.ndarray, tile: int, select: np.ndarray | None = None) -> np.ndarray:
    """Per tile, the exact box (x0, y0, x1, y1) of pixels that differ, zeros where none do."""
    changed = (prev != cur).any(axis=2)
    boxes = _tile_boxes(changed, tile)
    if select is not None:
        boxes[~select.astype(bool)] = 0
    return boxes


def mask_boxes(mask: np.ndarray, tile: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """Per tile of the region (grid anchored at its corner), the box of the set entries, in mask coordinates."""
    boxes = _tile_boxes(mask[y0:y1, x0:x1].astype(bool), tile)
    dirty = boxes[:, :, 2] > 0
    boxes[dirty] += np.array([x0, y0, x0, y0], np.int32)
    return boxes


def merge_boxes(boxes: np.ndarray, overhead: int) -> list[tuple[int, int, int, int]]:
    """rects.merge_boxes in plain Python: row runs, then strips merged downwards, by cost."""
    def union(a, b):
        return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))

    def area(a):
        return (a[2] - a[0]) * (a[3] - a[1])

    def worth(a, b):
        return area(union(a, b)) <= area(a) + area(b) + overhead

    strips: list[list[tuple[int, int, int, int]]] = []
    for ty in range(boxes.shape[0]):
        row: list[tuple[int, int, int, int]] = []
        cur = None
        for tx in range(boxes.shape[1]):
            b = tuple(int(v) for v in boxes[ty, tx])
            if b[2] <= b[0] or b[3] <= b[1]:
                continue
            if cur is not None and worth(cur, b):
                cur = union(cur, b)
            else:
                if cur is not None:
                    row.append(cur)
                cur = b
        if cur is not None:
            row.append(cur)
        strips.append(row)
    done: list = []
    active: list = []
    for row in strips:
        nxt: list = []
        for s in row:
            for i, a in enumerate(active):
                if a is not None and worth(a, s):
                    nxt.append(union(a, s))
                    active[i] = None
                    break
            else:
                for j, n in enumerate(nxt):
                    if worth(n, s):
                        nxt[j] = union(n, s)
                        break
                else:
                    nxt.append(s)
        done.extend(a for a in active if a is not None)
        active = nxt
    done.extend(active)
    return [(x0, y0, x1 - x0, y1 - y0) for x0, y0, x1, y1 in done]


def label_tiles(mask: np.ndarray) -> np.ndarray:
    """8-connected labels 1..n numbered in raster order of each group's first cell."""
    mask = mask.astype(bool)
    labels = np.zeros(mask.shape, np.int32)
    n = 0
    for start in zip(*np.nonzero(mask)):
        if labels[start]:
            continue
        n += 1
        labels[start] = n
        stack = [start]
        while stack:
            y, x = stack.pop()
            for ny in range(y - 1, y + 2):
                for nx in range(x - 1, x + 2):
                    if 0 <= ny < mask.shape[0] and 0 <= nx < mask.shape[1] and mask[ny, nx] and not labels[ny, nx]:
                        labels[ny, nx] = n
                        stack.append((ny, nx))
    return labels


# -- moves -----------------------------------------------------------------------------------

def vote_shifts(prev_hashes: np.ndarray, cur_hashes: np.ndarray, max_shift: int, max_repeat: int) -> np.ndarray:
    votes = np.zeros(2 * max_shift + 1, np.int32)
    equal = cur_hashes[:, None] == prev_hashes[None, :]
    repeats = (prev_hashes[:, None] == prev_hashes[None, :]).sum(axis=1)
    equal &= (repeats <= max_repeat)[None, :]
    i, j = np.nonzero(equal)
    d = i - j
    keep = (d != 0) & (np.abs(d) <= max_shift)
    np.add.at(votes, d[keep] + max_shift, 1)
    return votes


def _shifted_equal(prev: np.ndarray, cur: np.ndarray, x0: int, y0: int, x1: int, y1: int, dx: int, dy: int) -> bool:
    h, w = cur.shape[:2]
    if x0 - dx < 0 or y0 - dy < 0 or x1 - dx > w or y1 - dy > h:
        return False
    return bool(np.array_equal(cur[y0:y1, x0:x1], prev[y0 - dy:y1 - dy, x0 - dx:x1 - dx]))


def match_cells(prev: np.ndarray, cur: np.ndarray, cell: int, dx: int, dy: int, select: np.ndarray) -> np.ndarray:
    h, w = cur.shape[:2]
    out = np.zeros(select.shape, np.uint8)
    for cy, cx in zip(*np.nonzero(select)):
        x0, y0 = cx * cell, cy * cell
        out[cy, cx] = _shifted_equal(prev, cur, x0, y0, min(x0 + cell, w), min(y0 + cell, h), dx, dy)
    return out


def grow_copy(prev: np.ndarray, cur: np.ndarray, dx: int, dy: int, rect: Sequence[int], max_grow: int,
              avoid: Iterable[Sequence[int]]) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = rect
    avoid = [tuple(a) for a in avoid]
    h, w = cur.shape[:2]

    def free(a0, b0, a1, b1):
        return all(not (a0 < r[2] and r[0] < a1 and b0 < r[3] and r[1] < b1) for r in avoid)

    n = 0
    while n < max_grow and y0 > 0 and free(x0, y0 - 1, x1, y0) and _shifted_equal(prev, cur, x0, y0 - 1, x1, y0, dx, dy):
        y0, n = y0 - 1, n + 1
    n = 0
    while n < max_grow and y1 < h and free(x0, y1, x1, y1 + 1) and _shifted_equal(prev, cur, x0, y1, x1, y1 + 1, dx, dy):
        y1, n = y1 + 1, n + 1
    n = 0
    while n < max_grow and x0 > 0 and free(x0 - 1, y0, x0, y1) and _shifted_equal(prev, cur, x0 - 1, y0, x0, y1, dx, dy):
        x0, n = x0 - 1, n + 1
    n = 0
    while n < max_grow and x1 < w and free(x1, y0, x1 + 1, y1) and _shifted_equal(prev, cur, x1, y0, x1 + 1, y1, dx, dy):
        x1, n = x1 + 1, n + 1
    return x0, y0, x1, y1


def find_segments(prev: np.ndarray, cur: np.ndarray, keys: Sequence[tuple[int, int]], length: int,
                  region: tuple[int, int, int, int], max_hits: int,
                  row_step: int = 1) -> tuple[list[int], list[list[tuple[int, int]]]]:
    """Per key, how many positions of the region's every ``row_step``-th row hold the same run, and the
    first max_hits in raster order."""
    rx0, ry0, rx1, ry1 = region
    px = prev.view(np.uint32)[..., 0]
    counts, hits = [], []
    for kx, ky in keys:
        key = cur[ky, kx:kx + length].view(np.uint32)[:, 0]
        found = []
        if rx1 - rx0 >= length:
            windows = np.lib.stride_tricks.sliding_window_view(px[ry0:ry1, rx0:rx1], length, axis=1)
            ys, xs = np.nonzero((windows == key).all(axis=2))
            found = [(int(x) + rx0, int(y) + ry0) for y, x in zip(ys, xs) if y % row_step == 0]
        counts.append(len(found))
        hits.append(found[:max_hits])
    return counts, hits


# -- the invariant -----------------------------------------------------------------------------

def apply_copies(state: np.ndarray, copies: Iterable[Sequence[int]]) -> None:
    """Apply (src_x, src_y, x, y, w, h) copies in order, each reading the state the previous left."""
    for sx, sy, x, y, w, h in copies:
        state[y:y + h, x:x + w] = state[sy:sy + h, sx:sx + w].copy()


def apply_changes(state: np.ndarray, frame: np.ndarray, copies: Iterable[Sequence[int]],
                  rects: Iterable[Sequence[int]]) -> np.ndarray:
    """What a viewer holding ``state`` shows after an update: copies, then rect pixels from ``frame``."""
    out = state.copy()
    apply_copies(out, copies)
    for x, y, w, h in rects:
        out[y:y + h, x:x + w] = frame[y:y + h, x:x + w]
    return out


# -- reference workloads: plain numpy frame sequences for tests and benchmarks -----------------

def document(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A light page of dark 'text': lines of words with blank rows between, as on a scrolled document."""
    page = np.empty((h, w, 4), np.uint8)
    page[:] = (246, 244, 240, 255)
    ink = rng.random((h, w)) < 0.35
    line = (np.arange(h) % 18) < 12
    words = np.zeros((h, w), bool)
    for top in range(0, h, 18):
        x = int(rng.integers(0, 12))
        while x < w:
            n = int(rng.integers(6, 60))
            words[top:top + 12, x:x + n] = True
            x += n + int(rng.integers(5, 12))
    mask = ink & words & line[:, None]
    page[mask] = (40, 36, 30, 255)
    return page


def desktop(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A textured wallpaper: every pixel differs from its neighbours, so nothing matches by accident."""
    base = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    base[..., 3] = 255
    return base


def scroll_frames(w: int, h: int, n: int, seed: int = 0) -> list[np.ndarray]:
    """A document scrolling up and down in a viewport with a moving scrollbar thumb, on a desktop."""
    rng = np.random.default_rng(seed)
    screen = desktop(rng, h, w)
    vx0, vy0 = w // 10, h // 12
    vx1, vy1 = max(vx0 + 1, w - w // 10 - 12), max(vy0 + 1, h - h // 12)
    vw, vh = vx1 - vx0, vy1 - vy0
    doc = document(rng, 4 * vh + 40, vw)
    offset = int(rng.integers(0, 2 * vh))
    frames = []
    for _ in range(n):
        frame = screen.copy()
        frame[vy0:vy1, vx0:vx1] = doc[offset:offset + vh]
        thumb = vy0 + offset * vh // len(doc)
        frame[vy0:vy1, vx1:min(vx1 + 12, w)] = (200, 200, 200, 255)
        frame[thumb:thumb + max(1, vh // 4), vx1:min(vx1 + 12, w)] = (90, 90, 90, 255)
        frames.append(frame)
        offset = int(np.clip(offset + int(rng.choice([-54, -36, -18, -3, 3, 18, 36, 54, 90])), 0, len(doc) - vh))
    return frames


def drag_frames(w: int, h: int, n: int, seed: int = 0, diagonal: bool = True) -> list[np.ndarray]:
    """A window with a title bar and a document dragged around a textured desktop."""
    rng = np.random.default_rng(seed)
    screen = desktop(rng, h, w)
    ww, wh = max(1, w // 3), max(1, h // 3)
    window = document(rng, wh, ww)
    window[:min(wh, 20)] = (60, 90, 160, 255)
    x, y = int(rng.integers(0, w - ww + 1)), int(rng.integers(0, h - wh + 1))
    frames = []
    for _ in range(n):
        frame = screen.copy()
        frame[y:y + wh, x:x + ww] = window
        frames.append(frame)
        dx = int(rng.integers(-25, 26)) if diagonal else 0
        dy = int(rng.integers(-25, 26))
        x, y = int(np.clip(x + dx, 0, w - ww)), int(np.clip(y + dy, 0, h - wh))
    return frames


# -- text cells (agent/_native/cells.find_cells) ----------------------------------------------

def find_cells(indices: np.ndarray, x: int, likely: int, min_pitch: int, max_pitch: int, blank_share: float,
               min_cells: int, min_ink_rows: int) -> tuple[int, int] | None:
    """The pitch whose emptiest phase of columns is nearly blank, and where its cells start (numpy)."""
    rows, width = indices.shape
    if width < min_cells * max_pitch or rows < min_pitch:
        return None
    background = np.bincount(indices[::4, ::4].ravel(), minlength=256).argmax()
    ink = np.count_nonzero(indices != background, axis=0)
    if ink.sum() < min_ink_rows * rows:
        return None
    columns = np.arange(x, x + width)
    for pitch in ([likely] if likely > 0 else []) + list(range(min_pitch, max_pitch + 1)):
        whole = width // pitch * pitch
        per_phase = np.bincount(columns[:whole] % pitch, weights=ink[:whole], minlength=pitch)
        blank = int(per_phase.argmin())
        if per_phase[blank] < blank_share * per_phase.mean():
            return pitch, (blank + 1) % pitch
    return None


def xshm_grab(screen: np.ndarray, frame: np.ndarray, rects: Iterable[Sequence[int]], base: np.ndarray | None,
              segment_size: int) -> list[tuple[int, int, int, int]]:
    """agent._native.xgrab.Xcb.grab, with ``screen`` for what X holds: ``frame`` gets each rectangle (clipped),
    in bands of the rows that fit the segment; with ``base``, only rows that differ from it, returned as
    runs within each band."""
    height, width = frame.shape[:2]
    written: list[tuple[int, int, int, int]] = []
    for x, y, w, h in rects:
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
        if x1 <= x0 or y1 <= y0:
            continue
        band = max(1, min(y1 - y0, segment_size // (4 * (x1 - x0))))
        for top in range(y0, y1, band):
            bottom = min(top + band, y1)
            if base is None:
                frame[top:bottom, x0:x1] = screen[top:bottom, x0:x1]
                continue
            differs = (base[top:bottom, x0:x1] != screen[top:bottom, x0:x1]).any(axis=(1, 2))
            frame[top:bottom, x0:x1][differs] = screen[top:bottom, x0:x1][differs]
            edges = np.flatnonzero(np.diff(np.concatenate(([0], differs.astype(np.int8), [0]))))
            written += [(x0, top + int(a), x1 - x0, int(b - a)) for a, b in zip(edges[0::2], edges[1::2])]
    return written


def to_stripes(matrix: bytes, width: int, stripe: int, first: int = 0) -> bytes:
    """agent._native.stripes.to_stripes in numpy (``first`` at most ``width``, the matrix whole)."""
    rows = len(matrix) // width
    a = np.frombuffer(matrix, np.uint8).reshape(rows, width)
    full = first + (width - first) // stripe * stripe
    striped = a[:, first:full].reshape(rows, (full - first) // stripe, stripe).transpose(1, 0, 2)
    return a[:, :first].tobytes() + striped.tobytes() + a[:, full:].tobytes()

"""Drawing primitives for the synthetic workloads.

Frames are (H, W, 4) uint8 BGRA; here they are drawn through the same memory
viewed as (H, W) uint32, so that a fill or a blit is one numpy assignment per
rectangle and frames stay cheap even at 4K. Colours are packed 0xAARRGGBB,
which is B, G, R, A in memory on the little-endian machines we run on.

Everything clips: a workload laid out for 1920x1080 must also draw on a 1x1
screen without an exception, so every primitive takes a clip box and silently
draws nothing outside it.
"""
from __future__ import annotations

import sys
from collections import OrderedDict

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from agent.models import Box, intersect

if sys.byteorder != "little":  # pragma: no cover - no big-endian CI
    raise ImportError("the synthetic workloads pack BGRA as little-endian uint32")

_LINE_CACHE_SIZE = 4096
_CELL_CACHE_SIZE = 20000


def rgb(r: int, g: int, b: int) -> int:
    """An opaque packed colour."""
    return 0xFF000000 | (r & 255) << 16 | (g & 255) << 8 | (b & 255)


def pixels(frame: np.ndarray) -> np.ndarray:
    """The (H, W) uint32 view of a C-contiguous (H, W, 4) uint8 frame."""
    return frame.view(np.uint32)[..., 0]


def fill(px: np.ndarray, box: Box, color: int, clip: Box) -> None:
    part = intersect(box, clip)
    if part is not None:
        px[part[1]:part[3], part[0]:part[2]] = color


def blit(px: np.ndarray, img: np.ndarray, x: int, y: int, clip: Box) -> None:
    """Copy the uint32 image ``img`` with its top-left corner at (x, y), inside ``clip``."""
    h, w = img.shape
    part = intersect((x, y, x + w, y + h), clip)
    if part is not None:
        x0, y0, x1, y1 = part
        px[y0:y1, x0:x1] = img[y0 - y:y1 - y, x0 - x:x1 - x]


def translate(box: Box, dx: int, dy: int) -> Box:
    return (box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy)


def shift(px: np.ndarray, region: Box, dx: int, dy: int) -> Box | None:
    """Move the content of ``region`` (already clipped to the frame) by (dx, dy) within itself.

    Returns the destination box, whose pixels now hold what was at the box
    offset by (-dx, -dy); the rest of ``region`` is stale and the caller
    repaints it. A vertical move is copied in bands of |dy| rows, ordered so
    that no band overwrites rows still to be read: several times faster than
    numpy's overlapping assignment, which goes through a temporary copy.
    """
    dst = intersect(region, translate(region, dx, dy))
    if dst is None:
        return None
    x0, y0, x1, y1 = dst
    step = abs(dy)
    if dx != 0 or step < 2:
        px[y0:y1, x0:x1] = px[y0 - dy:y1 - dy, x0 - dx:x1 - dx]
    elif dy < 0:  # content moves up: fill destination rows from the top
        for y in range(y0, y1, step):
            e = min(y + step, y1)
            px[y:e, x0:x1] = px[y + step:e + step, x0:x1]
    else:  # content moves down: fill from the bottom
        for e in range(y1, y0, -step):
            y = max(e - step, y0)
            px[y:e, x0:x1] = px[y - step:e - step, x0:x1]
    return dst


def blend_alpha(alpha: np.ndarray, fg: int, bg: int) -> np.ndarray:
    """Composite an 8-bit coverage mask of colour ``fg`` over ``bg``: antialiased shapes and glyphs."""
    a = alpha.astype(np.uint32)
    inv = 255 - a
    out = np.full(alpha.shape, 0xFF000000, dtype=np.uint32)
    for s in (16, 8, 0):
        f, b = (fg >> s) & 255, (bg >> s) & 255
        out |= ((f * a + b * inv + 127) // 255) << s
    return out


def blend_over(dst: np.ndarray, alpha: np.ndarray, fg: int) -> None:
    """Composite coverage ``alpha`` of colour ``fg`` onto the pixels already in ``dst`` (same shape)."""
    a = alpha.astype(np.uint32)
    inv = 255 - a
    out = np.full(dst.shape, 0xFF000000, dtype=np.uint32)
    for s in (16, 8, 0):
        f = (fg >> s) & 255
        out |= ((f * a + ((dst >> s) & 255) * inv + 127) // 255) << s
    dst[...] = out


def vgradient(h: int, w: int, top: int, bottom: int) -> np.ndarray:
    """A (h, w) vertical gradient between two colours."""
    t = np.linspace(0.0, 1.0, max(h, 1), dtype=np.float32)[:h]
    col = np.full(h, 0xFF000000, dtype=np.uint32)
    for s in (16, 8, 0):
        a, b = (top >> s) & 255, (bottom >> s) & 255
        col |= np.round(a + (b - a) * t).astype(np.uint32) << s
    return np.broadcast_to(col[:, None], (h, w)).copy()


def disc_alpha(diameter: int) -> np.ndarray:
    """Coverage of an antialiased disc inscribed in a diameter x diameter square."""
    d = max(diameter, 1)
    c = (d - 1) / 2.0
    yy, xx = np.mgrid[0:d, 0:d].astype(np.float32)
    dist = np.sqrt((yy - c) ** 2 + (xx - c) ** 2)
    return (np.clip(d / 2.0 - dist + 0.5, 0.0, 1.0) * 255).astype(np.uint8)


def palette(stops: list[tuple[float, int]]) -> np.ndarray:
    """A 256-entry uint32 colour lookup table through the given (position, colour) stops."""
    pos = np.array([p for p, _ in stops], dtype=np.float64)
    t = np.linspace(0.0, 1.0, 256)
    lut = np.full(256, 0xFF000000, dtype=np.uint32)
    for s in (16, 8, 0):
        chan = np.array([(c >> s) & 255 for _, c in stops], dtype=np.float64)
        lut |= np.round(np.interp(t, pos, chan)).astype(np.uint32) << s
    return lut


def value_noise(rng: np.random.Generator, h: int, w: int, cells: int = 4, octaves: int = 4,
                persistence: float = 0.5) -> np.ndarray:
    """Fractal value noise in [0, 1], float32 (h, w), tileable in both directions.

    Tileable so that a texture twice its size can be panned with plain slicing
    (a view, no gather): that is what makes the video region cheap per frame.
    Each octave is a random grid smoothly interpolated along x (a small (g, w)
    array), then along y by blending two gathered rows per output row: float32
    elementwise work only, no BLAS, so it is quick, the same on every CPU and
    does not fight other processes for threads.
    """
    h, w = max(h, 1), max(w, 1)
    out = np.zeros((h, w), dtype=np.float32)
    tmp = np.empty((h, w), dtype=np.float32)
    amp, total = 1.0, 0.0
    for octave in range(octaves):
        g = cells << octave
        grid = rng.random((g, g), dtype=np.float32)
        x0, x1, sx = _interpolation(w, g)
        y0, y1, sy = _interpolation(h, g)
        rows = grid[:, x0] * (1 - sx) + grid[:, x1] * sx  # (g, w)
        rows *= np.float32(amp)
        np.multiply(rows[y0], (1 - sy)[:, None], out=tmp)
        out += tmp
        np.multiply(rows[y1], sy[:, None], out=tmp)
        out += tmp
        total += amp
        amp *= persistence
    # stretch to use the whole range: fractal sums cluster around the middle
    lo, hi = float(out.min()), float(out.max())
    if hi > lo:
        out -= np.float32(lo)
        out *= np.float32(1.0 / (hi - lo))
    return out


def _interpolation(n: int, g: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For n samples over g wrapped grid cells: left index, right index, smoothstep weight (float32)."""
    pos = np.arange(n, dtype=np.float64) * (g / n)
    i = np.floor(pos).astype(np.intp)
    s = (pos - i).astype(np.float32)
    return i % g, (i + 1) % g, s * s * (3 - 2 * s)


def photo_texture(rng: np.random.Generator, h: int, w: int, cells: int = 3, grain: int = 3) -> np.ndarray:
    """A (h, w) uint8 texture with detail from large shapes down to a few pixels, plus sensor grain.

    Octaves go on until features are about 4 pixels across, so the texture has
    the fine detail (and the entropy) of a photograph rather than the smooth
    blobs that would flatter lossless encoders. Grain is i.i.d. per pixel, so
    the texture stays seamless when tiled.
    """
    h, w = max(h, 1), max(w, 1)
    octaves = int(np.clip(np.floor(np.log2(max(h, w) / (cells * 4))) + 1, 1, 8))
    v = value_noise(rng, h, w, cells=cells, octaves=octaves, persistence=0.55) * np.float32(255 - 2 * grain)
    v += rng.integers(0, 2 * grain + 1, (h, w), dtype=np.uint8)
    return v.astype(np.uint8)


def noise_image(rng: np.random.Generator, h: int, w: int, lut: np.ndarray, cells: int = 3) -> np.ndarray:
    """A photo-like uint32 image: a photo texture through a colour table, lit from the top left."""
    v = photo_texture(rng, h, w, cells=cells).astype(np.float32)
    v *= np.linspace(1.06, 0.86, max(h, 1), dtype=np.float32)[:h, None]
    return lut[np.clip(v, 0, 255).astype(np.uint8)]


def _load_font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # Pillow's bundled font (Aileron) and the basic layout engine: the same glyphs
    # on every machine, so a workload is the same frame sequence everywhere.
    font = ImageFont.load_default(size=size)
    if isinstance(font, ImageFont.FreeTypeFont):
        font = font.font_variant(layout_engine=ImageFont.Layout.BASIC)
    return font


class Font:
    """Antialiased text from glyphs rendered once and blitted with numpy.

    Each glyph is rasterised once into a coverage mask one advance wide and one
    line high; a (glyph, colours) pair becomes a packed cell, and a line of text
    is the concatenation of its cells (kerning is ignored, which keeps the
    position of every character predictable for the typing workload).
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._font = _load_font(size)
        if isinstance(self._font, ImageFont.FreeTypeFont):
            ascent, descent = self._font.getmetrics()
        else:  # pragma: no cover - Pillow without FreeType
            ascent, descent = size, max(size // 4, 1)
        self.ascent = ascent
        self.height = ascent + descent
        self._alpha: dict[str, np.ndarray] = {}
        self._cells: dict[tuple[str, int, int], np.ndarray] = {}
        self._lines: OrderedDict[tuple[str, int, int], np.ndarray] = OrderedDict()

    def _mask(self, ch: str) -> np.ndarray:
        mask = self._alpha.get(ch)
        if mask is None:
            adv = max(int(round(self._font.getlength(ch))), 1)
            img = Image.new("L", (adv, self.height), 0)
            if not ch.isspace():
                ImageDraw.Draw(img).text((0, 0), ch, font=self._font, fill=255)
            mask = np.asarray(img, dtype=np.uint8)
            self._alpha[ch] = mask
        return mask

    def advance(self, ch: str) -> int:
        return self._mask(ch).shape[1]

    def width(self, text: str) -> int:
        return sum(self._mask(ch).shape[1] for ch in text)

    def cell(self, ch: str, fg: int, bg: int) -> np.ndarray:
        key = (ch, fg, bg)
        cell = self._cells.get(key)
        if cell is None:
            if len(self._cells) >= _CELL_CACHE_SIZE:
                self._cells.clear()
            cell = blend_alpha(self._mask(ch), fg, bg)
            self._cells[key] = cell
        return cell

    def line(self, text: str, fg: int, bg: int) -> np.ndarray:
        """The whole line as a (height, width) uint32 image, cached (LRU)."""
        key = (text, fg, bg)
        img = self._lines.get(key)
        if img is not None:
            self._lines.move_to_end(key)
            return img
        if text:
            img = np.concatenate([self.cell(ch, fg, bg) for ch in text], axis=1)
        else:
            img = np.zeros((self.height, 0), dtype=np.uint32)
        self._lines[key] = img
        if len(self._lines) > _LINE_CACHE_SIZE:
            self._lines.popitem(last=False)
        return img

    def draw(self, px: np.ndarray, x: int, y: int, text: str, fg: int, bg: int, clip: Box) -> None:
        """Draw ``text`` with its top-left at (x, y) on an opaque ``bg`` band, inside ``clip``."""
        if not text or intersect((x, y, x + (1 << 30), y + self.height), clip) is None:
            return
        blit(px, self.line(text, fg, bg), x, y, clip)

    def draw_over(self, px: np.ndarray, x: int, y: int, text: str, fg: int, clip: Box) -> None:
        """Draw ``text`` blended over whatever is already there (labels on a wallpaper)."""
        if not text:
            return
        mask = np.concatenate([self._mask(ch) for ch in text], axis=1)
        h, w = mask.shape
        part = intersect((x, y, x + w, y + h), clip)
        if part is not None:
            x0, y0, x1, y1 = part
            blend_over(px[y0:y1, x0:x1], mask[y0 - y:y1 - y, x0 - x:x1 - x], fg)

    def fit(self, text: str, width: int) -> str:
        """The longest prefix of ``text`` no wider than ``width`` pixels."""
        total = 0
        for i, ch in enumerate(text):
            total += self.advance(ch)
            if total > width:
                return text[:i]
        return text

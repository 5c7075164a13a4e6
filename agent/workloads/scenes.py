"""The desktop the synthetic workloads play on, and the Scene interface each workload implements.

``Ui`` holds the wallpaper, icons and taskbar, window frames and the fonts.
Layout scales with the screen height (a 4K screen gets larger fonts, as with
desktop scaling), and every workload of one source shares one ``Ui`` so the
fonts' glyph caches and the pre-rendered desktop are built once.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from agent.models import Box, box_rect, intersect
from agent.workloads.paint import (
    Font,
    blend_alpha,
    blit,
    disc_alpha,
    fill,
    rgb,
    vgradient,
)

WHITE = rgb(255, 255, 255)
TEXT = rgb(30, 32, 38)
MUTED = rgb(110, 114, 124)
BORDER = rgb(150, 152, 160)
TITLE_BG = rgb(232, 233, 238)
PANEL_BG = rgb(244, 245, 248)
SELECT_BG = rgb(210, 228, 252)
TASKBAR_BG = rgb(28, 30, 38)
ACCENT = rgb(38, 110, 210)

LANDSCAPE = [(0.0, rgb(20, 40, 90)), (0.3, rgb(70, 130, 190)), (0.45, rgb(200, 215, 225)),
             (0.55, rgb(90, 140, 60)), (0.75, rgb(40, 90, 40)), (1.0, rgb(120, 95, 70))]
SUNSET = [(0.0, rgb(40, 20, 60)), (0.35, rgb(180, 60, 70)), (0.6, rgb(250, 160, 70)),
          (0.8, rgb(255, 220, 150)), (1.0, rgb(255, 250, 230))]
OCEAN = [(0.0, rgb(5, 20, 50)), (0.4, rgb(10, 80, 130)), (0.7, rgb(40, 170, 190)),
         (0.85, rgb(230, 220, 180)), (1.0, rgb(250, 250, 245))]
PALETTES = (LANDSCAPE, SUNSET, OCEAN)


class Damage:
    """What one frame of a workload drew: the raw material of ``FrameTruth``."""

    def __init__(self, screen: Box) -> None:
        self.screen = screen
        self.changed: list[tuple[int, int, int, int]] = []
        self.moved: list[tuple[tuple[int, int, int, int], int, int]] = []

    def add(self, box: Box | None) -> Box | None:
        """Record ``box`` (clipped to the screen) as repainted; returns the clipped box or None."""
        part = intersect(box, self.screen) if box is not None else None
        if part is not None:
            self.changed.append(box_rect(part))
        return part

    def move(self, dst: Box | None, dx: int, dy: int) -> None:
        if dst is not None:
            self.moved.append((box_rect(dst), dx, dy))


class Scene(ABC):
    """One workload: a state, a way to draw any part of it, and a way to advance it one frame.

    ``render`` draws the current state exactly inside a clip box and nowhere
    else; ``step`` changes the state and repaints (or moves) only what changed.
    Because every repaint goes through ``render``, an incrementally updated
    frame always equals a full render of the same state (the tests hold this).
    """

    name = ""

    def __init__(self, ui: "Ui") -> None:
        self.ui = ui

    @abstractmethod
    def render(self, px: np.ndarray, clip: Box) -> None:
        """Draw the current state inside ``clip`` (a box within the screen), and nothing outside it."""

    @abstractmethod
    def step(self, px: np.ndarray, damage: Damage) -> None:
        """Advance one frame: change the state, repaint or move what changed, record it in ``damage``."""

    def repaint(self, px: np.ndarray, damage: Damage, box: Box | None, within: Box | None = None) -> None:
        """Render ``box`` (optionally limited to ``within``) and record it as changed."""
        if box is not None and within is not None:
            box = intersect(box, within)
        part = damage.add(box)
        if part is not None:
            self.render(px, part)


class Ui:
    """Fonts, metrics and the pre-rendered desktop shared by the workloads of one source."""

    def __init__(self, width: int, height: int, seed: int) -> None:
        self.width, self.height = width, height
        self.screen: Box = (0, 0, width, height)
        self.seed = seed
        base = max(8, min(30, height // 72))
        self.font = Font(base)
        self.big = Font(max(9, base * 3 // 2))
        self.unit = max(2, base // 2)
        self.line_h = self.font.height + max(1, self.unit // 3)
        self.title_h = self.font.height + self.unit
        self.taskbar_h = self.font.height + 2 * self.unit
        self._desktop: np.ndarray | None = None

    def rng(self, stream: int) -> np.random.Generator:
        """A generator of its own per workload, so that workloads do not perturb one another."""
        return np.random.default_rng([self.seed, stream])

    @property
    def work_area(self) -> Box:
        return (0, 0, self.width, max(self.height - self.taskbar_h, 1))

    def maximized(self) -> Box:
        """Where a maximised-looking window goes: the work area less a small margin."""
        m = self.unit
        x0, y0, x1, y1 = self.work_area
        return (x0 + m, y0 + m, max(x1 - m, x0 + m + 1), max(y1 - m, y0 + m + 1))

    @property
    def desktop(self) -> np.ndarray:
        """The (H, W) uint32 desktop: wallpaper, icons and taskbar (static)."""
        if self._desktop is None:
            self._desktop = self._render_desktop()
        return self._desktop

    def _render_desktop(self) -> np.ndarray:
        w, h = self.width, self.height
        img = _wallpaper(w, h, self.rng(1))
        clip = self.screen
        u, f = self.unit, self.font
        icon = 3 * f.height
        colours = (rgb(240, 190, 60), rgb(90, 160, 230), rgb(150, 160, 170), rgb(110, 200, 140), rgb(230, 120, 90))
        labels = ("Home", "Documents", "Trash", "Network", "Projects")
        y = 2 * u
        for colour, label in zip(colours, labels):
            x = 2 * u + (f.width("Documents") - icon) // 2
            fill(img, (x, y, x + icon, y + icon), colour, clip)
            fill(img, (x, y, x + icon, y + icon // 4), rgb(255, 255, 255), clip)
            fill(img, (x + 1, y + 1, x + icon - 1, y + icon // 4), colour | 0x00303030, clip)
            lx = 2 * u + (f.width("Documents") - f.width(label)) // 2
            f.draw_over(img, lx, y + icon + u // 2, label, WHITE, clip)
            y += icon + f.height + 2 * u
        # taskbar: start button, running apps, clock
        top = h - self.taskbar_h
        fill(img, (0, top, w, h), TASKBAR_BG, clip)
        s = self.taskbar_h - 2 * u
        for i, colour in enumerate((rgb(240, 80, 60), rgb(120, 200, 60), rgb(40, 150, 240), rgb(250, 190, 30))):
            qx, qy = u + (i % 2) * (s // 2 + 1), top + u + (i // 2) * (s // 2 + 1)
            fill(img, (qx, qy, qx + s // 2, qy + s // 2), colour, clip)
        x = 3 * u + s
        for name in ("Files", "Editor", "Reader", "Terminal", "Video"):
            bw = f.width(name) + 2 * u
            fill(img, (x, top + u // 2, x + bw, h - u // 2), rgb(52, 56, 68), clip)
            f.draw(img, x + u, top + u, name, rgb(225, 228, 235), rgb(52, 56, 68), clip)
            x += bw + u
        clock = "14:32  2024-05-14"
        f.draw(img, w - f.width(clock) - 2 * u, top + u, clock, rgb(225, 228, 235), TASKBAR_BG, clip)
        return img

    def window(self, w: int, h: int, title: str, body: int = WHITE) -> np.ndarray:
        """A (h, w) window: border, title bar with buttons, and an empty body."""
        w, h = max(w, 0), max(h, 0)
        img = np.full((h, w), BORDER, dtype=np.uint32)
        clip = (0, 0, w, h)
        fill(img, (1, 1, w - 1, h - 1), body, clip)
        fill(img, (1, 1, w - 1, self.title_h), TITLE_BG, clip)
        fill(img, (1, self.title_h, w - 1, self.title_h + 1), BORDER, clip)
        f, u = self.font, self.unit
        f.draw(img, 2 * u, (self.title_h - f.height) // 2, title, TEXT, TITLE_BG, clip)
        d = max(f.height * 3 // 4, 1)
        for i, colour in enumerate((rgb(237, 94, 87), rgb(200, 200, 205), rgb(200, 200, 205))):
            x = w - u - (i + 1) * (d + u // 2)
            dot = blend_alpha(disc_alpha(d), colour, TITLE_BG)
            part = np.s_[max((self.title_h - d) // 2, 0):, :]
            _paste(img, dot[part], x, max((self.title_h - d) // 2, 0))
        return img


def _paste(img: np.ndarray, src: np.ndarray, x: int, y: int) -> None:
    blit(img, src, x, y, (0, 0, img.shape[1], img.shape[0]))


def _wallpaper(w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """A gradient with two soft waves, as desktop wallpapers have: smooth but not flat.

    Built from per-row colour tables indexed by which waves cover a pixel, then
    the one partly covered row per wave and column is antialiased; a per-pixel
    float blend would cost half a second at 1080p.
    """
    img = vgradient(h, w, rgb(18, 52, 104), rgb(36, 128, 150))
    if w == 0 or h == 0:
        return img
    base = img[:, 0].copy()
    waves = []
    for k, colour, alpha in ((0, rgb(255, 255, 255), 0.12), (1, rgb(8, 24, 56), 0.35)):
        amp = h * float(rng.uniform(0.05, 0.12))
        freq = float(rng.uniform(0.6, 1.4)) * 2 * np.pi / w
        x = np.arange(w, dtype=np.float64)
        curve = h * (0.5 + 0.2 * k) + amp * np.sin(x * freq + float(rng.uniform(0, 2 * np.pi)))
        edge = np.ceil(curve - 0.5).astype(np.int64)
        waves.append((colour, alpha, edge, edge - curve + 0.5))
    # table[state] is the column of row colours for pixels covered by the waves in bit set ``state``
    table = np.empty((4, h), dtype=np.uint32)
    for state in range(4):
        col = base
        for k, (colour, alpha, _, _) in enumerate(waves):
            if state >> k & 1:
                col = _lerp(col, np.uint32(colour), alpha)
        table[state] = col
    y = np.arange(h)[:, None]
    state = np.zeros((h, w), dtype=np.uint8)
    for k, (_, _, edge, _) in enumerate(waves):
        state |= (y > edge[None, :]).astype(np.uint8) << k
    img = table[state, np.broadcast_to(y, (h, w))]
    xs = np.arange(w)
    for k, (_, _, edge, frac) in enumerate(waves):
        ok = (edge >= 0) & (edge < h)
        ys, xk, fk = edge[ok], xs[ok], frac[ok]
        other = state[ys, xk] & ~np.uint8(1 << k)
        img[ys, xk] = _lerp(table[other, ys], table[other | (1 << k), ys], fk)
    return img


def _lerp(a: np.ndarray, b: np.ndarray, t: float | np.ndarray) -> np.ndarray:
    """Per-channel blend of packed colours (arrays, broadcast)."""
    out = np.full(np.broadcast(a, b).shape, 0xFF000000, dtype=np.uint32)
    for s in (16, 8, 0):
        ca = ((a >> s) & 255).astype(np.float64)
        cb = ((b >> s) & 255).astype(np.float64)
        out |= np.round(ca + (cb - ca) * t).astype(np.uint32) << s
    return out

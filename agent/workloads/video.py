"""The ``video`` workload: a media player whose picture changes every frame, on a static desktop.

The picture is procedural and natural-looking rather than noise: two layers of
tileable fractal value noise panned at different speeds (clouds over
terrain), mapped through a colour table, with soft discs drifting across (out
of focus lights). Every 75 frames a "cut" changes the colour table, as scene
cuts do. Textures are built once; a frame is a few uint8 operations, a table
lookup and small blends, so the workload stays cheap at 1080p.
"""
from __future__ import annotations

import numpy as np

from agent.models import Box, intersect, subtract
from agent.workloads.paint import (
    blend_over,
    blit,
    disc_alpha,
    fill,
    palette,
    photo_texture,
    rgb,
    value_noise,
)
from agent.workloads.scenes import PALETTES, Damage, Scene, Ui

CUT_FRAMES = 75
SECOND_FRAMES = 30  # the time display advances once per 30 frames
DURATION = 225  # seconds, as shown by the player
CONTROLS_BG = rgb(30, 30, 34)
BLOBS = 4


class Video(Scene):
    name = "video"

    def __init__(self, ui: Ui, rng: np.random.Generator) -> None:
        super().__init__(ui)
        f, u = ui.font, ui.unit
        wx0, wy0, wx1, wy1 = ui.work_area
        vw = max((wx1 - wx0) * 55 // 100, 1)
        vh = max(vw * 9 // 16, 1)
        limit = max((wy1 - wy0) * 60 // 100, 1)
        if vh > limit:
            vh = limit
            vw = max(vh * 16 // 9, 1)
        self.controls_h = f.height + u
        ww, wh = vw + 2, ui.title_h + 1 + vh + self.controls_h + 1
        x0 = (wx1 - ww) // 2
        y0 = max((wy1 - wh) // 2, 0)
        self.box: Box = (x0, y0, x0 + ww, y0 + wh)
        self.chrome = ui.window(ww, wh, "harbour.mp4 - Video")
        self.vbox: Box = (x0 + 1, y0 + ui.title_h + 1, x0 + 1 + vw, y0 + ui.title_h + 1 + vh)
        self.controls: Box = (x0 + 1, self.vbox[3], x0 + ww - 1, self.vbox[3] + self.controls_h)
        self.vw, self.vh = vw, vh
        a = photo_texture(rng, vh, vw, cells=3)
        b = (value_noise(rng, vh, vw, cells=6, octaves=3) * 255).astype(np.uint8)
        self._a = np.tile(a, (2, 2))
        self._b = np.tile(b, (2, 2))
        self._luts = [palette(p) for p in PALETTES]
        d = max(vh // 5, 2)
        self._disc = (disc_alpha(d).astype(np.uint16) * 110 // 255).astype(np.uint8)
        self._blobs = [
            [float(rng.uniform(0, vw)), float(rng.uniform(0, vh)), float(rng.uniform(-3, 3)),
             float(rng.uniform(-2, 2)), rgb(*(int(c) for c in rng.integers(150, 256, 3)))]
            for _ in range(BLOBS)
        ]
        self.t = 0
        self.picture = np.empty((vh, vw), dtype=np.uint32)
        self._paint_picture()

    def _paint_picture(self) -> None:
        t, vw, vh = self.t, self.vw, self.vh
        ax, ay = int(t * 1.7) % vw, int(t * 0.6) % vh
        bx, by = int(-t * 2.9) % vw, int(t * 1.3) % vh
        a = self._a[ay:ay + vh, ax:ax + vw].astype(np.uint16)
        a *= 170
        a += self._b[by:by + vh, bx:bx + vw] * np.uint16(86)
        a >>= 8
        lut = self._luts[(t // CUT_FRAMES) % len(self._luts)]
        np.take(lut, a, out=self.picture, mode="clip")
        d = self._disc.shape[0]
        clip = (0, 0, vw, vh)
        for blob in self._blobs:
            x, y = int(blob[0]) - d // 2, int(blob[1]) - d // 2
            part = intersect((x, y, x + d, y + d), clip)
            if part is not None:
                x0, y0, x1, y1 = part
                blend_over(self.picture[y0:y1, x0:x1], self._disc[y0 - y:y1 - y, x0 - x:x1 - x], blob[4])

    def _advance_blobs(self) -> None:
        for blob in self._blobs:
            blob[0] += blob[2]
            blob[1] += blob[3]
            if not 0 <= blob[0] <= self.vw:
                blob[2] = -blob[2]
            if not 0 <= blob[1] <= self.vh:
                blob[3] = -blob[3]

    def render(self, px: np.ndarray, clip: Box) -> None:
        ui, f, u = self.ui, self.ui.font, self.ui.unit
        for part in subtract(clip, self.box):
            blit(px, ui.desktop, 0, 0, part)
        blit(px, self.chrome, self.box[0], self.box[1], clip)
        blit(px, self.picture, self.vbox[0], self.vbox[1], clip)
        cc = intersect(self.controls, clip)
        if cc is None:
            return
        cx0, cy0, cx1, cy1 = self.controls
        fill(px, self.controls, CONTROLS_BG, cc)
        s = self.t // SECOND_FRAMES
        text = f"{s // 60:02d}:{s % 60:02d} / {DURATION // 60:02d}:{DURATION % 60:02d}"
        tx = cx1 - u - f.width(text)
        f.draw(px, tx, cy0 + u // 2, text, rgb(220, 220, 225), CONTROLS_BG, cc)
        fill(px, (cx0 + u, cy0 + u // 2, cx0 + u + f.height // 3, cy0 + u // 2 + f.height), rgb(230, 230, 235), cc)
        fill(px, (cx0 + u + f.height // 2, cy0 + u // 2, cx0 + u + f.height * 5 // 6, cy0 + u // 2 + f.height),
             rgb(230, 230, 235), cc)
        bar0, bar1 = cx0 + 2 * u + f.height, tx - 2 * u
        mid = cy0 + self.controls_h // 2
        fill(px, (bar0, mid - 1, bar1, mid + 2), rgb(80, 80, 88), cc)
        done = bar0 + max(bar1 - bar0, 0) * min(s, DURATION) // DURATION
        fill(px, (bar0, mid - 1, done, mid + 2), rgb(230, 60, 60), cc)

    def step(self, px: np.ndarray, damage: Damage) -> None:
        self.t += 1
        self._advance_blobs()
        self._paint_picture()
        self.repaint(px, damage, self.vbox)
        if self.t % SECOND_FRAMES == 0:
            self.repaint(px, damage, self.controls)

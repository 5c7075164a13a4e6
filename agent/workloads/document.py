"""The ``scrolling`` workload: a long document in a reader window, scrolled up and down.

The document (headings, wrapped paragraphs, bullet lists, code blocks and
figures) is laid out once; frames render only the strip a scroll exposes, so
a step costs one move of the page pane plus a few text lines. The title bar,
toolbar and outline sidebar stay put, so not the whole screen moves.
"""
from __future__ import annotations

import bisect
from collections import OrderedDict

import numpy as np

from agent.models import Box, intersect, subtract
from agent.workloads.paint import (
    blend_alpha,
    blit,
    disc_alpha,
    fill,
    palette,
    photo_texture,
    rgb,
    shift,
)
from agent.workloads.scenes import (
    ACCENT,
    BORDER,
    MUTED,
    PALETTES,
    PANEL_BG,
    SELECT_BG,
    TEXT,
    WHITE,
    Damage,
    Scene,
    Ui,
)
from agent.workloads.text import CODE, HEADINGS, sentence, wrap

CODE_BG = rgb(244, 244, 238)
THUMB = rgb(176, 178, 188)
_FIGURE_CACHE = 12
_SCREENS_OF_TEXT = 25  # document length, in pane heights


class Reader(Scene):
    name = "scrolling"

    def __init__(self, ui: Ui, rng: np.random.Generator, top: int = 0) -> None:
        super().__init__(ui)
        self.rng = rng
        f, u = ui.font, ui.unit
        self.box = x0, y0, x1, y1 = ui.maximized()
        w, h = x1 - x0, y1 - y0
        self.chrome = ui.window(w, h, "Manual.pdf - Reader")
        clip = (0, 0, w, h)
        tb_y0, tb_y1 = ui.title_h + 1, ui.title_h + 1 + f.height + u
        fill(self.chrome, (1, tb_y0, w - 1, tb_y1), PANEL_BG, clip)
        fill(self.chrome, (1, tb_y1, w - 1, tb_y1 + 1), BORDER, clip)
        bx = 2 * u
        for label in ("< Back", "Zoom 100%", "Find", "Print"):
            bw = f.width(label) + 2 * u
            fill(self.chrome, (bx, tb_y0 + u // 4, bx + bw, tb_y1 - u // 4), SELECT_BG, clip)
            f.draw(self.chrome, bx + u, tb_y0 + u // 2, label, TEXT, SELECT_BG, clip)
            bx += bw + u
        side_w = min(w // 5, f.width("Frequently asked questions") + 4 * u)
        fill(self.chrome, (1, tb_y1 + 1, 1 + side_w, h - 1), PANEL_BG, clip)
        fill(self.chrome, (1 + side_w, tb_y1 + 1, 2 + side_w, h - 1), BORDER, clip)
        f.draw(self.chrome, 2 * u, tb_y1 + u, "Contents", ACCENT, PANEL_BG, clip)
        for i, name in enumerate(HEADINGS):
            f.draw(self.chrome, 2 * u, tb_y1 + u + (i + 1) * ui.line_h, f"{i + 1}. {name}", TEXT, PANEL_BG,
                   (0, 0, 1 + side_w - u, h))
        bar_w = max(u * 3 // 2, 1)
        self.pane: Box = (x0 + 2 + side_w, y0 + tb_y1 + 1, max(x1 - 1 - bar_w, x0 + 2 + side_w), y1 - 1)
        self.bar: Box = (self.pane[2], self.pane[1], x1 - 1, y1 - 1)
        label_w = f.width("Page 000 of 000") + 2 * u
        self.page_box: Box = (x1 - 1 - label_w, y0 + tb_y0, x1 - 1 - u, y0 + tb_y1)
        self.pad = 2 * u
        self.pane_h = max(self.pane[3] - self.pane[1], 1)
        self._layout(max(self.pane[2] - self.pane[0] - 2 * self.pad, 1))
        self.max_top = max(self.doc_h - self.pane_h, 0)
        self.top = min(max(top, 0), self.max_top)
        self.direction = 1
        self._figures: OrderedDict[int, np.ndarray] = OrderedDict()
        self._luts = [palette(p) for p in PALETTES]
        fh, fw = self._largest_figure
        texture = photo_texture(rng, fh, fw, cells=4)
        self._texture = np.tile(texture, (2, 2))

    # --- layout --------------------------------------------------------------------------------------------------

    def _layout(self, text_w: int) -> None:
        ui, rng = self.ui, self.rng
        f, u, lh = ui.font, ui.unit, ui.line_h
        items: list[tuple] = []  # (y, h, kind, payload...)
        y = self.pad
        target = max(_SCREENS_OF_TEXT * self.pane_h, 400 * lh)
        section = 0
        figure = 0
        code = CODE.splitlines()
        while y < target:
            items.append((y, ui.big.height, "heading", f"{section + 1}. {HEADINGS[section % len(HEADINGS)]}"))
            y += ui.big.height + u
            for _ in range(int(rng.integers(2, 5))):
                roll = rng.random()
                if roll < 0.6:
                    text = " ".join(sentence(rng) for _ in range(int(rng.integers(2, 6))))
                    for line in wrap(f, text, text_w):
                        items.append((y, lh, "text", line))
                        y += lh
                elif roll < 0.75:
                    for _ in range(int(rng.integers(3, 6))):
                        for i, line in enumerate(wrap(f, sentence(rng), max(text_w - 3 * u, 1))):
                            items.append((y, lh, "bullet", line, i == 0))
                            y += lh
                elif roll < 0.87:
                    start = int(rng.integers(0, max(len(code) - 8, 1)))
                    for line in code[start:start + int(rng.integers(3, 9))]:
                        items.append((y, lh, "code", line))
                        y += lh
                else:
                    fw = max(int(text_w * rng.uniform(0.45, 0.85)), 1)
                    fh = max(int(fw * rng.uniform(0.45, 0.65)), 1)
                    items.append((y, fh, "figure", figure, fw))
                    y += fh + u // 2
                    items.append((y, lh, "caption", f"Figure {figure + 1}. {sentence(rng)}"[:120]))
                    y += lh
                    figure += 1
                y += lh // 2
            section += 1
        figures = [(item[1], item[4]) for item in items if item[2] == "figure"]
        self._largest_figure = (max((h for h, _ in figures), default=1), max((w for _, w in figures), default=1))
        self.items = items
        self.ys = [item[0] for item in items]
        self.max_item_h = max(item[1] for item in items)
        self.text_w = text_w
        self.doc_h = y + self.pad

    def _figure(self, index: int, w: int, h: int) -> np.ndarray:
        """Figure ``index``: a crop of the shared tileable landscape through its own colour table."""
        img = self._figures.get(index)
        if img is None:
            th, tw = self._texture.shape[0] // 2, self._texture.shape[1] // 2
            oy, ox = (index * 7919) % th, (index * 104729) % tw
            crop = self._texture[oy:oy + min(h, th), ox:ox + min(w, tw)]
            img = self._luts[index % len(self._luts)][crop]
            self._figures[index] = img
            if len(self._figures) > _FIGURE_CACHE:
                self._figures.popitem(last=False)
        else:
            self._figures.move_to_end(index)
        return img

    # --- drawing -------------------------------------------------------------------------------------------------

    def _thumb(self) -> Box:
        bx0, by0, bx1, by1 = self.bar
        track = max(by1 - by0, 1)
        th = min(max(track * self.pane_h // max(self.doc_h, 1), 3 * self.ui.unit), track)
        ty = by0 + (track - th) * self.top // max(self.max_top, 1)
        return (bx0 + 1, ty, bx1 - 1, ty + th)

    def _page(self) -> str:
        pages = -(-self.doc_h // self.pane_h)
        return f"Page {self.top // self.pane_h + 1} of {pages}"

    def render(self, px: np.ndarray, clip: Box) -> None:
        ui, f, u = self.ui, self.ui.font, self.ui.unit
        for part in subtract(clip, self.box):
            blit(px, ui.desktop, 0, 0, part)
        blit(px, self.chrome, self.box[0], self.box[1], clip)
        pc = intersect(self.pane, clip)
        if pc is not None:
            self._render_pane(px, pc)
        bar = intersect(self.bar, clip)
        if bar is not None:
            fill(px, self.bar, PANEL_BG, bar)
            fill(px, self._thumb(), THUMB, bar)
        label = intersect(self.page_box, clip)
        if label is not None:
            fill(px, self.page_box, PANEL_BG, label)
            text = self._page()
            f.draw(px, self.page_box[2] - f.width(text), self.page_box[1] + u // 2, text, MUTED, PANEL_BG, label)

    def _render_pane(self, px: np.ndarray, pc: Box) -> None:
        ui, f, u = self.ui, self.ui.font, self.ui.unit
        fill(px, pc, WHITE, pc)
        d0 = self.top + pc[1] - self.pane[1]
        d1 = self.top + pc[3] - self.pane[1]
        x = self.pane[0] + self.pad
        i = bisect.bisect_left(self.ys, d0 - self.max_item_h)
        while i < len(self.items) and self.items[i][0] < d1:
            item = self.items[i]
            i += 1
            y0, h, kind = item[0], item[1], item[2]
            if y0 + h <= d0:
                continue
            sy = self.pane[1] + y0 - self.top
            if kind == "text":
                f.draw(px, x, sy, item[3], TEXT, WHITE, pc)
            elif kind == "heading":
                ui.big.draw(px, x, sy, item[3], ACCENT, WHITE, pc)
            elif kind == "caption":
                f.draw(px, x, sy, item[3], MUTED, WHITE, pc)
            elif kind == "bullet":
                if item[4]:
                    d = max(f.height // 3, 1)
                    blit(px, blend_alpha(disc_alpha(d), TEXT, WHITE), x + u, sy + (f.height - d) // 2, pc)
                f.draw(px, x + 3 * u, sy, item[3], TEXT, WHITE, pc)
            elif kind == "code":
                fill(px, (x - u // 2, sy, x + self.text_w, sy + h), CODE_BG, pc)
                f.draw(px, x + u, sy, item[3], TEXT, CODE_BG, pc)
            elif kind == "figure":
                fw = item[4]
                blit(px, self._figure(item[3], fw, h), x + (self.text_w - fw) // 2, sy, pc)

    # --- one frame -----------------------------------------------------------------------------------------------

    def _next_top(self) -> int:
        rng = self.rng
        if rng.random() < 0.12:
            self.direction = -self.direction
        roll = rng.random()
        lines = int(rng.integers(1, 4)) if roll < 0.6 else int(rng.integers(4, 13)) if roll < 0.85 \
            else int(rng.integers(13, 31))
        for _ in range(2):
            top = min(max(self.top + self.direction * lines * self.ui.line_h, 0), self.max_top)
            if top != self.top:
                return top
            self.direction = -self.direction
        return self.top

    def step(self, px: np.ndarray, damage: Damage) -> None:
        top = self._next_top()
        delta = top - self.top
        if delta == 0:
            return
        old_thumb, old_page = self._thumb(), self._page()
        self.top = top
        pc = intersect(self.pane, self.ui.screen)
        if pc is not None:
            if abs(delta) < pc[3] - pc[1]:
                dst = shift(px, pc, 0, -delta)
                damage.move(dst, 0, -delta)
                for part in subtract(pc, dst):
                    self.repaint(px, damage, part)
            else:
                self.repaint(px, damage, pc)
        new_thumb = self._thumb()
        if new_thumb != old_thumb:
            span = (self.bar[0], min(old_thumb[1], new_thumb[1]), self.bar[2], max(old_thumb[3], new_thumb[3]))
            self.repaint(px, damage, span, self.bar)
        if self._page() != old_page:
            self.repaint(px, damage, self.page_box)

"""The ``typing`` workload: a code editor where one character is typed per frame.

What changes per frame is what changes in a real editor: the new glyph (or a
whole token when syntax colouring changes, as when ``de`` becomes ``def``),
the caret (which blinks), the "Ln, Col" field of the status bar, and, when a
newline reaches the bottom, the text area scrolls up one line (a move).
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from agent.models import Box, intersect, subtract
from agent.workloads.paint import blit, fill, shift, translate
from agent.workloads.scenes import MUTED, PANEL_BG, TEXT, WHITE, Damage, Scene, Ui
from agent.workloads.text import CODE, highlight

BLINK_FRAMES = 15  # caret on for 15 frames, off for 15: half a second each at 30 fps
GUTTER_BG = PANEL_BG
_LINE_CACHE = 512


class Editor(Scene):
    name = "typing"

    def __init__(self, ui: Ui, rng: np.random.Generator, pretyped: int | None = None) -> None:
        super().__init__(ui)
        f, u = ui.font, ui.unit
        self.box = x0, y0, x1, y1 = ui.maximized()
        self.chrome = ui.window(x1 - x0, y1 - y0, "desk.py - Editor")
        clip = (0, 0, x1 - x0, y1 - y0)
        menu_h = f.height + u // 2
        menu = "File   Edit   Selection   View   Go   Run   Help"
        f.draw(self.chrome, 2 * u, ui.title_h + 1, menu, TEXT, WHITE, clip)
        status_h = f.height + u // 2
        status_y = y1 - 1 - status_h
        fill(self.chrome, (1, status_y - y0, x1 - x0 - 1, y1 - y0 - 1), PANEL_BG, clip)
        right = "Spaces: 4    UTF-8    LF    Python"
        f.draw(self.chrome, x1 - x0 - 2 * u - f.width(right), status_y - y0, right, MUTED, PANEL_BG, clip)
        self.lh = ui.line_h
        area_y0 = y0 + ui.title_h + 1 + menu_h
        self.rows = max(1, (status_y - area_y0) // self.lh)
        self.area: Box = (x0 + 1, area_y0, x1 - 1, max(status_y, area_y0))
        self.gutter_w = f.width("0000") + 2 * u
        self.text_region: Box = (x0 + 1 + self.gutter_w, area_y0, x1 - 1, max(status_y, area_y0))
        self.text_x = self.text_region[0] + u
        self.status_box: Box = (x0 + 1 + u, status_y, x0 + 1 + u + f.width("Ln 00000, Col 0000") + u, y1 - 1)
        self.caret_w = max(1, u // 3)
        self._text = CODE
        source = CODE.splitlines()
        k = min(len(source), max(self.rows // 3, 1)) if pretyped is None else min(pretyped, len(source))
        self.lines = source[:k] + [""]
        self.pos = sum(len(line) + 1 for line in source[:k])
        self.top = max(0, len(self.lines) - self.rows)
        self.frame = 0
        self._imgs: OrderedDict[str, np.ndarray] = OrderedDict()

    # --- drawing -------------------------------------------------------------------------------------------------

    def _line_img(self, text: str) -> np.ndarray:
        img = self._imgs.get(text)
        if img is None:
            f = self.ui.font
            if text:
                img = np.concatenate([f.cell(ch, c, WHITE) for ch, c in zip(text, highlight(text))], axis=1)
            else:
                img = np.zeros((f.height, 0), dtype=np.uint32)
            self._imgs[text] = img
            if len(self._imgs) > _LINE_CACHE:
                self._imgs.popitem(last=False)
        else:
            self._imgs.move_to_end(text)
        return img

    def _row_y(self, line: int) -> int:
        return self.area[1] + (line - self.top) * self.lh

    def _caret_box(self) -> Box | None:
        if (self.frame // BLINK_FRAMES) % 2:
            return None
        cur = len(self.lines) - 1
        x = self.text_x + self.ui.font.width(self.lines[cur])
        y = self._row_y(cur)
        return intersect((x, y, x + self.caret_w, y + self.lh), self.text_region)

    def _status(self) -> str:
        return f"Ln {len(self.lines)}, Col {len(self.lines[-1]) + 1}"

    def render(self, px: np.ndarray, clip: Box) -> None:
        ui, f, u = self.ui, self.ui.font, self.ui.unit
        x0, y0, _, _ = self.box
        for part in subtract(clip, self.box):
            blit(px, ui.desktop, 0, 0, part)
        blit(px, self.chrome, x0, y0, clip)
        area = intersect(self.area, clip)
        if area is not None:
            fill(px, (self.area[0], self.area[1], self.text_region[0], self.area[3]), GUTTER_BG, area)
            fill(px, self.text_region, WHITE, area)
            r0 = max(0, (area[1] - self.area[1]) // self.lh)
            r1 = min(self.rows, (area[3] - self.area[1] + self.lh - 1) // self.lh)
            text_clip = intersect(self.text_region, area)
            for r in range(r0, r1):
                idx = self.top + r
                if idx >= len(self.lines):
                    break
                y = self.area[1] + r * self.lh
                num = str(idx + 1)
                f.draw(px, self.text_region[0] - u - f.width(num), y, num, MUTED, GUTTER_BG, area)
                if text_clip is not None:
                    blit(px, self._line_img(self.lines[idx]), self.text_x, y, text_clip)
            caret = self._caret_box()
            if caret is not None:
                fill(px, caret, TEXT, area)
        status = intersect(self.status_box, clip)
        if status is not None:
            fill(px, self.status_box, PANEL_BG, status)
            f.draw(px, self.status_box[0], self.status_box[1], self._status(), TEXT, PANEL_BG, status)

    # --- one frame -----------------------------------------------------------------------------------------------

    def step(self, px: np.ndarray, damage: Damage) -> None:
        screen = self.ui.screen
        old_caret = self._caret_box()
        old_status = self._status()
        self.frame += 1
        ch = self._text[self.pos % len(self._text)]
        self.pos += 1
        dirty: list[Box | None] = []
        cur = len(self.lines) - 1
        if ch == "\n":
            self.lines.append("")
            cur += 1
            if cur - self.top >= self.rows:
                self.top += 1
                region = intersect((self.area[0], self.area[1], self.area[2], self.area[1] + self.rows * self.lh),
                                   screen)
                if region is not None:
                    dst = shift(px, region, 0, -self.lh)
                    damage.move(dst, 0, -self.lh)
                    dirty.extend(subtract(region, dst))
                if old_caret is not None:
                    old_caret = translate(old_caret, 0, -self.lh)
            y = self._row_y(cur)
            dirty.append((self.area[0], y, self.text_region[0], y + self.lh))
        else:
            old = self.lines[cur]
            new = old + ch
            self.lines[cur] = new
            first = _first_difference(old, new)
            f = self.ui.font
            y = self._row_y(cur)
            xa = self.text_x + f.width(new[:first])
            dirty.append(intersect((xa, y, self.text_x + f.width(new), y + self.lh), self.text_region))
        dirty.append(old_caret)
        dirty.append(self._caret_box())
        if self._status() != old_status:
            dirty.append(self.status_box)
        for box in dirty:
            self.repaint(px, damage, box)


def _first_difference(old: str, new: str) -> int:
    """Index of the first character whose glyph or colour differs after typing ``new[-1]``."""
    co, cn = highlight(old), highlight(new)
    for i in range(len(old)):
        if old[i] != new[i] or co[i] != cn[i]:
            return i
    return len(old)

"""The named synthetic workloads: a registry, and the ones simple enough to live together.

``typing``, ``scrolling`` and ``video`` have modules of their own (editor.py,
reader.py, video.py); ``window-drag``, ``idle``, ``switch`` and ``mixed`` are
here. ``make_scene`` builds any of them; each gets its own random stream
derived from the source's seed, so a workload is the same frame sequence on
every run, on every machine (the bundled font makes text identical too).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from agent.models import Box, intersect, rect_box, subtract
from agent.workloads.apps import (
    app_frame,
    render_photo,
    render_spreadsheet,
    render_terminal,
)
from agent.workloads.document import Reader
from agent.workloads.editor import Editor
from agent.workloads.paint import blit, fill, noise_image, palette, translate
from agent.workloads.scenes import (
    MUTED,
    PALETTES,
    SELECT_BG,
    TEXT,
    WHITE,
    Damage,
    Scene,
    Ui,
)
from agent.workloads.text import sentence, wrap
from agent.workloads.video import Video

WORKLOADS = ("typing", "scrolling", "window-drag", "video", "idle", "switch", "mixed")

# random stream numbers, one per workload (1 is the desktop's)
_STREAM = {name: 10 + i for i, name in enumerate(WORKLOADS)}


class WindowDrag(Scene):
    """A photo window dragged over the desktop: mostly horizontal or vertical strokes, some diagonal."""

    name = "window-drag"

    def __init__(self, ui: Ui, rng: np.random.Generator) -> None:
        super().__init__(ui)
        self.rng = rng
        f, u = ui.font, ui.unit
        ww, wh = max(ui.width * 45 // 100, 1), max(ui.height * 50 // 100, 1)
        self.win = ui.window(ww, wh, "harbour.jpg - Photos")
        clip = (0, 0, ww, wh)
        info_h = 3 * ui.line_h + u
        ph = max(wh - ui.title_h - 1 - info_h - 2 * u, 1)
        pw = max(ww - 2 - 2 * u, 1)
        blit(self.win, noise_image(rng, ph, pw, palette(PALETTES[2])), 1 + u, ui.title_h + 1 + u, clip)
        y = ui.title_h + 1 + u + ph + u
        for line in ("harbour.jpg  4032 x 3024  2.8 MB", "Taken 2024-05-11 18:42", sentence(rng)):
            f.draw(self.win, 1 + u, y, f.fit(line, max(ww - 2 - 2 * u, 0)), MUTED, WHITE, clip)
            y += ui.line_h
        self.w, self.h = ww, wh
        wx0, wy0, wx1, wy1 = ui.work_area
        self.xmin, self.xmax = -ww // 4, max(wx1 - ww * 3 // 4, -ww // 4)
        self.ymin, self.ymax = 0, max(wy1 - wh // 2, 0)
        self.x, self.y = ui.width // 4, ui.height // 6
        self.dx = self.dy = 0
        self.left = 0

    @property
    def wbox(self) -> Box:
        return rect_box(self.x, self.y, self.w, self.h)

    def render(self, px: np.ndarray, clip: Box) -> None:
        for part in subtract(clip, self.wbox):
            blit(px, self.ui.desktop, 0, 0, part)
        blit(px, self.win, self.x, self.y, clip)

    def _gesture(self) -> None:
        rng = self.rng
        speed = max(int(rng.integers(2, 33)) * self.ui.height // 1080, 1)
        sx, sy = (1 if rng.random() < 0.5 else -1), (1 if rng.random() < 0.5 else -1)
        roll = rng.random()
        if roll < 0.4:
            self.dx, self.dy = sx * speed, 0
        elif roll < 0.8:
            self.dx, self.dy = 0, sy * speed
        else:
            self.dx, self.dy = sx * speed, sy * max(int(speed * rng.uniform(0.3, 1.0)), 1)
        self.left = int(rng.integers(5, 31))

    def step(self, px: np.ndarray, damage: Damage) -> None:
        if self.left == 0:
            self._gesture()
        self.left -= 1
        nx, ny = self.x + self.dx, self.y + self.dy
        if not self.xmin <= nx <= self.xmax:
            self.dx = -self.dx
            nx = min(max(self.x + self.dx, self.xmin), self.xmax)
        if not self.ymin <= ny <= self.ymax:
            self.dy = -self.dy
            ny = min(max(self.y + self.dy, self.ymin), self.ymax)
        dx, dy = nx - self.x, ny - self.y
        if dx == 0 and dy == 0:
            return
        screen = self.ui.screen
        old = intersect(self.wbox, screen)
        self.x, self.y = nx, ny
        new = intersect(self.wbox, screen)
        dst = intersect(new, translate(old, dx, dy)) if old is not None and new is not None else None
        if dst is not None:
            # the window's pixels move as they are: render them there, record a move, not a change
            self.render(px, dst)
            damage.move(dst, dx, dy)
        if new is not None:
            for part in subtract(new, dst):
                self.repaint(px, damage, part)
        if old is not None:
            for part in subtract(old, new):
                self.repaint(px, damage, part)


class Idle(Scene):
    """A desktop with two windows open where nothing moves after the first frame."""

    name = "idle"

    def __init__(self, ui: Ui, rng: np.random.Generator) -> None:
        super().__init__(ui)
        f, u = ui.font, ui.unit
        img = ui.desktop.copy()
        wx0, wy0, wx1, wy1 = ui.work_area
        nw, nh = max(wx1 * 55 // 100, 1), max(wy1 * 70 // 100, 1)
        notes = ui.window(nw, nh, "Notes")
        clip = (0, 0, nw, nh)
        y = ui.title_h + 1 + u
        while y < nh:
            for line in wrap(f, " ".join(sentence(rng) for _ in range(4)), max(nw - 4 * u, 1)):
                f.draw(notes, 2 * u, y, line, TEXT, WHITE, clip)
                y += ui.line_h
            y += ui.line_h // 2
        blit(img, notes, wx1 // 12, wy1 // 10, ui.screen)
        fw, fh = max(wx1 * 30 // 100, 1), max(wy1 * 50 // 100, 1)
        files = ui.window(fw, fh, "Files - Documents")
        clip = (0, 0, fw, fh)
        y = ui.title_h + 1 + u // 2
        for i, name in enumerate(("budget.ods", "letter.odt", "photos", "invoice-0412.pdf", "notes.txt",
                                  "backup.tar.gz", "manual.pdf", "contacts.vcf", "holiday.jpg", "report.odt")):
            if i == 3:
                fill(files, (1, y, fw - 1, y + ui.line_h), SELECT_BG, clip)
            bg = SELECT_BG if i == 3 else WHITE
            f.draw(files, 2 * u, y, name, TEXT, bg, clip)
            size = f"{(i * 37 + 11) % 900 + 12} kB"
            f.draw(files, fw - 2 * u - f.width(size), y, size, MUTED, bg, clip)
            y += ui.line_h
        blit(img, files, wx1 * 60 // 100, wy1 * 30 // 100, ui.screen)
        self.image = img

    def render(self, px: np.ndarray, clip: Box) -> None:
        blit(px, self.image, 0, 0, clip)

    def step(self, px: np.ndarray, damage: Damage) -> None:
        return


class Switch(Scene):
    """Alt-tab between full-screen applications every few frames: whole-screen changes."""

    name = "switch"
    APPS = ("editor", "reader", "sheet", "terminal", "photo")

    def __init__(self, ui: Ui, rng: np.random.Generator) -> None:
        super().__init__(ui)
        self.rng = rng
        self.order = [self.APPS[i] for i in rng.permutation(len(self.APPS))]
        self.index = 0
        self.left = self._period()
        self._images: dict[str, np.ndarray] = {}
        for app in self.order:  # built now, so that no frame pays for it
            self._image(app)

    def _period(self) -> int:
        return int(self.rng.integers(3, 9))

    def _image(self, app: str) -> np.ndarray:
        img = self._images.get(app)
        if img is not None:
            return img
        ui = self.ui
        rng = np.random.default_rng([ui.seed, 1500, self.APPS.index(app)])
        if app == "editor":
            img = np.empty((ui.height, ui.width), dtype=np.uint32)
            Editor(ui, rng, pretyped=10 ** 6).render(img, ui.screen)
        elif app == "reader":
            img = np.empty((ui.height, ui.width), dtype=np.uint32)
            reader = Reader(ui, rng)
            reader.top = reader.max_top // 3
            reader.render(img, ui.screen)
        elif app == "sheet":
            img, body = app_frame(ui, "budget.ods - Sheets")
            render_spreadsheet(ui, img, body, rng)
        elif app == "terminal":
            img, body = app_frame(ui, "support@desk: ~/rejnet - Terminal")
            render_terminal(ui, img, body, rng)
        else:
            img, body = app_frame(ui, "harbour.jpg - Photos")
            render_photo(ui, img, body, rng)
        self._images[app] = img
        return img

    def render(self, px: np.ndarray, clip: Box) -> None:
        blit(px, self._image(self.order[self.index]), 0, 0, clip)

    def step(self, px: np.ndarray, damage: Damage) -> None:
        self.left -= 1
        if self.left > 0:
            return
        self.index = (self.index + 1) % len(self.order)
        self.left = self._period()
        self.repaint(px, damage, self.ui.screen)


class Mixed(Scene):
    """A working session: typing, scrolling, dragging, some video and idle spells, switching between them."""

    name = "mixed"
    # frames per spell, (low, high)
    SPELLS = {"typing": (40, 121), "scrolling": (20, 61), "window-drag": (20, 51), "video": (15, 41),
              "idle": (10, 31)}

    def __init__(self, ui: Ui, rng: np.random.Generator) -> None:
        super().__init__(ui)
        self.rng = rng
        self._scenes: dict[str, Scene] = {}
        self.current = "typing"
        self.left = int(rng.integers(*self.SPELLS["typing"]))
        for name in self.SPELLS:  # built now, so that no frame pays for it
            self.scene(name)

    def scene(self, name: str) -> Scene:
        scene = self._scenes.get(name)
        if scene is None:
            scene = make_scene(name, self.ui)
            self._scenes[name] = scene
        return scene

    def render(self, px: np.ndarray, clip: Box) -> None:
        self.scene(self.current).render(px, clip)

    def step(self, px: np.ndarray, damage: Damage) -> None:
        if self.left > 0:
            self.left -= 1
            self.scene(self.current).step(px, damage)
            return
        names = [name for name in self.SPELLS if name != self.current]
        self.current = names[int(self.rng.integers(0, len(names)))]
        self.left = int(self.rng.integers(*self.SPELLS[self.current]))
        self.repaint(px, damage, self.ui.screen)


_FACTORIES: dict[str, Callable[[Ui, np.random.Generator], Scene]] = {
    "typing": Editor,
    "scrolling": Reader,
    "window-drag": WindowDrag,
    "video": Video,
    "idle": Idle,
    "switch": Switch,
    "mixed": Mixed,
}


def make_scene(name: str, ui: Ui) -> Scene:
    """Build the workload ``name`` (one of WORKLOADS) on ``ui``; KeyError for an unknown name."""
    return _FACTORIES[name](ui, ui.rng(_STREAM[name]))


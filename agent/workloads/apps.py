"""Static full-screen applications the ``switch`` workload alternates between (besides editor and reader).

Each draws into a box of a frame: a spreadsheet of figures, a terminal with
shell output, a photo viewer; ``app_frame`` puts a maximised window on the
desktop to hold one.
"""
from __future__ import annotations

import numpy as np

from agent.models import Box
from agent.workloads.paint import blit, fill, noise_image, palette, rgb
from agent.workloads.scenes import MUTED, PALETTES, PANEL_BG, TEXT, WHITE, Ui


def render_spreadsheet(ui: Ui, px: np.ndarray, box: Box, rng: np.random.Generator) -> None:
    """A grid of figures with column letters and row numbers, clipped to ``box``."""
    f, u = ui.font, ui.unit
    x0, y0, x1, y1 = box
    fill(px, box, WHITE, box)
    row_h = f.height + u // 2
    col_w = f.width("00000.00") + 2 * u
    head_w = f.width("000") + 2 * u
    fill(px, (x0, y0, x1, y0 + row_h), PANEL_BG, box)
    fill(px, (x0, y0, x0 + head_w, y1), PANEL_BG, box)
    for c, x in enumerate(range(x0 + head_w, x1, col_w)):
        fill(px, (x, y0, x + 1, y1), rgb(218, 220, 226), box)
        name = chr(ord("A") + c % 26)
        f.draw(px, x + (col_w - f.width(name)) // 2, y0, name, MUTED, PANEL_BG, box)
    for r, y in enumerate(range(y0 + row_h, y1, row_h)):
        fill(px, (x0, y, x1, y + 1), rgb(218, 220, 226), box)
        f.draw(px, x0 + u, y + 1, str(r + 1), MUTED, PANEL_BG, box)
        for x in range(x0 + head_w, x1, col_w):
            if rng.random() < 0.7:
                text = f"{rng.normal(500, 300):.2f}"
                f.draw(px, x + col_w - u - f.width(text), y + 1, text, TEXT, WHITE, box)


def render_terminal(ui: Ui, px: np.ndarray, box: Box, rng: np.random.Generator) -> None:
    """Shell commands and their output on a dark background."""
    f, u = ui.font, ui.unit
    bg, fg, green = rgb(24, 26, 30), rgb(205, 208, 214), rgb(120, 210, 120)
    fill(px, box, bg, box)
    y = box[1] + u
    names = ("capture", "detect", "encode", "secure", "relay", "viewer", "session", "consent")

    def pick() -> str:
        return names[int(rng.integers(0, len(names)))]

    outputs = {
        "ls -l agent/": lambda: f"-rw-r--r-- 1 support staff {int(rng.integers(200, 99999)):>6} May 14 "
                                f"14:{int(rng.integers(0, 60)):02d} {pick()}.py",
        "make -j2": lambda: f"cc -O3 -fPIC -c agent/_native/{pick()}.c -o build/{pick()}.o",
        "git status": lambda: f"        modified:   agent/{pick()}.py",
        "python -m pytest -q": lambda: f"tests/test_{pick()}.py {'.' * int(rng.integers(5, 40))} "
                                       f"[{int(rng.integers(1, 100)):3d}%]",
        "du -sh *": lambda: f"{int(rng.integers(4, 900))}K    {pick()}",
    }
    commands = list(outputs)
    while y < box[3]:
        cmd = commands[int(rng.integers(0, len(commands)))]
        f.draw(px, box[0] + u, y, f"support@desk:~/rejnet$ {cmd}", green, bg, box)
        y += ui.line_h
        for _ in range(int(rng.integers(2, 9))):
            f.draw(px, box[0] + u, y, outputs[cmd](), fg, bg, box)
            y += ui.line_h


def render_photo(ui: Ui, px: np.ndarray, box: Box, rng: np.random.Generator) -> None:
    """A photo viewer: a dark surround and one procedural picture."""
    fill(px, box, rgb(40, 40, 44), box)
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    iw, ih = max(w * 9 // 10, 1), max(h * 9 // 10, 1)
    lut = palette(PALETTES[int(rng.integers(0, len(PALETTES)))])
    blit(px, noise_image(rng, ih, iw, lut), x0 + (w - iw) // 2, y0 + (h - ih) // 2, box)


def app_frame(ui: Ui, title: str, body: int = WHITE) -> tuple[np.ndarray, Box]:
    """A full-screen image of the desktop with one maximised window; returns it and the window body box."""
    img = ui.desktop.copy()
    wx0, wy0, wx1, wy1 = ui.maximized()
    win = ui.window(wx1 - wx0, wy1 - wy0, title, body)
    blit(img, win, wx0, wy0, ui.screen)
    return img, (wx0 + 1, wy0 + ui.title_h + 1, wx1 - 1, wy1 - 1)


"""Fonts and ttk styles of the customer's window: the Tk side of ``theme``.

Every font is a named Tk font sized from the system default
(``TkDefaultFont``) by ``theme.font_sizes``, so the text follows the system
size and the customer's own zoom (Ctrl+plus / Ctrl+minus) reaches every
widget at once. Colours come only from ``theme.COLOURS``, whose pairs a test
holds to WCAG 2.0 AA contrast.
"""
from __future__ import annotations

import tkinter as tk
import tkinter.font as tkfont
from tkinter import ttk

from agent.launcher import theme

C = theme.COLOURS
_SPEC = {"body": ("body", "normal"), "bold": ("body", "bold"), "small": ("small", "normal"),
         "heading": ("heading", "bold"), "credential": ("credential", "bold"), "bar": ("bar", "bold")}


class Fonts:
    """The window's named fonts (``RejnetBody``, ``RejnetCredential`` ...), scaled together."""

    def __init__(self, root: tk.Misc) -> None:
        default = tkfont.nametofont("TkDefaultFont", root=root)
        fixed = tkfont.nametofont("TkFixedFont", root=root)
        self.system_points = theme.default_points(int(default.cget("size")), root.winfo_fpixels("1p"))
        self.scale = 1.0
        family, mono = default.actual("family"), fixed.actual("family")
        self.fonts = {name: tkfont.Font(root, name=f"Rejnet{name.title()}",
                                        family=mono if name == "credential" else family, weight=weight)
                      for name, (_, weight) in _SPEC.items()}
        self.resize()

    def __getitem__(self, name: str) -> tkfont.Font:
        return self.fonts[name]

    def resize(self) -> None:
        sizes = theme.font_sizes(self.system_points, self.scale)
        for name, (size_name, _) in _SPEC.items():
            self.fonts[name].configure(size=getattr(sizes, size_name))

    def zoom(self, step: int) -> None:
        """One Ctrl+plus (+1), Ctrl+minus (-1) or Ctrl+0 (0) step."""
        self.scale = theme.next_scale(self.scale, step)
        self.resize()


def apply_styles(root: tk.Misc, f: dict[str, tkfont.Font]) -> None:
    """The ttk styles the window uses (theme clam), from theme.COLOURS and the named fonts."""
    style = ttk.Style(root)
    style.theme_use("clam")
    root.configure(background=C["background"])
    style.configure(".", background=C["background"], foreground=C["text"], font=f["body"],
                    focuscolor=C["focus"], focusthickness=2)
    style.configure("TFrame", background=C["background"])
    style.configure("TLabel", background=C["background"], foreground=C["text"])
    style.configure("Heading.TLabel", font=f["heading"], foreground=C["heading"])
    style.configure("Bold.TLabel", font=f["bold"])
    style.configure("Muted.TLabel", font=f["small"], foreground=C["muted"])
    style.configure("Notice.TLabel", background=C["notice"], foreground=C["notice_text"], padding=(10, 6))
    style.configure("Card.TFrame", background=C["credential"])
    style.configure("Caption.TLabel", background=C["credential"], foreground=C["text"])
    style.configure("Credential.TLabel", background=C["credential"], foreground=C["credential_text"],
                    font=f["credential"], padding=(4, 2))
    style.configure("Prompt.TFrame", background=C["notice"])
    style.configure("Prompt.TLabel", background=C["notice"], foreground=C["notice_text"])
    style.configure("PromptBold.TLabel", background=C["notice"], foreground=C["notice_text"], font=f["bold"])
    for name, bg, active, fg in (("TButton", "button", "button_active", "button_text"),
                                 ("Primary.TButton", "primary", "primary_active", "primary_text"),
                                 ("Danger.TButton", "danger", "danger_active", "danger_text")):
        style.configure(name, background=C[bg], foreground=C[fg], padding=(14, 7), bordercolor=C["muted"],
                        lightcolor=C[bg], darkcolor=C[bg])
        plain = name == "TButton"
        style.map(name,
                  background=[("disabled", C["button"]), ("pressed", C[active]),
                              ("focus", C["focus_fill"] if plain else C[active]), ("active", C[active])],
                  foreground=[("disabled", C["disabled_text"]), ("focus", C[fg])],
                  focuscolor=[("focus", C["focus"] if plain else C["primary_text"])],
                  bordercolor=[("focus", C["focus"])],
                  lightcolor=[("focus", C["focus_fill"] if plain else C[active])],
                  darkcolor=[("focus", C["focus_fill"] if plain else C[active])])
    for name in ("TRadiobutton", "TCheckbutton"):
        style.configure(name, background=C["background"], foreground=C["text"], padding=(4, 4),
                        indicatorbackground=C["background"], indicatorforeground=C["text"],
                        indicatorsize=f["body"].metrics("linespace") * 3 // 4, upperbordercolor=C["text"],
                        lowerbordercolor=C["text"])
        style.map(name, background=[("focus", C["focus_fill"]), ("active", C["focus_fill"])],
                  foreground=[("disabled", C["disabled_text"])])
    style.configure("Bar.TFrame", background=C["bar"])
    style.configure("Bar.TLabel", background=C["bar"], foreground=C["bar_text"], font=f["bar"])
    style.configure("BarCode.TLabel", background=C["bar"], foreground=C["bar_code"], font=f["bar"])
    style.configure("Bar.TCheckbutton", background=C["bar"], foreground=C["bar_text"], font=f["body"],
                    indicatorbackground=C["background"], indicatorforeground=C["text"],
                    indicatorsize=f["body"].metrics("linespace") * 3 // 4, focuscolor=C["bar_code"])
    style.map("Bar.TCheckbutton", background=[("focus", C["focus_fill"]), ("active", C["focus_fill"])],
              foreground=[("focus", C["text"]), ("active", C["text"]), ("disabled", C["bar_disabled"])],
              focuscolor=[("focus", C["focus"])])

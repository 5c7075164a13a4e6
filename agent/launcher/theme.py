"""Colours and type sizes of the customer's window, with the WCAG 2.0 AA arithmetic that checks them.

No Tk here: the numbers are plain data so a test can hold every foreground and
background pair to a contrast of at least 4.5:1 (WCAG 2.0 SC 1.4.3), and the
type sizes to the system's default font (SC 1.4.4: text that follows the
system size and can be enlarged). The Tk layer only applies them.
"""
from __future__ import annotations

from dataclasses import dataclass

MIN_CONTRAST = 4.5          # WCAG 2.0 AA, normal text
MIN_CREDENTIAL_POINTS = 24  # the session ID and password are read out over the phone
MIN_SCALE, MAX_SCALE = 0.8, 2.5  # Ctrl+minus / Ctrl+plus steps stay within these
SCALE_STEP = 0.1

COLOURS: dict[str, str] = {
    "background": "#ffffff",
    "text": "#1b1b1b",
    "muted": "#474747",
    "heading": "#0a3d7a",
    "focus": "#0b57d0",          # focus ring and the border of the focused control
    "focus_fill": "#d6e4fb",     # background of a focused button or choice
    "button": "#e6e9ee",
    "button_active": "#cfd5de",
    "button_text": "#1b1b1b",
    "disabled_text": "#575757",
    "primary": "#0b57d0",
    "primary_active": "#0842a0",
    "primary_text": "#ffffff",
    "danger": "#b3261e",
    "danger_active": "#8c1d18",
    "danger_text": "#ffffff",
    "notice": "#fff4ce",
    "notice_text": "#3d2e00",
    "credential": "#f2f5f9",
    "credential_text": "#000000",
    "bar": "#1f2a37",
    "bar_text": "#ffffff",
    "bar_code": "#ffe08a",
    "bar_disabled": "#c9d1d9",
}

# (foreground, background, where it is seen): every pair the window draws text with.
TEXT_PAIRS: tuple[tuple[str, str, str], ...] = (
    ("text", "background", "body text"),
    ("muted", "background", "explanations under the choices"),
    ("heading", "background", "headings"),
    ("button_text", "button", "buttons"),
    ("button_text", "button_active", "a button under the pointer"),
    ("button_text", "focus_fill", "the focused button or choice"),
    ("disabled_text", "button", "a button that cannot be used now"),
    ("primary_text", "primary", "the main button"),
    ("primary_text", "primary_active", "the main button under the pointer"),
    ("danger_text", "danger", "Zakończ sesję"),
    ("danger_text", "danger_active", "Zakończ sesję under the pointer"),
    ("notice_text", "notice", "notes"),
    ("credential_text", "credential", "the session ID and password"),
    ("bar_text", "bar", "the in-session bar"),
    ("bar_code", "bar", "the safety code in the bar"),
    ("bar_disabled", "bar", "the view-only switch when the consent was view only"),
    ("text", "credential", "labels beside the credentials"),
)

# (colour, background it sits on): focus rings and borders (non-text contrast, 3:1).
FOCUS_PAIRS: tuple[tuple[str, str], ...] = (
    ("focus", "background"),
    ("focus", "button"),
    ("bar_code", "bar"),
)


def _channel(value: int) -> float:
    c = value / 255
    return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4


def relative_luminance(colour: str) -> float:
    """WCAG 2.0 relative luminance of ``#rrggbb``."""
    if len(colour) != 7 or not colour.startswith("#"):
        raise ValueError(f"not a #rrggbb colour: {colour!r}")
    r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * _channel(r) + 0.7152 * _channel(g) + 0.0722 * _channel(b)


def contrast_ratio(foreground: str, background: str) -> float:
    """WCAG 2.0 contrast ratio, 1 to 21."""
    a, b = relative_luminance(foreground), relative_luminance(background)
    lighter, darker = max(a, b), min(a, b)
    return (lighter + 0.05) / (darker + 0.05)


@dataclass(frozen=True)
class FontSizes:
    """Point sizes of the window's named fonts (Tk: positive sizes are points)."""

    body: int
    small: int
    heading: int
    credential: int
    bar: int


def default_points(size: int, pixels_per_point: float) -> float:
    """The system default font's size in points (Tk gives negative sizes in pixels)."""
    if size > 0:
        return float(size)
    if size < 0:
        return -size / pixels_per_point
    return 10.0  # 0 means "the platform default", which is 10 pt on X11 and Windows


def font_sizes(system_points: float, scale: float = 1.0) -> FontSizes:
    """Sizes derived from the system default font, times the customer's own zoom (Ctrl+plus)."""
    base = max(6.0, system_points) * max(MIN_SCALE, min(MAX_SCALE, scale))
    return FontSizes(
        body=round(base * 1.2),
        small=max(round(base * 1.0), 8),
        heading=round(base * 1.7),
        credential=max(MIN_CREDENTIAL_POINTS, round(base * 2.8)),
        bar=round(base * 1.3),
    )


def next_scale(scale: float, direction: int) -> float:
    """One Ctrl+plus (+1), Ctrl+minus (-1) or Ctrl+0 (0, back to 1.0) step."""
    if direction == 0:
        return 1.0
    return round(max(MIN_SCALE, min(MAX_SCALE, scale + SCALE_STEP * direction)), 2)

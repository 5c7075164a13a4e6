"""WCAG 2.0 AA arithmetic: every text colour pair at least 4.5:1, type that follows the system size."""
from __future__ import annotations

import pytest

from agent.launcher import theme


def test_contrast_ratio_known_values():
    assert theme.contrast_ratio("#000000", "#ffffff") == pytest.approx(21.0)
    assert theme.contrast_ratio("#ffffff", "#ffffff") == pytest.approx(1.0)
    # the WCAG threshold example: #767676 on white is the lightest grey that passes AA
    assert theme.contrast_ratio("#767676", "#ffffff") == pytest.approx(4.54, abs=0.01)
    assert theme.contrast_ratio("#777777", "#ffffff") < 4.5


@pytest.mark.parametrize("foreground, background, where", theme.TEXT_PAIRS)
def test_every_text_pair_passes_aa(foreground, background, where):
    ratio = theme.contrast_ratio(theme.COLOURS[foreground], theme.COLOURS[background])
    assert ratio >= theme.MIN_CONTRAST, f"{where}: {foreground} on {background} is {ratio:.2f}:1"


@pytest.mark.parametrize("colour, background", theme.FOCUS_PAIRS)
def test_focus_rings_stand_out(colour, background):
    assert theme.contrast_ratio(theme.COLOURS[colour], theme.COLOURS[background]) >= 3.0


def test_every_colour_is_used_by_some_pair():
    used = {name for pair in theme.TEXT_PAIRS for name in pair[:2]} | {n for pair in theme.FOCUS_PAIRS for n in pair}
    assert set(theme.COLOURS) == used, "a colour no contrast check covers"


def test_sizes_follow_the_system_font_and_credentials_are_at_least_24_points():
    small, large = theme.font_sizes(9), theme.font_sizes(16)
    assert small.credential >= theme.MIN_CREDENTIAL_POINTS
    assert large.body > small.body and large.heading > small.heading and large.credential > small.credential
    assert small.heading > small.body


def test_zoom_steps_are_bounded_and_reset():
    scale = 1.0
    for _ in range(50):
        scale = theme.next_scale(scale, 1)
    assert scale == theme.MAX_SCALE
    assert theme.font_sizes(10, scale).body >= 2 * theme.font_sizes(10).body, "200% text (WCAG 1.4.4)"
    for _ in range(50):
        scale = theme.next_scale(scale, -1)
    assert scale == theme.MIN_SCALE
    assert theme.next_scale(scale, 0) == 1.0


def test_pixel_sizes_are_converted_to_points():
    assert theme.default_points(10, 1.39) == 10
    assert theme.default_points(-14, 1.4) == pytest.approx(10)
    assert theme.default_points(0, 1.4) == 10

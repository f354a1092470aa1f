"""WCAG 2.2 AA contrast (4.5:1 for text) of every badge, link and text colour, in the light and dark themes.

The colours are read from the custom properties in static/jobtower/jobtower.css, so a change there is checked.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import jobtower
from jobtower.statuses import Status

CSS = Path(jobtower.__file__).parent / "static" / "jobtower" / "jobtower.css"
AA = 4.5
#: (text, background) pairs that appear on the pages, by custom-property name.
PAIRS = [
    ("fg", "bg"), ("fg", "row-alt"), ("fg", "row-hover"), ("fg", "button-bg"),
    ("muted", "bg"), ("muted", "row-alt"), ("muted", "row-hover"),
    ("link", "bg"), ("link", "row-alt"), ("link", "row-hover"), ("link", "button-bg"),
    ("danger", "bg"), ("danger", "row-alt"), ("danger", "row-hover"), ("danger", "button-bg"),
    ("log-fg", "log-bg"),
    *(("badge-fg", status.value) for status in Status),
]


def themes() -> dict[str, dict[str, str]]:
    text = CSS.read_text()
    light_block = re.search(r"^:root \{(.*?)\}", text, re.S | re.M)
    dark_block = re.search(r"prefers-color-scheme: dark\) \{\s*:root \{(.*?)\}", text, re.S)
    assert light_block and dark_block, "jobtower.css must define :root colours and a dark :root block"
    found = {}
    for name, block in (("light", light_block.group(1)), ("dark", dark_block.group(1))):
        found[name] = dict(re.findall(r"--jt-([\w-]+):\s*(#[0-9a-fA-F]{6})", block))
    return found


def luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_the_formula_matches_known_values() -> None:
    assert contrast("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast("#767676", "#ffffff") == pytest.approx(4.54, abs=0.01)  # the classic AA grey


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_every_pair_meets_aa(theme: str) -> None:
    colours = themes()[theme]
    missing = sorted({name for pair in PAIRS for name in pair} - set(colours))
    assert not missing, f"the {theme} theme does not define --jt-{missing}"
    low = {f"{fg} on {bg}": round(contrast(colours[fg], colours[bg]), 2) for fg, bg in PAIRS
           if contrast(colours[fg], colours[bg]) < AA}
    assert not low, f"{theme} theme: below {AA}:1: {low}"


def test_both_themes_define_the_same_properties() -> None:
    found = themes()
    assert set(found["light"]) == set(found["dark"])

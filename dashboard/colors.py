"""Colours: one per run, the same on every page; a depth gradient for layers of one run.

Every colour here is mid-luminance so it reads on Streamlit's light and dark backgrounds.
"""

from __future__ import annotations

import numpy as np
from plotly.colors import sample_colorscale

# Tableau 10 without its grey and red (red is kept for alerts: NaN markers, thresholds), with a darker
# gold for legibility on white: distinct, and friendlier to colour-blind readers than Plotly's default.
RUN_PALETTE = ("#4e79a7", "#f28e2b", "#76b7b2", "#59a14f", "#b07aa1", "#c9a227", "#ff9da7", "#9c755f",
               "#17becf", "#1f77b4", "#bcbd22", "#8c6bb1")
# Input side blue, middle violet, output side orange: vanishing/exploding shows as a fan.
DEPTH_SCALE = [[0.0, "#3b82f6"], [0.5, "#a855f7"], [1.0, "#f97316"]]
SEVERITY_COLORS = {"critical": "red", "warning": "orange", "info": "blue"}
GOOD_BAND = "rgba(89, 161, 79, 0.18)"
REFERENCE_LINE = "#9ca3af"
ALERT_LINE = "#e15759"


def assign_run_colors(paths, known: dict[str, str] | None = None) -> dict[str, str]:
    """A colour for each path. Paths in `known` keep theirs; new ones take the least-used colour,
    so a run keeps its colour for the whole session even as runs come and go."""
    colors = dict(known or {})
    for p in paths:
        if p in colors:
            continue
        used = list(colors.values())
        colors[p] = min(RUN_PALETTE, key=lambda c: (used.count(c), RUN_PALETTE.index(c)))
    return colors


def depth_colors(n: int) -> list[str]:
    """n colours from the input-side end of DEPTH_SCALE to the output-side end."""
    if n <= 0:
        return []
    if n == 1:
        return sample_colorscale(DEPTH_SCALE, [0.0])
    return sample_colorscale(DEPTH_SCALE, list(np.linspace(0.0, 1.0, n)))


def layer_colors(names: list[str]) -> dict[str, str]:
    """Depth colour of every layer of a run, so a layer keeps its colour whatever is picked."""
    return dict(zip(names, depth_colors(len(names))))

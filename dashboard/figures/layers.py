"""Per-layer statistics over time: one line per layer, coloured from input side to output side."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..colors import ALERT_LINE, GOOD_BAND, REFERENCE_LINE, depth_colors
from ..series_ops import MAX_POINTS, series_xy
from .base import STEP_TITLE, NoDataError, highlight_steps, line, style, use_webgl

# Titles with units for the activation statistics of runstore.tags.ACT_STATS.
ACT_STAT_TITLES = {
    "mean": "mean",
    "std": "std",
    "frac_dead": "dead units (fraction)",
    "frac_saturated": "saturated (fraction)",
    "frac_zero": "zeros (fraction)",
    "nonfinite": "non-finite (count)",
}


def layer_grid_figure(stats: dict[str, dict[str, pd.Series]], layers: list[str], *,
                      titles: dict[str, str] | None = None, colors: list[str] | None = None,
                      max_points: int = MAX_POINTS // 4, highlight: tuple[int, int] | None = None,
                      row_height: int = 190) -> go.Figure:
    """Stacked charts sharing the step axis, one per statistic, one line per layer.
    `stats[stat][layer]` is a step-indexed series; missing ones are skipped."""
    rows = [s for s in stats if any(not v.empty for v in stats[s].values())]
    if not rows or not layers:
        raise NoDataError("no per-layer statistics recorded")
    titles = titles or ACT_STAT_TITLES
    colors = colors or depth_colors(len(layers))
    fig = make_subplots(rows=len(rows), cols=1, shared_xaxes=True, vertical_spacing=0.04)
    xy = {(stat, layer): series_xy(stats[stat][layer], max_points=max_points)
          for stat in rows for layer in layers if layer in stats[stat] and not stats[stat][layer].empty}
    gl = use_webgl(sum(len(x) for x, _ in xy.values()))
    for r, stat in enumerate(rows, start=1):
        for i, layer in enumerate(layers):
            if (stat, layer) not in xy:
                continue
            x, y = xy[stat, layer]
            fig.add_trace(line(x, y, name=layer, color=colors[i], group=layer, showlegend=(r == 1), gl=gl),
                          row=r, col=1)
        fig.update_yaxes(title_text=titles.get(stat, stat), title_font_size=12, row=r, col=1)
        if stat.startswith("frac_"):
            fig.update_yaxes(range=[-0.02, 1.02], row=r, col=1)
    style(fig, height=row_height * len(rows) + 60, x_title=None)
    fig.update_xaxes(title_text=STEP_TITLE, row=len(rows), col=1)
    return highlight_steps(fig, highlight)


def ratio_figure(ratio: pd.Series, *, low: float, high: float, title: str | None = None,
                 y_title: str = "ratio", highlight: tuple[int, int] | None = None, height: int = 320) -> go.Figure:
    """A ratio on a log axis with its healthy range [low, high] shaded and the bounds drawn."""
    if ratio is None or ratio.empty:
        raise NoDataError("ratio not available")
    x, y = series_xy(ratio)
    y = np.where(y > 0, y, np.nan)
    fig = go.Figure(line(x, y, name=y_title, color="#4e79a7", width=2))
    fig.add_hrect(y0=low, y1=high, fillcolor=GOOD_BAND, line_width=0)
    for value, text, anchor in ((low, f"vanishing below {low:g}", "top"), (high, f"exploding above {high:g}", "bottom")):
        fig.add_hline(y=value, line=dict(color=ALERT_LINE, dash="dash", width=1.2))
        # annotations on a log axis take log10 coordinates (add_hline's own annotation does not)
        fig.add_annotation(x=0.005, xref="paper", y=float(np.log10(value)), yref="y", text=text, showarrow=False,
                           xanchor="left", yanchor=anchor, font=dict(size=11, color=ALERT_LINE))
    style(fig, title=title, y_title=y_title, log_y=True, height=height)
    fig.update_layout(showlegend=False)
    finite = y[np.isfinite(y)]
    if finite.size:
        lo = min(float(finite.min()), low) / 3
        hi = max(float(finite.max()), high) * 3
        fig.update_yaxes(range=[np.log10(lo), np.log10(hi)])
    return highlight_steps(fig, highlight)


def log_ratio_figure(series: dict[str, pd.Series], names: list[str], *, target: float, band_decades: float,
                     reference: float | None = None, reference_label: str = "", title: str | None = None,
                     colors: list[str] | None = None, highlight: tuple[int, int] | None = None,
                     height: int = 420) -> go.Figure:
    """log10 of a positive ratio per parameter, with a target band of +-band_decades around
    log10(target) and an optional dotted reference line."""
    names = [n for n in names if n in series and not series[n].empty]
    if not names:
        raise NoDataError("no update ratios recorded")
    colors = colors or depth_colors(len(names))
    fig = go.Figure()
    xy = [series_xy(series[n], max_points=MAX_POINTS // 2) for n in names]
    gl = use_webgl(sum(len(x) for x, _ in xy))
    for i, (n, (x, y)) in enumerate(zip(names, xy)):
        with np.errstate(divide="ignore", invalid="ignore"):
            ly = np.where(y > 0, np.log10(np.where(y > 0, y, 1.0)), np.nan)
        fig.add_trace(line(x, ly, name=n, color=colors[i], group=n, gl=gl))
    t = float(np.log10(target))
    fig.add_hrect(y0=t - band_decades, y1=t + band_decades, fillcolor=GOOD_BAND, line_width=0,
                  annotation_text=f"target ≈ {target:g}", annotation_position="top left")
    fig.add_hline(y=t, line=dict(color="#59a14f", width=1.2))
    if reference is not None:
        fig.add_hline(y=float(np.log10(reference)), line=dict(color=REFERENCE_LINE, dash="dot", width=1.2),
                      annotation_text=reference_label or f"{reference:g}", annotation_position="bottom right")
    style(fig, title=title, y_title="log10(update / weight)", height=height)
    return highlight_steps(fig, highlight)

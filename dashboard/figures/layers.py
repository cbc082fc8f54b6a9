"""Per-layer statistics over time: one line per layer, with the verdicts' thresholds and statistics."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from runstore import tags

from ..colors import ALERT_LINE, depth_colors
from ..format import number
from ..series_ops import MAX_POINTS, series_xy
from .base import (MAX_DECADES, STEP_TITLE, NoDataError, add_level, highlight_steps, line, log_range, plain,
                   set_log_range, style, use_webgl)

# A row switches to a symmetric-log scale when one layer's peak is this many times the typical
# layer's peak: on a linear axis that layer would squeeze the typical one into an eighth of the height.
SYMLOG_SPREAD = 8.0
ZERO_MARK = "x-thin-open"
BELOW_MARK = "triangle-down-open"


@dataclass(frozen=True)
class Segment:
    """The statistic a verdict compared with its thresholds, drawn over the steps it covers, so the
    number in a page's verdict table can be found on its chart."""

    name: str                # the layer (module or parameter) it belongs to
    value: float
    steps: tuple[int, int]
    text: str                # hover text: what the number is and the verdict


@dataclass(frozen=True)
class Level:
    """A threshold line: `value` on the y axis, its label, and the Thresholds field it draws."""

    value: float
    text: str
    name: str | None = None
    color: str = ALERT_LINE
    dash: str = "dash"
    extend: bool = True  # whether the axis grows to show it; else it is drawn only when in range
    anchor: str = "bottom"  # label above the line ("bottom") or under it ("top"), apart from a close neighbour


def _colors(names: list[str], colors) -> dict[str, str]:
    if isinstance(colors, dict):
        fallback = dict(zip(names, depth_colors(len(names))))
        return {n: colors.get(n, fallback[n]) for n in names}
    colors = list(colors or depth_colors(len(names)))
    return dict(zip(names, colors))


def _segment_trace(seg: Segment, *, color: str, label: str, log: bool = False, row_y: str | None = None) -> go.Scatter:
    a, b = seg.steps
    if a == b:
        b = a + 0.5  # a one-step statistic still needs a visible length
    return go.Scatter(x=[a, b], y=[seg.value, seg.value], mode="lines", line=dict(color=color, width=5),
                      opacity=0.55, name=f"{label}: {seg.text}", legendgroup=seg.name, showlegend=False,
                      hovertemplate=f"{label}: {seg.text}<extra></extra>", yaxis=row_y)


# -- log axis with exact zeros -------------------------------------------------------------------
def log_layers_figure(series: dict[str, pd.Series], names: list[str], *, y_title: str, title: str | None = None,
                      labels: dict[str, str] | None = None, colors=None, segments: list[Segment] = (),
                      levels: list[Level] = (), include=(), max_decades: float = MAX_DECADES,
                      highlight: tuple[int, int] | None = None, height: int = 400) -> go.Figure:
    """One line per layer on a log axis that stays readable: it spans at most `max_decades` below
    the largest value (and covers the `levels` and `include` values). Values that are exactly 0
    are marked x on the bottom edge and values below the axis with a down-triangle there, instead
    of vanishing from a log axis or stretching it to 1e-20."""
    names = [n for n in names if n in series and not series[n].empty]
    if not names:
        raise NoDataError("none of the requested series was recorded")
    labels = {n: plain((labels or {}).get(n, n)) for n in names}
    colors = _colors(names, colors)
    xy = {n: series_xy(series[n], max_points=MAX_POINTS // 2) for n in names}
    gl = use_webgl(sum(len(x) for x, _ in xy.values()))
    values = np.concatenate([series[n].to_numpy(dtype=float) for n in names])
    rng = log_range(values, include=[lv.value for lv in levels if lv.extend] + list(include),
                    max_decades=max_decades)
    fig = go.Figure()
    marks = []  # (name, x, symbol, hover customdata or None)
    for n in names:
        x, y = xy[n]
        bottom = rng[0] if rng else 0.0
        finite = np.isfinite(y)
        zero = finite & (y == 0)
        below = finite & (y > 0) & (y < bottom)
        shown = np.where(finite & (y >= bottom) & (y > 0), y, np.nan)
        label = labels.get(n, n)
        fig.add_trace(line(x, shown, name=label, color=colors[n], group=n, gl=gl))
        if zero.any():
            marks.append((n, x[zero], ZERO_MARK, None))
        if below.any():
            marks.append((n, x[below], BELOW_MARK, y[below]))
    for seg in segments:
        if seg.name in colors and math.isfinite(seg.value) and seg.value > 0:
            fig.add_trace(_segment_trace(seg, color=colors[seg.name], label=labels.get(seg.name, seg.name)))
    style(fig, title=title, y_title=y_title, height=height)
    if rng is None:  # nothing positive: no axis to fit, only zeros (or gaps) to mark
        rng = (min([lv.value for lv in levels], default=1e-3) / 10, max([lv.value for lv in levels], default=1.0))
    lo, hi = set_log_range(fig, *rng)
    edge = 10.0 ** lo
    for n, x, symbol, vals in marks:
        label = labels.get(n, n)
        if vals is None:
            hover = f"{label}: exactly 0 at step %{{x}}<extra></extra>"
            custom = None
        else:
            hover = f"{label}: %{{customdata:.2e}} at step %{{x}} (below the axis)<extra></extra>"
            custom = vals
        fig.add_trace(go.Scatter(x=x, y=np.full(len(x), edge), mode="markers", cliponaxis=False, customdata=custom,
                                 marker=dict(symbol=symbol, color=colors[n], size=9, line=dict(width=1.6, color=colors[n])),
                                 name=f"{label} {'= 0' if vals is None else 'below axis'}", legendgroup=n,
                                 showlegend=False, hovertemplate=hover))
    for lv in levels:
        if lv.extend or lo <= math.log10(lv.value) <= hi:
            add_level(fig, lv.value, lv.text, name=lv.name, color=lv.color, dash=lv.dash, anchor=lv.anchor)
    # one legend entry per kind of mark says what the marks on the bottom edge mean
    for symbol, text in ((ZERO_MARK, "exactly 0 (bottom edge)"), (BELOW_MARK, f"below {number(edge)} (bottom edge)")):
        if any(m[2] == symbol for m in marks):
            fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=text, hoverinfo="skip",
                                     marker=dict(symbol=symbol, color="#9ca3af", size=9, line=dict(width=1.6))))
    return highlight_steps(fig, highlight)


def shade_spans(fig: go.Figure, spans: list[tuple[int, int, str]], *, color: str = "rgba(128,128,128,0.18)") -> go.Figure:
    """Grey spans over steps (e.g. where a layer got no gradient), labelled at the top."""
    for a, b, text in spans:
        fig.add_vrect(x0=a, x1=max(b, a + 0.5), fillcolor=color, line_width=0, layer="below",
                      annotation_text=text, annotation_position="top left", annotation_font_size=11)
    return fig


# -- stacked statistics (Activations) ---------------------------------------------------------------
def symlog_scale(series: list[pd.Series], *, always: bool = False) -> float | None:
    """The linear range c of a symmetric-log axis for these layers, or None when a linear axis shows
    them all. When one layer's peak dwarfs the typical layer's (SYMLOG_SPREAD), c is a power of ten a
    decade under the typical magnitude, so typical layers keep a third of the height while the
    exploding one still fits. With `always` (a scale such as std, read best in decades), c sits a
    decade under the smallest layer's typical value, so every layer is read in decades."""
    peaks, typical = [], []
    for s in series:
        v = np.abs(s.to_numpy(dtype=float))
        v = v[np.isfinite(v)]
        if v.size:
            peaks.append(float(v.max()))
            typical.append(float(np.median(v)))
    positive = [x for x in typical if x > 0]
    if always:
        if not positive:
            return None
        return 10.0 ** math.floor(math.log10(min(positive) / 10.0))
    if len(peaks) < 2:
        return None
    mid = float(np.median(peaks))
    if mid <= 0 or max(peaks) / mid < SYMLOG_SPREAD:
        return None
    t = float(np.median(positive or [mid]))
    return 10.0 ** math.floor(math.log10(t / 10.0))


def symlog(y, c: float) -> np.ndarray:
    """asinh(y / c) in decades: linear around 0 (within +-c), log10-like beyond, defined for 0 and
    negative values (which a log axis cannot draw)."""
    return np.arcsinh(np.asarray(y, dtype=float) / c) / math.log(10.0)


def symlog_ticks(lo: float, hi: float, c: float, max_ticks: int = 7) -> tuple[list[float], list[str]]:
    """Tick positions (symlog units) and labels (real values) within [lo, hi]: 0 and +-c*10^k, with
    2 and 5 times those added when fewer than three would show (a range of a decade or two)."""
    def within(vals):
        return sorted(v for v in vals if lo - 1e-9 <= symlog(v, c) <= hi + 1e-9)

    decades, k = [0.0], 0
    while c * 10.0 ** k <= max(abs(lo), abs(hi), 1e-300) * 10 and k < 40:
        decades += [c * 10.0 ** k, -c * 10.0 ** k]
        k += 1
    pos = within(decades)
    if len(pos) < 3:
        pos = within(decades + [m * v for v in decades for m in (2.0, 5.0)])
    step = max(1, math.ceil(len(pos) / max_ticks))
    if step > 1:  # keep 0 and thin the decades on both sides evenly
        neg = [v for v in pos if v < 0][::-1][step - 1::step][::-1]
        posv = [v for v in pos if v > 0][step - 1::step]
        pos = neg + ([0.0] if 0.0 in pos else []) + posv
    return [float(symlog(v, c)) for v in pos], [number(v) for v in pos]


def _padded(values: list[np.ndarray], pad: float = 0.06) -> list[float] | None:
    """[lo, hi] of the values with a margin, so a line on the extreme value is not drawn on the
    frame (Plotly pads markers, not lines)."""
    v = np.concatenate(values) if values else np.array([])
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None
    lo, hi = float(v.min()), float(v.max())
    span = hi - lo if hi > lo else max(abs(hi), 1.0) * 0.5
    return [lo - pad * span, hi + pad * span]


def layer_grid_figure(stats: dict[str, dict[str, pd.Series]], layers: list[str], *,
                      titles: dict[str, str] | None = None, colors=None, labels: dict[str, str] | None = None,
                      levels: dict[str, list[Level]] | None = None, segments: dict[str, list[Segment]] | None = None,
                      symlog_stats=("mean",), decade_stats=("std",), max_points: int = MAX_POINTS // 4,
                      highlight: tuple[int, int] | None = None, row_height: int = 190) -> go.Figure:
    """Stacked charts sharing the step axis, one per statistic, one line per layer.
    `stats[stat][layer]` is a step-indexed series; missing ones are skipped. Rows in `symlog_stats`
    switch to a symmetric-log axis when one layer dwarfs the others, rows in `decade_stats` always
    use one (a spread is read in decades, and it can be exactly 0, which a log axis cannot draw);
    `levels` and `segments` draw the thresholds and the verdicts' statistics of a row."""
    rows = [s for s in stats if any(not v.empty for v in stats[s].values())]
    if not rows or not layers:
        raise NoDataError("no per-layer statistics recorded")
    titles = titles or tags.STAT_TITLES
    labels = {n: plain((labels or {}).get(n, n)) for n in layers}
    levels, segments = levels or {}, segments or {}
    colors = _colors(layers, colors)
    fig = make_subplots(rows=len(rows), cols=1, shared_xaxes=True, vertical_spacing=0.04)
    xy = {(stat, layer): series_xy(stats[stat][layer], max_points=max_points)
          for stat in rows for layer in layers if layer in stats[stat] and not stats[stat][layer].empty}
    gl = use_webgl(sum(len(x) for x, _ in xy.values()))
    legend_done: set[str] = set()
    for r, stat in enumerate(rows, start=1):
        rows_series = [stats[stat][n] for n in layers if (stat, n) in xy]
        c = (symlog_scale(rows_series, always=True) if stat in decade_stats
             else symlog_scale(rows_series) if stat in symlog_stats else None)
        shown_y = []  # what the row's axis shows (symlog units on a symlog row)
        for layer in layers:
            if (stat, layer) not in xy:
                continue
            x, y = xy[stat, layer]
            label = labels.get(layer, layer)
            tr = line(x, symlog(y, c) if c else y, name=label, color=colors[layer], group=layer,
                      showlegend=layer not in legend_done, gl=gl)
            if c:
                tr.update(customdata=y, hovertemplate="%{customdata:.3g}")
            shown_y.append(symlog(y, c) if c else np.asarray(y, dtype=float))
            legend_done.add(layer)
            fig.add_trace(tr, row=r, col=1)
        title = titles.get(stat, stat)
        rng = _padded(shown_y)
        if c:
            lo, hi = rng or (0.0, 1.0)
            tickvals, ticktext = symlog_ticks(lo, hi, c)
            fig.update_yaxes(tickvals=tickvals, ticktext=ticktext, row=r, col=1)
            title += " (symlog)"
        if rng is not None and not stat.startswith("frac_"):
            fig.update_yaxes(range=rng, row=r, col=1)
        fig.update_yaxes(title_text=title, title_font_size=12, exponentformat="e", row=r, col=1)
        if stat.startswith("frac_"):
            fig.update_yaxes(range=[-0.02, 1.02], row=r, col=1)
        for seg in segments.get(stat, []):
            if seg.name in colors and math.isfinite(seg.value):
                fig.add_trace(_segment_trace(seg, color=colors[seg.name], label=labels.get(seg.name, seg.name)),
                              row=r, col=1)
        for lv in levels.get(stat, []):
            fig.add_hline(y=lv.value, line=dict(color=lv.color, dash=lv.dash, width=1.1), name=lv.name,
                          annotation_text=lv.text, annotation_position="bottom left",
                          annotation_font=dict(size=10, color=lv.color), row=r, col=1)
    style(fig, height=row_height * len(rows) + 60, x_title=None)
    fig.update_xaxes(title_text=STEP_TITLE, row=len(rows), col=1)
    return highlight_steps(fig, highlight)


# -- one ratio over time ------------------------------------------------------------------------------
def ratio_figure(ratio: pd.Series, *, levels: list[Level], title: str | None = None, y_title: str = "ratio",
                 highlight: tuple[int, int] | None = None, height: int = 320) -> go.Figure:
    """A ratio on a log axis with its threshold lines; exact zeros marked on the bottom edge."""
    if ratio is None or ratio.dropna().empty:
        raise NoDataError("ratio not available")
    fig = log_layers_figure({y_title: ratio}, [y_title], y_title=y_title, title=title, colors=["#4e79a7"],
                            levels=levels, highlight=highlight, height=height)
    fig.update_layout(showlegend=False)
    return fig

"""Shared look of every chart: hover on step, axis titles, spike lines, WebGL for long lines."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..format import number
from ..series_ops import MAX_POINTS, nonfinite_steps, series_xy

# WebGL (Scattergl) draws tens of thousands of points without slowing down, but each chart pays
# to start a WebGL context (seconds in a browser without GPU acceleration) and browsers allow only
# ~16 contexts per page. So a chart switches to WebGL when its lines, after downsampling, hold
# more than FIGURE_GL_POINTS points in all (e.g. 8 layers x 4,000 points), or one line more than
# GL_THRESHOLD; a 100,000-step loss curve downsampled to 4,000 points stays SVG.
GL_THRESHOLD = 5000
FIGURE_GL_POINTS = 20_000
_webgl = {"enabled": True}


def set_webgl(enabled: bool) -> None:
    """Allow or forbid WebGL traces (the app's --no-webgl: browsers without GPU acceleration
    start WebGL slowly, in seconds, or not at all)."""
    _webgl["enabled"] = bool(enabled)
SMOOTH_MIN_POINTS = 100
STEP_TITLE = "optimizer step"


def plain(text) -> str:
    """Run-derived text (layer names, titles quoting them) for a Plotly title, legend or hover:
    Plotly reads a subset of HTML there (<a href>, <b>, <br>), so angle brackets are escaped."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class NoDataError(ValueError):
    """A figure was asked for data the run does not have."""


@dataclass
class Curve:
    """One line of a chart: a step-indexed series with its legend name and style."""

    name: str
    series: pd.Series
    color: str | None = None
    dash: str | None = None
    group: str | None = None  # legend group (e.g. the run), so toggling a run hides all its lines
    width: float = 1.8
    smooth: bool = True  # False for a series that is already a smoothed one (e.g. what the advice reads)


def use_webgl(total_points: int) -> bool:
    """Whether a chart with this many line points in all should draw them with WebGL."""
    return _webgl["enabled"] and total_points > FIGURE_GL_POINTS


def line(x, y, *, name: str, color: str | None = None, dash: str | None = None, width: float = 1.8,
         opacity: float = 1.0, group: str | None = None, showlegend: bool = True, hover: bool = True,
         mode: str = "lines", hovertemplate: str | None = None, gl: bool = False):
    """A line trace; WebGL when the chart asks for it (`gl`) or the line alone is long."""
    cls = go.Scattergl if _webgl["enabled"] and (gl or len(x) > GL_THRESHOLD) else go.Scatter
    return cls(x=np.asarray(x), y=np.asarray(y), name=name, mode=mode, opacity=opacity, legendgroup=group,
               showlegend=showlegend, line=dict(color=color, dash=dash, width=width),
               hoverinfo=None if hover else "skip", hovertemplate=hovertemplate, connectgaps=False)


def _legend_rows(fig: go.Figure, width_px: float = 900.0) -> int:
    """Rough number of rows a horizontal legend wraps into (names x ~6.5 px + symbol)."""
    names = {t.name for t in fig.data if t.showlegend is not False and t.name}
    if not names:
        return 0
    return max(1, math.ceil(sum(len(n) * 6.5 + 45 for n in names) / width_px))


def style(fig: go.Figure, *, title: str | None = None, y_title: str | None = None, x_title: str = STEP_TITLE,
          log_y: bool = False, height: int = 360, unified_hover: bool = True) -> go.Figure:
    """Apply the common layout. No template is set, so Streamlit's light/dark theme applies.
    Title and legend sit on the left above the plot, clear of Plotly's toolbar (top right)."""
    rows = _legend_rows(fig)
    top = (34 if title else 8) + 22 * rows
    fig.update_layout(
        title=dict(text=title, x=0, xanchor="left", y=1, yref="container", yanchor="top", pad=dict(t=8),
                   font=dict(size=15)) if title else None,
        height=height + 22 * max(0, rows - 1),
        margin=dict(l=10, r=10, t=max(top, 30), b=10),
        hovermode="x unified" if unified_hover else "closest",
        legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0, xanchor="left", font=dict(size=11)),
        hoverlabel=dict(namelength=40),
        uirevision="keep",  # keeps zoom and hidden legend entries across live refreshes
    )
    fig.update_xaxes(title_text=x_title, showspikes=True, spikemode="across", spikesnap="cursor",
                     spikethickness=1, spikedash="dot")
    if y_title is not None:
        fig.update_yaxes(title_text=y_title)
    if log_y:
        fig.update_yaxes(type="log", exponentformat="power")
    return fig


# A log axis spans at most this many decades: below that, values are noise around an exact zero
# (a dying gradient reads 1e-18 one step and 0 the next) and would crowd the axis with labels.
MAX_DECADES = 10
# ... and carries at most about this many tick labels.
MAX_LOG_TICKS = 7


def _positive(values) -> np.ndarray:
    v = np.asarray(values, dtype=float).ravel()
    return v[np.isfinite(v) & (v > 0)]


def log_ticks(fig: go.Figure, values, **selector) -> go.Figure:
    """Readable ticks on a log y axis spanning `values`: Plotly's own within a decade, labelled
    1-2-5 (or 1-3) steps over a few decades, whole decades beyond, every 2nd or 3rd one when there are
    many. (Plotly's own 1-2-5 labels print 0.5 as a small "5" under the "1", easily read as five;
    its default over many decades crowds a tall chart with a label per decade.)"""
    v = _positive(values)
    if not v.size:
        return fig
    lo, hi = math.log10(v.min()), math.log10(v.max())
    decades = hi - lo
    if decades > 3.5:
        fig.update_yaxes(dtick=max(1, math.ceil(decades / MAX_LOG_TICKS)), **selector)
    elif decades > 0.7:
        mantissas = (1, 2, 5) if decades <= 2 else (1, 3)
        ticks = [m * 10.0 ** k for k in range(math.floor(lo), math.ceil(hi) + 1) for m in mantissas
                 if lo <= math.log10(m * 10.0 ** k) <= hi]
        fig.update_yaxes(tickmode="array", tickvals=ticks, ticktext=[number(t) for t in ticks], **selector)
    return fig


def log_range(values, *, include=(), max_decades: float = MAX_DECADES) -> tuple[float, float] | None:
    """(bottom, top) of a log axis for `values` and the levels in `include`: from the smallest
    positive value, but at most `max_decades` below the largest; None when none is positive."""
    v = _positive(np.concatenate([_positive(values), _positive(list(include))]))
    if v.size == 0:
        return None
    top = float(v.max())
    bottom = max(float(v.min()), top / 10.0 ** max_decades)
    if bottom >= top:
        bottom, top = top / 10.0, top * 10.0
    return bottom, top


def set_log_range(fig: go.Figure, bottom: float, top: float, *, pad: float = 0.15) -> tuple[float, float]:
    """Fix a log y axis to [bottom, top] plus `pad` decades, with readable ticks; returns the
    axis range in log10 units (what Plotly's layout and annotations use)."""
    lo, hi = math.log10(bottom) - pad, math.log10(top) + pad
    fig.update_yaxes(type="log", exponentformat="power", range=[lo, hi])
    log_ticks(fig, [10.0 ** lo, 10.0 ** hi])
    return lo, hi


def add_level(fig: go.Figure, y: float, text: str, *, name: str | None = None, color: str = "#e15759",
              dash: str = "dash", log: bool = True, anchor: str = "bottom", x: float = 0.995,
              xanchor: str = "right") -> go.Figure:
    """A horizontal line at `y` with its label at the right end. `name` tags the shape (e.g. the
    Thresholds field it draws), so a test can read which number a line stands for."""
    fig.add_shape(type="line", xref="paper", x0=0, x1=1, yref="y", y0=y, y1=y, name=name,
                  line=dict(color=color, dash=dash, width=1.2))
    # annotations on a log axis take log10 coordinates (shapes take the values)
    fig.add_annotation(x=x, xref="paper", y=math.log10(y) if log else y, yref="y", text=text, showarrow=False,
                       xanchor=xanchor, yanchor=anchor, font=dict(size=11, color=color))
    return fig


def add_band(fig: go.Figure, y0: float, y1: float, *, color: str, name: str | None = None) -> go.Figure:
    """A shaded horizontal band between two values of the y axis (behind the lines)."""
    fig.add_shape(type="rect", xref="paper", x0=0, x1=1, yref="y", y0=y0, y1=y1, name=name, fillcolor=color,
                  line_width=0, layer="below")
    return fig


def highlight_steps(fig: go.Figure, steps: tuple[int, int] | None, *, label: str = "finding") -> go.Figure:
    """Shade the step range a finding points at."""
    if steps:
        a, b = steps
        if a == b:
            fig.add_vline(x=a, line=dict(color="rgba(225,87,89,0.8)", dash="dot", width=1.5))
        else:
            fig.add_vrect(x0=a, x1=b, fillcolor="rgba(225,87,89,0.12)", line_width=0,
                          annotation_text=label, annotation_position="top left",
                          annotation_font_size=11)
    return fig


def lines_figure(curves: list[Curve], *, title: str | None = None, y_title: str | None = None,
                 log_y: bool = False, smoothing: float = 0.0, max_points: int = MAX_POINTS,
                 mark_nonfinite: bool = False, highlight: tuple[int, int] | None = None,
                 height: int = 360) -> go.Figure:
    """Lines of step-indexed series. With smoothing, the raw series is drawn faint behind the
    smoothed one. With mark_nonfinite, steps where a series was NaN/Inf get a marker row."""
    curves = [c for c in curves if c.series is not None and not c.series.empty]
    if not curves:
        raise NoDataError("none of the requested series was recorded")
    parts = []  # (curve, raw xy or None, shown xy), computed first to pick SVG or WebGL for the chart
    for c in curves:
        # a handful of evaluation points is not noise to average away: only long series are smoothed
        smooth = smoothing if c.smooth and len(c.series) >= SMOOTH_MIN_POINTS else 0.0
        raw = series_xy(c.series, max_points=max_points) if smooth > 0 else None
        parts.append((c, raw, series_xy(c.series, max_points=max_points, smoothing=smooth)))
    gl = use_webgl(sum(len(xy[0]) + (len(raw[0]) if raw else 0) for _, raw, xy in parts))
    fig = go.Figure()
    for c, raw, (x, y) in parts:
        group = c.group or c.name
        if raw is not None:
            fig.add_trace(line(*raw, name=f"{c.name} (raw)", color=c.color, dash=c.dash, width=1,
                               opacity=0.3, group=group, showlegend=False, hover=False, gl=gl))
        fig.add_trace(line(x, y, name=c.name, color=c.color, dash=c.dash, width=c.width, group=group, gl=gl))
    if mark_nonfinite:
        _mark_nonfinite(fig, curves)
    style(fig, title=title, y_title=y_title, log_y=log_y, height=height)
    values = np.concatenate([c.series.to_numpy(dtype=float) for c in curves])
    if log_y:
        rng = log_range(values)
        if rng is not None:
            set_log_range(fig, *rng, pad=0.05)
    else:
        finite = values[np.isfinite(values)]
        if finite.size and finite.min() == finite.max() and finite.max() > 0:
            # a constant (e.g. a fixed learning rate) would sit in an arbitrary -1..1 range
            fig.update_yaxes(range=[0, 2 * float(finite.max())])
    return highlight_steps(fig, highlight)


def _mark_nonfinite(fig: go.Figure, curves: list[Curve]) -> None:
    for c in curves:
        bad = nonfinite_steps(c.series)
        if bad.size == 0:
            continue
        # NaN/Inf cannot be drawn on a value axis: show them as a red x along the top edge
        fig.add_trace(go.Scatter(x=bad[:2000], y=np.ones(min(bad.size, 2000)), yaxis="y2", mode="markers",
                                 marker=dict(symbol="x", color="#e15759", size=8), name=f"{c.name} NaN/Inf",
                                 legendgroup=c.group or c.name,
                                 hovertemplate="non-finite value at step %{x}<extra>" + c.name + "</extra>"))
        fig.update_layout(yaxis2=dict(overlaying="y", range=[0, 1.05], visible=False, fixedrange=True))

"""Charts of a per-layer verdict: the series the verdict reads, its thresholds as lines and zones
taken from diagnostics.Thresholds (never a number of the chart's own), and each layer's statistic
as a segment, so the verdict table's number and word can be found on the chart."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from ..colors import ALERT_LINE, GOOD_BAND, REFERENCE_LINE
from ..format import number
from .base import add_band, add_level
from .layers import Level, Segment, log_layers_figure, shade_spans

# Zones of the update ratio, from "barely moves" to "rewrites the weights".
LARGE_BAND = "rgba(217, 119, 6, 0.14)"
TOO_LARGE_BAND = "rgba(225, 87, 89, 0.12)"
TOO_SMALL_BAND = "rgba(128, 128, 128, 0.12)"
LARGE_LINE = "#d97706"


def _axis_bounds(fig: go.Figure) -> tuple[float, float]:
    lo, hi = fig.layout.yaxis.range
    return 10.0 ** lo, 10.0 ** hi


def update_ratio_figure(series: dict[str, pd.Series], names: list[str], th, *, segments: list[Segment] = (),
                        guides: bool = True, labels: dict[str, str] | None = None, colors=None,
                        title: str | None = None, highlight: tuple[int, int] | None = None,
                        height: int = 440) -> go.Figure:
    """||dw|| / ||w|| per step on a log axis, with the zones the Updates verdicts use
    (th: diagnostics.Thresholds): too small below update_ratio_low, in range up to
    update_ratio_large, large up to update_ratio_high, too large above; optionally the CS231n and
    tuning-notes guides (dotted)."""
    levels = [Level(th.update_ratio_high, f"too large above {number(th.update_ratio_high)}", "update_ratio_high"),
              Level(th.update_ratio_large, f"large above {number(th.update_ratio_large)}", "update_ratio_large",
                    color=LARGE_LINE, anchor="top"),
              Level(th.update_ratio_low, f"too small below {number(th.update_ratio_low)}", "update_ratio_low",
                    anchor="top")]
    fig = log_layers_figure(series, names, y_title="‖Δw‖ / ‖w‖ per step", title=title, labels=labels,
                            colors=colors, segments=segments, levels=levels, highlight=highlight, height=height)
    bottom, top = _axis_bounds(fig)
    add_band(fig, th.update_ratio_low, th.update_ratio_large, color=GOOD_BAND, name="in range")
    add_band(fig, th.update_ratio_large, th.update_ratio_high, color=LARGE_BAND, name="large")
    add_band(fig, th.update_ratio_high, max(top, th.update_ratio_high), color=TOO_LARGE_BAND, name="too large")
    add_band(fig, min(bottom, th.update_ratio_low), th.update_ratio_low, color=TOO_SMALL_BAND, name="too small")
    if guides:
        for value, text, name in ((th.update_ratio_guide_cs231n, f"CS231n ≈ {number(th.update_ratio_guide_cs231n)}",
                                   "update_ratio_guide_cs231n"),
                                  (th.update_ratio_guide_notes, f"tuning notes ≈ {number(th.update_ratio_guide_notes)}",
                                   "update_ratio_guide_notes")):
            if bottom <= value <= top:
                # labelled under the line at the right: the statistic segments cover the left part
                add_level(fig, value, text, name=name, color=REFERENCE_LINE, dash="dot", anchor="top")
    return fig


def grad_flow_figure(relative: pd.DataFrame, names: list[str], th, *, segments: list[Segment] = (),
                     spans: list[tuple[int, int, str]] = (), labels: dict[str, str] | None = None, colors=None,
                     title: str | None = None, highlight: tuple[int, int] | None = None,
                     height: int = 400) -> go.Figure:
    """Each layer's mean |gradient| relative to the strongest layer's at the same step (the series
    the gradient-flow verdicts read), with vanish_ratio (vanishing) and its square (critical) from
    th: diagnostics.Thresholds, and grey spans where the judgement found no gradient at all."""
    series = {n: relative[n] for n in names if n in relative}
    levels = [Level(th.vanish_ratio, f"vanishing below {number(th.vanish_ratio)}", "vanish_ratio"),
              Level(th.vanish_ratio ** 2, f"critical below {number(th.vanish_ratio ** 2)}", "vanish_ratio_squared",
                    color=ALERT_LINE, dash="dot", extend=False)]
    fig = log_layers_figure(series, names, y_title="mean |grad| / strongest layer's", title=title, labels=labels,
                            colors=colors, segments=segments, levels=levels, highlight=highlight, height=height)
    bottom, _ = _axis_bounds(fig)
    add_band(fig, min(bottom, th.vanish_ratio), th.vanish_ratio, color=TOO_LARGE_BAND, name="vanishing")
    return shade_spans(fig, list(spans))

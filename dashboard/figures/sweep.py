"""Charts of a sweep (pure Plotly): the objective against one searched field (log axis for a
log-scaled field such as the learning rate), with pruned trials marked where they were stopped,
and parallel coordinates of the completed trials' fields coloured by the objective."""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go

from ..format import number
from .base import NoDataError, plain, style

# Marker per trial state in the scatter; colours read on the light and the dark theme.
STATE_MARKERS = {"complete": ("circle", "#2e7dd7"), "pruned": ("x", "#d9534f"), "running": ("circle-open", "#2ca02c"),
                 "failed": ("triangle-down", "#8c8c8c"), "stopped": ("square-open", "#8c8c8c")}


def _value_text(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return number(v) if isinstance(v, (int, float)) else str(v)


def _hover(row, objective: str) -> str:
    lines = [f"trial {row.number} · {row.state}"]
    if row.value is not None:
        lines.append(f"{objective}: {number(row.value)}")
    elif row.last_value is not None:
        lines.append(f"{objective} at step {row.last_step}: {number(row.last_value)}")
    lines += [f"{k}: {_value_text(v)}" for k, v in row.params.items()]
    if row.reason:
        lines.append(row.reason[:120])
    return "<br>".join(plain(x) for x in lines)


def objective_scatter(rows, param: str, *, objective: str, log_x: bool) -> go.Figure:
    """The objective of each trial against the field `param`: completed trials at their final value,
    pruned and running ones at the last value they reported (open or crossed markers)."""
    fig = go.Figure()
    drawn = 0
    for state, (symbol, color) in STATE_MARKERS.items():
        pts = [(r.params[param], r.value if r.value is not None else r.last_value, r) for r in rows
               if r.state == state and param in r.params]
        pts = [(x, y, r) for x, y, r in pts if y is not None and math.isfinite(y) and isinstance(x, (int, float))]
        if not pts:
            continue
        drawn += len(pts)
        fig.add_trace(go.Scatter(
            x=np.array([p[0] for p in pts], dtype=float), y=np.array([p[1] for p in pts], dtype=float),
            mode="markers", name=state, marker=dict(symbol=symbol, color=color, size=10,
                                                    line=dict(width=2, color=color)),
            hovertext=[_hover(p[2], objective) for p in pts], hoverinfo="text"))
    if not drawn:
        raise NoDataError(f"no trial has a value for {param} yet")
    style(fig, title=f"{objective} vs {param}", y_title=objective, x_title=param + (" (log scale)" if log_x else ""),
          height=340, unified_hover=False)
    if log_x:
        fig.update_xaxes(type="log")
    return fig


def parallel_coordinates(rows, params, *, objective: str, maximize: bool) -> go.Figure:
    """One line per completed trial through an axis per searched field (log10 for log-scaled
    ranges, one tick per choice for categorical ones) and the objective, coloured by it."""
    done = [r for r in rows if r.value is not None]
    if not done:
        raise NoDataError("no completed trial yet")
    dims = []
    for p in params:
        values = [r.params.get(p.name) for r in done]
        if p.kind == "categorical":
            ticks = list(p.choices)
            index = {_value_text(c): i for i, c in enumerate(ticks)}
            dims.append(dict(label=plain(p.name), values=[index.get(_value_text(v), -1) for v in values],
                             tickvals=list(range(len(ticks))), ticktext=[plain(_value_text(c)) for c in ticks],
                             range=[-0.25, len(ticks) - 0.75]))
        elif p.log:
            lo, hi = math.log10(p.low), math.log10(p.high)
            ticks = [t for t in range(math.floor(lo), math.ceil(hi) + 1) if lo - 1e-9 <= t <= hi + 1e-9]
            dims.append(dict(label=plain(f"{p.name} (log)"),
                             values=[math.log10(v) if isinstance(v, (int, float)) and v > 0 else lo for v in values],
                             range=[lo, hi], tickvals=ticks, ticktext=[f"{10.0 ** t:g}" for t in ticks]))
        else:
            dims.append(dict(label=plain(p.name), values=[float(v) for v in values], range=[p.low, p.high]))
    ys = [r.value for r in done]
    dims.append(dict(label=plain(objective), values=ys))
    fig = go.Figure(go.Parcoords(
        line=dict(color=ys, colorscale="Viridis", reversescale=not maximize, showscale=True,
                  colorbar=dict(title=dict(text=plain(objective)))),
        dimensions=dims))
    fig.update_layout(height=380, margin=dict(l=50, r=30, t=90, b=30),
                      title=dict(text=f"Completed trials ({len(done)}), one line each", x=0, xanchor="left", y=1,
                                 yref="container", yanchor="top", pad=dict(t=8), font=dict(size=15)))
    return fig

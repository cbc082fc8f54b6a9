"""Histograms over time (heatmap, one column per recorded step) and at a single step."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from ..rebin import HistGrid
from .base import NoDataError, highlight_steps, style

# Say so on the chart when more than this fraction of the counts fell outside the value range.
CLIPPED_NOTE = 0.001


def hist_heatmap_figure(grid: HistGrid, *, title: str | None = None, value_title: str = "value",
                        log_counts: bool = True, height: int = 320,
                        highlight: tuple[int, int] | None = None) -> go.Figure:
    """Where the values sit at each recorded step: x = step, y = value, colour = log count.
    Log counts keep the tails visible next to a spike, as in fastai's "colorful dimension"."""
    if grid.counts.size == 0:
        raise NoDataError("no histograms recorded")
    z = np.log1p(grid.counts.T) if log_counts else grid.counts.T
    fig = go.Figure(go.Heatmap(
        x=grid.steps, y=grid.centers, z=z, colorscale="Viridis", zmin=0,
        colorbar=dict(title=dict(text="log(1+count)" if log_counts else "count", side="right"), thickness=12),
        customdata=grid.counts.T,
        hovertemplate="step %{x}<br>value %{y:.3g}<br>count %{customdata:.0f}<extra></extra>",
    ))
    style(fig, title=title, y_title=value_title, height=height, unified_hover=False)
    fig.update_yaxes(exponentformat="e")  # 2e-08, not Plotly's SI "20n" (nano)
    if grid.clipped > CLIPPED_NOTE:
        fig.update_layout(title_subtitle=dict(
            text=f"{grid.clipped:.1%} of the values lie beyond this range (a few extreme steps) and are "
                 f"counted in the top and bottom rows", font=dict(size=11)))
        fig.update_layout(margin_t=fig.layout.margin.t + 18)
    return highlight_steps(fig, highlight)


def hist_at_step_figure(edges: np.ndarray, counts: np.ndarray, *, step: int, title: str | None = None,
                        value_title: str = "value", log_counts: bool = False, color: str = "#4e79a7",
                        height: int = 300) -> go.Figure:
    """One recorded histogram as bars over its own bin edges."""
    centers = (edges[:-1] + edges[1:]) / 2
    widths = np.diff(edges)
    fig = go.Figure(go.Bar(x=centers, y=counts, width=widths, marker=dict(color=color, line=dict(width=0)),
                           hovertemplate="%{x:.3g}: %{y:.0f}<extra></extra>", name=f"step {step}"))
    style(fig, title=title or f"Histogram at step {step}", x_title=value_title, y_title="count",
          log_y=log_counts, height=height, unified_hover=False)
    fig.update_layout(bargap=0)
    fig.update_xaxes(showspikes=False, exponentformat="e")
    if log_counts:
        fig.update_yaxes(dtick=1)  # whole decades: counts are whole numbers
    return fig

"""Reliability diagram: accuracy against confidence per bin, with the gap to the diagonal."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .base import NoDataError


def reliability_figure(df: pd.DataFrame, *, ece: float, title: str | None = None, height: int = 440) -> go.Figure:
    """Bars of accuracy per confidence bin against the diagonal of perfect calibration, a red
    gap bar to the bin's mean confidence, and the bin counts underneath."""
    df = df[df["count"] > 0]
    if df.empty:
        raise NoDataError("the calibration table has no filled bins")
    centers = (df["bin_lo"] + df["bin_hi"]) / 2
    widths = (df["bin_hi"] - df["bin_lo"]) * 0.92
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.78, 0.22], vertical_spacing=0.05)
    fig.add_trace(go.Bar(x=centers, y=df["accuracy"], width=widths, name="accuracy",
                         marker=dict(color="#4e79a7"),
                         customdata=df[["confidence", "count"]].to_numpy(),
                         hovertemplate="bin %{x:.2f}<br>accuracy %{y:.3f}<br>mean confidence %{customdata[0]:.3f}"
                                       "<br>%{customdata[1]:.0f} samples<extra></extra>"), row=1, col=1)
    gap = df["confidence"] - df["accuracy"]
    fig.add_trace(go.Bar(x=centers, y=gap, base=df["accuracy"], width=widths, name="gap to confidence",
                         marker=dict(color="rgba(225,87,89,0.35)", line=dict(color="#e15759", width=1)),
                         hoverinfo="skip"), row=1, col=1)
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration",
                             line=dict(color="#9ca3af", dash="dash"), hoverinfo="skip"), row=1, col=1)
    fig.add_trace(go.Bar(x=centers, y=df["count"], width=widths, name="samples", marker=dict(color="#9ca3af"),
                         showlegend=False, hovertemplate="%{y:.0f} samples<extra></extra>"), row=2, col=1)
    fig.update_layout(
        title=dict(text=title or f"Reliability diagram — ECE {ece:.3f}", x=0, xanchor="left", y=1, yref="container",
                   yanchor="top", pad=dict(t=8), font=dict(size=15)),
        barmode="overlay", height=height, margin=dict(l=10, r=10, t=60, b=10), hovermode="closest",
        legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0, xanchor="left", font=dict(size=11)),
    )
    fig.update_yaxes(title_text="accuracy", range=[0, 1], row=1, col=1)
    fig.update_yaxes(title_text="samples", row=2, col=1)
    fig.update_xaxes(range=[0, 1], row=1, col=1)
    fig.update_xaxes(title_text="confidence (max softmax probability)", range=[0, 1], row=2, col=1)
    return fig

"""Gradients of one run: norm per layer over time, histograms over time, first/last-layer ratio."""

from __future__ import annotations

import streamlit as st

from runstore import tags

from ..colors import layer_colors
from ..extract import per_layer, ratio_series
from ..figures.base import Curve, lines_figure
from ..figures.histograms import hist_at_step_figure, hist_heatmap_figure
from ..figures.layers import ratio_figure
from ..layers import grad_params, is_bias, weight_layers
from ..loading import RunHandle
from ..rebin import at_step, rebin
from ..thresholds import chart_thresholds
from ..ui.pickers import layer_multiselect, layer_select, step_select
from ..ui.runpage import chart, current_handle, focus_banner, focus_for, header, healthy, live_section, missing

HEALTHY = ("gradient norms of all layers stay within an order of magnitude or two of each other and of "
           "their early values, and the first-to-last-layer ratio stays inside the green band.")


def _body(h: RunHandle) -> None:
    run = h.run
    header(h, page_title="Gradients")
    healthy(HEALTHY)
    focus = focus_for("gradients", h.path)
    shade = focus_banner(focus)
    params = grad_params(run)
    norms_all = per_layer(run, "grad", params, "norm")
    picked: list[str] = []
    if not params:
        missing("gradient statistics", "They are recorded on every `every`-th step once `loss.backward()` "
                "has run for a model attached with `probes.attach`.")
        return
    if norms_all:
        picked = _norms(h, params, norms_all, focus, shade)
    else:
        missing("gradient norms", "Only gradient histograms were recorded (e.g. an imported TensorBoard log).")

    st.markdown("#### Histograms over time")
    hist_params = [p for p in params if tags.grad(p) in run.hist_tags()]
    if not hist_params:
        missing("gradient histograms", "Histograms are recorded unless `record_histograms=False`.")
        return
    param = layer_select("Parameter", hist_params, base_key="grad_hist_param", path=h.path, focus=focus,
                         default=next((p for p in picked if p in hist_params), None) if picked else None)
    hs = run.histograms(tags.grad(param))
    left, right = st.columns([0.62, 0.38])
    with left:
        chart(hist_heatmap_figure(rebin(hs), title=f"{param}: gradient values over time", value_title="gradient",
                                  highlight=shade), key="grad-heatmap")
    with right:
        step = step_select("Step", hs.steps, key=f"grad_step::{h.path}::{param}")
        s, edges, counts = at_step(hs, step)
        chart(hist_at_step_figure(edges, counts, step=s, title=f"{param} at step {s:,}", value_title="gradient",
                                  log_counts=True), key="grad-hist-step")


def _norms(h: RunHandle, params: list[str], norms_all: dict, focus, shade) -> list[str]:
    """Norm per parameter and the first/last ratio; returns the picked parameters."""
    run = h.run
    th = chart_thresholds()
    with_bias = st.toggle("Include biases", value=False, key="grad_bias", persist_state="session")
    options = [p for p in params if p in norms_all and (with_bias or not is_bias(p))] or list(norms_all)
    picked = layer_multiselect("Parameters", options, base_key="grad_params", path=h.path, focus=focus,
                               help="Input side is blue, output side orange.")
    colors = layer_colors(params)
    if picked:
        curves = [Curve(p, norms_all[p], color=colors[p]) for p in options if p in picked]
        chart(lines_figure(curves, title="Gradient norm per parameter", y_title="‖gradient‖₂ (log scale)",
                           log_y=True, highlight=shade, height=400), key="grad-norms")
    else:
        st.info("Pick at least one parameter above.")

    st.markdown("#### First-to-last-layer gradient ratio")
    layers = [p for p in weight_layers(run) if p in norms_all]
    if len(layers) < 2:
        missing("second weight layer to compare the first one with")
        return picked
    first, last = layers[0], layers[-1]
    ratio = ratio_series(norms_all[first], norms_all[last])
    if ratio.dropna().empty:
        missing(f"finite, non-zero gradient norms for both {first} and {last}")
        return picked
    chart(ratio_figure(ratio, low=th.grad_ratio_vanish, high=th.grad_ratio_explode,
                       title=f"‖grad {first}‖ / ‖grad {last}‖", y_title="gradient norm ratio (log scale)",
                       highlight=shade), key="grad-ratio")
    st.caption(f"Below {th.grad_ratio_vanish:g} the gradient has all but vanished by the time it reaches the "
               f"first layer; above {th.grad_ratio_explode:g} it grows on the way back (thresholds of "
               f"AUTOTRAINER, Zhang et al., ICSE 2021). Either way the early layers learn at a very "
               f"different pace from the late ones.")
    return picked


def render() -> None:
    """The Gradients page."""
    live_section(current_handle(), _body, key="gradients")

"""Activations of one run: per-layer statistics over time and histograms over time."""

from __future__ import annotations

import streamlit as st

from runstore import tags

from ..colors import layer_colors
from ..extract import act_stats
from ..figures.base import NoDataError
from ..figures.histograms import hist_at_step_figure, hist_heatmap_figure
from ..figures.layers import ACT_STAT_TITLES, layer_grid_figure
from ..layers import activation_modules
from ..loading import RunHandle
from ..rebin import at_step, rebin
from ..ui.pickers import layer_multiselect, layer_select, step_select
from ..ui.runpage import chart, current_handle, focus_banner, focus_for, header, healthy, live_section, missing

HEALTHY = ("every layer keeps a similar, steady spread of activations (std neither collapsing towards 0 "
           "nor growing step after step), with few dead units and few saturated outputs.")
SHOWN_STATS = ("mean", "std", "frac_dead", "frac_saturated")


def _body(h: RunHandle) -> None:
    run = h.run
    header(h, page_title="Activations")
    healthy(HEALTHY)
    focus = focus_for("activations", h.path)
    shade = focus_banner(focus)
    modules = activation_modules(run)
    if not modules:
        missing("activation statistics", "They are recorded by `probes.attach(model, ...)` on every "
                "`every`-th step for modules with parameters and activation functions.")
        return
    picked = layer_multiselect("Layers", modules, base_key="act_layers", path=h.path, focus=focus,
                               help="Input side is blue, output side orange.")
    if not picked:
        st.info("Pick at least one layer above.")
    else:
        stats = act_stats(run, picked, SHOWN_STATS)
        try:
            ordered = [m for m in modules if m in picked]
            colors = layer_colors(modules)
            fig = layer_grid_figure(stats, ordered, titles=ACT_STAT_TITLES, colors=[colors[m] for m in ordered],
                                    highlight=shade)
            chart(fig, key="act-grid")
        except NoDataError:
            missing("statistics for the picked layers")
        if "frac_saturated" not in stats:
            st.caption("No saturated-fraction chart: none of the picked layers is a bounded activation "
                       "(sigmoid, tanh, hardtanh), so saturation is not measured for them.")
    st.markdown("#### Histograms over time")
    hist_modules = [m for m in modules if tags.act(m) in run.hist_tags()]
    if not hist_modules:
        missing("activation histograms", "Histograms are recorded unless `record_histograms=False`.")
        return
    layer = layer_select("Layer", hist_modules, base_key="act_hist_layer", path=h.path, focus=focus,
                         default=next((m for m in picked if m in hist_modules), None))
    hs = run.histograms(tags.act(layer))
    left, right = st.columns([0.62, 0.38])
    with left:
        grid = rebin(hs)
        chart(hist_heatmap_figure(grid, title=f"{layer}: activation values over time", value_title="activation",
                                  highlight=shade), key="act-heatmap")
    with right:
        step = step_select("Step", hs.steps, key=f"act_step::{h.path}::{layer}")
        s, edges, counts = at_step(hs, step)
        log_counts = st.toggle("Log counts", value=True, key="act_hist_log", persist_state="session")
        chart(hist_at_step_figure(edges, counts, step=s, title=f"{layer} at step {s:,}", value_title="activation",
                                  log_counts=log_counts), key="act-hist-step")


def render() -> None:
    """The Activations page."""
    live_section(current_handle(), _body, key="activations")

"""Gradients of one run: how much gradient reaches each layer (the gradient-flow verdicts), norms per
parameter, the first/last-layer ratio, and histograms over time."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from diagnostics import Thresholds
from diagnostics import verdicts as V
from runstore import tags
from runstore.layers import RunLayers

from ..colors import layer_colors
from ..extract import per_layer, ratio_series
from ..figures.base import plain
from ..figures.histograms import hist_at_step_figure, hist_heatmap_figure
from ..figures.layers import Level, log_layers_figure, ratio_figure, shade_spans
from ..figures.verdicts import grad_flow_figure
from ..format import md_escape, number
from ..loading import RunHandle
from ..page_verdicts import (exact_zeros, no_gradient_lines, no_gradient_spans, preferred_layers, segments,
                             statistic_of, verdict_table)
from ..rebin import at_step, rebin
from ..ui.pickers import layer_multiselect, layer_select, step_select
from ..ui.runpage import chart, current_handle, focus_banner, focus_for, header, healthy, live_section, missing

HEALTHY = ("every layer weight gets a mean |gradient| within a few decades of the strongest layer's (above the "
           "red line), no layer's gradient is exactly zero, and norms stay within an order of magnitude or two "
           "of their early values.")


class PageData:
    """What the Gradients page draws, from the run and its judgement. No Streamlit."""

    def __init__(self, run, judged):
        self.run, self.judged = run, judged
        self.layers = judged.view.layers if judged is not None and judged.view is not None else RunLayers(run)
        self.model = self.layers.model
        self.th = judged.thresholds if judged is not None else Thresholds()
        self.params = self.layers.grad_params
        self.norms = per_layer(run, "grad", self.params, "norm")
        self.verdicts = judged.layer_verdicts(V.GRADIENT_FLOW) if judged is not None else []
        self.labels = {p: self.model.label(p, param=True) for p in self.params}

    @property
    def abs_mean(self) -> pd.DataFrame:
        """Mean |gradient| per layer weight and recorded step: the frame the verdicts read."""
        if self.judged is not None and self.judged.view is not None:
            return self.judged.view.grad_abs_mean
        cols = per_layer(self.run, "grad", self.layers.weight_layers, "abs_mean")
        return pd.concat(cols, axis=1) if cols else pd.DataFrame()

    def relative(self) -> pd.DataFrame:
        """Each layer weight's mean |gradient| over the strongest layer's at the same step."""
        if not hasattr(self, "_relative"):
            a = self.abs_mean
            self._relative = V.relative_to_max(a) if a.shape[1] >= 2 else pd.DataFrame()
        return self._relative

    def options(self, with_bias: bool) -> list[str]:
        return [p for p in self.params if p in self.norms and (with_bias or not self.model.is_bias(p))] \
            or list(self.norms)

    def flow_figure(self, shown: list[str], *, colors=None, highlight=None):
        rel = self.relative()
        names = [p for p in shown if p in rel]
        verdicts = [v for v in self.verdicts if v.name in names]
        return grad_flow_figure(rel, names, self.th, segments=segments(verdicts),
                                spans=no_gradient_spans(verdicts, self.labels), labels=self.labels, colors=colors,
                                title="Gradient reaching each layer, relative to the strongest layer",
                                highlight=highlight)

    def norms_figure(self, shown: list[str], *, colors=None, highlight=None):
        fig = log_layers_figure(self.norms, shown, y_title="‖gradient‖₂", title="Gradient norm per parameter",
                                labels=self.labels, colors=colors, highlight=highlight)
        return shade_spans(fig, no_gradient_spans([v for v in self.verdicts if v.name in shown], self.labels))

    def first_last(self) -> tuple[str, str, pd.Series] | None:
        """(first layer, last layer, first/last mean |gradient|): what exploding_gradients compares
        with explode_ratio."""
        a = self.abs_mean
        if a.shape[1] < 2:
            return None
        first, last = a.columns[0], a.columns[-1]
        return first, last, ratio_series(a[first], a[last])


def _body(h: RunHandle) -> None:
    run = h.run
    header(h, page_title="Gradients")
    healthy(HEALTHY)
    judged, err = h.judgement()
    if err:
        st.warning(md_escape(err), icon=":material/warning:")
    focus = focus_for("gradients", h.path)
    shade = focus_banner(focus)
    d = PageData(run, judged)
    if not d.params:
        missing("gradient statistics", "They are recorded on every `every`-th step once `loss.backward()` "
                "has run for a model attached with `probes.attach`.")
        return
    picked: list[str] = []
    if d.norms:
        picked = _charts(h, d, focus, shade)
    else:
        missing("gradient norms", "Only gradient histograms were recorded (e.g. an imported TensorBoard log).")
    _histograms(h, d, focus, shade, picked)


def _charts(h: RunHandle, d: PageData, focus, shade) -> list[str]:
    """Gradient flow with its verdicts, the norm per parameter and the first/last ratio; returns
    the picked parameters."""
    with_bias = st.toggle("Include biases", value=False, key="grad_bias", persist_state="session")
    options = d.options(with_bias)
    picked = layer_multiselect("Parameters", options, base_key="grad_params", path=h.path, focus=focus,
                               preferred=preferred_layers(d.judged, "gradients", options), labels=d.labels)
    if not picked:
        st.info("Pick at least one parameter above.")
        return picked
    colors = layer_colors(options)
    shown = [p for p in options if p in picked]

    st.markdown("#### Gradient flow")
    flow_names = [p for p in shown if p in d.relative()]
    if flow_names:
        chart(d.flow_figure(flow_names, colors=colors, highlight=shade), key="grad-flow")
        stat = statistic_of(d.verdicts)
        st.caption(f"The verdict compares each layer weight's {stat or 'relative gradient'} (thick segment) with "
                   f"{number(d.th.vanish_ratio)}: below it the layer is vanishing, below "
                   f"{number(d.th.vanish_ratio ** 2)} critically so. Grey span: the steps from which the judgement "
                   f"found no gradient at all (exactly 0 through the end of the record).")
    elif d.relative().empty:
        missing("second layer weight with a mean |gradient| to compare with", "Gradient flow compares layers.")
    else:
        st.caption("Pick a layer weight (not a bias) to see how much gradient reaches it.")
    for text in no_gradient_lines(d.verdicts, d.labels):
        st.warning(md_escape(text), icon=":material/block:")
    table = verdict_table(d.verdicts, d.model)
    if not table.empty:
        st.dataframe(table, hide_index=True, key="grad-table")

    st.markdown("#### Gradient norm per parameter")
    chart(d.norms_figure(shown, colors=colors, highlight=shade), key="grad-norms")
    zeros = exact_zeros({p: d.norms[p] for p in shown if p in d.norms})
    if zeros:
        st.caption("Exactly 0 (× on the bottom edge): " + md_escape("; ".join(
            f"{d.labels[p]} on {n} of {total} recorded steps, first at step {first:,}"
            for p, (n, total, first) in zeros.items())) + ". Nothing reached these parameters on those steps.")

    st.markdown("#### First-to-last-layer gradient ratio")
    fl = d.first_last()
    if fl is None:
        missing("second layer weight to compare the first one with")
        return picked
    first, last, ratio = fl
    if ratio.dropna().empty:
        missing(f"finite, non-zero mean |gradient| for both {first} and {last}")
        return picked
    level = Level(d.th.explode_ratio, f"exploding above {number(d.th.explode_ratio)}", "explode_ratio")
    chart(ratio_figure(ratio, levels=[level], title=plain(f"mean |grad| {d.labels.get(first, first)} / "
                                                        f"{d.labels.get(last, last)}"), y_title="first / last layer", highlight=shade),
          key="grad-ratio")
    st.caption(f"Above {number(d.th.explode_ratio)} (median over the run) the gradient grows on the way back to the "
               f"input (AUTOTRAINER, Zhang et al., ICSE 2021) and the exploding-gradients check fires. A shrinking "
               f"gradient is judged per layer in the gradient-flow chart above.")
    return picked


def _histograms(h: RunHandle, d: PageData, focus, shade, picked: list[str]) -> None:
    run = h.run
    st.markdown("#### Histograms over time")
    hist_params = [p for p in d.params if tags.grad(p) in run.hist_tags()]
    if not hist_params:
        missing("gradient histograms", "Histograms are recorded unless `record_histograms=False`.")
        return
    param = layer_select("Parameter", hist_params, base_key="grad_hist_param", path=h.path, focus=focus,
                         default=next((p for p in picked if p in hist_params), None), labels=d.labels,
                         preferred=preferred_layers(d.judged, "gradients", hist_params))
    hs = run.histograms(tags.grad(param))
    left, right = st.columns([0.62, 0.38])
    label = plain(d.labels.get(param, param))
    with left:
        chart(hist_heatmap_figure(rebin(hs), title=f"{label}: gradient values over time", value_title="gradient",
                                  highlight=shade), key="grad-heatmap")
    with right:
        step = step_select("Step", hs.steps, key=f"grad_step::{h.path}::{param}")
        s, edges, counts = at_step(hs, step)
        chart(hist_at_step_figure(edges, counts, step=s, title=f"{label} at step {s:,}", value_title="gradient",
                                  log_counts=True), key="grad-hist-step")


def render() -> None:
    """The Gradients page."""
    live_section(current_handle(), _body, key="gradients")

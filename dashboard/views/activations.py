"""Activations of one run: per-layer statistics over time with the dead-unit and saturation
verdicts, and histograms over time."""

from __future__ import annotations

import streamlit as st

from diagnostics import Thresholds
from diagnostics import verdicts as V
from runstore import tags
from runstore.layers import RunLayers

from ..colors import layer_colors
from ..extract import act_stats
from ..figures.base import NoDataError, plain
from ..figures.histograms import hist_at_step_figure, hist_heatmap_figure
from ..figures.layers import Level, layer_grid_figure
from ..format import md_escape, number
from ..loading import RunHandle
from ..page_verdicts import preferred_layers, segments, verdict_table
from ..rebin import at_step, rebin
from ..ui.pickers import layer_multiselect, layer_select, step_select
from ..ui.runpage import chart, current_handle, focus_banner, focus_for, header, healthy, live_section, missing

HEALTHY = ("every layer keeps a similar, steady spread of activations (std neither collapsing towards 0 "
           "nor growing step after step), with few dead units and few saturated outputs.")
NO_DEAD_PANEL = ("No dead-unit chart: this network has no ReLU-like activation, the only kind whose outputs can be "
                 "exactly zero for every input.")
# Statistics with no chart of their own: zeros duplicate the dead-unit panel for ReLUs (and are ~0 for
# anything else), and non-finite counts are reported by the advice when they appear. Every other
# statistic of tags.ACT_STATS gets a row, so a newly recorded one shows up without a page change.
NOT_CHARTED = ("frac_zero", "nonfinite")
NO_SATURATION_PANEL = ("No saturation chart: this network has no bounded activation (sigmoid, tanh, hardtanh), the "
                       "only kind whose outputs can pile up at a bound.")


class PageData:
    """What the Activations page draws, from the run and its judgement. No Streamlit."""

    def __init__(self, run, judged):
        self.run, self.judged = run, judged
        layers = judged.view.layers if judged is not None and judged.view is not None else RunLayers(run)
        self.model = layers.model
        self.th = judged.thresholds if judged is not None else Thresholds()
        self.modules = layers.activation_modules
        self.labels = {m: self.model.label(m) for m in self.modules}
        self.dead = judged.layer_verdicts(V.DEAD_UNITS) if judged is not None else []
        self.saturation = judged.layer_verdicts(V.SATURATION) if judged is not None else []
        # The panels apply to the modules the verdicts judge: dead units of ReLU-like modules,
        # saturation of modules that measured it (bounded activations).
        self.can_die = [m for m in self.modules if self.model.can_die(m)]
        self.bounded = list(act_stats(run, self.modules, ("frac_saturated",)).get("frac_saturated", {}))

    def stats(self, picked: list[str]) -> dict:
        """{stat: {module: series}} of the rows to draw for the picked modules."""
        # Panels with a verdict apply only to the modules it judges (see __init__).
        applies = {"frac_dead": self.can_die, "frac_saturated": self.bounded}
        out = {}
        for stat in tags.ACT_STATS:
            if stat in NOT_CHARTED:
                continue
            modules = [m for m in picked if m in applies[stat]] if stat in applies else picked
            out.update(act_stats(self.run, modules, (stat,)))
        return out

    def levels(self) -> dict[str, list[Level]]:
        th = self.th
        return {"frac_dead": [Level(th.dead_warn, f"dead from {number(th.dead_warn)}", "dead_warn"),
                              Level(th.dead_critical, f"critical from {number(th.dead_critical)}", "dead_critical",
                                    dash="dot")],
                "frac_saturated": [Level(th.saturation_warn, f"saturated from {number(th.saturation_warn)}",
                                         "saturation_warn"),
                                   Level(th.saturation_critical, f"critical from {number(th.saturation_critical)}",
                                         "saturation_critical", dash="dot")]}

    def figure(self, picked: list[str], *, colors=None, highlight=None):
        shown = [m for m in self.modules if m in picked]
        segs = {"frac_dead": segments([v for v in self.dead if v.name in shown]),
                "frac_saturated": segments([v for v in self.saturation if v.name in shown])}
        return layer_grid_figure(self.stats(shown), shown, titles=tags.STAT_TITLES, colors=colors, labels=self.labels,
                                 levels=self.levels(), segments=segs, highlight=highlight)


def _body(h: RunHandle) -> None:
    run = h.run
    header(h, page_title="Activations")
    healthy(HEALTHY)
    judged, err = h.judgement()
    if err:
        st.warning(md_escape(err), icon=":material/warning:")
    focus = focus_for("activations", h.path)
    shade = focus_banner(focus)
    d = PageData(run, judged)
    if not d.modules:
        missing("activation statistics", "They are recorded by `probes.attach(model, ...)` on every "
                "`every`-th step for modules with parameters and activation functions.")
        return
    picked = layer_multiselect("Layers", d.modules, base_key="act_layers", path=h.path, focus=focus,
                               preferred=preferred_layers(judged, "activations", d.modules), labels=d.labels)
    if not picked:
        st.info("Pick at least one layer above.")
    else:
        try:
            chart(d.figure(picked, colors=layer_colors(d.modules), highlight=shade), key="act-grid")
        except NoDataError:
            missing("statistics for the picked layers")
        _panel_notes(d, picked)
    _verdict_tables(d)
    _histograms(h, d, focus, shade, picked)


def _panel_notes(d: PageData, picked: list[str]) -> None:
    """One line for each panel that is not drawn, saying why."""
    notes = []
    if not d.can_die:
        notes.append(NO_DEAD_PANEL)
    elif not any(m in d.can_die for m in picked):
        notes.append("Pick a ReLU-like layer (e.g. " + md_escape(d.labels[d.can_die[0]]) + ") to see its dead units.")
    if not d.bounded:
        notes.append(NO_SATURATION_PANEL)
    elif not any(m in d.bounded for m in picked):
        notes.append("Pick a bounded activation (e.g. " + md_escape(d.labels[d.bounded[0]]) + ") to see its "
                     "saturation.")
    if notes:
        st.caption(" ".join(notes))
    st.caption("Thick segments: the median over the last part of the run that the dead-unit and saturation "
               "verdicts compare with the red lines. The std is drawn in decades (symlog: a log axis that also "
               "shows 0), so every layer's spread reads at once; the mean switches to symlog when one layer "
               "dwarfs the others.")


def _verdict_tables(d: PageData) -> None:
    for title, verdicts in (("Dead units per ReLU-like layer", d.dead), ("Saturation per bounded activation",
                                                                          d.saturation)):
        table = verdict_table(verdicts, d.model)
        if not table.empty:
            st.markdown(f"##### {title}")
            st.dataframe(table, hide_index=True, key=f"act-table-{verdicts[0].quantity}")


def _histograms(h: RunHandle, d: PageData, focus, shade, picked: list[str]) -> None:
    run = h.run
    st.markdown("#### Histograms over time")
    hist_modules = [m for m in d.modules if tags.act(m) in run.hist_tags()]
    if not hist_modules:
        missing("activation histograms", "Histograms are recorded unless `record_histograms=False`.")
        return
    layer = layer_select("Layer", hist_modules, base_key="act_hist_layer", path=h.path, focus=focus,
                         default=next((m for m in picked if m in hist_modules), None), labels=d.labels,
                         preferred=preferred_layers(d.judged, "activations", hist_modules))
    hs = run.histograms(tags.act(layer))
    label = plain(d.labels.get(layer, layer))
    left, right = st.columns([0.62, 0.38])
    with left:
        chart(hist_heatmap_figure(rebin(hs), title=f"{label}: activation values over time", value_title="activation",
                                  highlight=shade), key="act-heatmap")
    with right:
        step = step_select("Step", hs.steps, key=f"act_step::{h.path}::{layer}")
        s, edges, counts = at_step(hs, step)
        log_counts = st.toggle("Log counts", value=True, key="act_hist_log", persist_state="session")
        chart(hist_at_step_figure(edges, counts, step=s, title=f"{label} at step {s:,}", value_title="activation",
                                  log_counts=log_counts), key="act-hist-step")


def render() -> None:
    """The Activations page."""
    live_section(current_handle(), _body, key="activations")

"""Updates of one run: the update-to-weight ratio per parameter, in the zones the verdicts use."""

from __future__ import annotations

import streamlit as st

from diagnostics import Thresholds
from diagnostics import verdicts as V
from runstore import tags
from runstore.layers import RunLayers

from ..colors import layer_colors
from ..extract import per_layer
from ..figures.verdicts import update_ratio_figure
from ..format import md_escape, number
from ..loading import RunHandle
from ..page_verdicts import preferred_layers, segments, statistic_of, verdict_table
from ..ui.pickers import layer_multiselect
from ..ui.runpage import chart, current_handle, focus_banner, focus_for, header, healthy, live_section, missing


def band_caption(th: Thresholds, statistic: str | None) -> str:
    """Where the band comes from and what the verdict compares with it, in a few sentences."""
    stat = f"each layer weight's {statistic} (the thick segment)" if statistic else "each layer weight's updates"
    return (f"Rules of thumb differ: CS231n suggests updates of about {number(th.update_ratio_guide_cs231n)} of the "
            f"weights per step, the tuning notes about {number(th.update_ratio_guide_notes)}. Adam moves each weight "
            f"by about the learning rate per step whatever the gradient's scale, while SGD's step grows with the "
            f"gradient, so healthy runs of the two sit at different heights. The verdict therefore compares {stat} "
            f"with a wide band, [{number(th.update_ratio_low)}, {number(th.update_ratio_high)}], that holds the "
            f"healthy sample runs of both: below it learning barely moves the weights, above it updates rewrite "
            f"them; above {number(th.update_ratio_large)} they are large, fine while the loss falls.")


def page_data(run, judged, *, with_bias: bool = False):
    """(options, ratios, verdicts, thresholds, layer model) the page draws: the parameters with
    update ratios (layer weights, plus biases on request), their series, and the judgement's
    verdicts. No Streamlit, so tests can compare what the page shows with the judgement."""
    layers = judged.view.layers if judged is not None and judged.view is not None else RunLayers(run)
    th = judged.thresholds if judged is not None else Thresholds()
    params = layers.update_params
    options = [p for p in params if with_bias or not layers.model.is_bias(p)] or params
    ratios = per_layer(run, "update_ratio", options, None)
    verdicts = judged.layer_verdicts(V.UPDATES) if judged is not None else []
    return options, ratios, verdicts, th, layers.model


def figure(run, judged, shown: list[str], *, guides: bool = True, labels=None, colors=None, highlight=None):
    """The Updates chart of the parameters `shown`."""
    _, ratios, verdicts, th, _ = page_data(run, judged, with_bias=True)
    segs = [s for s in segments(verdicts) if s.name in shown]
    return update_ratio_figure(ratios, shown, th, segments=segs, guides=guides, labels=labels, colors=colors,
                               title="Update-to-weight ratio per step", highlight=highlight)


def _body(h: RunHandle) -> None:
    run = h.run
    header(h, page_title="Updates")
    judged, err = h.judgement()
    th = judged.thresholds if judged is not None else Thresholds()
    healthy(f"each layer weight's updates stay inside the green band, between {number(th.update_ratio_low)} and "
            f"{number(th.update_ratio_large)} of the weights per step; far below, learning is too slow, above "
            f"{number(th.update_ratio_high)}, the learning rate is too high.")
    if err:
        st.warning(md_escape(err), icon=":material/warning:")
    focus = focus_for("updates", h.path)
    shade = focus_banner(focus)
    with st.container(horizontal=True, vertical_alignment="bottom"):
        guides = st.toggle("Show the rules of thumb (CS231n, tuning notes)", value=True, key="upd_guides",
                           persist_state="session")
        with_bias = st.toggle("Include biases", value=False, key="upd_bias", persist_state="session")
    options, ratios, verdicts, th, model = page_data(run, judged, with_bias=with_bias)
    if not options:
        missing("update-to-weight ratios", "They are recorded when the optimizer is passed to "
                "`probes.attach(model, optimizer)`.")
        return
    labels = {p: model.label(p, param=True) for p in options}
    picked = layer_multiselect("Parameters", options, base_key="upd_params", path=h.path, focus=focus, k=10,
                               preferred=preferred_layers(judged, "updates", options, k=10), labels=labels)
    if not picked:
        st.info("Pick at least one parameter above.")
        return
    colors = layer_colors(options)
    shown = [p for p in options if p in picked]
    chart(figure(run, judged, shown, guides=guides, labels=labels, colors=colors, highlight=shade), key="upd-ratios")
    st.caption(band_caption(th, statistic_of(verdicts)))
    undefined = [p for p in shown if p in ratios and ratios[p].notna().sum() == 0]
    if undefined:
        zero_w = [p for p in undefined if (run.series(tags.weight(p, "norm")).dropna() == 0).all()]
        why = ("its weights are exactly zero, so ‖Δw‖ / ‖w‖ is undefined" if len(zero_w) == len(undefined)
               else "no finite value was recorded")
        st.caption("No ratio for " + md_escape(", ".join(labels[p] for p in undefined)) + f": {why}, and no "
                   "verdict is given.")
    table = verdict_table(verdicts, model)
    if not table.empty:
        st.markdown("##### Verdict per layer weight")
        st.dataframe(table, hide_index=True, key="upd-table")


def render() -> None:
    """The Updates page."""
    live_section(current_handle(), _body, key="updates")

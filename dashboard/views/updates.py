"""Updates of one run: log10 of the update-to-weight ratio per parameter with the target band."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from ..colors import layer_colors
from ..extract import per_layer
from ..figures.layers import log_ratio_figure
from ..layers import is_bias, update_params
from ..loading import RunHandle
from ..thresholds import chart_thresholds
from ..ui.pickers import layer_multiselect
from ..ui.runpage import chart, current_handle, focus_banner, focus_for, header, healthy, live_section, missing

TARGETS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)


def verdicts(ratios: dict[str, pd.Series], *, low: float, high: float, tail: float = 0.2) -> pd.DataFrame:
    """Median ratio of each parameter over the last `tail` of its record, with a verdict."""
    rows = []
    for p, s in ratios.items():
        v = s.to_numpy(dtype=float)
        v = v[-max(1, int(len(v) * tail)):]
        v = v[np.isfinite(v) & (v > 0)]
        if v.size == 0:
            continue
        med = float(np.median(v))
        verdict = "too large: lower the learning rate" if med > high else (
            "too small: learning barely moves it" if med < low else "in range")
        rows.append({"parameter": p, "median ratio (recent)": med, "log10": np.log10(med), "verdict": verdict})
    return pd.DataFrame(rows)


def _body(h: RunHandle) -> None:
    run = h.run
    header(h, page_title="Updates")
    th = chart_thresholds()
    healthy(f"most weight updates are about {th.update_target:g} of the weights per step (the tuning notes' "
            f"rule of thumb; CS231n suggests about {th.update_reference:g}); far below, learning is too slow, "
            f"far above, the learning rate is too high.")
    focus = focus_for("updates", h.path)
    shade = focus_banner(focus)
    params = update_params(run)
    if not params:
        missing("update-to-weight ratios", "They are recorded when the optimizer is passed to "
                "`probes.attach(model, optimizer)`.")
        return
    with st.container(horizontal=True, vertical_alignment="bottom"):
        target = st.select_slider("Target ratio", options=TARGETS, value=th.update_target if th.update_target in TARGETS
                                  else 1e-2, key="upd_target", persist_state="session", format_func=lambda v: f"{v:g}", width=260)
        band = st.slider("Band half-width (decades)", 0.25, 1.5, 0.5, 0.25, key="upd_band", persist_state="session", width=220)
        show_ref = st.toggle(f"Show CS231n's {th.update_reference:g}", value=True, key="upd_ref", persist_state="session")
        with_bias = st.toggle("Include biases", value=False, key="upd_bias", persist_state="session")
    options = [p for p in params if with_bias or not is_bias(p)] or params
    picked = layer_multiselect("Parameters", options, base_key="upd_params", path=h.path, focus=focus, k=10)
    ratios = per_layer(run, "update_ratio", options, None)
    if not picked:
        st.info("Pick at least one parameter above.")
        return
    colors = layer_colors(params)
    shown = [p for p in options if p in picked]
    fig = log_ratio_figure(ratios, shown, target=target, band_decades=band,
                           reference=th.update_reference if show_ref else None,
                           reference_label=f"CS231n ≈ {th.update_reference:g}",
                           title="Update-to-weight ratio per step", colors=[colors[p] for p in shown],
                           highlight=shade)
    for y, text in ((np.log10(th.update_high), f"advice: too large above {th.update_high:g}"),
                    (np.log10(th.update_low), f"advice: too small below {th.update_low:g}")):
        fig.add_hline(y=y, line=dict(color="#e15759", dash="dash", width=1), annotation_text=text,
                      annotation_position="bottom right" if y < 0 and y < np.log10(target) else "top right")
    chart(fig, key="upd-ratios")
    table = verdicts({p: ratios[p] for p in shown if p in ratios}, low=th.update_low, high=th.update_high)
    if not table.empty:
        st.dataframe(table, hide_index=True, key="upd-table",
                     column_config={"median ratio (recent)": st.column_config.NumberColumn(format="%.2e"),
                                    "log10": st.column_config.NumberColumn(format="%.2f")})


def render() -> None:
    """The Updates page."""
    live_section(current_handle(), _body, key="updates")

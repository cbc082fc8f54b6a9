"""Predictions of one run: confidence over time, entropy, and a reliability diagram with its ECE."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from runstore import tags

from ..calibration import CalibrationTableError, table_ece, table_frame
from ..extract import calibration, splits
from ..format import md_escape
from ..figures.base import Curve, lines_figure
from ..figures.histograms import hist_heatmap_figure
from ..figures.reliability import reliability_figure
from ..loading import RunHandle
from ..rebin import rebin
from ..ui.pickers import step_select
from ..ui.runpage import chart, current_handle, focus_banner, focus_for, header, healthy, live_section, missing

HEALTHY = ("confidence rises together with accuracy and stays close to it, entropy falls gradually "
           "rather than collapsing early, and the reliability bars sit on the diagonal (ECE near 0).")


def _prediction_splits(run) -> list[str]:
    have = set(run.scalar_tags()) | set(run.hist_tags())
    out = []
    for s in splits(run):
        if {f"{s}/confidence", f"{s}/entropy"} & have or run.tables(tags.calibration(s)):
            out.append(s)
    return out


def _loss_against_recomputed(run, split: str, have: set, shade) -> None:
    """The loss passed with the logits beside the cross-entropy the probes recompute from those
    logits and targets (the evidence of diagnostics' mismatched_targets). Runs recorded before the
    probes recomputed it, or without targets, have no such curve: nothing is drawn."""
    passed, recomputed = tags.split_metric(split, "loss"), tags.split_metric(split, "cross_entropy")
    if recomputed not in have or passed not in have:
        return
    chart(lines_figure([Curve("loss passed with the logits", run.series(passed), color="#4e79a7"),
                        Curve("cross-entropy of the logits against the targets", run.series(recomputed),
                              color="#e15759", dash="dash")],
                       title="Passed loss vs recomputed cross-entropy", y_title="loss (nats)", highlight=shade,
                       height=300), key="pred-xent")
    st.caption("The two curves agree when the targets passed belong to the logits' batch and the loss is their "
               "plain cross-entropy; label smoothing or extra loss terms lift the passed loss a little above.")


def _body(h: RunHandle) -> None:
    run = h.run
    header(h, page_title="Predictions")
    healthy(HEALTHY)
    shade = focus_banner(focus_for("predictions", h.path))
    options = _prediction_splits(run)
    if not options:
        missing("prediction statistics", "Pass `logits=` (and `targets=`) to `rec.record_step` or "
                "`rec.record_eval` to record confidence, entropy and calibration.")
        return
    default = "val" if "val" in options else options[0]
    split = st.segmented_control("Split", options, default=default, key="pred_split", persist_state="session",
                                 required=True) or default
    have = set(run.scalar_tags())
    left, right = st.columns(2)
    with left:
        curves = [Curve(name, run.series(f"{split}/{metric}"), color=color, dash=dash)
                  for metric, name, color, dash in (("confidence", "mean confidence", "#f28e2b", None),
                                                    ("accuracy", "accuracy", "#4e79a7", "dash"))
                  if f"{split}/{metric}" in have]
        if curves:
            fig = lines_figure(curves, title="Confidence vs accuracy", y_title="fraction", highlight=shade, height=320)
            fig.update_yaxes(range=[0, 1.02])
            chart(fig, key="pred-conf")
        else:
            missing(f"{split} confidence or accuracy")
    with right:
        if f"{split}/entropy" in have:
            chart(lines_figure([Curve("entropy", run.series(f"{split}/entropy"), color="#b07aa1")],
                               title="Predictive entropy", y_title="entropy (nats)", highlight=shade, height=320),
                  key="pred-entropy")
        else:
            missing(f"{split} entropy")
    _loss_against_recomputed(run, split, have, shade)
    hs = run.histograms(f"{split}/confidence")
    if hs is not None and len(hs.steps):
        chart(hist_heatmap_figure(rebin(hs, value_range=(0.0, 1.0), bins=40),
                                  title="Confidence distribution over time",
                                  value_title="max softmax probability", highlight=shade), key="pred-heatmap")
    else:
        missing(f"{split} confidence histograms")

    st.markdown("#### Calibration")
    tables = calibration(run, split)
    if not tables:
        missing(f"calibration table for the {split} split", "It is written by `rec.record_eval(logits=..., "
                "targets=...)`.")
        return
    steps = [s for s, _ in tables]
    left, right = st.columns([0.55, 0.45])
    with right:
        step = step_select("Evaluation at step", steps, key=f"pred_cal_step::{h.path}::{split}")
        eces = []
        for s, t in tables:
            try:
                eces.append((s, table_ece(t, table_frame(t))))
            except CalibrationTableError:
                pass
        if len(eces) > 1:
            ece = pd.Series([e for _, e in eces], index=pd.Index([s for s, _ in eces], name="step"))
            chart(lines_figure([Curve("ECE", ece, color="#e15759", width=2.4)], title="Calibration error over time",
                               y_title="expected calibration error", highlight=shade, height=300), key="pred-ece")
    with left:
        table = dict(tables)[step]
        try:
            df = table_frame(table)
        except CalibrationTableError as e:
            st.warning(f"The calibration table at step {step:,} cannot be drawn: {md_escape(str(e))}.")
            return
        ece_value = table_ece(table, df)
        chart(reliability_figure(df, ece=ece_value, title=f"Reliability at step {step:,} — ECE {ece_value:.3f}"),
              key="pred-reliability")
        st.caption("ECE: the sample-weighted mean gap between accuracy and confidence over the bins "
                   "(Guo et al., ICML 2017). Bars below the diagonal: over-confident.")


def render() -> None:
    """The Predictions page."""
    live_section(current_handle(), _body, key="predictions")

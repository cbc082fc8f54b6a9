"""Overview of one run: loss, accuracy and learning rate over time, with the advice beside them."""

from __future__ import annotations

import numpy as np
import streamlit as st

from runstore import tags

from ..extract import lr_tags, splits
from ..figures.base import Curve, lines_figure
from ..loading import RunHandle
from ..ui.advice import advice_cards
from ..ui.context import get_context
from ..ui.runpage import chart, current_handle, focus_banner, focus_for, header, healthy, live_section, missing
from ..ui.training import apply_actions

HEALTHY = ("training loss falls fast at first and then more slowly, validation loss follows it without "
           "turning back up, accuracy rises, and the learning rate follows its schedule.")
_DASHES = {"train": None, "val": "dash"}
# The advice's smoothed loss: a neutral grey dark enough to stand out from the faint raw curve in
# both themes (contrast above 4:1 on white and on the dark background).
ADVICE_LINE = "#6b7280"


def _split_curves(run, metric: str, color: str | None) -> list[Curve]:
    out = []
    for split in splits(run):
        tag = tags.split_metric(split, metric)
        if tag in run.scalar_tags():
            s = run.series(tag)
            # sparse evaluation points read better with markers: draw them thicker
            out.append(Curve(split, s, color=color, dash=_DASHES.get(split, "dot"),
                             width=1.8 if split == "train" else 2.6))
    return out


def advice_curve(judged) -> Curve | None:
    """The train loss as the advice reads it (the rules' rolling median), so a card quoting "the
    smoothed loss climbed from A to B" points at a curve on the chart."""
    view = judged.view if judged is not None else None
    if view is None or view.smooth is None or view.smooth.empty:
        return None
    return Curve(f"median of {view.window} steps (read by the advice)", view.smooth, color=ADVICE_LINE,
                 dash="dot", width=2.8, smooth=False)


def _cites_loss(judged) -> bool:
    return judged is not None and any(tags.TRAIN_LOSS in f.tags for f in judged.findings)


def _controls(judged) -> tuple[bool, float, bool]:
    with st.container(horizontal=True, vertical_alignment="bottom"):
        log_y = st.toggle("Log-scale loss", value=True, key="ov_log", persist_state="session")
        smoothing = st.slider("Smoothing", 0.0, 0.99, 0.6, 0.01, key="ov_smooth", persist_state="session",
                              width=260, help="Exponential moving average of the training curves, as in "
                                              "TensorBoard; the raw curve stays visible behind it.")
        advice = st.toggle("Show the advice's smoothing", value=_cites_loss(judged), key="ov_advice_smooth",
                           help="The rolling median of the train loss that the advice's loss checks read (robust "
                                "to single bad batches); the numbers a card quotes about the smoothed loss are on "
                                "this curve.")
    return log_y, smoothing, advice


def _body(h: RunHandle) -> None:
    ctx = get_context()
    run = h.run
    color = ctx.color(h.path)
    header(h, page_title="Overview")
    healthy(HEALTHY)
    focus = focus_for("overview", h.path)
    shade = focus_banner(focus)
    left, right = st.columns([0.62, 0.38], gap="large")
    judged, err = h.judgement()
    with left:
        log_y, smoothing, show_advice = _controls(judged)
        loss = _split_curves(run, "loss", color)
        extra = advice_curve(judged) if show_advice and loss else None
        if extra is not None:
            loss.append(extra)
        if loss:
            positive = all((c.series.dropna() > 0).all() for c in loss)
            fig = lines_figure(loss, title="Loss", y_title="loss", log_y=log_y and positive, smoothing=smoothing,
                               mark_nonfinite=True, highlight=shade)
            chart(fig, key="ov-loss")
            if log_y and not positive:
                st.caption("The loss has values ≤ 0, so it is drawn on a linear axis.")
        else:
            missing("loss values", "Call `rec.record_step(loss)` once per optimizer step to record them.")
        acc = _split_curves(run, "accuracy", color)
        if acc:
            fig = lines_figure(acc, title="Accuracy", y_title="accuracy (fraction correct)",
                               smoothing=smoothing, highlight=shade, height=300)
            fig.update_yaxes(range=[0, 1.02])
            chart(fig, key="ov-accuracy")
        else:
            missing("accuracy", "It is recorded when `record_step`/`record_eval` get `logits=` and `targets=`.")
        lrs = lr_tags(run)
        if lrs:
            curves = [Curve(t.split("/", 1)[1].replace("group", "group "), run.series(t), width=2) for t in lrs]
            vals = np.concatenate([c.series.to_numpy(dtype=float) for c in curves])
            vals = vals[np.isfinite(vals) & (vals > 0)]
            wide = vals.size > 0 and vals.max() / vals.min() > 20
            fig = lines_figure(curves, title="Learning rate", y_title="learning rate", log_y=bool(wide),
                               highlight=shade, height=260)
            chart(fig, key="ov-lr")
        else:
            missing("learning-rate record", "Pass the optimizer to `probes.attach(model, optimizer)` to record it.")
    with right:
        st.markdown("#### Advice")
        findings = judged.findings if judged is not None else []
        advice_cards(findings, run_path=h.path, error=err, current_page="overview", actions=apply_actions(run))


def render() -> None:
    """The Overview page."""
    live_section(current_handle(), _body, key="overview")

"""Compare runs: loss and any metric overlaid, and a table of the hyperparameters that differ."""

from __future__ import annotations

import os

import pandas as pd
import streamlit as st

from runstore import tags

from ..extract import metric_tags
from ..figures.base import Curve, NoDataError, lines_figure, plain
from ..summary import differing_hparams, effective_hparams, final_value
from ..ui import cache
from ..ui.context import COMPARE_RUNS, SELECTED_RUNS, get_context
from ..ui.runpage import chart, error_card, healthy, missing
from ..ui.sidebar import run_label

HEALTHY = ("the better configuration reaches a lower validation loss, not only a lower training loss; "
           "curves that part early point at the hyperparameter that differs.")
_SPLIT_DASH = {"train": None, "val": "dash"}


def _default_selection(ctx) -> list[str]:
    paths = [r.path for r in ctx.refs]
    chosen = [p for p in st.session_state.get(SELECTED_RUNS) or [] if p in paths]
    if len(chosen) >= 2:
        return chosen
    if ctx.current is not None:
        chosen = [ctx.current.path]
        meta = cache.meta(ctx.current)
        parent = meta.get("parent") if isinstance(meta, dict) else None
        if parent:
            parent = os.path.abspath(os.path.join(ctx.current.path, parent) if not os.path.isabs(parent) else parent)
            if parent in paths and parent not in chosen:
                chosen.append(parent)
        others = [p for p in paths if p not in chosen]
        chosen += others[: max(0, 2 - len(chosen))]
    return chosen


def render() -> None:
    """The Compare page."""
    ctx = get_context()
    st.markdown("### Compare runs")
    healthy(HEALTHY)
    if not ctx.refs:
        st.info("No runs found. Add a folder of runs in the sidebar.")
        return
    paths = [r.path for r in ctx.refs]
    if COMPARE_RUNS in st.session_state:
        st.session_state[COMPARE_RUNS] = [p for p in st.session_state[COMPARE_RUNS] if p in paths]
    else:
        st.session_state[COMPARE_RUNS] = _default_selection(ctx)
    labels = {r.path: run_label(r) for r in ctx.refs}
    chosen = st.multiselect("Runs", paths, key=COMPARE_RUNS, format_func=lambda p: labels.get(p, p),
                            persist_state="session", help="Pick several runs on the Runs page or here.")
    if not chosen:
        st.info("Pick at least one run above.")
        return
    runs = {}
    for p in chosen:
        h = cache.handle(ctx.ref(p))
        if h.error is not None:
            error_card(h)
        else:
            runs[p] = h.run
    if not runs:
        return
    names = _unique_names(runs)
    metrics = sorted({t for r in runs.values() for t in metric_tags(r)} - {tags.TRAIN_LOSS, "val/loss"})
    with st.container(horizontal=True, vertical_alignment="bottom"):
        log_y = st.toggle("Log-scale loss", value=True, key="cmp_log", persist_state="session")
        smoothing = st.slider("Smoothing", 0.0, 0.99, 0.6, 0.01, key="cmp_smooth", persist_state="session", width=260)
    curves = []
    for p, r in runs.items():
        for split in ("train", "val"):
            s = r.series(tags.split_metric(split, "loss"))
            if not s.empty:
                curves.append(Curve(plain(f"{names[p]} · {split}"), s, color=ctx.color(p), dash=_SPLIT_DASH[split],
                                    group=p, width=1.8 if split == "train" else 2.6))
    if curves:
        positive = all((c.series.dropna() > 0).all() for c in curves)
        chart(lines_figure(curves, title="Loss (solid: train, dashed: validation)", y_title="loss",
                           log_y=log_y and positive, smoothing=smoothing, mark_nonfinite=True, height=420),
              key="cmp-loss")
    else:
        missing("loss values in any of the picked runs")
    if metrics:
        default = next((m for m in ("val/accuracy", "train/accuracy") if m in metrics), metrics[0])
        if st.session_state.get("cmp_metric") not in metrics:
            st.session_state["cmp_metric"] = default
        metric = st.selectbox("Metric", metrics, key="cmp_metric", persist_state="session")
        mc = [Curve(plain(names[p]), r.series(metric), color=ctx.color(p), group=p) for p, r in runs.items()
              if metric in r.scalar_tags()]
        try:
            log_metric = metric.startswith("lr/")
            chart(lines_figure(mc, title=plain(metric), y_title=plain(metric), smoothing=smoothing if not log_metric else 0.0,
                               log_y=log_metric, height=360), key="cmp-metric")
        except NoDataError:
            missing(f"{metric} in the picked runs")
    st.markdown("#### Hyperparameters")
    show_all = st.toggle("Show all hyperparameters", value=False, key="cmp_all")
    table = differing_hparams({names[p]: effective_hparams(r) for p, r in runs.items()}, only_differing=not show_all)
    if len(runs) < 2:
        st.caption("Pick a second run to see what differs.")
    if table.empty:
        st.caption("The picked runs have the same hyperparameters." if len(runs) > 1 else "No hyperparameters recorded.")
    else:
        st.dataframe(table, key="cmp-hparams")
    st.markdown("#### Results")
    st.dataframe(pd.DataFrame([{"run": names[p], "status": r.status, "steps": r.last_step,
                                "train loss": final_value(r.series(tags.TRAIN_LOSS)),
                                "val loss": final_value(r.series("val/loss"), window=1),
                                "val accuracy": final_value(r.series("val/accuracy"), window=1)}
                               for p, r in runs.items()]), hide_index=True, key="cmp-results",
                 column_config={"train loss": st.column_config.NumberColumn(format="%.4f"),
                                "val loss": st.column_config.NumberColumn(format="%.4f"),
                                "val accuracy": st.column_config.NumberColumn(format="%.3f")})


def _unique_names(runs: dict) -> dict[str, str]:
    """Run names, made unique with the folder name when two runs share one."""
    names = {p: r.name for p, r in runs.items()}
    counts = pd.Series(list(names.values())).value_counts()
    return {p: (n if counts[n] == 1 else f"{n} ({os.path.basename(p)})") for p, n in names.items()}

"""Generalization rules: overfitting (train keeps improving, evaluation gets worse) and
underfitting (the model does not fit even its training data)."""

from __future__ import annotations

import numpy as np

from runstore import tags as T

from ..finding import Finding
from ..view import RunView, fmt, pct
from . import fixes


def _train_at_end(v: RunView, name: str, since: int | None) -> float | None:
    """Mean of train/<name> over the last evaluation interval (or the last 10% of its values)."""
    s = v.run.series(T.split_metric("train", name)).dropna()
    if s.empty:
        return None
    recent = s[s.index > since] if since is not None else s.iloc[-max(1, len(s) // 10):]
    if recent.empty:
        recent = s.iloc[-max(1, len(s) // 10):]
    return float(recent.mean())


def overfitting(v: RunView) -> list[Finding]:
    """Evaluation loss rising from its best while the train loss keeps falling, or a large
    train-evaluation accuracy gap."""
    th = v.th
    split = v.eval_split
    if split is None or not v.enough_loss or v.first_nonfinite is not None:
        return []
    val = v.split_series(split, "loss")
    val = val[np.isfinite(val.to_numpy())]
    val_acc = v.split_series(split, "accuracy")
    prev_eval = int(val.index[-2]) if len(val) >= 2 else None
    train_acc = _train_at_end(v, "accuracy", prev_eval)
    evidence, reasons, severity = {}, [], None
    best_step = last_step = None

    if len(val) >= 3:
        best_step = int(val.idxmin())
        # The end level is the mean of the last few evaluations, so one noisy batch does not count.
        best, end = float(val.min()), float(val.iloc[-3:].mean()) if best_step < int(val.index[-3]) else float(val.iloc[-1])
        last_step = int(val.index[-1])
        gl = end / best - 1 if best > 0 else 0.0
        ref = v.reference_loss or best
        big_enough = end - best >= th.overfit_abs_rise * ref
        sm = v.smooth
        train_then = float(sm.iloc[min(len(sm) - 1, int(sm.index.searchsorted(best_step)))])
        train_end = float(sm.iloc[-1])
        train_fell = train_end < train_then * 0.95
        evidence.update(best_eval_step=best_step, best_eval_loss=best, final_eval_loss=end, generalization_loss=gl,
                        train_loss_at_best=train_then, final_train_loss=train_end,
                        overfit_val_rise=th.overfit_val_rise, overfit_info_rise=th.overfit_info_rise,
                        overfit_abs_rise=th.overfit_abs_rise)
        if gl >= th.overfit_info_rise and big_enough and train_fell and best_step < last_step:
            reasons.append(f"the {split} loss rose {pct(gl)} from its best {fmt(best)} at step {best_step} to "
                           f"{fmt(end)} at step {last_step} while the train loss fell from {fmt(train_then)} to "
                           f"{fmt(train_end)}")
            severity = "warning" if gl >= th.overfit_val_rise else "info"

    if len(val_acc) >= 4:
        best_acc_step = int(val_acc.idxmax())
        best_acc, acc_now = float(val_acc.max()), float(val_acc.iloc[-3:].mean())
        drop = best_acc - acc_now
        sm = v.smooth
        train_then = float(sm.iloc[min(len(sm) - 1, int(sm.index.searchsorted(best_acc_step)))])
        evidence.update(best_eval_accuracy=best_acc, best_accuracy_step=best_acc_step, recent_eval_accuracy=acc_now,
                        overfit_acc_drop=th.overfit_acc_drop)
        if (drop >= th.overfit_acc_drop and float(sm.iloc[-1]) < train_then * 0.95
                and best_acc_step < int(val_acc.index[-3])):
            reasons.append(f"{split} accuracy fell from its best {fmt(best_acc)} at step {best_acc_step} to "
                           f"{fmt(acc_now)} (last evaluations) while the train loss kept falling")
            severity = "warning"
            best_step = best_step if best_step is not None else best_acc_step
            last_step = last_step or int(val_acc.index[-1])
    if train_acc is not None and len(val_acc):
        acc_end = float(val_acc.iloc[-1])
        gap = train_acc - acc_end
        limit = th.overfit_acc_gap_high if train_acc > 0.9 else th.overfit_acc_gap
        evidence.update(train_accuracy=train_acc, eval_accuracy=acc_end, accuracy_gap=gap, accuracy_gap_limit=limit)
        if gap >= limit:
            reasons.append(f"train accuracy {fmt(train_acc)} is {fmt(gap, 2)} above {split} accuracy {fmt(acc_end)} "
                           f"(limit {fmt(limit, 2)})")
            severity = "warning"
            last_step = last_step or int(val_acc.index[-1])
            best_step = best_step or int(val_acc.index[0])
    if not reasons:
        return []
    msg = "The model fits the training data better than it generalizes: " + "; ".join(reasons) + "."
    advice = ("Add dropout 0.3-0.5 or L2 weight decay, get more (or augmented) data, or stop early"
              + (f" around step {best_step}, where the {split} loss was lowest" if "best_eval_step" in evidence else "")
              + ".")
    fix = {**fixes.more_dropout(v), **fixes.more_weight_decay(v)} if severity == "warning" else {}
    return [Finding(
        rule="overfitting", severity=severity, title="Overfitting", message=msg, advice=advice, evidence=evidence,
        steps=(best_step, last_step) if best_step is not None else None, fix=fix, chart="overview",
        tags=(T.TRAIN_LOSS, T.split_metric(split, "loss"), T.split_metric(split, "accuracy")),
    )]


def underfitting(v: RunView) -> list[Finding]:
    """The final train loss is still high and evaluation is no worse than training: the model does
    not fit the training data. A loss that is still falling fast makes this an info ("train
    longer"), not a warning: the run is unfinished rather than unable to fit."""
    th = v.th
    if not v.enough_loss or v.first_nonfinite is not None:
        return []
    sm = v.smooth
    end = float(sm.iloc[-1])
    rel = v.relative(end)
    if rel is None or rel <= th.underfit_loss_frac:
        return []
    evidence = {"final_train_loss": end, "reference_loss": v.reference_loss, "loss_floor": v.loss_floor,
                "relative_level": rel, "underfit_loss_frac": th.underfit_loss_frac}
    split = v.eval_split
    val = v.split_series(split, "loss") if split else None
    msg = f"The train loss ends at {fmt(end)}, {v.level_text(end)} (limit {fmt(th.underfit_loss_frac, 2)})"
    if val is not None and len(val):
        v_end = float(val.iloc[-1])
        evidence.update(final_eval_loss=v_end, underfit_gap=th.underfit_gap)
        if np.isfinite(v_end) and v_end > end * (1 + th.underfit_gap):
            return []  # a generalization gap: that is overfitting's territory, not underfitting
        msg += f", and the {split} loss ({fmt(v_end)}) is no better: the model fits neither."
    else:
        msg += "."
    train_acc = _train_at_end(v, "accuracy", None)
    if train_acc is not None:
        evidence["train_accuracy"] = train_acc
        msg += f" Train accuracy at the end: {fmt(train_acc)}."
    falling = v.still_falling
    evidence["last_third_drop"] = falling
    fix = fixes.less_regularization(v) or fixes.more_capacity(v)
    epochs = v.hparam("epochs")
    severity = "warning"
    if falling > th.still_falling:
        severity = "info"
        msg += " The loss is still falling clearly over the last third of the run."
        fix = {"epochs": epochs * 2} if isinstance(epochs, int) else {}
    advice = ("Give the model more capacity (width/depth), reduce regularization (dropout, weight decay, label "
              "smoothing), or train longer" + (" - the loss is still falling" if severity == "info" else "") +
              ". CS231n's check applies: a model that cannot overfit a tiny subset has a bug or too little capacity.")
    return [Finding(
        rule="underfitting", severity=severity, title="Underfitting", message=msg, advice=advice, evidence=evidence,
        steps=(int(sm.index[0]), int(sm.index[-1])), fix=fix, chart="overview",
        tags=(T.TRAIN_LOSS,) + ((T.split_metric(split, "loss"),) if split else ()),
    )]

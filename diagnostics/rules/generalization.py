"""Generalization rules: overfitting (train keeps improving, evaluation gets worse) and
underfitting (the model does not fit even its training data)."""

from __future__ import annotations

import numpy as np

from runstore import tags as T

from ..finding import Finding
from ..view import RunView, fmt, pct
from . import fixes


def _train_at_end(v: RunView, name: str, since: int | None) -> tuple[float, list[int]] | None:
    """(mean, [first, last step]) of train/<name> over the last evaluation interval (or the last 10%
    of its values)."""
    s = v.run.series(T.split_metric("train", name)).dropna()
    if s.empty:
        return None
    recent = s[s.index > since] if since is not None else s.iloc[-max(1, len(s) // 10):]
    if recent.empty:
        recent = s.iloc[-max(1, len(s) // 10):]
    return float(recent.mean()), [int(recent.index[0]), int(recent.index[-1])]


def _train_over(v: RunView, name: str, a: int, b: int) -> tuple[float, list[int]] | None:
    """(mean, [first, last step]) of train/<name> over the steps a-b that the evaluations it is
    compared with cover: one batch's accuracy or loss is noise, their mean over the same stretch is
    what the evaluations measured on held-out data. Widened back from b to at least 3 values (or
    a tenth of the record) when the stretch holds fewer."""
    s = v.run.series(T.split_metric("train", name)).dropna()
    s = s[np.isfinite(s.to_numpy(dtype=float)) & (s.index <= b)]
    if s.empty:
        return None
    win = s[s.index >= a]
    if len(win) < 3:
        win = s.iloc[-max(3, len(s) // 10):]
    return float(win.mean()), [int(win.index[0]), int(win.index[-1])]


def _smoothed_at(v: RunView, step: int) -> tuple[float, int]:
    """The smoothed train loss at the first recorded step at or after `step` (value, step)."""
    sm = v.smooth
    i = min(len(sm) - 1, int(sm.index.searchsorted(step)))
    return float(sm.iloc[i]), int(sm.index[i])


def overfitting(v: RunView) -> list[Finding]:
    """The evaluation loss rises from its best while the model fits its training data ever better
    (the train loss kept falling, or sits far below the evaluation loss over the same steps: a
    train loss that has flattened still fits the training set it memorised); or evaluation accuracy
    falls from its best, or stays well below the train accuracy measured over the same steps. Only
    once the train loss has come below chance (the reference loss): overfitting needs a fit."""
    th = v.th
    split = v.eval_split
    if split is None or not v.judges_end or not v.enough_loss or v.first_nonfinite is not None or not v.minimised:
        return []
    val = v.split_series(split, "loss")
    val = val[np.isfinite(val.to_numpy())]
    val_acc = v.split_series(split, "accuracy")
    evidence, reasons, severity = {}, [], None
    best_step = last_step = None
    sm = v.smooth
    train_end, train_end_step = float(sm.iloc[-1]), int(sm.index[-1])
    rel = v.relative(train_end)
    if rel is not None and rel >= 1:
        # A train loss still at or above chance (ln(C), else the initial loss) has fitted nothing, so
        # there is nothing to generalize from: a validation loss rising above it is a run blowing up
        # or dead (lr_too_high, dead units), and dropout would be the wrong advice.
        return []

    if len(val) >= 3:
        best_step = int(val.idxmin())
        # The end level is the mean of the last few evaluations, so one noisy batch does not count.
        tail = val.iloc[-3:] if best_step < int(val.index[-3]) else val.iloc[-1:]
        best, end = float(val.min()), float(tail.mean())
        last_step = int(val.index[-1])
        gl = end / best - 1 if best > 0 else 0.0
        ref = v.reference_loss or best
        big_enough = end - best >= th.overfit_abs_rise * ref
        train_then, train_then_step = _smoothed_at(v, best_step)
        train_fell = train_end < train_then * 0.95
        a = int(tail.index[0]) if len(tail) > 1 else int(val.index[-2])
        train_win = _train_over(v, "loss", a, last_step)
        gap = (end - train_win[0]) / end if train_win is not None and end > 0 else 0.0
        wide_gap = gap >= th.overfit_loss_gap
        if gl >= th.overfit_info_rise and big_enough and (train_fell or wide_gap) and best_step < last_step:
            tail_text = (f"{fmt(end)} (mean of the last evaluations, steps {int(tail.index[0])}-{last_step})"
                         if len(tail) > 1 else f"{fmt(end)} at step {last_step}")
            text = f"the {split} loss rose {pct(gl)} from its best {fmt(best)} at step {best_step} to {tail_text}"
            if train_fell:
                text += (f" while the smoothed train loss (median of {v.window} steps) fell from {fmt(train_then)} at "
                         f"step {train_then_step} to {fmt(train_end)} at step {train_end_step}")
                evidence.update(train_loss_at_best=train_then, train_loss_at_best_step=train_then_step,
                                final_train_loss=train_end, final_train_loss_step=train_end_step,
                                smooth_window=v.window)
            if wide_gap:
                t, (ta, tb) = train_win
                text += (f"{' and' if train_fell else ' while'} the train loss over the same steps ({fmt(t)}, mean "
                         f"over steps {ta}-{tb}) is {pct(gap)} below it: the model fits what it memorised")
                evidence.update(train_loss_same_window=t, train_loss_same_window_steps=[ta, tb], loss_gap=gap,
                                loss_gap_steps=[ta, last_step], overfit_loss_gap=th.overfit_loss_gap)
            reasons.append(text)
            evidence.update(best_eval_step=best_step, best_eval_loss=best, best_eval_loss_step=best_step,
                            final_eval_loss=end, final_eval_loss_steps=[int(tail.index[0]), last_step],
                            generalization_loss=gl, generalization_loss_steps=[best_step, last_step],
                            overfit_val_rise=th.overfit_val_rise, overfit_info_rise=th.overfit_info_rise,
                            overfit_abs_rise=th.overfit_abs_rise)
            severity = "warning" if gl >= th.overfit_val_rise or wide_gap else "info"

    if len(val_acc) >= 4:
        best_acc_step = int(val_acc.idxmax())
        tail = val_acc.iloc[-3:]
        best_acc, acc_now = float(val_acc.max()), float(tail.mean())
        drop = best_acc - acc_now
        train_then, train_then_step = _smoothed_at(v, best_acc_step)
        if drop >= th.overfit_acc_drop and train_end < train_then * 0.95 and best_acc_step < int(val_acc.index[-3]):
            a, b = int(tail.index[0]), int(tail.index[-1])
            reasons.append(f"{split} accuracy fell from its best {fmt(best_acc)} at step {best_acc_step} to "
                           f"{fmt(acc_now)} (mean of the last evaluations, steps {a}-{b}) while the smoothed train "
                           f"loss kept falling, from {fmt(train_then)} at step {train_then_step} to {fmt(train_end)} "
                           f"at step {train_end_step}")
            evidence.update(best_eval_accuracy=best_acc, best_eval_accuracy_step=best_acc_step,
                            recent_eval_accuracy=acc_now, recent_eval_accuracy_steps=[a, b],
                            train_loss_at_best_accuracy=train_then, train_loss_at_best_accuracy_step=train_then_step,
                            final_train_loss=train_end, final_train_loss_step=train_end_step, smooth_window=v.window,
                            overfit_acc_drop=th.overfit_acc_drop)
            severity = "warning"
            best_step = best_step if best_step is not None else best_acc_step
            last_step = last_step or b
    if len(val_acc):
        # Train accuracy over the steps the last evaluations cover, against their mean: a one-batch
        # train accuracy against a full evaluation compares noise with a measurement.
        tail = val_acc.iloc[-3:]
        a, acc_step = (int(tail.index[0]) if len(tail) > 1 else int(val_acc.index[-1])), int(tail.index[-1])
        if len(tail) > 1:
            prev = val_acc.index[val_acc.index < a]
            a = int(prev[-1]) + 1 if len(prev) else int(sm.index[0])
        train_acc = _train_over(v, "accuracy", a, acc_step)
        if train_acc is not None:
            (tr, tr_steps), acc_end = train_acc, float(tail.mean())
            gap = tr - acc_end
            limit = th.overfit_acc_gap_high if tr > 0.9 else th.overfit_acc_gap
            if gap >= limit:
                what = (f"the {split} accuracy {fmt(acc_end)} (mean of the evaluations at steps "
                        f"{int(tail.index[0])}-{acc_step})" if len(tail) > 1
                        else f"the {split} accuracy {fmt(acc_end)} at step {acc_step}")
                reasons.append(f"train accuracy {fmt(tr)} (mean over steps {tr_steps[0]}-{tr_steps[1]}) is "
                               f"{fmt(gap, 2)} above {what} (limit {fmt(limit, 2)})")
                evidence.update(train_accuracy=tr, train_accuracy_steps=tr_steps, eval_accuracy=acc_end,
                                eval_accuracy_steps=[int(tail.index[0]), acc_step],
                                accuracy_gap=gap, accuracy_gap_steps=[tr_steps[0], acc_step],
                                accuracy_gap_limit=limit)
                severity = "warning"
                last_step = last_step or acc_step
                best_step = best_step or int(val_acc.index[0])
    if not reasons:
        return []
    msg = "The model fits the training data better than it generalizes: " + "; ".join(reasons) + "."
    fix = {**fixes.more_dropout(v), **fixes.more_weight_decay(v)} if severity == "warning" else {}
    advice = ("Add dropout or L2 weight decay" + (" (the fix below)" if fix else "") + ", get more (or augmented) "
              "data, or stop early" + (f" around step {best_step}, where the {split} loss was lowest"
                                       if "best_eval_step" in evidence else "") + ".")
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
    if not v.judges_end or not v.enough_loss or v.first_nonfinite is not None or not v.minimised:
        return []
    sm = v.smooth
    end, end_step = float(sm.iloc[-1]), int(sm.index[-1])
    rel = v.relative(end)
    # Against a known floor a high level is underfitting; where the floor is unknown (a language
    # model, a regression) a level says nothing by itself, only a loss that hardly came down does.
    limit = th.underfit_loss_frac if v.floor_known else v.progress_limit
    if rel is None or rel <= limit:
        return []
    evidence = {"final_train_loss": end, "final_train_loss_step": end_step, "smooth_window": v.window,
                "reference_loss": v.reference_loss, "loss_floor": v.loss_floor, "relative_level": rel,
                "relative_level_step": end_step}
    evidence.update({"underfit_loss_frac": th.underfit_loss_frac} if v.floor_known
                    else {**v.progress_evidence(), "relative_level_limit": limit})
    split = v.eval_split
    val = v.split_series(split, "loss") if split else None
    msg = (f"The smoothed train loss (median of {v.window} steps) ends at {fmt(end)} at step {end_step}, "
           f"{v.level_text(end)} (limit {fmt(limit, 2)})")
    if val is not None and len(val):
        v_end, v_step = float(val.iloc[-1]), int(val.index[-1])
        if np.isfinite(v_end) and v_end > end * (1 + th.underfit_gap):
            return []  # a generalization gap: that is overfitting's territory, not underfitting
        evidence.update(final_eval_loss=v_end, final_eval_loss_step=v_step, underfit_gap=th.underfit_gap)
        msg += f", and the {split} loss ({fmt(v_end)} at step {v_step}) is no better: the model fits neither."
    else:
        msg += "."
    train_acc = _train_at_end(v, "accuracy", None)
    if train_acc is not None:
        evidence.update(train_accuracy=train_acc[0], train_accuracy_steps=train_acc[1])
        msg += f" Train accuracy at the end: {fmt(train_acc[0])} (mean over steps {train_acc[1][0]}-{train_acc[1][1]})."
    falling = v.still_falling
    third_step = int(sm.index[int(len(sm) * 2 / 3)]) if len(sm) >= 3 else int(sm.index[0])
    evidence.update(last_third_drop=falling, last_third_drop_steps=[third_step, end_step])
    fix = fixes.less_regularization(v) or fixes.more_capacity(v)
    epochs = v.hparam("epochs")
    severity = "warning"
    if falling > th.still_falling:
        severity = "info"
        msg += (f" The loss is still falling clearly: by {fmt(falling, 2)} of the way from chance to its floor over "
                f"steps {third_step}-{end_step} (more than {fmt(th.still_falling, 2)}).")
        evidence["still_falling"] = th.still_falling
        fix = {"epochs": epochs * 2} if isinstance(epochs, int) else {}
    advice = ("Give the model more capacity (width/depth), reduce regularization (dropout, weight decay, label "
              "smoothing), or train longer" + (" - the loss is still falling (the fix below doubles the epochs)"
                                               if severity == "info" and fix else "") +
              ". CS231n's check applies: a model that cannot overfit a tiny subset has a bug or too little capacity.")
    return [Finding(
        rule="underfitting", severity=severity, title="Underfitting", message=msg, advice=advice, evidence=evidence,
        steps=(int(sm.index[0]), end_step), fix=fix, chart="overview",
        tags=(T.TRAIN_LOSS,) + ((T.split_metric(split, "loss"),) if split else ()),
    )]

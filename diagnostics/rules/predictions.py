"""Prediction rules from the softmax outputs: overconfidence (confidence well above accuracy) and
low_confidence (predictions close to a uniform guess, or well below the accuracy they achieve)."""

from __future__ import annotations

import numpy as np

from runstore import tags as T

from ..finding import Finding
from ..task import LANGUAGE_MODEL
from ..view import RunView, fmt


def _last_mean(s, n: int = 3) -> tuple[float, list[int]] | None:
    """(mean, [first, last step]) of the last n values."""
    s = s.dropna()
    if s.empty:
        return None
    tail = s.iloc[-n:]
    return float(tail.mean()), [int(tail.index[0]), int(tail.index[-1])]


def _tail_mean(v: RunView, s) -> tuple[float, list[int]] | None:
    """(mean, [first, last step]) over the last part of the run (tail_frac of the values)."""
    s = s.dropna()
    if s.empty:
        return None
    tail = v.tail(s)
    return float(tail.mean()), [int(tail.index[0]), int(tail.index[-1])]


def _ece(v: RunView, split: str) -> tuple[float, int] | None:
    """(expected calibration error, step) of the last calibration table of `split`, if recorded."""
    tables = v.run.tables(T.calibration(split))
    if not tables:
        return None
    step, table = tables[-1]
    if isinstance(table.get("ece"), (int, float)):
        return float(table["ece"]), int(step)
    try:
        count = np.asarray(table["count"], float)
        conf = np.asarray(table["confidence"], float)
        acc = np.asarray(table["accuracy"], float)
    except (KeyError, TypeError, ValueError):
        return None
    ok = np.isfinite(conf) & np.isfinite(acc) & (count > 0)
    total = count[ok].sum()
    return (float(np.sum(count[ok] * np.abs(conf[ok] - acc[ok])) / total), int(step)) if total > 0 else None


def overconfidence(v: RunView) -> list[Finding]:
    """On the evaluation split, mean confidence exceeds accuracy by overconfidence_gap or more."""
    th = v.th
    if v.first_nonfinite is not None:
        return []  # after a NaN loss the predictions say nothing about calibration
    split = v.eval_split
    if split is None:
        return []
    conf_s, acc_s = v.split_series(split, "confidence"), v.split_series(split, "accuracy")
    c, a = _last_mean(conf_s), _last_mean(acc_s)
    if c is None or a is None:
        return []
    (conf, conf_steps), (acc, acc_steps) = c, a
    gap = conf - acc
    if gap < th.overconfidence_gap:
        return []
    steps = [min(conf_steps[0], acc_steps[0]), max(conf_steps[1], acc_steps[1])]
    evidence = {"confidence": conf, "confidence_steps": conf_steps, "accuracy": acc, "accuracy_steps": acc_steps,
                "gap": gap, "gap_steps": steps, "overconfidence_gap": th.overconfidence_gap}
    msg = (f"On {split}, the mean confidence {fmt(conf)} is {fmt(gap, 2)} above the accuracy {fmt(acc)} (means of the "
           f"last evaluations, steps {steps[0]}-{steps[1]}; limit {fmt(th.overconfidence_gap, 2)}).")
    ece = _ece(v, split)
    if ece is not None:
        evidence.update(ece=ece[0], ece_step=ece[1])
        msg += f" Expected calibration error at step {ece[1]}: {fmt(ece[0], 2)}."
    train_conf = _last_mean(v.run.series(T.split_metric("train", "confidence")), 10)
    if train_conf is not None:
        evidence.update(train_confidence=train_conf[0], train_confidence_steps=train_conf[1])
        msg += f" Train confidence: {fmt(train_conf[0])} (steps {train_conf[1][0]}-{train_conf[1][1]})."
    ls = v.hparam("label_smoothing")
    fix = {"label_smoothing": 0.1} if isinstance(ls, (int, float)) and ls < 0.1 else {}
    return [Finding(
        rule="overconfidence", severity="warning", title="Overconfident predictions", message=msg,
        advice=("The model is surer than it is right: use label smoothing" + (" (the fix below)" if fix else "") +
                ", stop earlier or regularize (weight decay, dropout), and calibrate with temperature scaling if "
                "scores are used as probabilities."),
        evidence=evidence, steps=(steps[0], steps[1]), fix=fix, chart="predictions",
        tags=(T.split_metric(split, "confidence"), T.split_metric(split, "accuracy"), T.calibration(split)),
    )]


def low_confidence(v: RunView) -> list[Finding]:
    """Predictions stay close to a uniform guess, or are much less confident than they are accurate."""
    th = v.th
    if not v.judges_end or v.first_nonfinite is not None:
        return []  # after a NaN loss the predictions say nothing about calibration
    split = v.eval_split
    src = split if split and len(v.split_series(split, "confidence")) else "train"
    conf_s = v.split_series(src, "confidence")
    c = _tail_mean(v, conf_s)
    if c is None:
        return []
    conf, conf_steps = c
    a = _tail_mean(v, v.split_series(src, "accuracy"))
    acc, acc_steps = a if a is not None else (None, None)
    evidence = {"confidence": conf, "confidence_steps": conf_steps, "split": src, "n_classes": v.n_classes,
                "low_confidence_frac": th.low_confidence_frac, "underconfidence_gap": th.underconfidence_gap}
    if acc is not None:
        evidence.update(accuracy=acc, accuracy_steps=acc_steps)
    where = f"steps {conf_steps[0]}-{conf_steps[1]}"
    # Label smoothing e trains towards a top probability of 1 - e + e/C: near that cap, hedging is
    # what the loss asks for, not a model that has yet to learn.
    eps = v.hparam("label_smoothing")
    capped, note = False, ""
    if isinstance(eps, (int, float)) and eps > 0 and v.n_classes:
        cap = 1 - eps + eps / v.n_classes
        evidence.update(label_smoothing=eps, label_smoothing_cap=cap)
        if conf >= 0.8 * cap:
            capped = True
            note = (f" Label smoothing {fmt(eps)} trains the model towards a top probability of {fmt(cap)}, "
                    f"which explains it.")
    settled = v.still_falling <= th.still_falling or capped
    reasons = []
    # A language model's next-symbol distribution stays spread however well it is trained (text has
    # an entropy of its own): closeness to a uniform guess says nothing there.
    if v.n_classes and v.task.kind != LANGUAGE_MODEL:
        uniform = 1 / v.n_classes
        limit = uniform + th.low_confidence_frac * (1 - uniform)
        evidence.update(uniform=uniform, low_confidence_limit=limit)
        if conf < limit:
            reasons.append(f"the mean max-probability on {src} over {where} is {fmt(conf)}, close to the "
                           f"{fmt(uniform)} of a uniform guess over {v.n_classes} classes (limit {fmt(limit)})")
    # Early in training confidence lags accuracy (logits are still small): judge it once learning slowed.
    if acc is not None and acc - conf >= th.underconfidence_gap and settled:
        evidence.update(underconfidence=acc - conf, underconfidence_steps=[min(conf_steps[0], acc_steps[0]),
                                                                             max(conf_steps[1], acc_steps[1])])
        reasons.append(f"the model is right {fmt(acc)} of the time on {src} but only {fmt(conf)} confident "
                       f"(means over {where})")
    if not reasons:
        return []
    severity = "warning"
    if not settled:
        severity = "info"  # still learning: confidence usually follows once the loss settles
        note = " The loss is still falling, so this may resolve with more training."
    fix = {}
    ls = v.hparam("label_smoothing")
    if isinstance(ls, (int, float)) and ls > 0.15:
        fix["label_smoothing"] = 0.05
    d = v.hparam("dropout")
    if isinstance(d, (int, float)) and d >= 0.6:
        fix["dropout"] = 0.3
    return [Finding(
        rule="low_confidence", severity=severity, title="Low-confidence predictions",
        message="Predictions hedge: " + "; ".join(reasons) + "." + note,
        advice=("If accuracy is also low the model has not learned yet (see the other findings); if accuracy is fine, "
                "heavy label smoothing or dropout is flattening the outputs - reduce them"
                + (" (the fix below)" if fix else "") + "."),
        evidence=evidence, steps=(conf_steps[0], conf_steps[1]), fix=fix,
        chart="predictions", tags=(T.split_metric(src, "confidence"), T.split_metric(src, "accuracy")),
    )]

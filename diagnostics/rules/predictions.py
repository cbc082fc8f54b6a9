"""Prediction rules from the softmax outputs: overconfidence (confidence well above accuracy) and
low_confidence (predictions close to a uniform guess, or well below the accuracy they achieve)."""

from __future__ import annotations

import numpy as np

from runstore import tags as T

from ..finding import Finding
from ..view import RunView, fmt


def _last_mean(s, n: int = 3) -> float | None:
    s = s.dropna()
    return float(s.iloc[-n:].mean()) if len(s) else None


def _ece(v: RunView, split: str) -> float | None:
    """Expected calibration error of the last calibration table of `split`, if recorded."""
    tables = v.run.tables(T.calibration(split))
    if not tables:
        return None
    _, table = tables[-1]
    if isinstance(table.get("ece"), (int, float)):
        return float(table["ece"])
    try:
        count = np.asarray(table["count"], float)
        conf = np.asarray(table["confidence"], float)
        acc = np.asarray(table["accuracy"], float)
    except (KeyError, TypeError, ValueError):
        return None
    ok = np.isfinite(conf) & np.isfinite(acc) & (count > 0)
    total = count[ok].sum()
    return float(np.sum(count[ok] * np.abs(conf[ok] - acc[ok])) / total) if total > 0 else None


def overconfidence(v: RunView) -> list[Finding]:
    """On the evaluation split, mean confidence exceeds accuracy by overconfidence_gap or more."""
    th = v.th
    if v.first_nonfinite is not None:
        return []  # after a NaN loss the predictions say nothing about calibration
    split = v.eval_split
    if split is None:
        return []
    conf_s, acc_s = v.split_series(split, "confidence"), v.split_series(split, "accuracy")
    conf, acc = _last_mean(conf_s), _last_mean(acc_s)
    if conf is None or acc is None:
        return []
    gap = conf - acc
    ece = _ece(v, split)
    if gap < th.overconfidence_gap:
        return []
    train_conf = _last_mean(v.run.series(T.split_metric("train", "confidence")), 10)
    msg = (f"On {split}, the mean confidence {fmt(conf)} is {fmt(gap, 2)} above the accuracy {fmt(acc)} "
           f"(last evaluations; limit {fmt(th.overconfidence_gap, 2)}).")
    if ece is not None:
        msg += f" Expected calibration error: {fmt(ece, 2)}."
    if train_conf is not None:
        msg += f" Train confidence: {fmt(train_conf)}."
    ls = v.hparam("label_smoothing")
    fix = {"label_smoothing": 0.1} if isinstance(ls, (int, float)) and ls < 0.1 else {}
    return [Finding(
        rule="overconfidence", severity="warning", title="Overconfident predictions", message=msg,
        advice=("The model is surer than it is right: use label smoothing 0.05-0.1, stop earlier or regularize "
                "(weight decay, dropout), and calibrate with temperature scaling if scores are used as probabilities."),
        evidence={"confidence": conf, "accuracy": acc, "gap": gap, "ece": ece, "train_confidence": train_conf,
                  "overconfidence_gap": th.overconfidence_gap},
        steps=(int(conf_s.index[max(0, len(conf_s) - 3)]), int(conf_s.index[-1])), fix=fix, chart="predictions",
        tags=(T.split_metric(split, "confidence"), T.split_metric(split, "accuracy"), T.calibration(split)),
    )]


def low_confidence(v: RunView) -> list[Finding]:
    """Predictions stay close to a uniform guess, or are much less confident than they are accurate."""
    th = v.th
    if v.first_nonfinite is not None:
        return []  # after a NaN loss the predictions say nothing about calibration
    split = v.eval_split
    src = split if split and len(v.split_series(split, "confidence")) else "train"
    conf_s = v.split_series(src, "confidence")
    if conf_s.empty:
        return []
    conf = float(v.tail(conf_s).mean())
    acc_s = v.split_series(src, "accuracy")
    acc = float(v.tail(acc_s).mean()) if len(acc_s) else None
    evidence = {"confidence": conf, "accuracy": acc, "split": src, "n_classes": v.n_classes,
                "low_confidence_frac": th.low_confidence_frac, "underconfidence_gap": th.underconfidence_gap}
    # Label smoothing e trains towards a top probability of 1 - e + e/C: near that cap, hedging is
    # what the loss asks for, not a model that has yet to learn.
    eps = v.hparam("label_smoothing")
    capped, note = False, ""
    if isinstance(eps, (int, float)) and eps > 0 and v.n_classes:
        cap = 1 - eps + eps / v.n_classes
        evidence["label_smoothing_cap"] = cap
        if conf >= 0.8 * cap:
            capped = True
            note = (f" Label smoothing {fmt(eps)} trains the model towards a top probability of {fmt(cap)}, "
                    f"which explains it.")
    settled = v.still_falling <= th.still_falling or capped
    reasons = []
    if v.n_classes:
        uniform = 1 / v.n_classes
        limit = uniform + th.low_confidence_frac * (1 - uniform)
        evidence.update(uniform=uniform, limit=limit)
        if conf < limit:
            reasons.append(f"the mean max-probability on {src} is {fmt(conf)}, close to the {fmt(uniform)} of a uniform "
                           f"guess over {v.n_classes} classes (limit {fmt(limit)})")
    # Early in training confidence lags accuracy (logits are still small): judge it once learning slowed.
    if acc is not None and acc - conf >= th.underconfidence_gap and settled:
        reasons.append(f"the model is right {fmt(acc)} of the time on {src} but only {fmt(conf)} confident")
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
                "heavy label smoothing or dropout is flattening the outputs - reduce them."),
        evidence=evidence, steps=(int(v.tail(conf_s).index[0]), int(conf_s.index[-1])), fix=fix,
        chart="predictions", tags=(T.split_metric(src, "confidence"), T.split_metric(src, "accuracy")),
    )]

"""Prediction rules from the softmax outputs: overconfidence (confidence well above accuracy) and
low_confidence (predictions close to a uniform guess, or well below the accuracy they achieve)."""

from __future__ import annotations

import numpy as np

from runstore import tags as T

from ..finding import Finding
from ..task import LANGUAGE_MODEL
from ..view import RunView, fmt, pct


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


def _over(a: int, b: int) -> str:
    return f"step {a}" if a == b else f"mean over steps {a}-{b}"


def _still_sharpening(v: RunView, split: str, gap: float) -> tuple[str, dict] | None:
    """(sentence, evidence) when the model was still sharpening its predictions on `split` at the
    end, else None: its confidence was still closing the gap to the accuracy (the mean of the last
    third of its records above the mean of the middle third by more than underconfidence_closing
    of the gap), or its loss (the val loss as evaluated, the smoothed train loss) was still falling
    (the last third of its records made more than underconfidence_loss_drop of its whole drop)."""
    th = v.th
    conf = v.split_series(split, "confidence")
    conf = conf[np.isfinite(conf.to_numpy(dtype=float))]
    n = len(conf)
    if n >= 3 and gap > 0:
        mid, last = conf.iloc[n // 3:2 * n // 3], conf.iloc[2 * n // 3:]
        rise = float(last.mean() - mid.mean())
        if rise / gap > th.underconfidence_closing:
            a, b = [int(mid.index[0]), int(mid.index[-1])], [int(last.index[0]), int(last.index[-1])]
            ev = {"confidence_mid": float(mid.mean()), "confidence_mid_steps": a, "confidence_last": float(last.mean()),
                  "confidence_last_steps": b, "closing": rise / gap, "closing_steps": [a[0], b[1]],
                  "underconfidence_closing": th.underconfidence_closing}
            return (f"Its {split} confidence was still rising, from {fmt(ev['confidence_mid'])} ({_over(*a)}) "
                    f"to {fmt(ev['confidence_last'])} ({_over(*b)}), {pct(rise / gap)} of the gap to the accuracy "
                    f"(settled below {pct(th.underconfidence_closing)})", ev)
    s = v.smooth if split == "train" else v.split_series(split, "loss")
    s = s[np.isfinite(s.to_numpy(dtype=float))]
    if len(s) < 3:
        return None
    i = min(int(len(s) * 2 / 3), len(s) - 2)
    first, a, b = float(s.iloc[0]), float(s.iloc[i]), float(s.iloc[-1])
    total = first - b
    if total <= 0 or (a - b) / total <= th.underconfidence_loss_drop:
        return None
    steps = [int(s.index[i]), int(s.index[-1])]
    ev = {"loss_drop_share": (a - b) / total, "loss_drop_share_steps": steps, "loss_first": first,
          "loss_first_step": int(s.index[0]), "loss_from": a, "loss_from_step": steps[0], "loss_to": b,
          "loss_to_step": steps[1], "underconfidence_loss_drop": th.underconfidence_loss_drop}
    loss = "smoothed train loss" if split == "train" else f"{split} loss"
    return (f"The {loss} still fell from {fmt(a)} to {fmt(b)} over steps {steps[0]}-{steps[1]}, "
            f"{pct((a - b) / total)} of its drop from {fmt(first)} at step {int(s.index[0])} (settled below "
            f"{pct(th.underconfidence_loss_drop)})", ev)


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
    one = conf_steps[0] == conf_steps[1]
    where = f"step {conf_steps[0]}" if one else f"steps {conf_steps[0]}-{conf_steps[1]}"
    means = f"at {where}" if one else f"means over {where}"
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
    warn, info = [], []  # reasons worth acting on, and reasons that only say the model is not done
    # A language model's next-symbol distribution stays spread however well it is trained (text has
    # an entropy of its own): closeness to a uniform guess says nothing there.
    if v.n_classes and v.task.kind != LANGUAGE_MODEL:
        uniform = 1 / v.n_classes
        limit = uniform + th.low_confidence_frac * (1 - uniform)
        evidence.update(uniform=uniform, low_confidence_limit=limit)
        if conf < limit:
            (warn if settled else info).append(
                f"the mean max-probability on {src} {'at' if one else 'over'} {where} is {fmt(conf)}, close to the "
                f"{fmt(uniform)} of a uniform guess over {v.n_classes} classes (limit {fmt(limit)})")
    # Confidence lags accuracy while the model still learns: accuracy moves as soon as the right
    # class overtakes, confidence only as the logits keep growing. So underconfidence is judged once
    # the train loss slowed (still_falling), and is only a note while the loss of the split judged
    # still falls (a decaying schedule flattens the train loss while the val loss keeps falling);
    # at the label-smoothing cap it is what the loss asks for, however the loss moves.
    sharpening = None
    if acc is not None and acc - conf >= th.underconfidence_gap and settled:
        evidence.update(underconfidence=acc - conf, underconfidence_steps=[min(conf_steps[0], acc_steps[0]),
                                                                             max(conf_steps[1], acc_steps[1])])
        sharpening = None if capped else _still_sharpening(v, src, acc - conf)
        (info if sharpening else warn).append(
            f"the model is right {fmt(acc)} of the time on {src} but only {fmt(conf)} confident ({means})")
    reasons = warn + info
    if not reasons:
        return []
    severity = "warning" if warn else "info"
    if not settled:
        note = " The loss is still falling, so this may resolve with more training."
    elif sharpening is not None:
        text, ev = sharpening
        evidence.update(ev)
        note = (f" {text}: the model is still sharpening its predictions, and confidence follows accuracy as "
                f"it does.")
    fix = {}
    ls = v.hparam("label_smoothing")
    if isinstance(ls, (int, float)) and ls > 0.15:
        fix["label_smoothing"] = 0.05
    d = v.hparam("dropout")
    if isinstance(d, (int, float)) and d >= 0.6:
        fix["dropout"] = 0.3
    if warn or sharpening is None:
        advice = ("If accuracy is also low the model has not learned yet (see the other findings); if accuracy is "
                  "fine, heavy label smoothing or dropout is flattening the outputs - reduce them"
                  + (" (the fix below)" if fix else "") + ".")
    else:  # only a model that is still sharpening: no setting to blame
        advice = ("Unless another finding explains it (heavy weight decay, label smoothing or dropout also flatten the "
                  "outputs), nothing to change: train longer if you need the scores as probabilities, or calibrate "
                  "them afterwards (temperature scaling).")
        fix = {}
    return [Finding(
        rule="low_confidence", severity=severity, title="Low-confidence predictions",
        message="Predictions hedge: " + "; ".join(reasons) + "." + note,
        advice=advice,
        evidence=evidence, steps=(conf_steps[0], conf_steps[1]), fix=fix,
        chart="predictions", tags=(T.split_metric(src, "confidence"), T.split_metric(src, "accuracy")),
    )]

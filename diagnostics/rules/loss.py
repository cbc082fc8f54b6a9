"""Loss-curve rules: nan_loss, loss_plateau, bad_init_loss, and short_run (too little data)."""

from __future__ import annotations

import numpy as np

from runstore import tags as T

from ..finding import Finding
from ..view import RunView, fmt, pct
from . import fixes


def short_run(v: RunView) -> list[Finding]:
    """Too few loss values for trend rules: say so instead of staying silent."""
    n = len(v.finite_loss)
    if v.enough_loss or (n == 0 and v.first_nonfinite is not None):
        return []
    what = "no train/loss values" if n == 0 else f"only {n} finite train/loss value{'s' * (n != 1)}"
    return [Finding(
        rule="short_run", severity="info", title="Too few steps to judge trends",
        message=(f"The run has {what}; rules that read trends (divergence, plateaus, over- and "
                 f"underfitting) need at least {v.th.min_steps} and were skipped."),
        advice="Let the run go on for more steps (or record more often) and ask again.",
        evidence={"finite_loss_values": n, "min_steps": v.th.min_steps},
        steps=(int(v.loss.index[0]), int(v.loss.index[-1])) if len(v.loss) else None,
        chart="overview", tags=(T.TRAIN_LOSS,),
    )]


def nan_loss(v: RunView) -> list[Finding]:
    """The loss (train or evaluation) became NaN or infinite."""
    s = v.loss
    vals = s.to_numpy()
    bad = ~np.isfinite(vals)
    split = v.eval_split
    eval_loss = v.run.series(T.split_metric(split, "loss")) if split else None
    eval_bad = eval_loss is not None and len(eval_loss) and (~np.isfinite(eval_loss.to_numpy())).any()
    events = v.run.events
    nan_events = events[events["kind"].astype(str).str.contains("nonfinite|nan", case=False)] if len(events) else events
    if not bad.any() and not eval_bad and not len(nan_events):
        return []
    evidence, tags = {}, [T.TRAIN_LOSS]
    if bad.any():
        idx = s.index[bad]
        first, last = int(idx[0]), int(idx[-1])
        before = v.finite_loss[v.finite_loss.index < first]
        evidence.update(first_nonfinite_step=first, nonfinite_steps=int(bad.sum()), recorded_steps=len(vals),
                        last_finite_loss=float(before.iloc[-1]) if len(before) else None,
                        last_finite_step=int(before.index[-1]) if len(before) else None)
        kinds = sorted({"NaN" if np.isnan(x) else "inf" for x in vals[bad]})
        msg = (f"The train loss became {'/'.join(kinds)} at step {first} ({int(bad.sum())} of {len(vals)} recorded "
               f"steps non-finite).")
        if len(before):
            msg += f" Last finite value: {fmt(before.iloc[-1])} at step {int(before.index[-1])}."
        else:
            msg += " It was never finite, so the very first forward pass produced it, before any update."
    else:
        first = last = None
        msg = ""
    if eval_bad:
        e_idx = eval_loss.index[~np.isfinite(eval_loss.to_numpy())]
        msg += f" The {split} loss is non-finite from step {int(e_idx[0])}."
        evidence["first_nonfinite_eval_step"] = int(e_idx[0])
        tags.append(T.split_metric(split, "loss"))
        first = int(e_idx[0]) if first is None else min(first, int(e_idx[0]))
        last = int(e_idx[-1]) if last is None else max(last, int(e_idx[-1]))
    if len(nan_events):
        evidence["nonfinite_events"] = int(len(nan_events))
        if first is None:
            steps = nan_events["step"].dropna()
            if len(steps):
                first, last = int(steps.min()), int(steps.max())
            msg += f" The recorder logged {len(nan_events)} non-finite loss event(s)."
    never_finite = bad.any() and v.finite_loss.empty
    advice = ("Look for the cause among the other findings first (a too-high learning rate is the usual one). "
              "Otherwise clip the gradient norm at 1-10, check inputs and labels for NaN/Inf, and compute the "
              "loss from logits (cross_entropy / log_softmax) rather than log(softmax).")
    if never_finite:
        advice = ("The first loss was already non-finite, before any update: check the inputs and labels for "
                  "NaN/Inf and the loss function (log of zero, division by zero) before tuning anything.")
    fix = {} if never_finite else {**fixes.lr_times(v, 0.1), **fixes.grad_clip(v)}
    return [Finding(
        rule="nan_loss", severity="critical", title="Loss became NaN/Inf", message=msg.strip(), advice=advice,
        evidence=evidence, steps=(first, last) if first is not None else None, fix=fix,
        chart="overview", tags=tuple(tags),
    )]


def loss_plateau(v: RunView) -> list[Finding]:
    """The train loss stopped improving for a long final stretch while still high."""
    th = v.th
    if v.little_progress is None:
        return []
    sm, ref = v.smooth, v.reference_loss
    end, rel = v.little_progress
    # The plateau starts where the smoothed loss first came within plateau_tol of its final level.
    near = sm.to_numpy() <= end * (1 + th.plateau_tol) + 1e-12
    start = int(sm.index[int(np.argmax(near))])
    first, last = int(sm.index[0]), int(sm.index[-1])
    span = max(1, last - first)
    frac = (last - start) / span
    if frac < th.plateau_min_frac:
        return []
    init = v.init_loss if v.init_loss is not None else float(sm.iloc[0])
    learned_first = rel < 0.8  # got clearly below chance level before stalling
    msg = (f"The train loss has stayed around {fmt(end)} since step {start} ({pct(frac)} of the run) without "
           f"improving by more than {pct(th.plateau_tol)}; that is {v.level_text(end)}.")
    if learned_first:
        msg += f" It fell from {fmt(init)} before stalling."
        advice = ("The loss stalled after some progress: decay the learning rate on plateau (divide by 2-10 when "
                  "the loss stops improving) and check whether the model has enough capacity.")
        fix = {"schedule": "plateau"} if v.hparam("schedule") == "constant" else {}
    else:
        msg += (" It never got clearly below chance level" +
                (f" (it came down from {fmt(init)} only to there)." if init > 1.5 * end else "."))
        advice = ("The model is not learning: check the other findings (gradient flow, dead units, learning rate), "
                  "that the labels match the inputs, and that the optimizer receives the model's parameters.")
        fix = {}
    return [Finding(
        rule="loss_plateau", severity="warning", title="Loss plateau", message=msg, advice=advice,
        evidence={"plateau_start": start, "plateau_fraction": frac, "plateau_level": end, "reference_loss": ref,
                  "initial_loss": init, "plateau_tol": th.plateau_tol, "plateau_min_frac": th.plateau_min_frac,
                  "progress_frac": th.progress_frac},
        steps=(start, last), fix=fix, chart="overview", tags=(T.TRAIN_LOSS,),
    )]


def bad_init_loss(v: RunView) -> list[Finding]:
    """The loss before any update is far from ln(C), the loss of a uniform guess over C classes."""
    th = v.th
    chance, init = v.chance_loss, v.init_loss
    if chance is None or init is None:
        return []
    ratio = init / chance
    if th.bad_init_low <= ratio <= th.bad_init_high or abs(init - chance) < th.bad_init_abs:
        return []
    first = int(v.loss.index[0])
    evidence = {"initial_loss": init, "expected_loss": chance, "n_classes": v.n_classes, "ratio": ratio,
                "bad_init_low": th.bad_init_low, "bad_init_high": th.bad_init_high}
    msg = (f"The loss at the start is {fmt(init)}, {fmt(ratio, 2)}x the {fmt(chance)} (= ln {v.n_classes}) of a "
           f"uniform guess over {v.n_classes} classes.")
    bs = v.hparam("batch_size")
    if ratio > th.bad_init_high:
        severity = "warning"
        advice = ("The untrained network is confidently wrong: initial logits are too large. Use a scaled init "
                  "(He for ReLU, Glorot for tanh/sigmoid), normalize the inputs, or scale the last layer's weights "
                  "down.")
        if isinstance(bs, int) and bs > 1 and abs(init / (bs * chance) - 1) < 0.15:
            msg += " That is about batch_size x ln(C): the loss looks summed over the batch instead of averaged."
            advice = "Average the loss over the batch (reduction='mean'), or divide the learning rate by the batch size."
        fix = {**fixes.normalize_inputs_on(v), **fixes.better_init(v)}
        if not fix and v.hparam("init") == "default" and v.hparam("activation") in fixes.RELU_FRIENDLY:
            fix = {"init": "kaiming"}
    else:
        severity = "info"
        advice = ("A loss far below chance before training suggests a pretrained model, a loss that is not "
                  "cross-entropy over these classes, or labels leaking into the inputs.")
        fix = {}
    return [Finding(
        rule="bad_init_loss", severity=severity, title="Unexpected initial loss", message=msg, advice=advice,
        evidence=evidence, steps=(first, first), fix=fix, chart="overview", tags=(T.TRAIN_LOSS,),
    )]

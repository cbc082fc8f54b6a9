"""Loss-curve rules: nan_loss, loss_plateau, bad_init_loss, short_run (too little data) and
live_run (a run still being written: end-of-run verdicts wait)."""

from __future__ import annotations

import numpy as np

from runstore import tags as T

from ..finding import Finding
from ..view import RunView, fmt, pct
from . import fixes

# Rules whose verdict is about how the run ends, with the words the live_run card names them by; a
# live run gets them once enough of it has passed (Thresholds.live_min_progress; RunView.judges_end).
# Every rule that reads RunView.judges_end belongs here (tests/test_diagnostics_rules.py checks it).
END_OF_RUN_VERDICTS = {
    "underfitting": "underfitting",
    "overfitting": "overfitting",
    "loss_plateau": "a final plateau",
    "low_confidence": "low confidence",
    "lr_too_low": "a too-low learning rate (a far too low one is said at once)",
    "lr_schedule_too_fast": "a learning-rate schedule that decays too fast",
    "mismatched_labels": "labels that do not match the inputs",
}
END_OF_RUN_RULES = tuple(END_OF_RUN_VERDICTS)


def short_run(v: RunView) -> list[Finding]:
    """Too few loss values for trend rules: say so instead of staying silent."""
    n = len(v.finite_loss)
    if v.enough_loss or (n == 0 and v.first_nonfinite is not None):
        return []
    evidence = {"finite_loss_values": n, "min_steps": v.th.min_steps}
    if n == 0:
        what = "no finite train/loss values"
    else:
        a, b = int(v.finite_loss.index[0]), int(v.finite_loss.index[-1])
        what = f"only {n} finite train/loss value{'s' * (n != 1)} (steps {a}-{b})"
        evidence["finite_loss_values_steps"] = [a, b]
    return [Finding(
        rule="short_run", severity="info", title="Too few steps to judge trends",
        message=(f"The run has {what}; rules that read trends (divergence, plateaus, over- and "
                 f"underfitting) need at least {v.th.min_steps} and were skipped."),
        advice="Let the run go on for more steps (or record more often) and ask again.",
        evidence=evidence,
        steps=(int(v.loss.index[0]), int(v.loss.index[-1])) if len(v.loss) else None,
        chart="overview", tags=(T.TRAIN_LOSS,),
    )]


def live_run(v: RunView) -> list[Finding]:
    """A live run whose end-of-run verdicts are held back: say which, and until when."""
    if v.judges_end or not v.enough_loss:
        return []
    evidence = {"last_step": v.last_step, "live_min_progress": v.th.live_min_progress}
    if v.total_steps is not None:
        wait = int(np.ceil(v.th.live_min_progress * v.total_steps))
        evidence.update(total_steps=v.total_steps, progress=v.progress, progress_step=v.last_step,
                        judged_from_step=wait)
        when = (f"It is at step {v.last_step} of {v.total_steps} ({pct(v.progress)}); they are given from step "
                f"{wait} ({pct(v.th.live_min_progress)} of the run) on.")
    else:
        when = (f"It is at step {v.last_step}, and the run's metadata does not say how many steps are planned "
                "(total_steps), so they wait until the run ends.")
    return [Finding(
        rule="live_run", severity="info", title="Run in progress: end-of-run verdicts wait",
        message=(f"The run is still training. Verdicts about how it ends ({', '.join(END_OF_RUN_VERDICTS.values())}) "
                 "are held back: early in a run the loss is high because it has not had time yet, and the "
                 "validation loss still jumps around. " + when),
        advice="Watch the loss; ask again later. Blow-ups, NaNs, dead units and gradient problems are reported live.",
        evidence=evidence, steps=(int(v.loss.index[0]), v.last_step), chart="overview", tags=(T.TRAIN_LOSS,),
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
    before_any_update = False
    if bad.any():
        idx = s.index[bad]
        first, last = int(idx[0]), int(idx[-1])
        # The first recorded loss is computed before any update: a NaN there is not the step size.
        before_any_update = first == int(s.index[0])
        before = v.finite_loss[v.finite_loss.index < first]
        evidence.update(first_nonfinite_step=first, nonfinite_count=int(bad.sum()), nonfinite_count_steps=[first, last],
                        recorded_count=len(vals), recorded_count_steps=[int(s.index[0]), int(s.index[-1])])
        kinds = sorted({"NaN" if np.isnan(x) else "inf" for x in vals[bad]})
        msg = (f"The train loss became {'/'.join(kinds)} at step {first} ({int(bad.sum())} of the {len(vals)} recorded "
               f"steps {int(s.index[0])}-{int(s.index[-1])} are non-finite).")
        if len(before):
            evidence.update(last_finite_loss=float(before.iloc[-1]), last_finite_loss_step=int(before.index[-1]))
            msg += f" Last finite value: {fmt(before.iloc[-1])} at step {int(before.index[-1])}."
        else:
            msg += " The first loss was already non-finite: the very first forward pass produced it, before any update."
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
        steps = nan_events["step"].dropna()
        evidence["nonfinite_events"] = int(len(nan_events))
        if len(steps):
            evidence["nonfinite_events_steps"] = [int(steps.min()), int(steps.max())]
        if first is None:
            if len(steps):
                first, last = int(steps.min()), int(steps.max())
            msg += f" The recorder logged {len(nan_events)} non-finite loss event(s)."
    origin = nonfinite_origin(v)
    if origin is not None:
        text, ev, origin_tags = origin
        msg += " " + text
        evidence.update(ev)
        tags += origin_tags
    if before_any_update:
        advice = ("The first loss was already non-finite, before any update: check the inputs and labels for "
                  "NaN/Inf and the loss function (log of zero, division by zero) before tuning anything.")
        fix = {}
    else:
        evidence["lr_divisor"] = 10
        advice = ("Look for the cause among the other findings first (a too-high learning rate is the usual one). "
                  "Otherwise divide the learning rate by 10 and clip the gradient norm (the fix below), check inputs "
                  "and labels for NaN/Inf, and compute the loss from logits (cross_entropy / log_softmax) rather "
                  "than log(softmax).")
        fix = {**fixes.lr_times(v, 0.1), **fixes.grad_clip(v)}
    return [Finding(
        rule="nan_loss", severity="critical", title="Loss became NaN/Inf", message=msg.strip(), advice=advice,
        evidence=evidence, steps=(first, last) if first is not None else None, fix=fix,
        chart="overview", tags=tuple(tags),
    )]


def _first_nonfinite(v: RunView, family: str, names: list[str]) -> tuple[int, list[str]] | None:
    """(the first recorded step at which any of `names` counted non-finite values, those names in
    network order) for act/<module>/nonfinite or grad/<param>/nonfinite."""
    tag_of = T.act if family == "act" else T.grad
    hits = {}
    for n in names:
        s = v.run.series(tag_of(n, "nonfinite")).dropna()
        h = s[s > 0]
        if len(h):
            hits[n] = int(h.index[0])
    if not hits:
        return None
    step = min(hits.values())
    return step, [n for n in names if hits.get(n) == step]


def nonfinite_origin(v: RunView) -> tuple[str, dict, list[str]] | None:
    """Where non-finite values first appeared, from the per-module and per-parameter counts the
    probes keep on sampled steps: forward, the first module in network order whose output held
    NaN/Inf at the first such step (the modules before it were finite, so it made them, or it got
    them from the input when it is the first); backward, the parameter nearest the output whose
    gradient held them (gradients flow back from the output). (text, evidence, tags), or None when
    nothing non-finite was counted."""
    mods = [m for m in v.names("act", "nonfinite")]
    params = v.names("grad", "nonfinite", param=True)
    fwd = _first_nonfinite(v, "act", mods) if mods else None
    bwd = _first_nonfinite(v, "grad", params) if params else None
    if fwd is None and bwd is None:
        return None
    loss_step = v.first_nonfinite
    probes = v.meta.get("probes") if isinstance(v.meta.get("probes"), dict) else {}
    every = probes.get("every") if isinstance(probes.get("every"), int) else None
    forward = fwd is not None and (bwd is None or fwd[0] <= bwd[0])
    step, names = fwd if forward else bwd
    ev, tags = {}, []
    if loss_step is not None and step > loss_step:
        # Sampled after the loss had turned: every layer is non-finite by then, nothing to locate.
        ev.update(nonfinite_recorded_step=step, first_nonfinite_step=loss_step)
        text = (f"Layer statistics first counted NaN/Inf at step {step}, after the loss had turned non-finite at step "
                f"{loss_step}: once an update has written NaN into the weights every layer is non-finite, and layer "
                "statistics are sampled" + (f" every {every} steps" if every else "") + ", so where it started was "
                "not recorded. Record every step around it (probes.attach(..., every=1)) to see the module that "
                "starts it.")
        if every:
            ev["probe_every"] = every
        return text, ev, [T.act(names[0], "nonfinite") if forward else T.grad(names[-1], "nonfinite")]
    if forward:
        m = names[0]
        kind = v.module_type(m) or "module"
        where = (f"the output of {m} ({kind}), the first module of the network: its input batch or its own weights "
                 f"held NaN/Inf" if m == mods[0] else
                 f"the output of {m} ({kind}); the modules before it were finite, so {m} (its weights or what it "
                 f"computes) produced them")
        text = f"Forward, the first non-finite values recorded were at step {step}, in {where}."
        ev.update(nonfinite_module=m, nonfinite_module_step=step)
        tags.append(T.act(m, "nonfinite"))
    else:
        p = names[-1]
        text = (f"Backward, the first non-finite gradients recorded were at step {step}, starting at {p} (the "
                f"parameter nearest the output with NaN/Inf gradients; gradients flow back from the output).")
        ev.update(nonfinite_param=p, nonfinite_param_step=step)
        tags.append(T.grad(p, "nonfinite"))
    return text, ev, tags


def _after_last_sustained(mask: np.ndarray, sustained: int) -> int:
    """Index just after the last run of at least `sustained` True values in a row (0 if none)."""
    start, run = 0, 0
    for i, hit in enumerate(mask):
        run = run + 1 if hit else 0
        if run >= sustained:
            start = i + 1
    return start


def plateau_start(sm, tol: float, sustained: int, far: float) -> int:
    """Index of the first value of the final plateau of the smoothed loss: the first value within
    `tol` above its last value (from there on it improved by less than `tol`), after the loss was
    last clearly elsewhere for `sustained` recorded steps in a row (the smoothing window, so a few
    noisy batches do not count): below the band (it had been lower and climbed back, so it did not
    stay there) or `far` times above it (a blow-up it came back from)."""
    vals = sm.to_numpy(dtype=float)
    end = vals[-1]
    away = (vals < end * (1 - tol) - 1e-12) | (vals > end * far)
    start = min(_after_last_sustained(away, sustained), len(vals) - 1)
    near = vals[start:] <= end * (1 + tol) + 1e-12
    return start + int(np.argmax(near))


def _eval_still_improving(v: RunView, start: int, tol: float) -> bool:
    """Whether the evaluation loss fell by more than twice `tol` (relative) from the first
    evaluation at or after `start` to the last: then the model still improves, whatever the train
    loss does (a language model reading its corpus in order sees easier and harder stretches)."""
    val = v.split_series(v.eval_split, "loss")
    val = val[np.isfinite(val.to_numpy())]
    during = val[val.index >= start]
    if len(during) < 2:
        return False
    first, last = float(during.iloc[0]), float(during.iloc[-1])
    return first > 0 and (first - last) / first > 2 * tol


def loss_plateau(v: RunView) -> list[Finding]:
    """The train loss stopped moving for a long final stretch while still high."""
    th = v.th
    if not v.judges_end or v.little_progress is None:
        return []
    sm, ref = v.smooth, v.reference_loss
    end, rel = v.little_progress
    start = int(sm.index[plateau_start(sm, th.plateau_tol, v.window, th.diverge_factor)])
    first, last = int(sm.index[0]), int(sm.index[-1])
    span = max(1, last - first)
    frac = (last - start) / span
    if frac < th.plateau_min_frac:
        return []
    if _eval_still_improving(v, start, th.plateau_tol):
        return []  # held-out loss still falls: the train loss is not stationary (a corpus walked in order)
    init = v.init_loss if v.init_loss is not None else float(sm.iloc[0])
    init_step = first
    evidence = {"plateau_start_step": start, "plateau_fraction": frac, "plateau_fraction_steps": [start, last],
                "plateau_level": end, "plateau_level_step": last, "smooth_window": v.window,
                "relative_level": rel, "relative_level_step": last, "reference_loss": ref,
                "loss_floor": v.loss_floor, "plateau_tol": th.plateau_tol, "plateau_min_frac": th.plateau_min_frac,
                **v.progress_evidence(), "diverge_factor": th.diverge_factor}
    before = sm[sm.index < start]
    low, low_step = (float(before.min()), int(before.idxmin())) if len(before) else (end, start)
    low_rel = v.relative(low)
    learned_first = rel < 0.8  # got clearly below chance level before stalling
    msg = (f"The smoothed train loss (median of {v.window} steps) has not improved by more than "
           f"{pct(th.plateau_tol)} from step {start} to step {last} ({pct(frac)} of the run), where it is "
           f"{fmt(end)}: {v.level_text(end)}.")
    if not learned_first and low < end * (1 - th.plateau_tol) and low_rel is not None and low_rel < 0.8:
        # It had learned and lost it again: the plateau is where a collapse ended, not a stall.
        msg += f" Before that it had been down to {fmt(low)} at step {low_step}: the run learned, then lost it."
        evidence.update(lowest_before=low, lowest_before_step=low_step)
        advice = ("The loss came back up to this level after having been far lower: look at what broke the run "
                  "(the learning-rate, dead-unit and gradient findings) rather than at the plateau itself.")
        fix = {}
    elif learned_first:
        msg += f" It fell from {fmt(init)} at step {init_step} before stalling."
        evidence.update(initial_loss=init, initial_loss_step=init_step)
        advice = ("The loss stalled after some progress: decay the learning rate when the loss stops improving (the "
                  "'plateau' schedule) and check whether the model has enough capacity.")
        fix = {"schedule": "plateau"} if v.hparam("schedule") == "constant" else {}
    else:
        came_down = init > 1.5 * end
        msg += (" It never got clearly below chance level" +
                (f" (it came down from {fmt(init)} at step {init_step} only to there)." if came_down else "."))
        if came_down:
            evidence.update(initial_loss=init, initial_loss_step=init_step)
        advice = ("The model is not learning: check the other findings (gradient flow, dead units, learning rate), "
                  "that the labels match the inputs, and that the optimizer receives the model's parameters.")
        fix = {}
    return [Finding(
        rule="loss_plateau", severity="warning", title="Loss plateau", message=msg, advice=advice,
        evidence=evidence,
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
    evidence = {"initial_loss": init, "initial_loss_step": first, "expected_loss": chance, "n_classes": v.n_classes,
                "ratio": ratio, "ratio_step": first, "bad_init_low": th.bad_init_low,
                "bad_init_high": th.bad_init_high, "bad_init_abs": th.bad_init_abs}
    msg = (f"The loss at step {first}, before any update, is {fmt(init)}: {fmt(ratio, 2)}x the {fmt(chance)} "
           f"(= ln {v.n_classes}) of a uniform guess over {v.n_classes} classes.")
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

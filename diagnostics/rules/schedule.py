"""lr_schedule_too_fast: a learning-rate schedule that decays within the first part of the run what
it was meant to decay over the whole of it, read from the learning rate the probes record per step
(lr/group0). The common cause is a scheduler written for epochs (StepLR(step_size=30, gamma=0.1),
ExponentialLR(0.95)) whose step() is called after every batch: the learning rate is 1/100 of its
peak after 60 or 90 batches and the loss stops improving there, with the rest of the run spent on
updates too small to change anything."""

from __future__ import annotations

import math

import numpy as np

from runstore import tags as T

from ..finding import Finding
from ..view import RunView, fmt, pct


def _step_size_in_epochs(v: RunView) -> dict:
    """A playground fix: the schedule's step_size read as epochs and given in steps (step_size x
    steps per epoch), when the run says its schedule, step size, batch size and training set size."""
    schedule, size, batch = v.hparam("schedule"), v.hparam("step_size"), v.hparam("batch_size")
    examples = v.meta.get("train_examples")
    subset = v.hparam("train_subset")
    if isinstance(subset, int) and not isinstance(subset, bool) and subset > 0:
        examples = subset if not isinstance(examples, int) else min(subset, examples)
    if schedule not in ("step", "exponential") or not all(
            isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in (size, batch, examples)):
        return {}
    per_epoch = math.ceil(examples / batch)
    new = size * per_epoch
    return {"step_size": new} if per_epoch > 1 and new <= 1_000_000 else {}


def lr_schedule_too_fast(v: RunView) -> list[Finding]:
    """The recorded learning rate fell to 1/lr_collapse_factor of its peak within the first
    lr_collapse_within of the run and stayed down, and the smoothed loss hardly improved from there
    on (less than lr_collapse_gain of its level, and less than it fell while the lr was decaying)."""
    th = v.th
    lr = v.lr_series.dropna()
    lr = lr[np.isfinite(lr.to_numpy(dtype=float))]
    # Whether the loss stopped improving is a verdict on how the run ends: a live run waits for it.
    if (len(lr) < th.min_steps or not v.enough_loss or v.first_nonfinite is not None or not v.minimised
            or not v.judges_end):
        return []
    first, last = int(lr.index[0]), int(lr.index[-1])
    if last <= first:
        return []
    vals = lr.to_numpy(dtype=float)
    cut = int(np.searchsorted(lr.index.to_numpy(), first + th.lr_collapse_within * (last - first), side="right"))
    if cut < 2:
        return []
    i_peak = int(np.argmax(vals[:cut]))
    peak = float(vals[i_peak])
    if peak <= 0:
        return []
    low = np.nonzero(vals[i_peak:cut] <= peak / th.lr_collapse_factor)[0]
    if not len(low):
        return []
    i_c = i_peak + int(low[0])
    # It stays down: a warm restart (SGDR) brings the lr back up, which is a schedule, not this.
    if float(vals[i_c:].max()) > peak / math.sqrt(th.lr_collapse_factor):
        return []
    decaying = np.nonzero(vals[i_peak:i_c + 1] < peak * 0.99)[0]
    i_d = i_peak + int(decaying[0]) if len(decaying) else i_c
    peak_step, c_step, d_step = int(lr.index[i_peak]), int(lr.index[i_c]), int(lr.index[i_d])
    lr_c, lr_end = float(vals[i_c]), float(vals[-1])

    sm = v.smooth
    steps = sm.index.to_numpy()

    def at(step: int) -> tuple[float, int]:
        i = min(len(sm) - 1, int(np.searchsorted(steps, step)))
        return float(sm.iloc[i]), int(sm.index[i])

    # The loss just after the collapse and where it ended: medians of the raw loss over a twentieth of
    # the run (at least a smoothing window) from the collapse on, and over the last tenth; medians of
    # that many batches, so batch noise does not pass for progress.
    loss = v.finite_loss
    after = loss[loss.index >= c_step]
    start_part = after.iloc[:max(v.window, len(loss) // 20)]
    end_part = loss.iloc[-max(v.window, len(loss) // 10):]
    end_part = end_part[end_part.index > int(start_part.index[-1])] if len(start_part) else end_part.iloc[:0]
    if end_part.empty:
        return []
    level_c, c_steps = float(start_part.median()), [int(start_part.index[0]), int(start_part.index[-1])]
    level_end, end_steps = float(end_part.median()), [int(end_part.index[0]), int(end_part.index[-1])]
    gain = (level_c - level_end) / abs(level_c) if level_c != 0 else math.inf
    # Still falling when the decay began: from as many steps before it as the stretch measured after
    # the collapse, the loss fell by half of lr_collapse_gain or more, and by twice what it gained in
    # the whole rest of the run (reduce-on-plateau cuts the lr after the loss stalled: nothing fell).
    i_d = int(np.searchsorted(loss.index.to_numpy(), d_step))
    level_d, level_d_step = at(int(loss.index[max(0, i_d - len(start_part))]))
    fell = level_d - level_c
    if gain >= th.lr_collapse_gain or fell < th.lr_collapse_gain / 2 * abs(level_c) \
            or fell <= 2 * (level_c - level_end):
        return []
    share = (c_step - first) / (last - first)
    fix = _step_size_in_epochs(v)
    drop = peak / lr_c if lr_c > 0 else None  # an lr set to exactly 0 has no ratio to quote
    msg = (f"The learning rate fell from its peak of {fmt(peak)} at step {peak_step} to {fmt(lr_c)} at step {c_step} "
           f"({f'{fmt(drop)}x lower, ' if drop else ''}{pct(share)} of the way through the run) and "
           f"ends at {fmt(lr_end)} at step {last}. The smoothed train loss (median of {v.window} steps) fell from "
           f"{fmt(level_d)} at step {level_d_step}, before the decay began at step {d_step}, to {fmt(level_c)} "
           f"(median over steps {c_steps[0]}-{c_steps[1]}), and ends at {fmt(level_end)} (median over steps "
           f"{end_steps[0]}-{end_steps[1]}): the loss stopped improving when "
           f"the learning rate collapsed, and the rest of the run made updates too small to matter. A schedule "
           f"written for epochs whose step() is called after every batch does this.")
    advice = ("Call scheduler.step() once per epoch, after the epoch's batches (and after optimizer.step()), or, to "
              "step it per batch, give it its period in batches: StepLR's step_size times len(train_loader), "
              "ExponentialLR's gamma to the power 1 / len(train_loader). Check the recorded learning rate "
              "(lr/group0) against the schedule you meant.")
    if fix:
        advice += " In the playground, step_size counts optimizer steps: the fix below reads it as epochs."
    return [Finding(
        rule="lr_schedule_too_fast", severity="warning", title="Learning-rate schedule decays far too fast",
        message=msg, advice=advice,
        evidence={"lr_peak": peak, "lr_peak_step": peak_step, "lr_collapsed": lr_c, "lr_collapsed_step": c_step,
                  "lr_drop_steps": [peak_step, c_step],
                  "collapse_share": share, "collapse_share_steps": [first, c_step, last],
                  **({"lr_drop": drop} if drop else {}), "lr_end": lr_end, "lr_end_step": last,
                  "loss_at_decay": level_d, "loss_at_decay_step": level_d_step, "decay_start_step": d_step,
                  "loss_at_collapse": level_c, "loss_at_collapse_steps": c_steps,
                  "loss_end": level_end, "loss_end_steps": end_steps,
                  "gain_after": gain, "gain_after_steps": [c_steps[0], end_steps[1]], "smooth_window": v.window,
                  "lr_collapse_factor": th.lr_collapse_factor, "lr_collapse_within": th.lr_collapse_within,
                  "lr_collapse_gain": th.lr_collapse_gain},
        steps=(peak_step, last), fix=fix, chart="overview", tags=(T.lr(0), T.TRAIN_LOSS),
    )]

"""Learning-rate rules: lr_too_high (divergence, blow-ups, oversized updates) and lr_too_low."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from runstore import tags as T

from ..finding import Finding
from ..view import RunView, fmt
from . import fixes

UPDATE_TAGS_NOTE = "update_ratio/<weight>"


@dataclass
class Divergence:
    """What the loss curve says about a blow-up (None fields: not observed)."""

    nan_step: int | None = None          # first non-finite loss after a finite start
    nan_kind: str | None = None          # 'after_rise' | 'early' | 'sudden'
    rise_step: int | None = None         # first step where the smoothed loss climbed away from its minimum
    rise_from: float | None = None
    rise_to: float | None = None
    spike_step: int | None = None        # first raw loss above spike_factor x initial loss
    spike_value: float | None = None
    recovered: bool = False              # the finite loss came back near its minimum afterwards
    roughness: float | None = None       # median |dL| / median L over the second half
    no_progress: bool = False

    @property
    def blew_up(self) -> bool:
        return self.nan_kind in ("after_rise", "early") or self.rise_step is not None or self.spike_step is not None


def divergence(v: RunView) -> Divergence:
    """Analyse the train loss for the signatures of a too-large step size."""
    th, d = v.th, Divergence()
    s, sm = v.finite_loss, v.smooth
    if s.empty:
        return d
    init = v.init_loss if v.init_loss is not None else float(s.iloc[0])
    first_finite = int(s.index[0])

    # Non-finite loss after a finite start: the updates produced it (the first loss is computed
    # before any update, so a NaN there is a data or model problem, not the step size).
    nan = v.first_nonfinite
    if nan is not None and nan > first_finite:
        d.nan_step = nan
        before = s[s.index < nan]
        sm_before = sm[sm.index < nan]
        best = float(sm_before.min())
        progress = (init - best) / abs(init) if init else 0.0
        tail = before.iloc[-max(3, v.window):]
        rose = float(tail.max()) >= max(th.diverge_factor * best, best + th.diverge_abs_frac * abs(init))
        if rose:
            d.nan_kind = "after_rise"
        elif progress < th.early_nan_progress:
            d.nan_kind = "early"
        else:
            d.nan_kind = "sudden"

    if len(sm) >= 3:
        runmin = sm.cummin()
        climbing = (sm >= th.diverge_factor * runmin) & (sm - runmin >= th.diverge_abs_frac * abs(init))
        if climbing.any():
            t = int(climbing.idxmax())
            d.rise_step = t
            d.rise_from = float(runmin.loc[t])
            d.rise_to = float(sm.loc[sm.index >= t].max())
            end = float(sm.iloc[-1])
            d.recovered = end <= d.rise_from * (1 + th.plateau_tol) + 0.05 * abs(init)

    # Raw spikes after the first few updates, ignored when the loss is tiny in absolute terms.
    after = s.iloc[th.init_steps:]
    big = after[after > th.spike_factor * max(abs(init), 1e-8)]
    if len(big) and init > 0:
        d.spike_step, d.spike_value = int(big.index[0]), float(big.iloc[0])

    half = s.iloc[len(s) // 2:]
    if len(half) >= 4:
        level = float(np.median(np.abs(half.to_numpy())))
        if level > 0:
            d.roughness = float(np.median(np.abs(np.diff(half.to_numpy())))) / level
    rel = v.relative(float(sm.iloc[-1])) if len(sm) else None
    d.no_progress = rel is not None and rel > th.progress_frac
    return d


def update_ratio_p90(v: RunView) -> float | None:
    """The large updates of the first half of the run: 90th percentile over recorded steps of the
    median (over layer weights) update-to-weight ratio. Decaying schedules do not lower it."""
    r = v.update_ratio_median
    if r.empty:
        return None
    return float(r.iloc[: max(1, (len(r) + 1) // 2)].quantile(0.9))


def _died_during_training(v: RunView) -> list[str]:
    """ReLU layers that were alive at the first sample and mostly dead at the end."""
    from .activations import _relu_modules

    out = []
    for m in _relu_modules(v):
        s = v.run.series(T.act(m, "frac_dead")).dropna()
        if len(s) >= 3 and s.iloc[0] < v.th.dead_warn and float(v.tail(s).median()) >= v.th.dead_warn:
            out.append(m)
    return out


def lr_too_high(v: RunView) -> list[Finding]:
    """The step size is too large: the loss blows up, climbs, spikes or thrashes, or every update
    rewrites a large part of the weights."""
    th = v.th
    if v.finite_loss.empty:
        return []
    d = divergence(v)
    r_early = update_ratio_p90(v)
    r_high = r_early is not None and r_early > th.update_ratio_high
    died = _died_during_training(v) if r_high else []
    oscillating = d.roughness is not None and d.roughness > th.oscillation_ratio and d.no_progress

    # A loss that starts far above chance before any update is an init/data problem; a later
    # blow-up there is only blamed on the step size when the updates themselves are oversized
    # or the loss climbs above where it started.
    init_bad = (v.chance_loss is not None and v.init_loss is not None
                and v.init_loss > th.bad_init_high * v.chance_loss
                and v.init_loss - v.chance_loss >= th.bad_init_abs)
    init = v.init_loss if v.init_loss is not None else float(v.finite_loss.iloc[0])
    # After a bad start the step size is only blamed for a blow-up that follows real progress:
    # the loss first got below chance level, then climbed above where it started.
    later = v.finite_loss.iloc[1:]
    reached_sane = v.chance_loss is not None and len(v.smooth) and float(v.smooth.min()) < v.chance_loss
    climbed_above_start = bool(len(later)) and float(later.max()) > init * th.diverge_factor and bool(reached_sane)

    reasons, severity = [], None
    # With a sound start, any blow-up counts; with a bad start, only one that climbs above it.
    allowed = not init_bad
    if d.nan_kind in ("after_rise", "early") and (allowed or d.nan_kind == "after_rise" and climbed_above_start):
        how = "after climbing" if d.nan_kind == "after_rise" else "before the run had learned anything"
        reasons.append(f"the loss became non-finite at step {d.nan_step} {how}")
        severity = "critical"
    if d.rise_step is not None and (allowed or climbed_above_start):
        state = "and came back down" if d.recovered else "and stayed up"
        reasons.append(f"the smoothed loss climbed from {fmt(d.rise_from)} to {fmt(d.rise_to)} starting at step "
                       f"{d.rise_step} {state}")
        severity = severity or ("warning" if d.recovered else "critical")
    if d.spike_step is not None and (allowed or climbed_above_start) and not reasons:
        reasons.append(f"the loss spiked to {fmt(d.spike_value)} ({fmt(d.spike_value / init, 2)}x the initial "
                       f"{fmt(init)}) at step {d.spike_step}")
        severity = "warning"
    if oscillating and allowed and (r_high or r_early is None) and not reasons:
        reasons.append(f"the loss thrashes (median step-to-step change {fmt(d.roughness, 2)} of its level) "
                       f"without improving")
        severity = "warning"
    if r_high and allowed and not reasons and (d.no_progress or died):
        what = (f"ReLU layers {', '.join(died)} died during training" if died else "the loss is not improving")
        reasons.append(f"{what} while updates change the weights by up to {fmt(r_early)} of their norm per step")
        severity = "warning"
    if not reasons:
        return []

    r = v.update_ratio_median
    r_high_step = int(r[r > th.update_ratio_high].index[0]) if r_high else None
    candidates = [x for x in (d.rise_step, d.spike_step, d.nan_step, r_high_step) if x is not None]
    first = min(candidates) if candidates else int(v.finite_loss.index[0])
    last = int(v.loss.index[-1])
    lr_at = v.lr_at(first)
    evidence = {
        "lr": v.lr, "lr_at_blowup": lr_at, "initial_loss": init, "first_nonfinite_step": d.nan_step,
        "rise_step": d.rise_step, "rise_from": d.rise_from, "rise_to": d.rise_to,
        "spike_step": d.spike_step, "spike_value": d.spike_value, "loss_roughness": d.roughness,
        "update_ratio_p90_first_half": r_early, "update_ratio_high": th.update_ratio_high,
        "died_during_training": died,
        "update_ratio_guide_cs231n": th.update_ratio_guide_cs231n,
        "update_ratio_guide_notes": th.update_ratio_guide_notes,
        "diverge_factor": th.diverge_factor, "spike_factor": th.spike_factor,
    }
    if died and not any("died" in x for x in reasons):
        reasons.append(f"ReLU layers {', '.join(died)} died during training")
    msg = "; ".join(reasons) + "."
    msg = msg[0].upper() + msg[1:]
    if r_early is not None:
        msg += (f" The larger updates of the first half change the weights by {fmt(r_early)} of their norm per "
                f"step (90th percentile of the median over layers; guide ~{fmt(th.update_ratio_guide_cs231n)} per "
                f"CS231n, ~{fmt(th.update_ratio_guide_notes)} per the tuning notes).")
    if v.lr is not None and lr_at is not None and lr_at > 1.5 * (v.lr_series.dropna().iloc[0] if len(v.lr_series.dropna()) else lr_at):
        msg += f" The schedule had raised the learning rate to {fmt(lr_at)} when this began."
    elif v.lr is not None:
        msg += f" Learning rate: {fmt(v.lr)}."
    factor = 0.1 if severity == "critical" else 1 / 3
    advice = ("Divide the learning rate by 3 to 10 (the fix below uses "
              f"{'10' if factor == 0.1 else '3'}); if it must stay high, add warmup and clip the gradient "
              "norm at 1-10.")
    tags = (T.TRAIN_LOSS, T.lr(0)) + ((UPDATE_TAGS_NOTE,) if r_early is not None else ())
    return [Finding(
        rule="lr_too_high", severity=severity, title="Learning rate too high",
        message=msg, advice=advice, evidence=evidence, steps=(first, last), layers=(),
        fix=fixes.lr_times(v, factor), chart="overview", tags=tags,
    )]


def lr_too_low(v: RunView) -> list[Finding]:
    """The step size is too small: updates barely move the weights and the loss creeps down."""
    th = v.th
    if v.little_progress is None:
        return []
    sm, ref = v.smooth, v.reference_loss
    end, rel = v.little_progress
    r = v.update_ratio_median
    evidence = {"final_loss": end, "reference_loss": ref, "progress_frac": th.progress_frac, "lr": v.lr,
                "update_ratio_low": th.update_ratio_low,
                "update_ratio_guide_cs231n": th.update_ratio_guide_cs231n,
                "update_ratio_guide_notes": th.update_ratio_guide_notes}
    if not r.empty:
        r_hi = update_ratio_p90(v)
        evidence["update_ratio_p90_first_half"] = r_hi
        if r_hi >= th.update_ratio_low:
            return []
        factor = min(10.0, max(3.0, th.update_ratio_guide_cs231n / max(r_hi, 1e-12)))
        msg = (f"Updates change the weights by at most {fmt(r_hi)} of their norm per step (90th percentile, first "
               f"half), below the {fmt(th.update_ratio_low)} floor (guide ~{fmt(th.update_ratio_guide_cs231n)} "
               f"per CS231n, ~{fmt(th.update_ratio_guide_notes)} per the tuning notes), and the loss only reached "
               f"{fmt(end)} ({v.level_text(end)}).")
        tags = (T.TRAIN_LOSS, UPDATE_TAGS_NOTE)
        chart = "updates"
    else:
        # No update ratios (e.g. a TensorBoard log): a slow, still-steady decline is the signature.
        start = float(sm.iloc[0])
        total = start - end
        third = sm.iloc[int(len(sm) * 2 / 3)]
        late = float(third) - end
        if total <= 0.01 * abs(start) or late < 0.25 * total:
            return []
        evidence.update({"loss_drop_total": total, "loss_drop_last_third": late})
        factor = 3.0
        msg = (f"The loss is still falling at the same pace at the end ({fmt(late)} of its {fmt(total)} drop came in "
               f"the last third) but only reached {fmt(end)} ({v.level_text(end)}).")
        tags = (T.TRAIN_LOSS,)
        chart = "overview"
    if v.lr is not None:
        msg += f" Learning rate: {fmt(v.lr)}."
    return [Finding(
        rule="lr_too_low", severity="warning", title="Learning rate too low",
        message=msg,
        advice=(f"Multiply the learning rate by 3 to 10 (the fix uses {fmt(factor, 2)}x) and aim for update ratios "
                "around 1e-3 to 1e-2; a short learning-rate range test finds the largest stable value."),
        evidence=evidence, steps=(int(sm.index[0]), int(sm.index[-1])), layers=(),
        fix=fixes.lr_times(v, factor), chart=chart, tags=tags,
    )]

"""Learning-rate rules: lr_too_high (divergence, blow-ups, oversized updates) and lr_too_low.

Their update-size evidence is the Updates page's table (diagnostics.verdicts.UPDATES): lr_too_high
needs most layer weights at "large" or above, an update-based lr_too_low most at "too small", so a
card about the step size never contradicts the table next to it. Two exceptions, both said on the
card: layer weights without any gradient are left out (their updates are zero whatever the step
size), and lr_too_high also takes a blow-up of the loss preceded by updates that outgrew the weights
(update_ratio_rewrite), which the table's 90th percentile over the run leaves out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from runstore import tags as T

from .. import verdicts as V
from ..finding import Finding
from ..view import RunView, fmt, layer_list
from . import fixes
from .gradients import tiny_gradients

UPDATE_TAGS_NOTE = "update_ratio/<weight>"
LARGE_WORDS = (V.LARGE, V.TOO_LARGE)


@dataclass
class Divergence:
    """What the loss curve says about a blow-up (None fields: not observed). Levels come from the
    smoothed loss (RunView.smooth), each with the step it was read at."""

    nan_step: int | None = None          # first non-finite loss after a finite start
    nan_kind: str | None = None          # 'after_rise' | 'early' | 'sudden'
    rise_step: int | None = None         # first step where the smoothed loss climbed away from its minimum
    rise_from: float | None = None       # the minimum it climbed from ...
    rise_from_step: int | None = None    # ... and where it was reached
    rise_to: float | None = None         # the highest it climbed to afterwards ...
    rise_to_step: int | None = None
    end: float | None = None             # the smoothed loss at the last finite step
    end_step: int | None = None
    recovered: bool = False              # the finite loss came back near its minimum afterwards
    spike_step: int | None = None        # first raw loss above spike_factor x initial loss
    spike_value: float | None = None
    roughness: float | None = None       # median |dL| / median L over the second half
    roughness_steps: tuple[int, int] | None = None
    no_progress: bool = False
    noise: float = 0.0                   # the loss's own batch-to-batch noise (robust sigma of raw - smooth)

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

    # Batch-to-batch noise of the loss (1.4826 x the median absolute deviation of the raw loss from
    # its rolling median: a robust standard deviation): a rise or a spike counts only beyond it, so a
    # high but working learning rate whose batches are noisy is not read as a blow-up.
    resid = np.abs(s.to_numpy(dtype=float) - sm.reindex(s.index).to_numpy(dtype=float))
    d.noise = float(1.4826 * np.median(resid)) if len(resid) else 0.0
    if len(sm) >= 3:
        runmin = sm.cummin()
        climbing = ((sm >= th.diverge_factor * runmin) & (sm - runmin >= th.diverge_abs_frac * abs(init))
                    & (sm - runmin >= th.noise_band * d.noise))
        if climbing.any():
            t = int(climbing.idxmax())
            d.rise_step = t
            d.rise_from = float(runmin.loc[t])
            d.rise_from_step = int(sm.loc[:t].idxmin())
            after = sm.loc[sm.index >= t]
            d.rise_to, d.rise_to_step = float(after.max()), int(after.idxmax())
            d.end, d.end_step = float(sm.iloc[-1]), int(sm.index[-1])
            d.recovered = d.end <= d.rise_from * (1 + th.plateau_tol) + 0.05 * abs(init)

    # Raw spikes after the first few updates, ignored when the loss is tiny in absolute terms.
    after = s.iloc[th.init_steps:]
    level = sm.reindex(after.index)
    big = after[(after > th.spike_factor * max(abs(init), 1e-8)) & (after - level >= 2 * th.noise_band * d.noise)]
    if len(big) and init > 0:
        d.spike_step, d.spike_value = int(big.index[0]), float(big.iloc[0])

    half = s.iloc[len(s) // 2:]
    if len(half) >= 4:
        level = float(np.median(np.abs(half.to_numpy())))
        if level > 0:
            d.roughness = float(np.median(np.abs(np.diff(half.to_numpy())))) / level
            d.roughness_steps = (int(half.index[0]), int(half.index[-1]))
    rel = v.relative(float(sm.iloc[-1])) if len(sm) else None
    d.no_progress = v.no_progress(rel)
    return d


def _rows_span(rows: list[V.LayerVerdict]) -> list[int]:
    return [min(x.steps[0] for x in rows), max(x.steps[1] for x in rows)]


def update_sentence(rows: list[V.LayerVerdict], words, said: str, th) -> tuple[str, dict]:
    """'The updates of fc1.weight and fc2.weight read too large on the Updates page (...)' and its
    evidence, from the layer weights whose update verdict is one of `words`."""
    hit = V.flagged(rows, words)
    typical = V.typical_update(rows)
    evidence = {"typical_update": typical, "typical_update_steps": _rows_span(rows), "layers_judged": len(rows),
                "update_ratio_guide_cs231n": th.update_ratio_guide_cs231n,
                "update_ratio_guide_notes": th.update_ratio_guide_notes, "verdicts": V.as_evidence(rows)}
    a, b = evidence["typical_update_steps"]
    if V.TOO_SMALL in words:
        band = f"too small below {fmt(th.update_ratio_low)}"
        evidence["update_ratio_low"] = th.update_ratio_low
    else:
        band = f"large above {fmt(th.update_ratio_large)}, too large above {fmt(th.update_ratio_high)}"
        evidence.update(update_ratio_large=th.update_ratio_large, update_ratio_high=th.update_ratio_high)
    text = (f"The updates of {layer_list([x.name for x in hit])} read {said} on the Updates page: a typical layer "
            f"weight moves by {fmt(typical)} of its norm per step (steps {a}-{b}; {band}; guides "
            f"~{fmt(th.update_ratio_guide_cs231n)} per CS231n, ~{fmt(th.update_ratio_guide_notes)} per the tuning "
            f"notes).")
    return text, evidence


@dataclass
class Growth:
    """How much the layer weights grew over the run (weight norm at the last record / at the first)."""

    typical: float                  # median over layer weights
    steps: tuple[int, int]          # first and last record it spans
    per_layer: dict


def weight_growth(v: RunView) -> Growth | None:
    """The growth of the layer weights that feed no normalization layer (those are scale-invariant:
    their norm drifts freely under any step size), from their first to their last recorded norm."""
    per, spans = {}, []
    for p in v.weight_params:
        if v.layers.model.feeds_norm(p):
            continue
        s = v.run.series(T.weight(p, "norm")).dropna()
        s = s[np.isfinite(s.to_numpy(dtype=float))]
        if len(s) >= 3 and s.iloc[0] > 0:
            per[p] = float(s.iloc[-1] / s.iloc[0])
            spans.append((int(s.index[0]), int(s.index[-1])))
    if not per:
        return None
    return Growth(float(np.median(list(per.values()))), (min(a for a, _ in spans), max(b for _, b in spans)), per)


def _died_during_training(v: RunView) -> list[str]:
    """ReLU layers the dead-unit table calls dead that were alive at their first sample."""
    out = []
    for row in V.flagged(v.verdicts(V.DEAD_UNITS), (V.DEAD,)):
        s = v.run.series(T.act(row.name, "frac_dead")).dropna()
        if len(s) >= 3 and s.iloc[0] < v.th.dead_warn:
            out.append(row.name)
    return out


def rewritten_before_blowup(v: RunView, rows: list[V.LayerVerdict], d: Divergence) -> tuple[int, dict] | None:
    """(step, {layer weight: update ratio}) when most judged layer weights moved by update_ratio_rewrite
    of their norm or more in one recorded update, at or before the step where the loss blew up. The
    Updates table summarises the whole run (a 90th percentile), where one such step is an outlier,
    and the weights it inflated read ordinary ratios afterwards (Adam moves each element by about
    the learning rate whatever the weight's size): a too-high Adam step size on a GPT-2 init reads
    15x at step 1, then 0.05."""
    starts = [x for x in (d.nan_step if d.nan_kind in ("after_rise", "early") else None, d.rise_step, d.spike_step)
              if x is not None]
    if not starts:
        return None
    until, hit = min(starts), {}
    for x in rows:
        s = v.run.series(T.update_ratio(x.name))
        s = s[(s.index <= until) & np.isfinite(s.to_numpy(dtype=float))]
        big = s[s >= v.th.update_ratio_rewrite]
        if len(big):
            hit[x.name] = (int(big.index[0]), float(big.iloc[0]))
    if 2 * len(hit) <= len(rows):
        return None
    return max(step for step, _ in hit.values()), {name: ratio for name, (_, ratio) in hit.items()}


# What a lost run's learning rate is divided by: an order of magnitude, then look again.
LOST_RUN_DIVISOR = 10


def lr_too_high(v: RunView) -> list[Finding]:
    """The step size is too large: the loss blows up, climbs, spikes or thrashes, or every update
    rewrites a large part of the weights. When update ratios were recorded, most layer weights
    must read "large" or "too large": a loss that climbs under ordinary updates has another cause
    (one gradient spike, the data), which other findings name. Unless they read large anyway, layer
    weights without any gradient are left out; and a blow-up right after updates that outgrew the
    weights (rewritten_before_blowup) counts, however the rest of the run reads."""
    th = v.th
    if v.finite_loss.empty:
        return []
    rows = v.verdicts(V.UPDATES)
    large = V.majority(rows, LARGE_WORDS)
    if not large:
        # Layer weights without any gradient (no_gradient, e.g. behind ReLUs a blow-up killed) move
        # by zero whatever the step size: unless their updates read large anyway, they say nothing
        # about it (as in lr_too_low), and the others decide.
        rows = V.with_gradient(rows, v.verdicts(V.GRADIENT_FLOW))
        large = V.majority(rows, LARGE_WORDS)
    d = divergence(v)
    rewrote = None if large or not rows else rewritten_before_blowup(v, rows, d)
    if rows and not large and rewrote is None:
        return []
    r_high = bool(rows) and V.majority(rows, (V.TOO_LARGE,))
    died = _died_during_training(v) if r_high else []
    oscillating = d.roughness is not None and d.roughness > th.oscillation_ratio and d.no_progress

    # A loss that starts far above chance before any update is an init/data problem; a later
    # blow-up there is only blamed on the step size when the updates themselves are oversized
    # or the loss climbs above where it started.
    init_bad = (v.chance_loss is not None and v.init_loss is not None
                and v.init_loss > th.bad_init_high * v.chance_loss
                and v.init_loss - v.chance_loss >= th.bad_init_abs)
    init = v.init_loss if v.init_loss is not None else float(v.finite_loss.iloc[0])
    init_step = int(v.finite_loss.index[0])
    # After a bad start the step size is only blamed for a blow-up that follows real progress:
    # the loss first got below chance level, then climbed above where it started.
    later = v.finite_loss.iloc[1:]
    reached_sane = v.chance_loss is not None and len(v.smooth) and float(v.smooth.min()) < v.chance_loss
    climbed_above_start = bool(len(later)) and float(later.max()) > init * th.diverge_factor and bool(reached_sane)

    reasons, severity, evidence, starts = [], None, {}, []
    # With a sound start, any blow-up counts; with a bad start, only one that climbs above it. A loss
    # the run does not minimise (a GAN's) says nothing about the step size by climbing.
    allowed = not init_bad and v.minimised
    climbed_above_start = climbed_above_start and v.minimised
    if d.nan_kind in ("after_rise", "early") and (allowed or d.nan_kind == "after_rise" and climbed_above_start):
        how = "after climbing" if d.nan_kind == "after_rise" else "before the run had learned anything"
        reasons.append(f"the loss became non-finite at step {d.nan_step} {how}")
        evidence["first_nonfinite_step"] = d.nan_step
        severity, starts = "critical", starts + [d.nan_step]
    if d.rise_step is not None and (allowed or climbed_above_start):
        state = "came back down to" if d.recovered else "was still at"
        then = f" and {state} {fmt(d.end)} at step {d.end_step}" if d.end_step != d.rise_to_step else ""
        reasons.append(f"the smoothed loss (median of {v.window} steps) climbed from {fmt(d.rise_from)} at step "
                       f"{d.rise_from_step} to {fmt(d.rise_to)} at step {d.rise_to_step}{then}")
        evidence.update(smooth_window=v.window, rise_step=d.rise_step, rise_from=d.rise_from,
                        rise_from_step=d.rise_from_step, rise_to=d.rise_to, rise_to_step=d.rise_to_step,
                        final_smoothed_loss=d.end, final_smoothed_loss_step=d.end_step,
                        diverge_factor=th.diverge_factor, diverge_abs_frac=th.diverge_abs_frac)
        severity, starts = severity or ("warning" if d.recovered else "critical"), starts + [d.rise_step]
    if d.spike_step is not None and (allowed or climbed_above_start) and not reasons:
        ratio = d.spike_value / init
        reasons.append(f"the loss spiked to {fmt(d.spike_value)} at step {d.spike_step}, {fmt(ratio, 2)}x the "
                       f"initial {fmt(init)} (step {init_step})")
        evidence.update(spike_value=d.spike_value, spike_value_step=d.spike_step, spike_over_initial=ratio,
                        spike_over_initial_step=d.spike_step, initial_loss=init, initial_loss_step=init_step,
                        spike_factor=th.spike_factor)
        severity, starts = "warning", starts + [d.spike_step]
    if oscillating and allowed and (r_high or not rows) and not reasons:
        a, b = d.roughness_steps
        reasons.append(f"the loss thrashes without improving: its median step-to-step change is "
                       f"{fmt(d.roughness, 2)} of its level over steps {a}-{b}")
        evidence.update(loss_roughness=d.roughness, loss_roughness_steps=list(d.roughness_steps),
                        oscillation_ratio=th.oscillation_ratio, **v.progress_evidence())
        severity, starts = "warning", starts + [a]
    if r_high and not init_bad and not reasons and (d.no_progress and v.minimised or died):
        reasons.append(f"ReLU layers {layer_list(died)} died during training" if died
                       else "the loss is not improving")
        evidence.update(v.progress_evidence())
        severity = "warning"
    if rewrote is not None:
        if not reasons:
            return []  # one oversized step is the evidence of a blow-up only where the loss shows one
        step, ratios = rewrote
        ratio = float(np.median(list(ratios.values())))
        reasons.append(f"single updates up to step {step} moved {layer_list(list(ratios))} by {fmt(ratio)}x their norm "
                       f"(median; from {fmt(th.update_ratio_rewrite)}x a step outgrows the weight itself), which the "
                       f"Updates page's summary over the run does not show")
        evidence.update(rewrite_ratio=ratio, rewrite_ratio_step=step, rewrite_layers=ratios,
                        update_ratio_rewrite=th.update_ratio_rewrite)
    growth = weight_growth(v) if rows and not reasons and not init_bad else None
    end_rel = v.relative(float(v.smooth.iloc[-1])) if len(v.smooth) else None
    fits = v.floor_known and end_rel is not None and end_rel < th.fits_well
    if growth is not None and growth.typical >= th.lr_weight_growth and not fits:
        # A step size too large to blow the loss up still inflates the weights it rewrites.
        a, b = growth.steps
        reasons.append(f"the layer weights grew {fmt(growth.typical)}x from step {a} to step {b} (median over the "
                       f"layer weights not followed by a normalization layer; limit {fmt(th.lr_weight_growth)}x) under "
                       f"these updates")
        evidence.update(weight_growth=growth.typical, weight_growth_steps=[a, b], lr_weight_growth=th.lr_weight_growth,
                        fits_well=th.fits_well)
        severity, starts = "warning", starts + [a]
    if not reasons:
        return []
    if died and not any("died" in x for x in reasons):
        reasons.append(f"ReLU layers {layer_list(died)} died during training")
    if died:
        evidence["died_during_training"] = died
    # Layers the step size killed during training (ReLUs the dead-unit table calls critically dead,
    # layer weights whose gradient stopped after the first record) leave a network that no longer
    # learns, however the loss looks: the run is lost, as after a NaN. These consequences would lift
    # the finding to critical in ranking; the divisor below has to know it already.
    first_record = int(v.loss.index[0])
    killed = [x.name for x in V.flagged(v.verdicts(V.DEAD_UNITS), (V.DEAD,)) if x.name in died and x.severity == "critical"]
    stopped = [x.name for x in V.flagged(v.verdicts(V.GRADIENT_FLOW), (V.NO_GRADIENT,))
               if x.since is not None and x.since > first_record]
    if stopped:
        reasons.append(f"{layer_list(stopped)} stopped getting any gradient during training (see no_gradient)")
        evidence["no_gradient_since_training"] = stopped
    if killed or stopped:
        severity = "critical"
    msg = "; ".join(reasons) + "."
    msg = msg[0].upper() + msg[1:]
    layers = ()
    if rows and large:
        text, ev = update_sentence(rows, LARGE_WORDS, "large or too large", th)
        msg += " " + text
        evidence.update(ev)
        layers = tuple(x.name for x in V.flagged(rows, LARGE_WORDS))
        big = [x.since for x in V.flagged(rows, (V.TOO_LARGE,)) if x.since is not None]
        if r_high and big:
            starts.append(min(big))
    first = min(starts) if starts else int(v.finite_loss.index[0])
    last = int(v.loss.index[-1])
    lr_at = v.lr_at(first)
    lr_start = v.lr_series.dropna()
    if v.lr is not None and lr_at is not None and lr_at > 1.5 * (lr_start.iloc[0] if len(lr_start) else lr_at):
        msg += f" The schedule had raised the learning rate to {fmt(lr_at)} by step {first}."
        evidence.update(lr_at_blowup=lr_at, lr_at_blowup_step=first)
    elif v.lr is not None:
        msg += f" Learning rate: {fmt(v.lr)}."
    evidence["lr"] = v.lr
    # The divisor follows the final severity: a run the step size lost (a NaN, a climb that stayed,
    # layers it killed) needs an order of magnitude, else a third; where the updates say how far over
    # they are, enough to bring the typical one under update_ratio_large (to one significant digit).
    divisor = LOST_RUN_DIVISOR if severity == "critical" else 3
    aim = ""
    typical = evidence.get("typical_update")
    if typical is not None and typical > th.update_ratio_high:
        over = int(fixes.round_sig(typical / th.update_ratio_large, 1))
        # Ratios measured in a run that blew up grow without bound (the weights did too): trust them
        # for at most the order of magnitude a lost run is given.
        over = min(over, LOST_RUN_DIVISOR)
        if over > divisor:
            divisor = over
            aim = f", so that the typical update gets under {fmt(th.update_ratio_large)} of the weights"
    if rewrote is not None:
        # Those first updates scale with the learning rate (Adam's are about lr per element): divide
        # it until they stay under update_ratio_high, to one significant digit.
        over = int(fixes.round_sig(evidence["rewrite_ratio"] / th.update_ratio_high, 1))
        if over > divisor:
            divisor = over
            aim = f", so that single updates stay under {fmt(th.update_ratio_high)} of the weights"
        evidence["update_ratio_high"] = th.update_ratio_high
    evidence["lr_divisor"] = divisor
    advice = (f"Divide the learning rate by {divisor} (the fix below){aim}; if it must stay this high, add warmup and "
              "clip the gradient norm.")
    # Only tags the run has: a loop without an optimizer records no learning rate.
    tags = (T.TRAIN_LOSS,) + ((T.lr(0),) if len(v.lr_series.dropna()) else ()) + ((UPDATE_TAGS_NOTE,) if rows else ())
    return [Finding(
        rule="lr_too_high", severity=severity, title="Learning rate too high",
        message=msg, advice=advice, evidence=evidence, steps=(first, last), layers=layers,
        fix=fixes.lr_times(v, 1 / divisor), chart="overview", tags=tags,
    )]


def lr_too_low(v: RunView) -> list[Finding]:
    """The step size is too small: updates barely move the weights and the loss creeps down.
    Layer weights without any gradient (the Gradients page's "no gradient") are left out: their
    updates are zero whatever the step size, and no_gradient names them. Updates far too small
    (update_ratio_far_low) while the gradients flow are critical, and a live run gets that verdict
    before live_min_progress: its update ratios already say the run cannot learn. Not when the
    updates are tiny because the gradients are (gradients.tiny_gradients: no usable learning rate
    would lift them, and vanishing_gradients names the cause): a larger step size would not fix it."""
    th = v.th
    if v.little_progress is None or tiny_gradients(v) is not None:
        return []
    early = not v.judges_end  # a live run before live_min_progress: only "far too low" may be said
    sm = v.smooth
    end, rel = v.little_progress
    end_step = int(sm.index[-1])
    level = v.level_text(end)
    evidence = {"final_smoothed_loss": end, "final_smoothed_loss_step": end_step, "smooth_window": v.window,
                "relative_level": rel, "relative_level_step": end_step, "reference_loss": v.reference_loss,
                "loss_floor": v.loss_floor, **v.progress_evidence(), "lr": v.lr}
    all_rows = v.verdicts(V.UPDATES)
    rows = V.with_gradient(all_rows, v.verdicts(V.GRADIENT_FLOW))
    if all_rows:
        if not V.majority(rows, (V.TOO_SMALL,)):
            return []
        text, ev = update_sentence(rows, (V.TOO_SMALL,), "too small", th)
        evidence.update(ev)
        typical = ev["typical_update"]
        far = _far_too_low(v, typical, early)
        if early and not far:
            return []
        factor = min(10.0, max(3.0, th.update_ratio_guide_cs231n / max(typical, 1e-12)))
        msg = (f"{text} The smoothed loss (median of {v.window} steps) only reached {fmt(end)} at step {end_step} "
               f"({level}).")
        if far:
            evidence["update_ratio_far_low"] = th.update_ratio_far_low
            msg += (f" That is far too low (below {fmt(th.update_ratio_far_low)}) while the gradients flow: at this "
                    "step size the run cannot learn in any useful number of steps.")
        layers = tuple(x.name for x in V.flagged(rows, (V.TOO_SMALL,)))
        tags, chart = (T.TRAIN_LOSS, UPDATE_TAGS_NOTE), "updates"
        aim = (f" to bring the updates towards {fmt(th.update_ratio_guide_cs231n)} to "
               f"{fmt(th.update_ratio_guide_notes)} of the weights per step")
    else:
        if early:
            return []
        far = False
        # No update ratios (e.g. a TensorBoard log): a slow, still-steady decline is the signature.
        start = float(sm.iloc[0])
        total = start - end
        i3 = int(len(sm) * 2 / 3)
        late = float(sm.iloc[i3]) - end
        if total <= 0.01 * abs(start) or late < 0.25 * total:
            return []
        a, b, c = int(sm.index[0]), int(sm.index[i3]), end_step
        evidence.update(loss_drop_total=total, loss_drop_total_steps=[a, c], loss_drop_last_third=late,
                        loss_drop_last_third_steps=[b, c])
        factor = 3.0
        msg = (f"The smoothed loss (median of {v.window} steps) is still falling at the same pace at the end: "
               f"{fmt(late)} of its {fmt(total)} drop over steps {a}-{c} came in steps {b}-{c}, yet it only reached "
               f"{fmt(end)} at step {end_step} ({level}).")
        layers, tags, chart, aim = (), (T.TRAIN_LOSS,), "overview", ""
    if v.lr is not None:
        msg += f" Learning rate: {fmt(v.lr)}."
    evidence["lr_factor"] = factor
    return [Finding(
        rule="lr_too_low", severity="critical" if far else "warning",
        title="Learning rate far too low" if far else "Learning rate too low",
        message=msg,
        advice=(f"Multiply the learning rate by {fmt(factor, 2)} (the fix below){aim}; a short learning-rate "
                "range test finds the largest stable value."),
        evidence=evidence, steps=(int(sm.index[0]), end_step), layers=layers,
        fix=fixes.lr_times(v, factor), chart=chart, tags=tags,
    )]


def _far_too_low(v: RunView, typical: float | None, early: bool) -> bool:
    """Whether the typical update is far too low for the run to learn (update_ratio_far_low) because
    of the step size: not while some layer's gradient vanishes or is absent (tiny updates are then
    the gradients' doing: vanishing_gradients, no_gradient; lr_too_low has already stood down when
    they are tiny in every layer alike, gradients.tiny_gradients), and, judged early, not while the
    learning rate still rises (a warm-up starts with tiny steps on purpose)."""
    if typical is None or not typical < v.th.update_ratio_far_low:
        return False
    if any(x.verdict in (V.VANISHING, V.NO_GRADIENT) for x in v.verdicts(V.GRADIENT_FLOW)):
        return False
    if early and T.lr(0) in v.run.scalar_tags():
        lr = v.run.series(T.lr(0)).dropna()
        if len(lr) >= 2 and float(lr.iloc[-1]) > float(lr.iloc[0]):
            return False
    return True

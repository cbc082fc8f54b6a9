"""Gradient rules: no_gradient (layer weights whose gradient is exactly zero from some step on),
vanishing_gradients (layers that get orders of magnitude less gradient than the strongest one) and
exploding_gradients (gradient norms that grow by orders of magnitude, jump, or turn NaN/Inf).

The first two report the rows of the Gradients page's table (diagnostics.verdicts.GRADIENT_FLOW):
zero is not vanishing, and each has its own verdict word, finding and fix. That table compares
layers with each other; vanishing_gradients also reads gradients that are tiny in every layer
alike (tiny_gradients: a signal that collapsed under a too-small init), which the table cannot
show, and which would otherwise pass for a learning rate far too low.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from runstore import tags as T

from .. import verdicts as V
from ..finding import Finding
from ..view import RunView, fmt, layer_list
from . import fixes

GRAD_NORM_TAG = "train/grad_norm"  # total gradient norm per step, when the loop records it (the playground does)


def _zero_counts(v: RunView, rows: list[V.LayerVerdict]) -> dict[str, tuple[int, int]]:
    """{layer: (zero values, recorded values)} over each NO_GRADIENT row's steps."""
    out = {}
    for x in rows:
        s = v.run.series(T.grad(x.name, "abs_mean")).loc[x.steps[0]:x.steps[1]].dropna()
        vals = np.abs(s.to_numpy(dtype=float))
        out[x.name] = (int((vals < V.ZERO_GRADIENT).sum()), len(vals))
    return out


def no_gradient(v: RunView) -> list[Finding]:
    """Layer weights whose mean |gradient| is exactly zero from some step to the end (the
    Gradients page's NO_GRADIENT rows): they cannot learn any more, whatever the learning rate."""
    rows = V.flagged(v.verdicts(V.GRADIENT_FLOW), (V.NO_GRADIENT,))
    if not rows:
        return []
    judged = v.verdicts(V.GRADIENT_FLOW)
    counts = _zero_counts(v, rows)
    groups: dict[tuple, list[str]] = {}
    for x in rows:
        groups.setdefault((x.since, x.steps[1]) + counts[x.name], []).append(x.name)
    parts = []
    for (since, last, k, n), names in sorted(groups.items()):
        on = f"on every one of the {n} recorded steps" if k == n else f"on {k} of the {n} recorded steps"
        parts.append(f"{layer_list(names)} from step {since} on ({on} through step {last})")
    every = len(rows) == len(judged)
    msg = (f"The mean |gradient| is exactly zero for {'; '.join(parts)}, ending with at least "
           f"{v.th.no_gradient_min_samples} zeros in a row: nothing flows back into "
           f"{'any layer weight, so the network no longer learns' if every else 'these weights, so they no longer learn'}.")
    dead = V.flagged(v.verdicts(V.DEAD_UNITS), (V.DEAD,))
    fix = fixes.better_init(v)
    if dead:
        names = [x.name for x in dead]
        msg += (f" The ReLU layer{'s' if len(names) > 1 else ''} {layer_list(names)} "
                f"{'are' if len(names) > 1 else 'is'} dead (see dead_relu): a dead unit passes no gradient.")
        if not fix and v.hparam("activation") == "relu":
            fix = {"activation": "leaky_relu"}
    if v.hparam("init") == "zeros":
        msg += " With an all-zero init every unit computes the same zero, so no weight receives a gradient."
    advice = ("Zero gradients have a cause upstream: units that never fire (leaky ReLU / PReLU keep a gradient, a "
              "lower learning rate keeps ReLUs alive), an all-zero or symmetric init (use He or Glorot init), or a "
              "parameter the loss does not depend on. Fix that cause; a larger learning rate cannot scale a zero.")
    return [Finding(
        rule="no_gradient", severity="critical", title="No gradient reaches some layers", message=msg, advice=advice,
        evidence={"verdicts": V.as_evidence(rows), "layers_judged": len(judged),
                  "zero_count": {n: k for n, (k, _) in counts.items()},
                  "zero_count_steps": {x.name: list(x.steps) for x in rows},
                  "recorded_count": {n: c for n, (_, c) in counts.items()},
                  "recorded_count_steps": {x.name: list(x.steps) for x in rows},
                  "no_gradient_min_samples": v.th.no_gradient_min_samples,
                  "no_gradient_share": v.th.no_gradient_share},
        steps=(min(x.since if x.since is not None else x.steps[0] for x in rows), max(x.steps[1] for x in rows)),
        layers=tuple(x.name for x in rows), fix=fix, chart="gradients",
        tags=tuple(T.grad(x.name, "abs_mean") for x in rows),
    )]


@dataclass
class TinyGradients:
    """Updates too small because the gradients are, not the step size (tiny_gradients)."""

    typical_update: float            # the Updates table's typical layer weight (V.typical_update)
    update_steps: tuple[int, int]    # the steps its rows cover
    lr: float                        # the learning rate over those steps
    lr_needed: float                 # the one that would lift the typical update to update_ratio_low
    grad_to_weight: float            # median over recorded steps of the typical layer's ||grad|| / ||weight||
    grad_steps: tuple[int, int]


def tiny_gradients(v: RunView) -> TinyGradients | None:
    """Most layer weights' updates read "too small" on the Updates page because the gradients are
    tiny, not the step size: under an optimizer whose step follows the gradient's size (SGD,
    momentum), an update is about lr x ||g|| / ||w||, so tiny updates at a sound learning rate mean
    tiny gradients. Said when the learning rate that would lift the typical update to
    update_ratio_low is above sgd_lr_max, and so is the one a plain SGD step along the typical
    layer's gradient would need: no usable step size moves these weights. A too-small init does
    this to every layer alike (each scales the signal down forward and the gradient back), so the
    Gradients table, which compares layers with each other, reads them flowing. None for adaptive
    optimizers (their steps are about lr whatever the gradient: tiny ones mean a tiny lr), without
    recorded gradient and weight norms, and while the loss is making progress. Layer weights with
    no gradient at all are left out, as in lr_too_low: no_gradient names them."""
    th = v.th
    if v.adaptive or v.lr is None or v.little_progress is None:
        return None
    rows = V.with_gradient(v.verdicts(V.UPDATES), v.verdicts(V.GRADIENT_FLOW))
    typical = V.typical_update(rows)
    if not V.majority(rows, (V.TOO_SMALL,)) or typical is None or not typical > 0:
        return None
    a, b = min(x.steps[0] for x in rows), max(x.steps[1] for x in rows)
    lrs = v.lr_series.dropna()
    lrs = lrs[(lrs.index >= a) & (lrs.index <= b) & (lrs > 0)]
    lr = float(lrs.median()) if len(lrs) else v.lr
    needed = lr * th.update_ratio_low / typical
    gw, _ = _grad_to_weight(v)
    gw = gw[gw > 0]
    if needed <= th.sgd_lr_max or gw.empty:
        return None
    g = float(gw.median())
    if th.update_ratio_low / g <= th.sgd_lr_max:
        return None
    return TinyGradients(typical, (a, b), lr, needed, g, (int(gw.index[0]), int(gw.index[-1])))


def vanishing_gradients(v: RunView) -> list[Finding]:
    """Layer weights whose mean |gradient| is below vanish_ratio x the strongest layer's (median
    over the steps on which they got any gradient), or gradients tiny in every layer alike
    (tiny_gradients): critical when the updates they give are far too low (update_ratio_far_low)."""
    th = v.th
    rows = V.flagged(v.verdicts(V.GRADIENT_FLOW), (V.VANISHING,))
    tiny = tiny_gradients(v)
    if not rows and tiny is None:
        return []
    act, init = v.hparam("activation"), v.hparam("init")
    evidence, parts, severity, spans = {"verdicts": V.as_evidence(rows), "activation": act, "init": init}, [], None, []
    if rows:
        severity = "critical" if any(x.severity == "critical" for x in rows) else "warning"
        worst = min(rows, key=lambda x: x.value)
        a, b = worst.steps
        parts.append(f"{layer_list([x.name for x in rows])} get{'s' if len(rows) == 1 else ''} almost no gradient: "
                     f"their mean |gradient| is a small fraction of the strongest layer's, down to {fmt(worst.value)} "
                     f"for {worst.name} (median over steps {a}-{b}; vanishing below {fmt(th.vanish_ratio)}, critical "
                     f"below {fmt(th.vanish_ratio ** 2)}).")
        evidence.update(vanish_ratio=th.vanish_ratio, vanish_ratio_critical_limit=th.vanish_ratio ** 2)
        spans.append((min(x.since if x.since is not None else x.steps[0] for x in rows), max(x.steps[1] for x in rows)))
    if tiny is not None:
        far = tiny.typical_update < th.update_ratio_far_low
        severity = "critical" if far or severity == "critical" else "warning"
        (a, b), (c, d) = tiny.grad_steps, tiny.update_steps
        alike = ("" if rows else " The layers get alike gradients, so the Gradients page's table, which compares "
                 "them with each other, reads them flowing: the signal shrinks in every layer at once")
        if alike and init == "small_normal":
            alike += f", as the {init} init makes it (each layer scales it down, forward and back)"
        parts.append(f"The gradients are tiny in every layer: the typical layer weight's gradient norm is "
                     f"{fmt(tiny.grad_to_weight)} of its weight norm (median over steps {a}-{b}), so the steps at the "
                     f"learning rate {fmt(tiny.lr)} move a typical layer weight by {fmt(tiny.typical_update)} of its "
                     f"norm (the Updates page, steps {c}-{d}; too small below {fmt(th.update_ratio_low)}"
                     + (f", far too low below {fmt(th.update_ratio_far_low)}" if far else "")
                     + f"). Lifting them to {fmt(th.update_ratio_low)} would take a learning rate of "
                     f"{fmt(tiny.lr_needed)}, beyond any usable SGD step size (above {fmt(th.sgd_lr_max)}): the "
                     f"gradients are what is small, not the learning rate." + (alike + "." if alike else ""))
        evidence.update(grad_to_weight=tiny.grad_to_weight, grad_to_weight_steps=list(tiny.grad_steps),
                        typical_update=tiny.typical_update, typical_update_steps=list(tiny.update_steps),
                        lr_during_updates=tiny.lr, lr_during_updates_steps=list(tiny.update_steps),
                        lr_needed=tiny.lr_needed, lr_needed_steps=list(tiny.update_steps),
                        update_ratio_low=th.update_ratio_low, sgd_lr_max=th.sgd_lr_max)
        if far:
            evidence["update_ratio_far_low"] = th.update_ratio_far_low
        spans.append((min(a, c), max(b, d)))
    fix = fixes.better_init(v)
    # A too-small init shrank the signal in every layer: a sound init fixes it and the activation
    # can stay (tanh passes a small signal whole; a sigmoid still takes three quarters per layer).
    init_only = tiny is not None and bool(fix) and act != "sigmoid"
    if not init_only:
        if act in fixes.BOUNDED:
            fix = fixes.relu_with_he(v)
        fix.update(fixes.batch_norm_on(v))
    if v.hparam("model") in ("lstm", "gru") and v.hparam("forget_bias") in (0, 0.0):
        fix["forget_bias"] = 1.0
    if init_only:
        advice = ("Use an init scaled to each layer's fan-in (Glorot/Xavier for tanh and sigmoid, He for ReLU; the fix "
                  "below) or add batch norm, so the signal keeps its size through the layers. A larger learning rate "
                  "is not the fix: it would have to be orders of magnitude larger than any that trains"
                  + ("; for LSTMs set the forget-gate bias to one" if v.hparam("model") in ("lstm", "gru") else "") + ".")
    elif tiny is not None:
        advice = ("Keep the signal's size through the layers: an init scaled to each layer's fan-in (Glorot/Xavier, "
                  "He for ReLU), ReLU-family activations, batch norm or residual connections. A larger learning rate "
                  "is not the fix: it would have to be orders of magnitude larger than any that trains.")
    else:
        advice = ("Use ReLU-family activations with He init (a sigmoid passes at most a quarter of the gradient per "
                  "layer), add batch norm or residual connections, and avoid tiny initial weights"
                  + ("; for LSTMs set the forget-gate bias to one" if v.hparam("model") in ("lstm", "gru") else "") + ".")
    tags = [T.grad(x.name, "abs_mean") for x in rows]
    if tiny is not None:
        tags += ["grad/<param>/norm", "weight/<param>/norm", "update_ratio/<weight>"]
    return [Finding(
        rule="vanishing_gradients", severity=severity, title="Vanishing gradients", message=" ".join(parts),
        advice=advice, evidence=evidence, steps=(min(x for x, _ in spans), max(y for _, y in spans)),
        layers=tuple(x.name for x in rows), fix=fix, chart="gradients", tags=tuple(tags),
    )]


def _grad_to_weight(v: RunView) -> tuple[pd.Series, pd.DataFrame]:
    """Per recorded step, the median over layer weights (not followed by a normalization layer) of
    ||grad|| / ||weight||, and the per-layer ratios it comes from."""
    cols = {}
    for p in v.weight_params:
        # Weights feeding a normalization layer are scale-invariant: their gradient norm grows as
        # their norm shrinks, so ||g||/||w|| says nothing about explosion there.
        if v.layers.model.feeds_norm(p):
            continue
        j = pd.concat([v.run.series(T.grad(p, "norm")), v.run.series(T.weight(p, "norm"))], axis=1, join="inner")
        if len(j):
            g, w = j.iloc[:, 0].to_numpy(dtype=float), j.iloc[:, 1].to_numpy(dtype=float, copy=True)
            with np.errstate(all="ignore"):
                cols[p] = pd.Series(np.where(w > 0, g / w, np.nan), index=j.index)
    if not cols:
        return pd.Series(dtype=float), pd.DataFrame()
    df = pd.concat(cols, axis=1)
    vals = df.to_numpy(dtype=float, copy=True)
    vals[~np.isfinite(vals)] = np.nan
    ok = ~np.all(np.isnan(vals), axis=1)
    return pd.Series(np.nanmedian(vals[ok], axis=1), index=df.index[ok]).dropna(), df


def _sgd_step(v: RunView) -> tuple[pd.Series, pd.DataFrame, pd.Series] | None:
    """(per recorded step after the first, the typical layer's ||grad|| / ||weight|| times the
    learning rate then; the per-layer gradient/weight ratios; the learning rate per step), for an
    optimizer whose step follows the gradient's size (SGD and the like), else None.

    What the optimizer does with a gradient decides whether it is too large, not its size alone: a
    plain SGD step moves a weight by lr x its gradient, so lr x ||g|| / ||w|| is the fraction of
    the weight one step rewrites. Adam and the other adaptive optimizers divide by a running
    gradient scale, so the same model with a summed or a mean loss takes the same steps: no
    gradient size says anything about them (their update ratios do, on the Updates page). The
    first recorded step is left out: its gradient was taken before any update, so it shows the
    init (or the loss's reduction), not a gradient that grew."""
    if v.adaptive or v.lr is None:
        return None
    gw, per_layer = _grad_to_weight(v)
    if gw.empty:
        return None
    first = int(v.loss.index[0]) if len(v.loss) else int(gw.index[0])
    gw = gw[gw.index > first]
    if gw.empty:
        return None
    lrs = pd.Series([v.lr_at(int(s)) or np.nan for s in gw.index], index=gw.index, dtype=float)
    sgd = (gw * lrs).dropna()
    return (sgd, per_layer, lrs) if len(sgd) else None


def _total_norm(v: RunView) -> pd.Series:
    """Total gradient norm per recorded step from the per-parameter norms (finite, > 0)."""
    norms = v.grad_norms
    if norms.empty:
        return pd.Series(dtype=float)
    vals = norms.to_numpy(dtype=float, copy=True)
    vals[~np.isfinite(vals)] = np.nan
    ok = ~np.all(np.isnan(vals), axis=1)
    s = pd.Series(np.sqrt(np.nansum(vals[ok] ** 2, axis=1)), index=norms.index[ok])
    return s[np.isfinite(s.to_numpy()) & (s.to_numpy() > 0)]


@dataclass
class Spike:
    """The largest jump of the total gradient norm over its median of the preceding window."""

    ratio: float
    step: int
    value: float             # the norm at `step`
    median: float            # its median over the window before
    median_steps: tuple[int, int]
    tag: str                 # the series it was read from


def _norm_spike(v: RunView) -> Spike | None:
    """From the per-step train/grad_norm when the loop records one (the playground does, before
    clipping), else from the per-parameter norms on the recorded steps."""
    s, tag, window = v.run.series(GRAD_NORM_TAG), GRAD_NORM_TAG, 20
    if len(s.dropna()) < 50:
        s, tag, window = _total_norm(v), "grad/<param>/norm (total over parameters)", 10
    s = s[np.isfinite(s.to_numpy()) & (s.to_numpy() > 0)]
    if len(s) < window + 3:
        return None
    # Recorded samples are sparse: early in the run the samples there are stand for the window,
    # so a blow-up within the first few samples (a step size that diverges at once) is seen too.
    early = 1 if tag != GRAD_NORM_TAG else max(3, window // 2)
    med = s.rolling(window, min_periods=early).median().shift(1)
    ratio = (s / med).dropna()
    if ratio.empty:
        return None
    step = int(ratio.idxmax())
    i = s.index.get_loc(step)
    before = s.iloc[max(0, i - window):i]
    return Spike(float(ratio.max()), step, float(s.loc[step]), float(med.loc[step]),
                 (int(before.index[0]), int(before.index[-1])), tag)


@dataclass
class LossJump:
    step: int                # where the raw loss peaked (or turned non-finite)
    before: float            # median raw loss over the steps before the gradient spike
    before_steps: tuple[int, int]
    peak: float


def _loss_jump_after(v: RunView, step: int) -> LossJump | None:
    """The raw loss within a few steps after `step` at least doubles its median of the 20 steps
    before (and rises by a quarter of the reference loss) and stays up (median of the next 10 steps
    1.5x the level before and a tenth of the reference above it) or peaks far above chance (level
    + 2x the reference); else None. A single hard batch near a minimum makes a blip, not a jump."""
    s = v.loss
    near = max(10, int(0.02 * max(1, v.run.last_step)))
    before = s[(s.index < step) & (s.index >= step - 20)].dropna()
    after = s[(s.index >= step) & (s.index <= step + near)]
    if before.empty or after.empty:
        return None
    level = float(before.median())
    span = (int(before.index[0]), int(before.index[-1]))
    bad = ~np.isfinite(after.to_numpy())
    if bad.any():
        return LossJump(int(after.index[np.argmax(bad)]), level, span, float("nan"))
    peak = float(after.max())
    ref = v.reference_loss or level
    sustained = float(after.iloc[:10].median()) >= max(1.5 * level, level + 0.1 * ref)
    huge = peak >= level + 2 * ref  # far worse than chance: a blow-up even if the net then dies at chance level
    if peak >= 2 * level and peak - level >= 0.25 * ref and (sustained or huge):
        return LossJump(int(after.idxmax()), level, span, peak)
    return None


def exploding_gradients(v: RunView) -> list[Finding]:
    """Gradient norms that grow by orders of magnitude, grow towards the input, jump with the loss,
    or are NaN/Inf. The evidence holds the numbers of the criteria that fired, each with its step."""
    th = v.th
    norms = v.grad_norms
    reasons, evidence, layers, severity, tags = [], {}, [], None, []
    first = last = None

    def span(a: int, b: int) -> None:
        nonlocal first, last
        first = a if first is None else min(first, a)
        last = b if last is None else max(last, b)

    # NaN/Inf gradients count when they appear while the loss is still finite (an overflow in the
    # backward pass); once the loss itself is NaN every gradient is, and nan_loss covers that.
    loss_nan = v.first_nonfinite
    bad_params = []
    for p in v.names("grad", "nonfinite", param=True):
        s = v.run.series(T.grad(p, "nonfinite")).dropna()
        hit = s[s > 0]
        if len(hit) and (loss_nan is None or int(hit.index[0]) < loss_nan):
            bad_params.append((p, int(hit.index[0]), int(hit.index[-1])))
    if bad_params:
        bad_params.sort(key=lambda x: x[1])
        a, b = bad_params[0][1], max(x[2] for x in bad_params)
        span(a, b)
        layers += [p for p, _, _ in bad_params]
        tags += [T.grad(p, "nonfinite") for p, _, _ in bad_params]
        reasons.append(f"gradients contain NaN/Inf from step {a} in {layer_list([p for p, _, _ in bad_params])} "
                       f"while the loss was still finite")
        evidence["nonfinite_first_step"] = a
        severity = "critical"

    if not norms.empty:
        g = _total_norm(v)
        k = max(3, len(g) // 10)
        if len(g) > k:
            # Growth is measured after the first samples: a norm that is large from the start is
            # an init problem, reported through the gradient/weight ratio below.
            head, later = g.iloc[:k], g.iloc[k:]
            early, peak, peak_step = float(head.median()), float(later.max()), int(later.idxmax())
            growth = peak / early if early > 0 else np.inf
            if growth >= th.explode_growth:
                reasons.append(f"the total gradient norm grew {fmt(growth)}x, from {fmt(early)} (median over steps "
                               f"{int(head.index[0])}-{int(head.index[-1])}) to {fmt(peak)} at step {peak_step}")
                evidence.update(grad_norm_early=early, grad_norm_early_steps=[int(head.index[0]), int(head.index[-1])],
                                grad_norm_peak=peak, grad_norm_peak_step=peak_step, growth=growth,
                                growth_step=peak_step, explode_growth=th.explode_growth)
                grew = later[later >= early * th.explode_growth]
                span(int(grew.index[0]), int(grew.index[-1]))
                severity = severity or ("critical" if growth >= th.explode_growth ** 2 else "warning")
                per = norms.loc[peak_step].dropna().sort_values(ascending=False)
                top = [p for p in per.index[:3] if p not in layers]
                layers += top
                tags += [T.grad(p, "norm") for p in top]

    a = v.grad_abs_mean
    # Adaptive optimizers scale each parameter's step by its own gradient size, so gradients that
    # are larger near the input do not make larger steps there.
    if a.shape[1] >= 2 and not v.adaptive:
        with np.errstate(all="ignore"):
            fl = (a.iloc[:, 0] / a.iloc[:, -1]).replace([np.inf, -np.inf], np.nan).dropna()
        if len(fl):
            ratio = float(fl.median())
            if ratio > th.explode_ratio:
                reasons.append(f"the first layer ({a.columns[0]}) gets {fmt(ratio)}x the mean |gradient| of the last "
                               f"({a.columns[-1]}), median over steps {int(fl.index[0])}-{int(fl.index[-1])}: "
                               f"gradients grow on the way back to the input")
                evidence.update(first_over_last=ratio, first_over_last_steps=[int(fl.index[0]), int(fl.index[-1])],
                                explode_ratio=th.explode_ratio)
                severity = severity or "warning"
                span(int(fl.index[0]), int(fl.index[-1]))
                if a.columns[0] not in layers:
                    layers.append(a.columns[0])
                tags += [T.grad(a.columns[0], "abs_mean"), T.grad(a.columns[-1], "abs_mean")]
    spike = _norm_spike(v)
    # A loss that jumps is only a symptom for a loss the run minimises (a GAN's jump all the time).
    jump = _loss_jump_after(v, spike.step) if spike is not None and spike.ratio >= th.explode_spike \
        and v.minimised else None
    if jump is not None:
        m0, m1 = spike.median_steps
        after = f"{fmt(jump.peak)}" if np.isfinite(jump.peak) else "non-finite"
        reasons.append(f"the total gradient norm jumped to {fmt(spike.value)} at step {spike.step}, {fmt(spike.ratio)}x "
                       f"its median {fmt(spike.median)} over steps {m0}-{m1}, and the loss jumped with it, from about "
                       f"{fmt(jump.before)} (median over steps {jump.before_steps[0]}-{jump.before_steps[1]}) to "
                       f"{after} at step {jump.step}")
        evidence.update(grad_norm_spike=spike.ratio, grad_norm_spike_step=spike.step, grad_norm_at_spike=spike.value,
                        grad_norm_at_spike_step=spike.step, grad_norm_before_spike=spike.median,
                        grad_norm_before_spike_steps=[m0, m1], grad_norm_source=spike.tag,
                        loss_before_jump=jump.before, loss_before_jump_steps=list(jump.before_steps),
                        loss_after_jump=jump.peak, loss_after_jump_step=jump.step, explode_spike=th.explode_spike)
        severity = severity or "warning"
        span(spike.step, jump.step)
        tags += [spike.tag if spike.tag == GRAD_NORM_TAG else "grad/<param>/norm", T.TRAIN_LOSS]
    step = _sgd_step(v)
    if step is not None:
        sgd, per_layer, lrs = step
        peak_step, peak = int(sgd.idxmax()), float(sgd.max())
        # Twice over the limit, or once over 10x it: one borderline sample is not an explosion. And
        # grown over the limit (explode_step_growth x the first step after an update) or staying
        # over it (on most recorded steps): a step that is largest from the start and then shrinks
        # is a high learning rate on an untrained network, which lr_too_high judges from the update
        # ratios, not a gradient that explodes.
        first_step, first_size = int(sgd.index[0]), float(sgd.iloc[0])
        over = sgd >= th.update_ratio_high
        grown = sgd[over & (sgd >= th.explode_step_growth * first_size)]
        stays = int(over.sum()) >= 2 and 2 * int(over.sum()) > len(sgd)
        if len(grown) >= 2 or stays or peak >= 10 * th.update_ratio_high:
            gw = float(per_layer.loc[peak_step].median())
            lr_peak = float(lrs.loc[peak_step])
            reasons.append(f"at step {peak_step} the typical layer's gradient norm was {fmt(gw)}x its weight norm: a "
                           f"plain SGD step at the learning rate {fmt(lr_peak)} moves the weights by {fmt(peak)} of "
                           f"their norm (limit {fmt(th.update_ratio_high)})"
                           + (f", up from {fmt(first_size)} at step {first_step}" if peak_step != first_step else "")
                           + (f", and over the limit on {int(over.sum())} of the {len(sgd)} recorded steps after the "
                              "first" if stays else ""))
            evidence.update(sgd_step_peak=peak, sgd_step_peak_step=peak_step, grad_to_weight_at_peak=gw,
                            grad_to_weight_at_peak_step=peak_step, lr_at_peak=lr_peak, lr_at_peak_step=peak_step,
                            update_ratio_high=th.update_ratio_high, sgd_step_first=first_size,
                            sgd_step_first_step=first_step, explode_step_growth=th.explode_step_growth,
                            sgd_over_limit_count=int(over.sum()), sgd_recorded_count=len(sgd),
                            sgd_over_limit_count_steps=[first_step, int(sgd.index[-1])],
                            sgd_recorded_count_steps=[first_step, int(sgd.index[-1])])
            severity = severity or ("critical" if peak >= 10 * th.update_ratio_high else "warning")
            top = [p for p in per_layer.loc[peak_step].dropna().sort_values(ascending=False).index[:3] if p not in layers]
            layers += top
            tags += [T.grad(p, "norm") for p in top] + [T.weight(p, "norm") for p in top]
            big = sgd[sgd >= th.update_ratio_high]
            span(int(big.index[0]), int(big.index[-1]))
    if not reasons:
        return []
    msg = "Exploding gradients: " + "; ".join(reasons) + "."
    fix = {**fixes.grad_clip(v), **fixes.better_init(v)}
    if v.hparam("init") == "large_normal":
        fix["init"] = fixes.good_init_for(v.hparam("activation"))
    advice = ("Clip the gradient norm (the fix below), lower the learning rate if the loss also diverges, use a scaled "
              "init (He / Glorot) and batch norm; for RNNs clipping is the standard remedy (Pascanu et al., 2013).")
    return [Finding(
        rule="exploding_gradients", severity=severity, title="Exploding gradients", message=msg, advice=advice,
        evidence=evidence, steps=(first, last) if first is not None else None, layers=tuple(layers), fix=fix,
        chart="gradients", tags=tuple(dict.fromkeys(tags)) or ("grad/<param>/norm",),
    )]

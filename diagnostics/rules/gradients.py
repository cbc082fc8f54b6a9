"""Gradient rules: vanishing_gradients (some layers get orders of magnitude less gradient than the
others) and exploding_gradients (gradient norms grow by orders of magnitude, or turn NaN/Inf)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from runstore import tags as T

from ..finding import Finding
from ..view import RunView, fmt, layer_list
from . import fixes


def _relative_to_max(a: pd.DataFrame) -> pd.DataFrame:
    """Each layer's mean |grad| divided by the largest layer's at the same step (0 when no layer
    got any gradient)."""
    vals = a.to_numpy(dtype=float, copy=True)
    vals[~np.isfinite(vals)] = np.nan
    with np.errstate(all="ignore"):
        mx = np.nanmax(np.where(np.isnan(vals), -np.inf, vals), axis=1)
    ok = np.isfinite(mx) & (mx >= 0)
    with np.errstate(all="ignore"):
        # A step where no layer weight got any gradient at all counts as fully vanished (zero init).
        rel = np.where(mx[ok, None] > 0, vals[ok] / mx[ok, None], 0.0)
    return pd.DataFrame(rel, index=a.index[ok], columns=a.columns)


def vanishing_gradients(v: RunView) -> list[Finding]:
    """Layers whose mean |gradient| is below vanish_ratio x the largest layer's (median over the run)."""
    th = v.th
    a = v.grad_abs_mean
    if a.shape[1] < 2:
        return []
    rel = _relative_to_max(a)
    if rel.empty:
        return []
    med = rel.median(skipna=True)
    flagged = med[med < th.vanish_ratio].dropna()
    if flagged.empty:
        return []
    layers = tuple(n for n in a.columns if n in flagged.index)
    worst = float(flagged.min())
    severity = "critical" if worst < th.vanish_ratio ** 2 else "warning"
    first_layer, last_layer = a.columns[0], a.columns[-1]
    with np.errstate(all="ignore"):
        fl = (a[first_layer] / a[last_layer]).replace([np.inf, -np.inf], np.nan).dropna()
    first_last = float(fl.median()) if len(fl) else None
    hit = (rel[list(layers)] < th.vanish_ratio).any(axis=1)
    first_step = int(hit.idxmax()) if hit.any() else int(rel.index[0])
    zero = [n for n in layers if (a[n].fillna(0) == 0).mean() >= 0.5]
    msg = (f"{len(layers)} of {a.shape[1]} layers get almost no gradient: {layer_list(layers)} "
           f"(median mean |grad| down to {fmt(worst)} of the strongest layer's; limit {fmt(th.vanish_ratio)}). "
           f"First layer / last layer: {fmt(first_last)}.")
    if zero:
        msg += f" {layer_list(zero)} received exactly zero gradient in most steps."
    act, init = v.hparam("activation"), v.hparam("init")
    fix = fixes.better_init(v)
    if act in fixes.BOUNDED:
        fix = fixes.relu_with_he(v)
    fix.update(fixes.batch_norm_on(v))
    if v.hparam("model") in ("lstm", "gru") and v.hparam("forget_bias") in (0, 0.0):
        fix["forget_bias"] = 1.0
    advice = ("Use ReLU-family activations with He init (sigmoid's derivative is at most 0.25 per layer), add batch "
              "norm or residual connections, and avoid all-zero or tiny initial weights"
              + ("; for LSTMs set the forget-gate bias to 1" if v.hparam("model") in ("lstm", "gru") else "") + ".")
    return [Finding(
        rule="vanishing_gradients", severity=severity, title="Vanishing gradients", message=msg, advice=advice,
        evidence={"relative_grad_median": {n: float(med[n]) for n in layers}, "first_over_last": first_last,
                  "vanish_ratio": th.vanish_ratio, "zero_gradient_layers": zero,
                  "activation": act, "init": init},
        steps=(first_step, int(rel.index[-1])), layers=layers, fix=fix, chart="gradients",
        tags=tuple(T.grad(n, "abs_mean") for n in layers),
    )]


def _feeds_batch_norm(v: RunView, param: str) -> bool:
    """Whether the layer of `param` is directly followed by a normalization layer. Such weights are
    scale-invariant: their gradient norm grows as their norm shrinks, so ||g||/||w|| says nothing
    about explosion there."""
    mods = (v.meta.get("model") or {}).get("modules") or []
    names = [m.get("name") for m in mods]
    module = param.rpartition(".")[0]
    if module not in names:
        return False
    i = names.index(module)
    nxt = mods[i + 1].get("type", "") if i + 1 < len(mods) else ""
    return "Norm" in (nxt or "")


def _grad_to_weight(v: RunView) -> tuple[pd.Series, pd.DataFrame]:
    """Per recorded step, the median over layer weights (not followed by a normalization layer) of
    ||grad|| / ||weight||, and the per-layer ratios it comes from."""
    cols = {}
    for p in v.weight_params:
        if _feeds_batch_norm(v, p):
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


def _norm_spike(v: RunView) -> tuple[float | None, int | None]:
    """Largest jump of the total gradient norm over its median of the preceding window: from the
    per-step train/grad_norm when the loop records one (the playground does, before clipping),
    else from the per-parameter norms on the recorded steps."""
    s = v.run.series("train/grad_norm")
    window = 20
    if len(s.dropna()) < 50:
        norms = v.grad_norms
        if norms.empty:
            return None, None
        vals = norms.to_numpy(dtype=float, copy=True)
        vals[~np.isfinite(vals)] = np.nan
        ok = ~np.all(np.isnan(vals), axis=1)
        s = pd.Series(np.sqrt(np.nansum(vals[ok] ** 2, axis=1)), index=norms.index[ok])
        window = 10
    s = s[np.isfinite(s.to_numpy()) & (s.to_numpy() > 0)]
    if len(s) < window + 3:
        return None, None
    ratio = (s / s.rolling(window, min_periods=max(3, window // 2)).median().shift(1)).dropna()
    if ratio.empty:
        return None, None
    return float(ratio.max()), int(ratio.idxmax())


def _loss_jump_after(v: RunView, step: int) -> tuple[int, float, float] | None:
    """(step, level before, peak) when the raw loss within a few steps after `step` at least doubles
    its median of the 20 steps before (and rises by a quarter of the reference loss) and stays up
    (median of the next 10 steps 1.5x the level before and a tenth of the reference above it) or
    peaks far above chance (level + 2x the reference), else None. A single hard batch near a
    minimum makes a blip, not a jump."""
    s = v.loss
    near = max(10, int(0.02 * max(1, v.run.last_step)))
    before = s[(s.index < step) & (s.index >= step - 20)].dropna()
    after = s[(s.index >= step) & (s.index <= step + near)]
    if before.empty or after.empty:
        return None
    level = float(before.median())
    bad = ~np.isfinite(after.to_numpy())
    if bad.any():
        return int(after.index[np.argmax(bad)]), level, float("nan")
    peak = float(after.max())
    ref = v.reference_loss or level
    sustained = float(after.iloc[:10].median()) >= max(1.5 * level, level + 0.1 * ref)
    huge = peak >= level + 2 * ref  # far worse than chance: a blow-up even if the net then dies at chance level
    if peak >= 2 * level and peak - level >= 0.25 * ref and (sustained or huge):
        return int(after.idxmax()), level, peak
    return None


def exploding_gradients(v: RunView) -> list[Finding]:
    """Gradient norms that grow by orders of magnitude, grow towards the input, or are NaN/Inf."""
    th = v.th
    norms = v.grad_norms
    reasons, evidence, layers, severity = [], {}, [], None
    first = last = None

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
        first, last = bad_params[0][1], max(x[2] for x in bad_params)
        layers += [p for p, _, _ in bad_params]
        reasons.append(f"gradients contain NaN/Inf from step {first} in {layer_list([p for p, _, _ in bad_params])} "
                       f"while the loss was still finite")
        evidence["nonfinite_first_step"] = first
        severity = "critical"

    if not norms.empty:
        vals = norms.to_numpy(dtype=float, copy=True)
        with np.errstate(all="ignore"):
            total = np.sqrt(np.nansum(np.where(np.isfinite(vals), vals, np.nan) ** 2, axis=1))
        g = pd.Series(total, index=norms.index)
        g = g[np.isfinite(g) & (g > 0)]
        k = max(3, len(g) // 10)
        if len(g) > k:
            # Growth is measured after the first samples: a norm that is large from the start is
            # an init problem, reported through the gradient/weight ratio below.
            early = float(g.iloc[:k].median())
            later = g.iloc[k:]
            peak_step = int(later.idxmax())
            growth = float(later.max()) / early if early > 0 else np.inf
            evidence.update(grad_norm_early=early, grad_norm_peak=float(later.max()), grad_norm_peak_step=peak_step,
                            growth=growth, explode_growth=th.explode_growth)
            if growth >= th.explode_growth:
                reasons.append(f"the total gradient norm grew {fmt(growth)}x, from {fmt(early)} early on to "
                               f"{fmt(later.max())} at step {peak_step}")
                grew = later[later >= early * th.explode_growth]
                first = int(grew.index[0]) if first is None else min(first, int(grew.index[0]))
                last = int(grew.index[-1]) if last is None else max(last, int(grew.index[-1]))
                severity = severity or ("critical" if growth >= th.explode_growth ** 2 else "warning")
                per = norms.loc[peak_step].dropna().sort_values(ascending=False)
                layers += [p for p in per.index[:3] if p not in layers]

    a = v.grad_abs_mean
    if a.shape[1] >= 2:
        with np.errstate(all="ignore"):
            fl = (a.iloc[:, 0] / a.iloc[:, -1]).replace([np.inf, -np.inf], np.nan).dropna()
        if len(fl):
            ratio = float(fl.median())
            evidence.update(first_over_last=ratio, explode_ratio=th.explode_ratio)
            if ratio > th.explode_ratio:
                reasons.append(f"the first layer ({a.columns[0]}) gets {fmt(ratio)}x the mean |gradient| of the last "
                               f"({a.columns[-1]}): gradients grow on the way back to the input")
                severity = severity or "warning"
                first = int(fl.index[0]) if first is None else first
                last = int(fl.index[-1]) if last is None else last
                layers += [n for n in (a.columns[0],) if n not in layers]
    spike, spike_step = _norm_spike(v)
    if spike is not None:
        evidence.update(grad_norm_spike=spike, grad_norm_spike_step=spike_step, explode_spike=th.explode_spike)
        jump = _loss_jump_after(v, spike_step) if spike >= th.explode_spike else None
        if jump is not None:
            jump_step, before, after = jump
            reasons.append(f"the total gradient norm jumped to {fmt(spike)}x its recent median at step {spike_step} "
                           f"and the loss jumped with it, from about {fmt(before)} to {fmt(after)} at step {jump_step}")
            evidence.update(loss_before_jump=before, loss_after_jump=after, loss_jump_step=jump_step)
            severity = severity or "warning"
            first = spike_step if first is None else min(first, spike_step)
            last = jump_step if last is None else max(last, jump_step)
    gw, per_layer = _grad_to_weight(v)
    if not gw.empty:
        peak_step = int(gw.idxmax())
        peak = float(gw.max())
        evidence.update(grad_to_weight_peak=peak, grad_to_weight_step=peak_step,
                        explode_grad_weight=th.explode_grad_weight)
        # Twice over the limit, or once over 10x it: one borderline sample is not an explosion.
        above = int((gw >= th.explode_grad_weight).sum())
        if above >= 2 or peak >= 10 * th.explode_grad_weight:
            reasons.append(f"at step {peak_step} the typical layer's gradient norm was {fmt(peak)}x its weight norm "
                           f"(limit {fmt(th.explode_grad_weight)}x)")
            severity = severity or ("critical" if peak >= 100 * th.explode_grad_weight else "warning")
            top = per_layer.loc[peak_step].dropna().sort_values(ascending=False)
            layers += [p for p in top.index[:3] if p not in layers]
            big = gw[gw >= th.explode_grad_weight]
            first = int(big.index[0]) if first is None else min(first, int(big.index[0]))
            last = int(big.index[-1]) if last is None else max(last, int(big.index[-1]))
    if not reasons:
        return []
    msg = "Exploding gradients: " + "; ".join(reasons) + "."
    fix = {**fixes.grad_clip(v), **fixes.better_init(v)}
    if v.hparam("init") == "large_normal":
        fix["init"] = fixes.good_init_for(v.hparam("activation"))
    advice = ("Clip the gradient norm at 1-10, lower the learning rate if the loss also diverges, use a scaled init "
              "(He / Glorot) and batch norm; for RNNs clipping is the standard remedy (Pascanu et al., 2013).")
    return [Finding(
        rule="exploding_gradients", severity=severity, title="Exploding gradients", message=msg, advice=advice,
        evidence=evidence, steps=(first, last) if first is not None else None, layers=tuple(layers), fix=fix,
        chart="gradients", tags=tuple(T.grad(p, "norm") for p in layers) or ("grad/<param>/norm",),
    )]

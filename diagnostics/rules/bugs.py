"""Rules for the bugs real training programs have (the classes of DeepDiagnosis's 53 programs,
AUTOTRAINER's models and Humbatova et al.'s taxonomy of real faults), each read from what the
probes record and named as the root cause of the symptoms it produces:

- grad_not_zeroed: gradients pile up from step to step (optimizer.zero_grad() left out);
- probabilities_as_logits: a softmax before CrossEntropyLoss, which applies log_softmax itself;
- unnormalized_inputs: the first layer sees raw, large inputs (pixels 0-255);
- over_regularization: weight decay that shrinks the weights, or heavy dropout, where the model
  does not even fit its training data;
- frozen_parameters: most parameters never train (requires_grad off, or not given to the
  optimizer) while the model does not fit;
- unshuffled_data: the same batches come in the same order every epoch (a classifier's batch loss
  repeats its pattern with the epoch's period), as with a dataset sorted by class and no shuffling.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from runstore import tags as T

from ..finding import Finding
from ..task import CLASSIFICATION
from ..view import RunView, fmt, layer_list, pct
from . import fixes
from .gradients import _total_norm
from .learning_rate import weight_growth

# Modules that read the model's input directly when they come first (an Embedding reads ids).
INPUT_LAYERS = ("Linear", "Conv1d", "Conv2d", "Conv3d", "LazyLinear", "LazyConv1d", "LazyConv2d", "LazyConv3d")
WEIGHTED = INPUT_LAYERS + ("ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d", "Bilinear")


def _level_does_not_fit(v: RunView) -> tuple[float, int, float] | None:
    """(final smoothed loss, its step, relative level) when the model does not fit its training
    data: above underfit_loss_frac of a known floor's distance, or hardly down where the floor is
    unknown (RunView.no_progress); None otherwise."""
    if not v.enough_loss or v.first_nonfinite is not None or not v.minimised or v.smooth.empty:
        return None
    end, step = float(v.smooth.iloc[-1]), int(v.smooth.index[-1])
    rel = v.relative(end)
    if rel is None:
        return None
    high = rel > v.th.underfit_loss_frac if v.floor_known else v.no_progress(rel)
    return (end, step, rel) if high else None


def _level_evidence(v: RunView, end: float, step: int, rel: float) -> dict:
    ev = {"final_smoothed_loss": end, "final_smoothed_loss_step": step, "relative_level": rel,
          "relative_level_step": step, "reference_loss": v.reference_loss, "loss_floor": v.loss_floor,
          "smooth_window": v.window}
    ev.update({"underfit_loss_frac": v.th.underfit_loss_frac} if v.floor_known else v.progress_evidence())
    return ev


# -- forgot zero_grad -----------------------------------------------------------------------------
def grad_not_zeroed(v: RunView) -> list[Finding]:
    """The total gradient norm grew by an order of magnitude or more and then hardly changes from
    one recorded step to the next: each step's gradient is added to all the earlier ones instead of
    replacing them, so the sum outweighs any new batch. A recomputed mini-batch gradient changes by
    tens of percent between steps (healthy runs: a median change of 6-90% in the second half of the
    run); a clipped gradient keeps its norm constant but does not grow."""
    th = v.th
    g = _total_norm(v)
    if len(g) < 8 or (v.optimizer_class or "").upper() == "LBFGS":
        return []
    vals = g.to_numpy(dtype=float)
    change = np.abs(np.diff(vals)) / vals[:-1]
    half = change[len(change) // 2:]
    k = max(1, len(vals) // 10)
    end = float(np.median(vals[-k:]))
    growth = end / vals[0]
    med = float(np.median(half))
    if growth < th.stale_grad_growth or med >= th.stale_grad_change:
        return []
    a, b = int(g.index[len(vals) - len(half) - 1]), int(g.index[-1])
    e0, e1 = int(g.index[-k]), int(g.index[-1])
    msg = (f"The total gradient norm grew from {fmt(vals[0])} at step {int(g.index[0])} to {fmt(end)} (median over "
           f"steps {e0}-{e1}), {fmt(growth)}x, and then barely changes: by a median of {fmt(med)} of itself "
           f"between recorded steps over steps {a}-{b} (a recomputed mini-batch gradient changes by tens of "
           f"percent). Gradients are piling up instead of being recomputed: the optimizer keeps applying their sum.")
    return [Finding(
        rule="grad_not_zeroed", severity="critical", title="Gradients are never reset", message=msg,
        advice=("Call optimizer.zero_grad() (or model.zero_grad()) once per step, before loss.backward(). If gradients "
                "are accumulated on purpose over several batches, reset them after each optimizer.step()."),
        evidence={"grad_norm_first": float(vals[0]), "grad_norm_first_step": int(g.index[0]),
                  "grad_norm_end": end, "grad_norm_end_steps": [e0, e1], "grad_norm_growth": growth,
                  "grad_norm_growth_steps": [int(g.index[0]), e1], "grad_norm_change": med,
                  "grad_norm_change_steps": [a, b], "stale_grad_growth": th.stale_grad_growth,
                  "stale_grad_change": th.stale_grad_change},
        steps=(int(g.index[0]), b), chart="gradients", tags=("grad/<param>/norm",),
    )]


# -- softmax before CrossEntropyLoss --------------------------------------------------------------
def probabilities_as_logits(v: RunView) -> list[Finding]:
    """The scores given to the loss (and to the probes as logits) are probabilities in [0, 1]: then
    the softmax of the loss can never be confident. With C classes its top probability is at most
    e / (e + C - 1) and the cross-entropy at least ln(e + C - 1) - 1, however right the model is.
    Fires when the mean confidence sits at that cap while accuracy is far above it."""
    th, c = v.th, v.n_classes
    if not c or c < 3 or not v.enough_loss or v.first_nonfinite is not None:
        return []
    cap = math.e / (math.e + c - 1)
    floor = math.log(math.e + c - 1) - 1
    split = v.eval_split if v.eval_split and len(v.split_series(v.eval_split, "confidence")) else "train"
    conf_s, acc_s = v.split_series(split, "confidence"), v.split_series(split, "accuracy")
    if conf_s.empty or acc_s.empty:
        return []
    conf_t, acc_t = v.tail(conf_s), v.tail(acc_s)
    conf, acc = float(conf_t.mean()), float(acc_t.mean())
    end, end_step = float(v.smooth.iloc[-1]), int(v.smooth.index[-1])
    # At the cap, not merely below it (any model that hedges is below it), and the loss at its floor.
    near = abs(conf / cap - 1) <= th.softmax_cap_margin and abs(end / floor - 1) <= 5 * th.softmax_cap_margin
    if not near or acc - conf < th.underconfidence_gap:
        return []
    cs, as_ = [int(conf_t.index[0]), int(conf_t.index[-1])], [int(acc_t.index[0]), int(acc_t.index[-1])]
    msg = (f"On {split}, the mean confidence is {fmt(conf)} (steps {cs[0]}-{cs[1]}) while the accuracy is {fmt(acc)} "
           f"(steps {as_[0]}-{as_[1]}); {fmt(cap)} is the most a softmax over {c} scores that lie between zero and one can give, "
           f"and the smoothed train loss (median of {v.window} steps) ends at {fmt(end)} at step {end_step}, at the "
           f"{fmt(floor)} floor of such scores. The model's outputs are probabilities, not logits: a softmax is "
           f"applied before a loss that applies log_softmax itself, which caps the loss's gradient and the "
           f"confidence.")
    return [Finding(
        rule="probabilities_as_logits", severity="critical", title="Softmax before the loss", message=msg,
        advice=("Remove the final softmax (nn.Softmax / F.softmax) from the model: CrossEntropyLoss takes raw scores "
                "(logits) and applies log_softmax itself. Apply softmax only where probabilities are needed, outside "
                "the loss; with a log_softmax output use NLLLoss."),
        evidence={"confidence": conf, "confidence_steps": cs, "accuracy": acc, "accuracy_steps": as_, "split": split,
                  "n_classes": c, "softmax_cap": cap, "softmax_loss_floor": floor, "final_smoothed_loss": end,
                  "final_smoothed_loss_step": end_step, "smooth_window": v.window,
                  "softmax_cap_margin": th.softmax_cap_margin, "underconfidence_gap": th.underconfidence_gap},
        steps=(cs[0], cs[1]), chart="predictions",
        tags=(T.split_metric(split, "confidence"), T.split_metric(split, "accuracy"), T.TRAIN_LOSS),
    )]


# -- unnormalized inputs --------------------------------------------------------------------------
def _first_std(v: RunView, module: str) -> tuple[float, int] | None:
    s = v.run.series(T.act(module, "std")).dropna()
    s = s[np.isfinite(s.to_numpy(dtype=float))]
    return (float(s.iloc[0]), int(s.index[0])) if len(s) else None


def unnormalized_inputs(v: RunView) -> list[Finding]:
    """The model's first layer (a Linear or a convolution reading the input) puts out values with a
    standard deviation of input_scale_std or more at the first recorded step, before any update,
    while the next weighted layer scales what it receives by an ordinary factor (at most
    input_scale_gain): the layers are initialised as usual, so the inputs are large. (A too-large
    init blows up every layer, so the next one's gain is large too, and bad_init_loss names it.)"""
    th = v.th
    first_step = int(v.loss.index[0]) if len(v.loss) else None
    mods = [m for m in v.names("act", "std") if "#" not in m]
    if len(mods) < 2 or first_step is None:
        return []
    first = mods[0]
    if v.module_type(first) not in INPUT_LAYERS:
        return []
    got = _first_std(v, first)
    if got is None or got[1] > first_step or got[0] < th.input_scale_std:
        return []
    std0, step0 = got
    later = [m for m in mods[1:] if v.module_type(m) in WEIGHTED]
    if not later:
        return []
    nxt = later[0]
    before = mods[mods.index(nxt) - 1]
    a, b = _first_std(v, nxt), _first_std(v, before)
    if a is None or b is None or b[0] <= 0 or a[1] != step0 or b[1] != step0:
        return []
    gain = a[0] / b[0]
    if gain > th.input_scale_gain:
        return []
    msg = (f"At step {step0}, before any update, the first layer {first} ({v.module_type(first)}) puts out values with "
           f"a standard deviation of {fmt(std0)}, while the next weighted layer {nxt} scales what it receives by only "
           f"{fmt(gain)} (std {fmt(a[0])} out of {fmt(b[0])} from {before}): its init is ordinary, so the inputs are "
           f"what is large (a standard init over standardized inputs gives about one there). Large inputs make "
           f"large first-layer gradients and a loss far above chance at the start, and they need a smaller step "
           f"size than the rest of the network.")
    return [Finding(
        rule="unnormalized_inputs", severity="warning", title="Inputs are not normalized", message=msg,
        advice=("Standardize the inputs: subtract the per-feature (per-channel) mean and divide by the standard "
                "deviation of the training set (transforms.Normalize for images, after scaling raw pixel values "
                "down), and apply the same to validation data."),
        evidence={"first_layer_std": std0, "first_layer_std_step": step0, "next_layer_gain": gain,
                  "next_layer_gain_step": step0, "next_layer_std": a[0], "next_layer_std_step": step0,
                  "next_layer_input_std": b[0], "next_layer_input_std_step": step0,
                  "input_scale_std": th.input_scale_std, "input_scale_gain": th.input_scale_gain},
        steps=(step0, step0), layers=(first,), fix=fixes.normalize_inputs_on(v), chart="activations",
        tags=(T.act(first, "std"), T.act(nxt, "std")),
    )]


# -- over-regularization --------------------------------------------------------------------------
def over_regularization(v: RunView) -> list[Finding]:
    """The model does not fit its training data and regularization is why: weight decay that has
    shrunk the layer weights (their norm ended below over_reg_shrink of where it started), or
    dropout of 0.5 or more. Either one pulls the model away from the data it should fit."""
    th = v.th
    level = _level_does_not_fit(v)
    if level is None:
        return []
    end, step, rel = level
    wd, decoupled = v.weight_decay
    growth = weight_growth(v)
    shrank = wd > 0 and growth is not None and growth.typical < th.over_reg_shrink
    dropout = v.hparam("dropout")
    heavy_dropout = isinstance(dropout, (int, float)) and not isinstance(dropout, bool) and dropout >= 0.5
    if not shrank and not heavy_dropout:
        return []
    reasons, evidence, fix = [], _level_evidence(v, end, step, rel), {}
    if shrank:
        a, b = growth.steps
        kind = "decoupled (AdamW-style)" if decoupled else "L2"
        reasons.append(f"{kind} weight decay {fmt(wd)} shrank the layer weights to {fmt(growth.typical)} of their "
                       f"norm from step {a} to step {b} (median over the layer weights; limit {fmt(th.over_reg_shrink)})")
        evidence.update(weight_decay=wd, weight_growth=growth.typical, weight_growth_steps=[a, b],
                        over_reg_shrink=th.over_reg_shrink)
        if isinstance(v.hparam("weight_decay"), (int, float)):
            fix["weight_decay"] = fixes.round_sig(wd / 100) if wd > 1e-3 else 0.0
    if heavy_dropout:
        reasons.append(f"dropout is {fmt(dropout)}")
        evidence["dropout"] = float(dropout)
        fix["dropout"] = 0.1
    msg = (f"The model does not fit its training data: the smoothed train loss (median of {v.window} steps) ends at "
           f"{fmt(end)} at step {step}, {v.level_text(end)}; and " + " and ".join(reasons) + ". The regularization "
           "outweighs the data.")
    return [Finding(
        rule="over_regularization", severity="warning", title="Too much regularization", message=msg,
        advice=("Reduce the regularization" + (" (the fix below)" if fix else "") + ", then add it back step by step "
                "only if the model starts to overfit. An L2 penalty (weight_decay in SGD or Adam) acts more strongly "
                "than AdamW's decoupled decay of the same value."),
        evidence=evidence, steps=(int(v.smooth.index[0]), step), fix=fix, chart="overview",
        tags=(T.TRAIN_LOSS, "weight/<param>/norm"),
    )]


# -- frozen parameters ----------------------------------------------------------------------------
def _untrained_modules(v: RunView) -> tuple[list[str], int]:
    """(modules with parameters none of which has a recorded gradient, their parameter count), when
    some other module's gradients were recorded: parameters the optimizer never steps on."""
    model = v.meta.get("model") if isinstance(v.meta.get("model"), dict) else {}
    recorded = set(v.names("grad", "norm", param=True))
    if not recorded:
        return [], 0
    modules = [m for m in model.get("modules") or [] if isinstance(m, dict) and isinstance(m.get("params"), int)]
    # Per-module counts add up to n_params unless a tied parameter was counted twice (older runs):
    # then a module may own no parameter of its own, and none can be called untrained.
    if sum(m["params"] for m in modules) != model.get("n_params"):
        return [], 0
    out, n = [], 0
    for m in modules:
        if m["params"] <= 0:
            continue
        name = str(m.get("name"))
        prefix = "" if name == "model" else name + "."
        if not any(p.startswith(prefix) and "." not in p[len(prefix):] for p in recorded):
            out.append(name)
            n += m["params"]
    return out, n


def frozen_parameters(v: RunView) -> list[Finding]:
    """Most of the model's parameters never train (requires_grad switched off, or left out of the
    optimizer) and the model does not fit its training data: a fine-tuning recipe's freeze applied
    by mistake, or an optimizer built from the wrong parameters. A minority frozen, or a model that
    fits anyway, is what fine-tuning does on purpose: an info then."""
    th = v.th
    model = v.meta.get("model") if isinstance(v.meta.get("model"), dict) else {}
    total, trainable = model.get("n_params"), model.get("n_trainable")
    if not isinstance(total, int) or total <= 0:
        return []
    untrained, n_untrained = _untrained_modules(v)
    frozen = max(total - trainable if isinstance(trainable, int) else 0, n_untrained)
    share = frozen / total
    if frozen <= 0:
        return []
    level = _level_does_not_fit(v)
    severity = "warning" if share >= th.frozen_share and level is not None else "info"
    evidence = {"frozen_params": frozen, "total_params": total, "frozen_share": share,
                "frozen_share_limit": th.frozen_share}
    msg = (f"{frozen} of the model's {total} parameters ({pct(share)}) never train: requires_grad is off"
           + (f" or they are not in the optimizer (no gradient was recorded for {layer_list(untrained)})"
              if untrained else "") + ".")
    if level is not None:
        end, step, rel = level
        evidence.update(_level_evidence(v, end, step, rel))
        msg += (f" And the model does not fit its training data: the smoothed train loss (median of {v.window} "
                f"steps) ends at {fmt(end)} at step {step}, {v.level_text(end)}.")
    advice = ("If this is not a fine-tuning setup on purpose, let them train: set requires_grad=True on them "
              "(model.requires_grad_(True)) and build the optimizer from model.parameters() after any change to "
              "the model.")
    return [Finding(
        rule="frozen_parameters", severity=severity, title="Most parameters are frozen" if share >= th.frozen_share
        else "Some parameters are frozen", message=msg, advice=advice, evidence=evidence,
        steps=(int(v.loss.index[0]), int(v.loss.index[-1])) if len(v.loss) else None,
        layers=tuple(untrained), chart="gradients", tags=(T.TRAIN_LOSS,),
    )]


# -- unshuffled data ------------------------------------------------------------------------------
def _autocorrelation(x: np.ndarray) -> np.ndarray:
    """Normalised autocorrelation of x at every lag (FFT: fine for 100,000 steps)."""
    x = x - x.mean()
    n = len(x)
    f = np.fft.rfft(x, 2 * n)
    ac = np.fft.irfft(f * np.conj(f))[:n]
    return ac / ac[0] if ac[0] > 0 else np.zeros(n)


def unshuffled_data(v: RunView) -> list[Finding]:
    """A classifier's batch loss, detrended (minus its rolling median, over its rolling spread),
    correlates at a lag of ten or more steps with itself at `unshuffled_corr` or more: the same
    batches come back in the same order every epoch, the lag being the epoch. With shuffling each
    epoch, batch losses are unrelated from one epoch to the next (healthy classifiers of the suite,
    the samples and the corpus: 0.37 at most at such lags); a class-sorted dataset read in order
    makes each stretch of batches one class (0.84). Language models reading their corpus in order
    are left out: that is how they are trained."""
    th = v.th
    if v.task.kind != CLASSIFICATION or not v.enough_loss or not v.minimised:
        return []
    s = v.finite_loss
    x = s.to_numpy(dtype=float)
    if len(x) < 60:
        return []
    w = max(5, len(x) // 10)
    trend = pd.Series(x).rolling(w, center=True, min_periods=1).median().to_numpy()
    d = x - trend
    spread = pd.Series(np.abs(d)).rolling(w, center=True, min_periods=1).median().to_numpy()
    if np.median(spread) < th.unshuffled_noise * np.median(np.abs(x)):
        return []  # a smooth (full-batch) loss: no batch-to-batch pattern to compare
    ac = _autocorrelation(np.clip(d / (spread + 1e-12), -5, 5))
    lags = np.arange(len(ac))
    ok = (lags >= th.unshuffled_min_lag) & (lags <= len(x) // 3)
    if not ok.any():
        return []
    lag = int(lags[ok][np.argmax(ac[ok])])
    corr = float(ac[lag])
    if corr < th.unshuffled_corr:
        return []
    a, b = int(s.index[0]), int(s.index[-1])
    msg = (f"The batch loss repeats its pattern every {lag} steps: detrended, it correlates {fmt(corr, 2)} with itself "
           f"{lag} steps later (steps {a}-{b}; limit {fmt(th.unshuffled_corr, 2)}). The same batches come back in the "
           f"same order every epoch of {lag} steps: the training data is not shuffled. If it is sorted (by class, by "
           f"source), each stretch of batches teaches one part of the data and undoes the rest.")
    fix = {"shuffle": True} if v.hparam("shuffle") is False else {}
    return [Finding(
        rule="unshuffled_data", severity="warning", title="Training data is not shuffled", message=msg,
        advice=("Shuffle the training set every epoch (DataLoader(..., shuffle=True), or a new random permutation per "
                "epoch)" + (" (the fix below)" if fix else "") + "; check that it is not sorted by label."),
        evidence={"loss_autocorrelation": corr, "loss_autocorrelation_steps": [a, b], "epoch_lag": lag,
                  "epoch_lag_steps": [a, b], "unshuffled_corr": th.unshuffled_corr,
                  "unshuffled_min_lag": th.unshuffled_min_lag},
        steps=(a, b), fix=fix, chart="overview", tags=(T.TRAIN_LOSS,),
    )]

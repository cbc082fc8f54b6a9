"""AUTOTRAINER's published detection rules, applied to a recorded run for comparison.

Zhang, Zhai, Chen, Chen, Ma: "AUTOTRAINER: An Automatic DNN Training Problem Detection and Repair
System", ICSE 2021. It watches five symptoms at the end of every epoch, with these defaults:

- vanishing gradient: ||grad W_first|| / ||grad W_last|| < beta1 (1e-3) and ||grad W_first|| < beta2 (1e-4)
- exploding gradient: ||grad W_first|| / ||grad W_last|| > beta3 (70), or NaN/Inf in loss, weights or
  gradients (a NaN always counts)
- dying ReLU: the fraction of gradient entries that are exactly zero >= gamma (0.7)
- oscillating loss: pairs of consecutive local maximum/minimum of the training accuracy that differ
  by >= zeta (0.03), counted over the history; flagged when the count >= eta (0.2) x epochs
- slow convergence: the largest epoch-to-epoch accuracy gain < delta (0.01) on both training and
  validation

Gradient symptoms (and slow convergence) are reported only when training is unsatisfactory:
the best accuracy is below the target Theta (0.7) or convergence is slow; oscillation only
otherwise. The loss symptoms are judged once 30% of the epochs have passed. This follows the
authors' released implementation (utils/monitor.py of github.com/shiningrain/AUTOTRAINER).

Mapping onto our recordings:
- an "epoch" is an evaluation point (each val/accuracy value); the training accuracy of an epoch
  is the mean of train/accuracy since the previous evaluation;
- gradients are taken at the recorded step nearest to each evaluation (AUTOTRAINER uses the first
  batch of each epoch); "first" and "last" are the first and last layer weight matrices in model
  order, with gradient norms from grad/<p>/norm;
- the zero-gradient fraction uses grad/<p>/frac_zero when recorded; otherwise it is estimated
  from dead units: an entry of W (out x in) has zero gradient when its output unit is dead
  (frac_dead of the activation after the layer) or its input unit is (the activation before),
  so zero_frac ~= 1 - (1 - d_out)(1 - d_in), averaged over all parameters by size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from runstore import tags as T

from .view import RunView

PROBLEMS = ("vanishing_gradient", "exploding_gradient", "dying_relu", "oscillating_loss", "slow_convergence")

# Which of our rule ids a detected AUTOTRAINER symptom corresponds to, for scoring the two side by
# side. A NaN makes AUTOTRAINER report an exploding gradient, and its repairs for it and for an
# oscillating loss change the learning rate, so both count for lr_too_high.
MATCHES = {
    "vanishing_gradient": ("vanishing_gradients",),
    "exploding_gradient": ("exploding_gradients", "nan_loss", "lr_too_high"),
    "dying_relu": ("dead_relu", "no_gradient"),  # its test is the share of exactly-zero gradient entries
    "oscillating_loss": ("lr_too_high",),
    "slow_convergence": ("lr_too_low", "loss_plateau", "underfitting"),
}


@dataclass(frozen=True)
class AutoTrainerParams:
    """The paper's default parameters (names as in the paper)."""

    beta1: float = 1e-3
    beta2: float = 1e-4
    beta3: float = 70.0
    gamma: float = 0.7
    zeta: float = 0.03
    eta: float = 0.2
    delta: float = 0.01
    theta: float = 0.7          # target ("satisfied") accuracy
    judgment_point: float = 0.3  # loss symptoms are judged after this fraction of the epochs


@dataclass
class AutoTrainerReport:
    """Detected problems (in AUTOTRAINER's priority order) and the features behind them."""

    problems: list[str] = field(default_factory=list)
    features: dict = field(default_factory=dict)

    def detects(self, rule: str) -> bool:
        """Whether any detected problem corresponds to our rule id `rule`."""
        return any(rule in MATCHES[p] for p in self.problems)


def _epoch_histories(v: RunView) -> tuple[pd.Series, pd.Series]:
    """(train accuracy per epoch, val accuracy per epoch), indexed by the evaluation step."""
    split = v.eval_split or "val"
    val = v.split_series(split, "accuracy")
    val = val[val.index > val.index.min()] if len(val) > 1 and val.index.min() <= 0 else val  # drop a step-0 baseline
    tr = v.run.series(T.split_metric("train", "accuracy")).dropna()
    if val.empty or tr.empty:
        return pd.Series(dtype=float), val
    out, prev = {}, -math.inf
    for s in val.index:
        chunk = tr[(tr.index > prev) & (tr.index <= s)]
        if len(chunk):
            out[int(s)] = float(chunk.mean())
        prev = s
    return pd.Series(out, dtype=float), val


def _zero_grad_fraction(v: RunView, step: int) -> float | None:
    names = v.names("grad", "norm", param=True)
    direct = [n for n in names if v.run.has(T.grad(n, "frac_zero"))]
    if direct:
        vals = [_nearest(v.run.series(T.grad(n, "frac_zero")), step) for n in direct]
        vals = [x for x in vals if x is not None]
        return float(np.mean(vals)) if vals else None
    model = v.layers.model
    modules = [m for m in (v.meta.get("model") or {}).get("modules") or [] if isinstance(m, dict) and m.get("name")]
    if not modules:
        return None
    total = zero = 0.0
    d_in = 0.0
    pending = []  # param modules waiting for the dead fraction of the activation after them
    for m in modules:
        name, size = m["name"], m.get("params") or 0
        if model.can_die(name):
            d = _nearest(v.run.series(T.act(name, "frac_dead")), step)
            d = 0.0 if d is None else d
            for psize, pin in pending:
                total += psize
                zero += psize * (1 - (1 - d) * (1 - pin))
            pending, d_in = [], d
        elif size:
            pending.append((size, d_in))
            d_in = 0.0
    for psize, pin in pending:  # output layer: no activation after it
        total += psize
        zero += psize * pin
    return zero / total if total else None


def _nearest(s: pd.Series, step: int) -> float | None:
    s = s.dropna()
    if s.empty:
        return None
    i = int(np.argmin(np.abs(s.index.to_numpy() - step)))
    return float(s.iloc[i])


def _oscillating(acc: list[float], zeta: float, eta: float) -> bool:
    maxima, minima = [], []
    for i in range(1, len(acc) - 1):
        if acc[i] - acc[i - 1] >= 0 and acc[i] - acc[i + 1] >= 0:
            maxima.append(acc[i])
        if acc[i] - acc[i - 1] <= 0 and acc[i] - acc[i + 1] <= 0:
            minima.append(acc[i])
    count = sum(1 for a, b in zip(maxima, minima) if a - b >= zeta)
    return count >= eta * len(acc)


def _max_gain(acc: list[float]) -> float:
    return max([0.0] + [b - a for a, b in zip(acc, acc[1:])])


def detect(run, params: AutoTrainerParams | None = None) -> AutoTrainerReport:
    """Apply AUTOTRAINER's symptom rules to a loaded run."""
    from .thresholds import Thresholds

    p = params or AutoTrainerParams()
    v = RunView(run, Thresholds())
    rep = AutoTrainerReport()
    f = rep.features
    loss = v.loss
    split = v.eval_split
    val_loss = v.split_series(split, "loss") if split else pd.Series(dtype=float)
    nan = (len(loss) and (~np.isfinite(loss.to_numpy())).any()) or (len(val_loss) and (
        (~np.isfinite(val_loss.to_numpy())).any() or float(val_loss.iloc[-1]) >= 1e5))
    weight_names = v.weight_params
    grad_nan = any((v.run.series(T.grad(n, "nonfinite")).dropna() > 0).any()
                   for n in v.names("grad", "nonfinite", param=True))
    f["nan"] = bool(nan or grad_nan)

    train_acc, val_acc = _epoch_histories(v)
    epochs = list(val_acc.index)
    f["epochs"] = len(epochs)
    vanish = explode = relu = 0
    if len(weight_names) >= 2 and epochs:
        first, last = weight_names[0], weight_names[-1]
        g_first, g_last = v.run.series(T.grad(first, "norm")), v.run.series(T.grad(last, "norm"))
        rates = []
        for e in epochs:
            a, b = _nearest(g_first, e), _nearest(g_last, e)
            if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
                continue
            rate = a / b if b > 0 else math.inf
            rates.append(rate)
            if rate < p.beta1 and a < p.beta2:
                vanish += 1
            if rate > p.beta3:
                explode += 1
            z = _zero_grad_fraction(v, e)
            if z is not None and z >= p.gamma:
                relu += 1
        f["gradient_rate_median"] = float(np.median(rates)) if rates else None
    f.update(vanish_count=vanish, explode_count=explode, dying_relu_count=relu)

    tr = [float(x) for x in train_acc.to_numpy()]
    va = [float(x) for x in val_acc.to_numpy()]
    judged = len(epochs) >= 2
    unstable = not_converge = slow = False
    if judged and tr and va:
        unstable = _oscillating(tr, p.zeta, p.eta)
        not_converge = max(va) < p.theta or max(tr) < p.theta
        slow = _max_gain(va) < p.delta and _max_gain(tr) < p.delta
    f.update(unstable_loss=unstable, not_converge=not_converge, slow_convergence=slow)

    problems = []
    if f["nan"]:
        problems.append("exploding_gradient")
    if not_converge or slow:
        if relu >= 1:
            problems.append("dying_relu")
        elif explode >= 1:
            problems.append("exploding_gradient")
        elif vanish >= 1:
            problems.append("vanishing_gradient")
        elif slow:
            problems.append("slow_convergence")
    elif unstable:
        problems.append("oscillating_loss")
    rep.problems = list(dict.fromkeys(problems))
    return rep

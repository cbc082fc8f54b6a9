"""Parameter statistics, per optimizer step: gradients (runstore.tags.GRAD_STATS, read just before
the update), and weights (tags.WEIGHT_STATS) with the update ratio ||w_after - w_before|| /
||w_before||, measured after it. The torch (device, sync-free) and numpy (CPU) implementations
side by side; param_plan.py keeps what these need per set of parameters between steps.

Values come as columns, one per statistic with one entry per parameter (stat by stat, the layout
of tags.stat_tags), so a call costs one tuple per group of parameters, not one per parameter.
"""

from __future__ import annotations

import math
from collections import namedtuple

import numpy as np
import torch

from runstore import tags
from .arrays import dot_sum, norm, scratch

GradStats = namedtuple("GradStats", tags.GRAD_STATS)

# The coverage event of a run whose optimizer takes a closure (recorder._on_opt_pre).
CLOSURE_NOTE = ("{name} takes a closure and computes its gradients inside step(): gradients are read after each "
                "step, from its last closure evaluation, and the update ratio spans all of the step's inner "
                "iterations.")
WeightStats = namedtuple("WeightStats", tags.WEIGHT_STATS)


def grad_tags(names: list[str]) -> tuple[str, ...]:
    return tags.stat_tags(tags.grad, names, tags.GRAD_STATS)


def weight_tags(names: list[str]) -> tuple[str, ...]:
    return tags.stat_tags(tags.weight, names, tags.WEIGHT_STATS)


def update_tags(names: list[str]) -> tuple[str, ...]:
    return tuple(tags.update_ratio(n) for n in names)


def grad_stats_torch(grads: list[torch.Tensor]) -> torch.Tensor:
    """GradStats of tensors on one device, as one float32 vector (stat by stat) on that device."""
    norms = torch.stack(torch._foreach_norm(grads)).float()
    l1 = torch.stack([n / g.numel() for n, g in zip(torch._foreach_norm(grads, 1), grads)]).float()
    nonfinite = torch.stack([g.numel() - torch.count_nonzero(torch.isfinite(g)) for g in grads]).float()
    return torch.stack(GradStats(norm=norms, abs_mean=l1, nonfinite=nonfinite)).reshape(-1)


def grad_stats_numpy(arrays: list[np.ndarray]) -> GradStats:
    """GradStats of flat float32 arrays, each a list with one number per array."""
    norms, abs_means, nonfinite = [], [], []
    for a in arrays:
        l2 = norm(a)
        norms.append(l2)
        nonfinite.append(0.0 if math.isfinite(l2) else float(a.size - np.count_nonzero(np.isfinite(a))))
        abs_means.append(dot_sum(np.abs(a, out=scratch(a.size))) / a.size if a.size else math.nan)  # NaN, as on a GPU
    return GradStats(norm=norms, abs_mean=abs_means, nonfinite=nonfinite)


def update_stats_torch(old: list[torch.Tensor], now: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(update ratio per parameter, WeightStats of `now` as one vector), float32 on the device of
    the tensors. `old` (the weights before the step) is overwritten."""
    w_old = torch.stack(torch._foreach_norm(old)).float()
    torch._foreach_sub_(old, now)  # the copy becomes -(this step's update)
    dw = torch.stack(torch._foreach_norm(old)).float()
    # Undefined for a parameter that was exactly zero (e.g. zero-initialised biases).
    ratio = torch.where(w_old > 0, dw / w_old.clamp_min(torch.finfo(torch.float32).tiny),
                        torch.full_like(w_old, float("nan")))
    # One stack over every statistic's per-parameter values, stat by stat.
    stats = WeightStats(norm=torch._foreach_norm(now))
    return ratio, torch.stack([v for column in stats for v in column]).float()


def update_stats_numpy(old: list[np.ndarray], now: list[np.ndarray]) -> tuple[list[float], WeightStats]:
    """(update ratio per parameter, WeightStats of `now`), for flat float32 arrays. `old` is
    overwritten. The ratio is undefined (NaN) for a parameter that was exactly zero (a
    zero-initialised bias)."""
    ratios, norms = [], []
    for o, w in zip(old, now):
        before = norm(o)
        delta = norm(np.subtract(o, w, out=o))
        ratios.append(delta / before if before > 0 else math.nan)
        norms.append(norm(w))
    return ratios, WeightStats(norm=norms)

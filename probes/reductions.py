"""Statistics reduced on the tensor's own device. Nothing here calls .item() or .cpu() on a CUDA
tensor: results stay on the device until the recorder flushes (the only sync point).

On the CPU, where nothing is waited for and dispatch dominates, cpu_stats.py computes the same
numbers with numpy; the recorder picks by the tensor's device.
"""

from __future__ import annotations

import torch
import torch.nn as nn

# Output bounds of activations that can saturate, and the modules whose unit axis is dim 1 for 3-D
# outputs (N, C, L). Everything else with 3-D output is (N, T, F) or (T, N, F): units on the last dim.
_SIGMOID_LIKE = (nn.Sigmoid, nn.Hardsigmoid)
_TANH_LIKE = (nn.Tanh, nn.Softsign)
_CHANNEL_FIRST_1D = (nn.Conv1d, nn.ConvTranspose1d, nn.BatchNorm1d, nn.InstanceNorm1d, nn.MaxPool1d,
                     nn.AvgPool1d, nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool1d)
# A value within this fraction of the output range from a bound counts as saturated: there the
# sigmoid's derivative is below 0.01 (s(1-s) at s=0.99), i.e. the unit passes almost no gradient.
SATURATION_MARGIN = 0.01
# Histograms map a tensor's [min, max] onto [0, bins * HIST_SPAN]: the maximum lands inside the last
# bin (float32 rounding of that product is ~1e-7 relative), so no clamp is needed on the CPU.
HIST_SPAN = 1 - 1e-6

ACTIVATION_TYPES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU,
                    nn.SiLU, nn.Mish, nn.Tanh, nn.Sigmoid, nn.Hardtanh, nn.Hardsigmoid, nn.Hardswish,
                    nn.Softplus, nn.Softsign, nn.Tanhshrink, nn.LogSigmoid)


# Activations whose outputs are never negative: a unit of theirs whose outputs sum to exactly zero
# is zero everywhere (dead), with no need to look at its elements one by one (cpu_stats).
NONNEGATIVE_TYPES = (nn.ReLU, nn.ReLU6, nn.Sigmoid, nn.Hardsigmoid, nn.Softplus)


def saturation_bounds(module: nn.Module) -> tuple[float, float] | None:
    """(low, high) output bounds of a saturating activation, None for unbounded ones."""
    if isinstance(module, _SIGMOID_LIKE):
        return 0.0, 1.0
    if isinstance(module, _TANH_LIKE):
        return -1.0, 1.0
    if isinstance(module, nn.Hardtanh) and not isinstance(module, nn.ReLU6):
        return float(module.min_val), float(module.max_val)
    return None


def unit_dim(module: nn.Module, ndim: int) -> int:
    """Axis that indexes units (neurons or channels) of this module's output."""
    if ndim >= 4 or (ndim == 3 and isinstance(module, _CHANNEL_FIRST_1D)):
        return 1
    return ndim - 1


def group_by_device(items, tensor_of):
    """items in groups by the device of tensor_of(item). All on the CPU is the common case, and
    tensor.is_cpu is much cheaper to ask than tensor.device."""
    if all(tensor_of(it).is_cpu for it in items):
        return [items] if items else []
    groups: dict = {}
    for it in items:
        groups.setdefault(tensor_of(it).device, []).append(it)
    return list(groups.values())


def first_tensor(output):
    """The tensor a module produced: LSTM, MultiheadAttention etc. return tuples; take the first
    floating tensor (the sequence output / attention output)."""
    if isinstance(output, torch.Tensor):
        return output if output.is_floating_point() else None
    if isinstance(output, (tuple, list)):
        for item in output:
            t = first_tensor(item)
            if t is not None:
                return t
    return None


# A histogram sample is taken in runs of this many consecutive elements, evenly spaced. A sample of
# single elements at a stride of 16 or more floats reads every 64-byte cache line of the tensor, so
# on a CPU it costs a full pass over memory; runs of 8 read 1/16 of a large tensor's lines at the
# default sample size. 256 runs still reach every row of a 256x256 weight matrix.
SAMPLE_RUN = 8


def sample_runs(n: int, sample: int) -> tuple[int, int] | None:
    """(runs, spacing) of the histogram sample of n elements: `runs` runs of SAMPLE_RUN
    consecutive elements starting every `spacing` elements, spread over the whole tensor (what is
    left out at the end is shorter than one spacing); None when all n are taken. Shared with
    cpu_stats, so both implementations bin the same elements."""
    if n <= sample:
        return None
    spacing = -(-n // max(sample // SAMPLE_RUN, 1))  # >= SAMPLE_RUN, as n > sample: runs never overlap
    return n // spacing, spacing


def hist_sample(x: torch.Tensor, sample: int) -> torch.Tensor:
    """A flat float32 copy of at most `sample` elements of x (sample_runs), for batched_histograms.
    A copy, because the tensor may be changed in place before the histogram is computed."""
    flat = x.detach().reshape(-1)
    layout = sample_runs(flat.numel(), sample)
    if layout is not None:
        runs, spacing = layout
        flat = flat[:runs * spacing].view(runs, spacing)[:, :SAMPLE_RUN].reshape(-1)
    return flat.float() if flat.dtype != torch.float32 else flat.clone()


def batched_histograms(samples: list[torch.Tensor], bins: int):
    """Histograms of many tensors in one pass, without reading anything back to the host: (counts
    (n, bins), lo (n), hi (n)), tensor i binned into `bins` equal-width bins over the range
    [lo[i], hi[i]] of its finite values; non-finite values are left out. About a dozen ops for any
    number of tensors, and fixed shapes throughout: a host-to-device copy of segment lengths, or
    bincount sizing its output, would make the CPU wait for the GPU. cpu_stats.HistogramBinner is
    the CPU twin and gives identical counts."""
    n = len(samples)
    dev = samples[0].device
    flat = torch.cat(samples)
    seg = torch.cat([torch.full((s.numel(),), i, device=dev, dtype=torch.int64) for i, s in enumerate(samples)])
    finite = torch.isfinite(flat)
    inf = torch.full((n,), float("inf"), device=dev)
    lo = inf.scatter_reduce(0, seg, torch.where(finite, flat, inf[0]), "amin")
    hi = (-inf).scatter_reduce(0, seg, torch.where(finite, flat, -inf[0]), "amax")
    lo, hi = torch.nan_to_num(lo, 0.0, 0.0, 0.0), torch.nan_to_num(hi, 0.0, 0.0, 0.0)
    scale = (bins * HIST_SPAN) / (hi - lo).clamp_min(1e-30)
    pos = (flat - lo[seg]) * scale[seg]
    idx = torch.nan_to_num(pos, 0.0, 0.0, 0.0).to(torch.int64).clamp_(0, bins - 1) + seg * bins
    counts = torch.zeros(n * bins, device=dev).scatter_add_(0, idx, finite.float())
    return counts.reshape(n, bins), lo, hi


def fixed_histogram(x: torch.Tensor, bins: int, lo: float, hi: float) -> torch.Tensor:
    """Counts of x in `bins` equal-width bins over a fixed [lo, hi] (e.g. probabilities over [0, 1])."""
    idx = ((x.detach().float() - lo) * (bins / (hi - lo))).to(torch.int64).clamp_(0, bins - 1)
    return torch.zeros(bins, device=x.device).scatter_add_(0, idx, torch.ones_like(x, dtype=torch.float32))


def activation_stats(module: nn.Module, out: torch.Tensor) -> torch.Tensor:
    """[mean, std, frac_zero, frac_dead, frac_saturated, nonfinite] of one module output (order =
    runstore.tags.ACT_STATS) as one float32 vector on the output's device, never read back, so the
    GPU is not waited on. cpu_stats.activation_stats is the CPU twin."""
    x = out.detach()
    if x.dtype != torch.float32:
        x = x.float()  # autocast outputs (fp16/bf16): reduce in float32
    n = x.numel()
    total = x.sum()
    mean = total / n
    d = (x - mean).reshape(-1)
    # Two-pass variance through a dot product: as exact as torch.std and several times faster.
    std = torch.sqrt(torch.dot(d, d) / max(n - 1, 1))
    nan = torch.full((), float("nan"), device=x.device)
    frac_zero = 1.0 - torch.count_nonzero(x) / n
    frac_dead = nan
    if x.ndim >= 2:
        dim = unit_dim(module, x.ndim)
        # A unit is dead when its largest |output| over the batch is 0.
        peak = x.abs().amax(dim=tuple(i for i in range(x.ndim) if i != dim))
        frac_dead = (peak == 0).sum() / peak.numel()
    bounds = saturation_bounds(module)
    if bounds is None:
        frac_sat = nan
    else:
        lo, hi = bounds
        half = (hi - lo) / 2
        frac_sat = torch.count_nonzero((x - (lo + half)).abs_() >= half * (1 - 2 * SATURATION_MARGIN)) / n
    nonfinite = (n - torch.count_nonzero(torch.isfinite(x))).float()
    return torch.stack([mean, std, frac_zero, frac_dead, frac_sat, nonfinite])


def param_stats(grads: list[torch.Tensor]) -> torch.Tensor:
    """[norm, abs_mean, nonfinite] per tensor, shape (len(grads), 3), for tensors on one device
    (cpu_stats.param_stats is the CPU twin)."""
    norms = torch.stack(torch._foreach_norm(grads)).float()
    l1 = torch.stack([n / g.numel() for n, g in zip(torch._foreach_norm(grads, 1), grads)]).float()
    nonfinite = torch.stack([g.numel() - torch.count_nonzero(torch.isfinite(g)) for g in grads]).float()
    return torch.stack([norms, l1, nonfinite], dim=1)


def logits_stats(logits: torch.Tensor, targets: torch.Tensor | None):
    """(confidence per sample, [mean confidence, mean entropy (nats), accuracy or NaN], correct)
    for class logits of shape (..., classes). Targets may be class indices (...) or probabilities
    (..., classes); negative indices (ignore_index) are left out of the accuracy."""
    z = logits.detach().float().reshape(-1, logits.shape[-1])
    logp = torch.log_softmax(z, dim=-1)
    p = logp.exp()
    conf, pred = p.max(dim=-1)
    entropy = -(p * logp).nan_to_num_(0.0).sum(-1)
    correct = None
    acc = torch.full((), float("nan"), device=z.device)
    if targets is not None:
        t = targets.detach()
        if t.is_floating_point() and t.shape == logits.shape:
            t = t.reshape(-1, logits.shape[-1]).argmax(-1)
        t = t.reshape(-1)
        if t.numel() == pred.numel():
            valid = t >= 0
            correct = (pred == t) & valid
            acc = correct.sum() / valid.sum().clamp_min(1)
    return conf, torch.stack([conf.mean(), entropy.mean(), acc.float()]), correct


def calibration_sums(conf: torch.Tensor, correct: torch.Tensor, bins: int) -> torch.Tensor:
    """(3, bins): per equal-width confidence bin, the count, sum of confidence and number correct
    (the ingredients of a reliability diagram and the expected calibration error)."""
    idx = (conf * bins).long().clamp_(0, bins - 1)
    out = torch.zeros(3, bins, device=conf.device)
    out[0].scatter_add_(0, idx, torch.ones_like(conf))
    out[1].scatter_add_(0, idx, conf)
    out[2].scatter_add_(0, idx, correct.float())
    return out

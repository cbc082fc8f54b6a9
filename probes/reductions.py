"""Statistics reduced on the tensor's own device. Nothing here calls .item() or .cpu() on a CUDA
tensor: results stay on the device until the recorder flushes (the only sync point).

On CPU there is no device to wait for, so the CPU branches use the fewest ops instead.
"""

from __future__ import annotations

import math

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

ACTIVATION_TYPES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU,
                    nn.SiLU, nn.Mish, nn.Tanh, nn.Sigmoid, nn.Hardtanh, nn.Hardsigmoid, nn.Hardswish,
                    nn.Softplus, nn.Softsign, nn.Tanhshrink, nn.LogSigmoid)


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


def _finite_range(flat: torch.Tensor, sync_free: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(min, max) over the finite values; (0, 0) if there are none."""
    if not (flat.device.type != "cpu" if sync_free is None else sync_free):
        lo, hi = torch.aminmax(flat)
        if math.isfinite(lo.item()) and math.isfinite(hi.item()):  # CPU values: reading them is free
            return lo, hi
    finite = torch.isfinite(flat)
    lo = torch.where(finite, flat, torch.full_like(flat, float("inf"))).amin()
    hi = torch.where(finite, flat, torch.full_like(flat, float("-inf"))).amax()
    return torch.nan_to_num(lo, 0.0, 0.0, 0.0), torch.nan_to_num(hi, 0.0, 0.0, 0.0)


def hist_sample(x: torch.Tensor, sample: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(sample, lo, hi) for a later batched_histograms call: lo/hi span every finite element of x;
    the sample is a copy of at most `sample` evenly strided elements (a copy, because the tensor
    may be changed in place before the histogram is computed)."""
    flat = x.detach().reshape(-1)
    if flat.dtype != torch.float32:
        flat = flat.float()
    lo, hi = _finite_range(flat)
    step = -(-flat.numel() // sample)
    picked = flat[::step].clone()
    if picked.device.type == "cpu" and not math.isfinite(picked.sum().item()):
        picked = picked[torch.isfinite(picked)]  # CPU only: the batched CPU path expects finite values
    return picked, lo, hi


def batched_histograms(samples: list[torch.Tensor], lo: torch.Tensor, hi: torch.Tensor, bins: int, *,
                       sync_free: bool | None = None) -> torch.Tensor:
    """Histograms of many tensors in one pass: (len(samples), bins) counts, tensor i binned into
    `bins` equal-width bins over [lo[i], hi[i]]. Non-finite values are left out. A dozen ops for any
    number of tensors, instead of a handful per tensor, which is what keeps every-step recording cheap.
    `sync_free` (default: on for every device but the CPU) picks the path that never reads a value
    back to the host."""
    n = len(samples)
    dev = lo.device
    flat = torch.cat(samples)
    # A floor well above float32's tiniest value, so bins/range stays finite (a constant tensor has
    # range 0: every value then lands in bin 0).
    scale = bins / (hi - lo).clamp_min(1e-30)
    if not (dev.type != "cpu" if sync_free is None else sync_free):
        # CPU: a handful of foreach ops over all tensors at once, on finite samples (hist_sample
        # drops non-finite values on the CPU). Tensor i is mapped to [i*bins, (i+1)*bins) so one
        # bincount counts them all.
        lo_l, sc_l = lo.tolist(), scale.tolist()
        work = [s.clone() for s in samples]
        torch._foreach_mul_(work, sc_l)
        torch._foreach_add_(work, [i * bins - l * c for i, (l, c) in enumerate(zip(lo_l, sc_l))])
        torch._foreach_clamp_min_(work, [float(i * bins) for i in range(n)])
        torch._foreach_clamp_max_(work, [i * bins + bins - 0.5 for i in range(n)])
        idx = torch.cat(work).to(torch.int64)
        return torch.bincount(idx, minlength=n * bins).reshape(n, bins).float()
    # Device path: fixed shapes and nothing copied from the host (a host-to-device copy of segment
    # lengths, or bincount sizing its output, would make the CPU wait for the GPU).
    flat = torch.cat(samples)
    seg = torch.cat([torch.full((s.numel(),), i, device=dev, dtype=torch.int64) for i, s in enumerate(samples)])
    pos = (flat - lo[seg]) * scale[seg]
    weight = torch.isfinite(pos).float()
    idx = torch.nan_to_num(pos, 0.0, 0.0, 0.0).to(torch.int64).clamp_(0, bins - 1) + seg * bins
    return torch.zeros(n * bins, device=dev).scatter_add_(0, idx, weight).reshape(n, bins)


def fixed_histogram(x: torch.Tensor, bins: int, lo: float, hi: float) -> torch.Tensor:
    """Counts of x in `bins` equal-width bins over a fixed [lo, hi] (e.g. probabilities over [0, 1])."""
    idx = ((x.detach().float() - lo) * (bins / (hi - lo))).to(torch.int64).clamp_(0, bins - 1)
    return torch.zeros(bins, device=x.device).scatter_add_(0, idx, torch.ones_like(x, dtype=torch.float32))


def _nonfinite(x: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    """Number of NaN/Inf elements of x, given total = x.sum() (which is finite when there are none)."""
    if x.device.type == "cpu" and math.isfinite(total.item()):
        return torch.zeros(())  # the common case costs nothing on CPU
    return (x.numel() - torch.count_nonzero(torch.isfinite(x))).float()


def activation_stats(module: nn.Module, out: torch.Tensor) -> torch.Tensor:
    """[mean, std, frac_zero, frac_dead, frac_saturated, nonfinite] of one module output, as one
    float32 vector on the output's device (order = runstore.tags.ACT_STATS)."""
    x = out.detach()
    if x.dtype != torch.float32:
        x = x.float()  # autocast outputs (fp16/bf16): reduce in float32
    n = x.numel()
    total = x.sum()
    mean = total / n
    d = (x - mean).reshape(-1)
    # Two-pass variance through a BLAS dot: as exact as torch.std and several times faster on CPU.
    std = torch.sqrt(torch.dot(d, d) / max(n - 1, 1))
    nan = torch.full((), float("nan"), device=x.device)
    if x.ndim >= 2:
        dim = unit_dim(module, x.ndim)
        per_unit = torch.count_nonzero(x, dim=tuple(i for i in range(x.ndim) if i != dim))
        # One pass over the output gives both: non-zeros per unit, and their total.
        frac_zero = 1.0 - per_unit.sum() / n
        frac_dead = (per_unit == 0).sum() / per_unit.numel()
    else:
        frac_zero = 1.0 - torch.count_nonzero(x) / n
        frac_dead = nan
    bounds = saturation_bounds(module)
    if bounds is None:
        frac_sat = nan
    else:
        lo, hi = bounds
        half = (hi - lo) / 2
        frac_sat = torch.count_nonzero((x - (lo + half)).abs_() >= half * (1 - 2 * SATURATION_MARGIN)) / n
    return torch.stack([mean, std, frac_zero, frac_dead, frac_sat, _nonfinite(x, total).to(x.device)])


def param_stats(grads: list[torch.Tensor]) -> torch.Tensor:
    """[norm, abs_mean, nonfinite] per tensor, shape (len(grads), 3), for tensors on one device."""
    norms = torch.stack(torch._foreach_norm(grads)).float()
    l1 = torch.stack([n / g.numel() for n, g in zip(torch._foreach_norm(grads, 1), grads)]).float()
    if norms.device.type == "cpu" and bool(torch.isfinite(norms).all()):
        nonfinite = torch.zeros_like(norms)
    else:
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

"""Activation statistics (runstore.tags.ACT_STATS) of one module output: which modules are
watched, and the torch (device, sync-free) and numpy (CPU) implementations side by side."""

from __future__ import annotations

import math
from collections import namedtuple
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn as nn

from runstore import tags
from .arrays import dot_sum, ones

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
# Activations whose outputs are never negative: a unit of theirs whose outputs sum to exactly zero
# is zero everywhere (dead), with no need to look at its elements one by one.
NONNEGATIVE_TYPES = (nn.ReLU, nn.ReLU6, nn.Sigmoid, nn.Hardsigmoid, nn.Softplus)

# A module called more often than this in one forward pass (a cell unrolled in a Python loop) has
# only its first MAX_CALLS calls recorded (<module>, <module>#2 ...): a 1,000-step loop would make
# 1,000 tag sets, and each call's statistics cost time on every sampled step.
MAX_CALLS = 4
# Modules whose nonlinearity is internal (recurrent cells, attention): a model built from them needs
# no activation module.
_INTERNAL_NONLINEARITY = (nn.RNNBase, nn.RNNCellBase, nn.MultiheadAttention, nn.TransformerEncoderLayer,
                          nn.TransformerDecoderLayer)
_STACKED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def capped_message(name: str, calls: int) -> str:
    """The coverage event of a module called more than MAX_CALLS times in one forward pass."""
    return (f"{name} is called {calls} times in one forward pass (a loop); only its first {MAX_CALLS} calls are "
            f"recorded ({name}, {name}#2 ... {name}#{MAX_CALLS}), to keep the run's tags and the probes' cost bounded.")


def coverage_note(model: nn.Module, watched: list[tuple[str, nn.Module]]) -> str | None:
    """A coverage event when the model stacks weighted layers but has no activation module at all:
    its activations are applied as functions (F.relu, torch.tanh), which no hook can see, so dead
    units and saturation cannot be measured. None otherwise."""
    mods = list(model.modules())
    if any(isinstance(m, ACTIVATION_TYPES + _INTERNAL_NONLINEARITY) for m in mods):
        return None
    if sum(isinstance(m, _STACKED) for m in mods) < 2:
        return None
    return ("No activation module is watched: the model applies its activations as functions (F.relu, "
            "torch.tanh, ...), which no hook can see, so dead units and saturation cannot be measured. Use "
            "activation modules (nn.ReLU(), nn.Tanh()) in the model to see them; everything else is recorded.")


# One output's statistics, by name (both implementations fill it by keyword; a row of the run store
# in the order of tags.ACT_STATS).
ActStats = namedtuple("ActStats", tags.ACT_STATS)


def select(named: list[tuple[str, nn.Module]], modules, exclude) -> list[tuple[str, nn.Module]]:
    """The (name, module) pairs that get activation hooks (ProbeOptions.modules and .exclude):
    by default every module with its own parameters or that is an activation function."""
    if modules is None:
        out = [(n, m) for n, m in named
               if isinstance(m, ACTIVATION_TYPES) or next(m.parameters(recurse=False), None) is not None]
    elif callable(modules):
        out = [(n, m) for n, m in named if modules(n, m)]
    else:
        known = {n for n, _ in named}
        missing = [s for s in modules if s not in known]
        if missing:
            raise ValueError(f"modules {missing} are not in the model; its modules are: {sorted(known)}")
        out = [(n, m) for n, m in named if n in set(modules)]
    excl = set(exclude)
    seen, result = set(), []
    for n, m in out:  # a module registered under two names is watched once
        if n not in excl and id(m) not in seen:
            seen.add(id(m))
            result.append((n, m))
    return result


def stat_tags(name: str, call: int = 1) -> tuple[tuple[str, ...], str]:
    """(tags of the statistics, histogram tag) of a module's `call`-th output in a forward pass."""
    tag_name = name if call == 1 else f"{name}#{call}"
    return tags.stat_tags(tags.act, (tag_name,), tags.ACT_STATS), tags.act(tag_name)


def first_tensor(output):
    """The tensor a module produced: LSTM, MultiheadAttention etc. return tuples; take the first
    floating tensor (the sequence output / attention output). A model returning (logits, loss) or
    (loss, logits) gives its logits (a 0-d loss inside a tuple is skipped), a dict or Hugging Face
    ModelOutput its "logits" entry, else its first tensor."""
    if isinstance(output, torch.Tensor):
        return output if output.is_floating_point() else None
    if isinstance(output, Mapping):
        logits = output.get("logits")
        if isinstance(logits, torch.Tensor) and logits.is_floating_point():
            return logits
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        for item in output:
            if isinstance(item, torch.Tensor) and item.ndim == 0:
                continue
            t = first_tensor(item)
            if t is not None:
                return t
    return None


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


def layer_info(module: nn.Module, ndim: int) -> tuple[int | None, tuple | None, bool]:
    """(axis of units, for dead units; saturation bounds; whether outputs are never negative) of a
    module's output: the same for every call, so the recorder keeps it per module."""
    return (unit_dim(module, ndim) if ndim >= 2 else None), saturation_bounds(module), isinstance(module, NONNEGATIVE_TYPES)


def stats_torch(module: nn.Module, out: torch.Tensor) -> torch.Tensor:
    """ActStats of one module output as one float32 vector on the output's device, never read
    back, so the GPU is not waited on."""
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
    return torch.stack(ActStats(mean=mean, std=std, frac_zero=frac_zero, frac_dead=frac_dead,
                                frac_saturated=frac_sat, nonfinite=nonfinite))


GEMV_MAX = 1 << 16  # elements; see _unit_sums


def _unit_sums(a: np.ndarray, dim: int) -> np.ndarray:
    """Sum over everything but axis `dim`.

    A small output with units on the last axis (a Linear layer's) is one BLAS matrix-vector
    product. Anything larger goes through einsum, which sums in the calling thread: OpenBLAS splits
    a large matrix-vector product across its own threads, and inside a forward hook those compete
    with torch's OpenMP threads, still spinning after the layer's parallel kernel. A conv output of
    64x16x28x28 took 3.8 ms that way instead of 0.2 ms (benchmarks/overhead.py's CNN went from 1.2x
    to 4x the bare loop)."""
    pre, units = math.prod(a.shape[:dim]), a.shape[dim]
    if dim == a.ndim - 1 and a.size <= GEMV_MAX:
        return np.dot(ones(pre), a.reshape(pre, units))
    return np.einsum("ijk->j", a.reshape(pre, units, -1))


def stats_numpy(module: nn.Module, a: np.ndarray, info: tuple | None = None) -> ActStats:
    """ActStats of a module's output, given as a non-empty float32 array (arrays.as_numpy), with
    the numbers of stats_torch. `info` is layer_info's answer."""
    dim, bounds, nonnegative = info or layer_info(module, a.ndim)
    flat = a.reshape(-1)
    n = flat.size
    # The per-unit sums give the total and, in the same pass, which units may be dead.
    unit_sums = _unit_sums(a, dim) if dim is not None else None
    total = dot_sum(unit_sums) if unit_sums is not None else dot_sum(flat)
    mean = total / n
    sq = float(np.dot(flat, flat))  # BLAS: one pass, no temporary
    var = (sq - total * mean) / max(n - 1, 1)
    if not var > 0.1 * sq / n:
        # The mean dominates (e.g. sigmoid outputs near 0.5): sum(x^2) - n*mean^2 would cancel most
        # digits, so take the deviations first (two-pass), as torch.std does.
        d = flat - np.float32(mean)
        var = float(np.dot(d, d)) / max(n - 1, 1)
    std = math.sqrt(var) if var >= 0 else math.nan
    nonzero = a != 0
    frac_zero = 1.0 - np.count_nonzero(nonzero) / n
    frac_dead = math.nan
    if unit_sums is not None:
        # A unit (neuron or channel) is dead when it is zero for every sample of the batch. A unit
        # whose sum is not exactly zero is alive (NaN and Inf included). For the rest, values of
        # both signs may have cancelled, so those are checked element by element.
        zero_sum = unit_sums == 0
        dead = np.count_nonzero(zero_sum)
        if dead and not nonnegative:
            shape = (math.prod(a.shape[:dim]), a.shape[dim], -1)
            dead -= np.count_nonzero(nonzero.reshape(shape)[:, zero_sum].any(axis=(0, 2)))
        frac_dead = dead / unit_sums.size
    frac_sat = math.nan
    if bounds is not None:
        lo, hi = bounds
        half = (hi - lo) / 2
        dist = np.abs(flat - np.float32(lo + half))
        frac_sat = np.count_nonzero(dist >= half * (1 - 2 * SATURATION_MARGIN)) / n
    nonfinite = 0.0 if math.isfinite(total) else float(n - np.count_nonzero(np.isfinite(flat)))
    return ActStats(mean=mean, std=std, frac_zero=frac_zero, frac_dead=frac_dead, frac_saturated=frac_sat,
                    nonfinite=nonfinite)

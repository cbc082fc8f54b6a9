"""The statistics of probes.reductions for tensors that live on the CPU, computed with numpy on the
tensor's own memory.

Why a second implementation: on a GPU the cost that matters is waiting for the device, so
reductions.py keeps every result on the device and never reads it back. On a CPU nothing is waited
for; the cost is dispatch plus passes over memory. A torch op costs ~5-10 us before it touches data
and a numpy call ~1 us, and BLAS dots give sums and norms in one pass without a temporary: numpy
takes a 128x256 activation's statistics from ~120 us to ~45 us. What is left is mostly the passes
themselves (see the README's overhead section).
tests/test_probes_reductions.py checks that both implementations give the same numbers.

Callers wrap these in np.errstate(all="ignore"): NaN/Inf in a user's tensors are counted and
reported, not turned into numpy warnings on the user's console.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import torch
import torch.nn as nn

from .reductions import (HIST_SPAN, NONNEGATIVE_TYPES, SAMPLE_RUN, SATURATION_MARGIN, sample_runs, saturation_bounds,
                         unit_dim)


def as_numpy(x: torch.Tensor) -> np.ndarray:
    """A float32 numpy view of a CPU tensor (a converted copy for other float dtypes)."""
    if x.dtype != torch.float32:
        return x.detach().float().numpy()  # fp16/bf16 (autocast, half models); numpy has no bfloat16
    return (x.detach() if x.requires_grad else x).numpy()


_ones_buf = np.ones(0, np.float32)


def _ones(n: int) -> np.ndarray:
    global _ones_buf
    if _ones_buf.size < n:
        _ones_buf = np.ones(n, np.float32)
    return _ones_buf[:n]


_local = threading.local()
SCRATCH_MAX = 1 << 22  # elements; a larger temporary is allocated for the call and given back


def _scratch(n: int) -> np.ndarray:
    """A float32 temporary, reused per thread: allocating a fresh one per parameter per step costs
    page faults once it is above malloc's mmap threshold."""
    if n > SCRATCH_MAX:
        return np.empty(n, np.float32)
    buf = getattr(_local, "scratch", None)
    if buf is None or buf.size < n:
        buf = _local.scratch = np.empty(max(n, 1 << 16), np.float32)
    return buf[:n]


def _sum(a: np.ndarray) -> float:
    """Sum of a flat float32 array as a BLAS dot with ones: twice as fast as ndarray.sum here, and
    as accurate for these sizes (float32 partial sums in SIMD lanes, ~1e-7 relative)."""
    return float(np.dot(a, _ones(a.size)))


GEMV_MAX = 1 << 16  # elements; see _unit_sums


def _unit_sums(a: np.ndarray, dim: int) -> np.ndarray:
    """Sum over everything but axis `dim`.

    A small output with units on the last axis (a Linear layer's) is one BLAS matrix-vector product. Anything larger goes
    through einsum, which sums in the calling thread: OpenBLAS splits a large matrix-vector product
    across its own threads, and inside a forward hook those compete with torch's OpenMP threads,
    still spinning after the layer's parallel kernel. A conv output of 64x16x28x28 took 3.8 ms that
    way instead of 0.2 ms (benchmarks/overhead.py's CNN went from 1.2x to 4x the bare loop)."""
    pre, units = math.prod(a.shape[:dim]), a.shape[dim]
    if dim == a.ndim - 1 and a.size <= GEMV_MAX:
        return np.dot(_ones(pre), a.reshape(pre, units))
    return np.einsum("ijk->j", a.reshape(pre, units, -1))


def layer_info(module: nn.Module, ndim: int) -> tuple[int | None, tuple | None, bool]:
    """(axis of units, for dead units; saturation bounds; whether outputs are never negative) of a
    module's output: the same for every call, so the recorder keeps it per module."""
    return (unit_dim(module, ndim) if ndim >= 2 else None), saturation_bounds(module), isinstance(module, NONNEGATIVE_TYPES)


def activation_stats(module: nn.Module, a: np.ndarray, info: tuple | None = None) -> list[float]:
    """[mean, std, frac_zero, frac_dead, frac_saturated, nonfinite] of a module's output, given as
    a non-empty float32 array (as_numpy); order = runstore.tags.ACT_STATS. `info` is layer_info's
    answer."""
    dim, bounds, nonnegative = info or layer_info(module, a.ndim)
    flat = a.reshape(-1)
    n = flat.size
    # The per-unit sums give the total and, in the same pass, which units may be dead.
    unit_sums = _unit_sums(a, dim) if dim is not None else None
    total = _sum(unit_sums) if unit_sums is not None else _sum(flat)
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
    return [mean, std, frac_zero, frac_dead, frac_sat, nonfinite]


_sample_index: dict[tuple[int, int], np.ndarray | None] = {}


def hist_sample(a: np.ndarray, sample: int) -> np.ndarray:
    """A flat copy of the elements of a that reductions.hist_sample takes (at most `sample`, in
    runs): the tensor behind `a` may be changed in place before the sample is binned."""
    flat = a.reshape(-1)
    key = (flat.size, sample)
    idx = _sample_index.get(key, False)
    if idx is False:  # one gather with a cached index: fewer numpy calls than slicing runs out
        layout, idx = sample_runs(flat.size, sample), None
        if layout is not None:
            runs, spacing = layout
            idx = (np.arange(runs, dtype=np.intp)[:, None] * spacing + np.arange(SAMPLE_RUN, dtype=np.intp)).reshape(-1)
        if len(_sample_index) > 256:  # tensor sizes keep changing (e.g. variable-length batches)
            _sample_index.clear()
        _sample_index[key] = idx
    return flat.copy() if idx is None else flat.take(idx)


class HistogramBinner:
    """Bins many samples in one pass, like reductions.batched_histograms and with identical counts.

    A training loop histograms the same tensors every sampled step, so the layout of the batch
    repeats: its offsets and scratch buffers are kept per layout (allocating ~1 MB of fresh pages
    each step costs as much as the binning)."""

    def __init__(self, bins: int):
        self.bins = bins
        self._layouts: dict[tuple, tuple] = {}

    def _layout(self, lens: tuple[int, ...]):
        """Samples are laid out sorted by length, so that equal lengths (most tensors give exactly
        hist_sample elements) form blocks that numpy scales as one 2-D array each."""
        got = self._layouts.get(lens)
        if got is None:
            if len(self._layouts) > 8:  # the set of tensors changed (e.g. a model grew): start over
                self._layouts.clear()
            n, bins = len(lens), self.bins
            order = sorted(range(n), key=lens.__getitem__)
            sorted_lens = np.asarray([lens[i] for i in order], np.intp)
            ends = np.cumsum(sorted_lens)
            starts = ends - sorted_lens
            blocks = []  # (first sample, number of samples, first element, length)
            for i in range(n):
                length = int(sorted_lens[i])
                if blocks and blocks[-1][3] == length:
                    first, count, at, _ = blocks[-1]
                    blocks[-1] = (first, count + 1, at, length)
                else:
                    blocks.append((i, 1, int(starts[i]), length))
            got = self._layouts[lens] = (
                order, np.argsort(order), starts, blocks, np.empty(int(ends[-1]), np.float32),
                np.empty(int(ends[-1]), np.intp), np.repeat(np.arange(0, n * bins, bins, dtype=np.intp), sorted_lens))
        return got

    def __call__(self, samples: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(counts (n, bins), lo (n), hi (n)) of non-empty float32 samples: sample i binned into
        equal-width bins over the range of its finite values; non-finite values are left out."""
        order, unsort, starts, blocks, flat, idx, offsets = self._layout(tuple(map(len, samples)))  # flat samples
        np.concatenate([samples[i] for i in order], out=flat)
        lo, hi = np.minimum.reduceat(flat, starts), np.maximum.reduceat(flat, starts)
        rng = hi - lo
        if not math.isfinite(np.add.reduce(rng)):  # rare: NaN/Inf present, or ranges beyond float32
            return self._one_by_one(samples)
        scale = np.float32(self.bins * HIST_SPAN) / np.maximum(rng, np.float32(1e-30))
        for first, count, at, length in blocks:  # one 2-D block of equal-length samples at a time
            block = flat[at:at + count * length].reshape(count, length)
            block -= lo[first:first + count, None]  # >= 0 exactly for every x >= lo: nothing below bin 0
            # < bins for every x <= hi (HIST_SPAN): none past the last. Computed in float32 and
            # truncated to the bin index on the way out, as the device path does.
            np.multiply(block, scale[first:first + count, None], out=idx[at:at + count * length].reshape(count, length),
                        casting="unsafe")
        idx += offsets  # sample i counts into [i*bins, (i+1)*bins): one bincount for all
        counts = np.bincount(idx, minlength=len(samples) * self.bins).reshape(len(samples), self.bins)
        return counts[unsort], lo[unsort], hi[unsort]

    def _one_by_one(self, samples):
        n, bins = len(samples), self.bins
        counts, lo, hi = np.zeros((n, bins)), np.zeros(n), np.zeros(n)
        for i, s in enumerate(samples):
            s = s[np.isfinite(s)].astype(np.float64)  # float64: a range near 3e38 cannot overflow
            if s.size:
                lo[i], hi[i] = s.min(), s.max()
                pos = (s - lo[i]) * (bins * HIST_SPAN / max(hi[i] - lo[i], 1e-30))
                counts[i] = np.bincount(np.minimum(pos.astype(np.intp), bins - 1), minlength=bins)
        return counts, lo, hi


def _norm(a: np.ndarray) -> float:
    """L2 norm of a flat float32 array. np.dot is BLAS (a 256x256 gradient in ~2 us); it sums in
    float32, so a norm beyond ~1e19 overflows there and is redone in float64."""
    sq = float(np.dot(a, a))
    if not math.isfinite(sq):
        return float(np.linalg.norm(a.astype(np.float64)))
    return math.sqrt(sq)


def param_stats(arrays: list[np.ndarray]) -> list[float]:
    """[norm, abs_mean, nonfinite] of each flat array, concatenated (order = runstore.tags.GRAD_STATS)."""
    out = []
    for a in arrays:
        l2 = _norm(a)
        bad = 0.0 if math.isfinite(l2) else float(a.size - np.count_nonzero(np.isfinite(a)))
        abs_mean = _sum(np.abs(a, out=_scratch(a.size))) / a.size if a.size else math.nan  # NaN, as on a GPU
        out += (l2, abs_mean, bad)
    return out


def update_stats(old: list[np.ndarray], now: list[np.ndarray]) -> tuple[list[float], list[float]]:
    """(||now - old|| / ||old||, ||now||) per parameter, for flat arrays. `old` is overwritten.
    The ratio is undefined (NaN) for a parameter that was exactly zero (a zero-initialised bias)."""
    ratios, norms = [], []
    for o, w in zip(old, now):
        before = _norm(o)
        delta = _norm(np.subtract(o, w, out=o))
        ratios.append(delta / before if before > 0 else math.nan)
        norms.append(_norm(w))
    return ratios, norms


def logits_stats(logits: torch.Tensor, targets: torch.Tensor | None):
    """(confidence per sample, [mean confidence, mean entropy (nats), accuracy or NaN], correct per
    sample or None), as reductions.logits_stats."""
    # Few numpy calls on small arrays: on a training step each call costs more than the arithmetic.
    z = as_numpy(logits)
    classes = z.shape[-1]
    z = z.reshape(-1, classes)
    n = len(z)
    zs = z - z.max(axis=1, keepdims=True)  # <= 0: exp cannot overflow
    e = np.exp(zs)
    s = np.dot(e, _ones(classes))
    conf = 1.0 / s  # the top class has exp(0) = 1
    # H = -sum p log p = log s - sum(p * zs) per sample, with p = e / s
    pz = float(np.vdot(e * conf[:, None], zs))
    if not math.isfinite(pz):  # a -inf logit gives 0 * -inf: count it as 0, as torch does
        pz = float(np.nan_to_num(e * conf[:, None] * zs, nan=0.0).sum())
    entropy = (float(np.add.reduce(np.log(s))) - pz) / n
    correct, acc = None, math.nan
    if targets is not None:
        t = targets.detach()
        if t.is_floating_point() and t.shape == logits.shape:
            t = t.reshape(-1, classes).argmax(-1)
        t = t.cpu().numpy().reshape(-1)
        if t.size == n:
            correct = z.argmax(axis=1) == t
            n_valid = n
            if np.minimum.reduce(t) < 0:  # negative class indices (ignore_index) are left out of the accuracy
                valid = t >= 0
                correct &= valid
                n_valid = np.count_nonzero(valid)
            acc = np.count_nonzero(correct) / max(n_valid, 1)
    return conf, [float(np.add.reduce(conf)) / n, entropy, acc], correct


def fixed_histogram(x: np.ndarray, bins: int, lo: float, hi: float) -> np.ndarray:
    """Counts of x in `bins` equal-width bins over a fixed [lo, hi] (e.g. probabilities over [0, 1])."""
    idx = ((x - lo) * (bins / (hi - lo))).astype(np.intp)
    np.maximum(idx, 0, out=idx)  # ufuncs rather than np.clip, whose Python wrapper costs more here
    return np.bincount(np.minimum(idx, bins - 1, out=idx), minlength=bins)


def calibration_sums(conf: np.ndarray, correct: np.ndarray, bins: int) -> np.ndarray:
    """(3, bins): per confidence bin, the count, sum of confidence and number correct."""
    idx = (conf * bins).astype(np.intp)  # conf in (0, 1], or NaN from NaN logits
    np.maximum(idx, 0, out=idx)
    np.minimum(idx, bins - 1, out=idx)
    return np.stack([np.bincount(idx, minlength=bins), np.bincount(idx, conf, minlength=bins),
                     np.bincount(idx, correct, minlength=bins)]).astype(np.float64)

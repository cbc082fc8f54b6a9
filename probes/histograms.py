"""Histograms: samples of large tensors, and many histograms binned in one pass, in torch (on the
tensor's device, never read back) and numpy (CPU), with identical counts. Both map a tensor's
[min, max] onto [0, bins * HIST_SPAN), so a value lands in the same bin either way."""

from __future__ import annotations

import math

import numpy as np
import torch

from .arrays import group_by_device, quiet

# The maximum lands inside the last bin (float32 rounding of bins * HIST_SPAN is ~1e-7 relative),
# so no clamp is needed on the CPU.
HIST_SPAN = 1 - 1e-6
# A histogram sample is taken in runs of this many consecutive elements, evenly spaced. A sample of
# single elements at a stride of 16 or more floats reads every 64-byte cache line of the tensor, so
# on a CPU it costs a full pass over memory; runs of 8 read 1/16 of a large tensor's lines at the
# default sample size. 256 runs still reach every row of a 256x256 weight matrix.
SAMPLE_RUN = 8


def sample_runs(n: int, sample: int) -> tuple[int, int] | None:
    """(runs, spacing) of the histogram sample of n elements: `runs` runs of SAMPLE_RUN
    consecutive elements starting every `spacing` elements, spread over the whole tensor (what is
    left out at the end is shorter than one spacing); None when all n are taken. Shared by both
    sample functions, so both bin the same elements."""
    if n <= sample:
        return None
    spacing = -(-n // max(sample // SAMPLE_RUN, 1))  # >= SAMPLE_RUN, as n > sample: runs never overlap
    return n // spacing, spacing


# -- samples: copies, because the tensor may be changed in place before the step ends ----------
def sample_torch(x: torch.Tensor, sample: int) -> torch.Tensor:
    """A flat float32 copy of at most `sample` elements of x (sample_runs), for batched_torch."""
    flat = x.detach().reshape(-1)
    layout = sample_runs(flat.numel(), sample)
    if layout is not None:
        runs, spacing = layout
        flat = flat[:runs * spacing].view(runs, spacing)[:, :SAMPLE_RUN].reshape(-1)
    return flat.float() if flat.dtype != torch.float32 else flat.clone()


_sample_index: dict[tuple[int, int], np.ndarray | None] = {}


def sample_numpy(a: np.ndarray, sample: int) -> np.ndarray:
    """A flat copy of the elements of a that sample_torch takes."""
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


# -- many histograms in one pass -----------------------------------------------------------------
def batched_torch(samples: list[torch.Tensor], bins: int):
    """Histograms of many tensors in one pass, without reading anything back to the host: (counts
    (n, bins), lo (n), hi (n)), tensor i binned into `bins` equal-width bins over the range
    [lo[i], hi[i]] of its finite values; non-finite values are left out. About a dozen ops for any
    number of tensors, and fixed shapes throughout: a host-to-device copy of segment lengths, or
    bincount sizing its output, would make the CPU wait for the GPU."""
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


class BatchedNumpy:
    """Bins many samples in one pass, like batched_torch and with identical counts.

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
            # truncated to the bin index on the way out, as batched_torch does.
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


# -- a fixed range (probabilities over [0, 1]) ------------------------------------------------
def fixed_torch(x: torch.Tensor, bins: int, lo: float, hi: float) -> torch.Tensor:
    """Counts of x in `bins` equal-width bins over a fixed [lo, hi]."""
    idx = ((x.detach().float() - lo) * (bins / (hi - lo))).to(torch.int64).clamp_(0, bins - 1)
    return torch.zeros(bins, device=x.device).scatter_add_(0, idx, torch.ones_like(x, dtype=torch.float32))


def fixed_numpy(x: np.ndarray, bins: int, lo: float, hi: float) -> np.ndarray:
    """Counts of x in `bins` equal-width bins over a fixed [lo, hi], as fixed_torch."""
    idx = ((x - lo) * (bins / (hi - lo))).astype(np.intp)
    np.maximum(idx, 0, out=idx)  # ufuncs rather than np.clip, whose Python wrapper costs more here
    return np.bincount(np.minimum(idx, bins - 1, out=idx), minlength=bins)


class StepHistograms:
    """The histogram samples taken during one training step (activations, gradients, weights),
    binned together when it ends: one batched pass per device and one for the CPU, because every
    training step histograms the same tensors."""

    def __init__(self, bins: int, sample: int):
        self.bins, self.sample = bins, sample
        self._torch: list[tuple[str, torch.Tensor]] = []  # (tag, flat sample on a device)
        self._numpy: list[tuple[str, np.ndarray]] = []  # (tag, flat numpy sample)
        self._binner = BatchedNumpy(bins)

    def add_torch(self, tag: str, x: torch.Tensor) -> None:
        self._torch.append((tag, sample_torch(x, self.sample)))

    def add_numpy(self, tag: str, a: np.ndarray) -> None:
        self._numpy.append((tag, sample_numpy(a, self.sample)))

    def add_all(self, hist_tags: tuple, xs: list, *, cpu: bool) -> None:
        """A sample of each non-empty x: flat numpy arrays (cpu) or tensors on one device."""
        k = self.sample
        if cpu:
            self._numpy.extend([(t, sample_numpy(x, k)) for t, x in zip(hist_tags, xs) if x.size])
        else:
            self._torch.extend([(t, sample_torch(x, k)) for t, x in zip(hist_tags, xs) if x.numel()])

    def bin_into(self, buf, step: int) -> None:
        """Bin everything sampled so far into buf (a sink.FlushBuffer) at `step`."""
        queue, self._torch = self._torch, []
        for items in group_by_device(queue, lambda it: it[1]):
            counts, lo, hi = batched_torch([x for _, x in items], self.bins)
            buf.device_hists(tuple(t for t, _ in items), step, counts, lo, hi)
        queue, self._numpy = self._numpy, []
        if queue:
            with quiet():
                counts, lo, hi = self._binner([a for _, a in queue])
            buf.hists(tuple(t for t, _ in queue), step, lo, hi, counts)

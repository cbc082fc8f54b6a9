"""Low-level helpers shared by the statistic families (activations, parameters, logits,
histograms): grouping tensors by device, numpy views of CPU tensors and BLAS sums.

Each family has two implementations of the same numbers. The torch one runs on the tensor's own
device and never reads a result back (on a GPU the cost that matters is waiting for the device;
the recorder's flush is the only sync point). The numpy one runs on CPU tensors' own memory: there
nothing is waited for and the cost is dispatch plus passes over memory. A torch op costs ~5-10 us
before it touches data and a numpy call ~1 us, and BLAS dots give sums and norms in one pass
without a temporary: numpy takes a 128x256 activation's statistics from ~120 us to ~45 us.
tests/test_probes_reductions.py checks that both give the same numbers.

Callers of the numpy functions wrap them in quiet(): NaN/Inf in a user's tensors are counted and
reported, not turned into numpy warnings on the user's console.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import torch


def quiet() -> np.errstate:
    """numpy's floating-point warnings off, for a with-block around the probes' numpy work."""
    return np.errstate(all="ignore")


def group_by_device(items, tensor_of):
    """items in groups by the device of tensor_of(item). All on the CPU is the common case, and
    tensor.is_cpu is much cheaper to ask than tensor.device."""
    if all(tensor_of(it).is_cpu for it in items):
        return [items] if items else []
    groups: dict = {}
    for it in items:
        groups.setdefault(tensor_of(it).device, []).append(it)
    return list(groups.values())


def as_numpy(x: torch.Tensor) -> np.ndarray:
    """A float32 numpy view of a CPU tensor (a converted copy for other float dtypes)."""
    if x.dtype != torch.float32:
        return x.detach().float().numpy()  # fp16/bf16 (autocast, half models); numpy has no bfloat16
    return (x.detach() if x.requires_grad else x).numpy()


_ones_buf = np.ones(0, np.float32)


def ones(n: int) -> np.ndarray:
    """n float32 ones, from one growing buffer (never written to)."""
    global _ones_buf
    if _ones_buf.size < n:
        _ones_buf = np.ones(n, np.float32)
    return _ones_buf[:n]


_local = threading.local()
SCRATCH_MAX = 1 << 22  # elements; a larger temporary is allocated for the call and given back


def scratch(n: int) -> np.ndarray:
    """A float32 temporary, reused per thread: allocating a fresh one per parameter per step costs
    page faults once it is above malloc's mmap threshold."""
    if n > SCRATCH_MAX:
        return np.empty(n, np.float32)
    buf = getattr(_local, "scratch", None)
    if buf is None or buf.size < n:
        buf = _local.scratch = np.empty(max(n, 1 << 16), np.float32)
    return buf[:n]


def dot_sum(a: np.ndarray) -> float:
    """Sum of a flat float32 array as a BLAS dot with ones: twice as fast as ndarray.sum here, and
    as accurate for these sizes (float32 partial sums in SIMD lanes, ~1e-7 relative)."""
    return float(np.dot(a, ones(a.size)))


def norm(a: np.ndarray) -> float:
    """L2 norm of a flat float32 array. np.dot is BLAS (a 256x256 gradient in ~2 us); it sums in
    float32, so a norm beyond ~1e19 overflows there and is redone in float64."""
    sq = float(np.dot(a, a))
    if not math.isfinite(sq):
        return float(np.linalg.norm(a.astype(np.float64)))
    return math.sqrt(sq)

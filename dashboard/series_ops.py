"""Display-side operations on long series: EMA smoothing and spike-preserving downsampling."""

from __future__ import annotations

import numpy as np
import pandas as pd

# 2,000 buckets x (min, max) = 4,000 points: denser than a wide chart has pixels, far fewer than
# 100,000 raw steps, so the browser stays fast while every spike still shows.
MAX_POINTS = 4000


def ema(values: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard-style debiased exponential moving average; NaN/Inf values are skipped (they
    stay NaN in the output) so one bad step does not blank the rest of the curve."""
    v = np.asarray(values, dtype=float)
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing weight must be in [0, 1), got {weight}")
    if weight == 0.0 or v.size == 0:
        return v.copy()
    finite = np.isfinite(v)
    # y_t = w*y_{t-1} + (1-w)*x_t over finite points only, done with pandas' C implementation
    ewm = pd.Series(np.where(finite, v, np.nan)).ewm(alpha=1.0 - weight, adjust=True, ignore_na=True).mean()
    out = ewm.to_numpy().copy()
    out[~finite] = np.nan
    return out


def minmax_downsample(steps: np.ndarray, values: np.ndarray, max_points: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """Keep at most `max_points` points: the minimum and maximum of each of max_points/2 equal
    buckets, in step order. Spikes (a single huge loss) survive; NaN/Inf are kept as NaN gaps
    when a whole bucket is non-finite."""
    steps = np.asarray(steps)
    v = np.asarray(values, dtype=float)
    n = v.size
    if n <= max_points:
        return steps, np.where(np.isfinite(v), v, np.nan)
    nb = max(1, max_points // 2)
    starts = np.linspace(0, n, nb + 1).astype(np.int64)[:-1]
    v = np.where(np.isfinite(v), v, np.nan)
    idx = np.arange(n)
    bucket = np.repeat(np.arange(nb), np.diff(np.append(starts, n)))
    lo_fill = np.where(np.isnan(v), np.inf, v)
    hi_fill = np.where(np.isnan(v), -np.inf, v)
    mins = np.minimum.reduceat(lo_fill, starts)
    maxs = np.maximum.reduceat(hi_fill, starts)
    big = n + 1
    i_min = np.minimum.reduceat(np.where(lo_fill == mins[bucket], idx, big), starts)
    i_max = np.minimum.reduceat(np.where(hi_fill == maxs[bucket], idx, big), starts)
    empty = ~np.isfinite(mins)  # bucket with no finite value: keep its first point as a gap
    i_min = np.where(empty, starts, i_min)
    i_max = np.where(empty, starts, i_max)
    keep = np.unique(np.concatenate([i_min, i_max]))
    return steps[keep], v[keep]


def series_xy(s: pd.Series, *, max_points: int = MAX_POINTS, smoothing: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of a step-indexed series, smoothed then downsampled for display."""
    steps = s.index.to_numpy()
    vals = s.to_numpy(dtype=float)
    if smoothing:
        vals = ema(vals, smoothing)
    return minmax_downsample(steps, vals, max_points)


def nonfinite_steps(s: pd.Series) -> np.ndarray:
    """Steps where the value is NaN or +-Inf (a diverged loss, an overflowed gradient)."""
    v = s.to_numpy(dtype=float)
    return s.index.to_numpy()[~np.isfinite(v)]


def zero_steps(s: pd.Series) -> np.ndarray:
    """Steps where the value is exactly 0 (no gradient reached a layer, a weight that never moved):
    a log axis cannot draw them, so the charts mark them separately."""
    v = s.to_numpy(dtype=float)
    return s.index.to_numpy()[v == 0]

"""Put histograms recorded over different ranges onto one grid, for heatmaps over time.

Each recorded histogram has equal-width bins between its own min and max, which move from step
to step. To stack them as columns of one image, every histogram is redistributed onto a common
grid assuming its counts are spread evenly within each of its bins (linear interpolation of the
cumulative count), which conserves the total count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from runstore import HistSeries

GRID_BINS = 80
# More columns than this are thinned to evenly spaced recorded steps: a chart is ~1,000 px wide.
MAX_COLUMNS = 400
# Fraction of steps at each end whose extreme ranges may fall outside the heatmap's value range.
ROBUST_QUANTILE = 0.02


@dataclass
class HistGrid:
    """Histograms on a common grid: counts[i] is the histogram at steps[i] over `edges`."""

    steps: np.ndarray
    edges: np.ndarray
    counts: np.ndarray  # (len(steps), len(edges) - 1)
    clipped: float = 0.0  # fraction of all counts that lay outside `edges` (piled into the end bins)

    @property
    def centers(self) -> np.ndarray:
        return (self.edges[:-1] + self.edges[1:]) / 2


def thin_rows(n: int, max_rows: int) -> np.ndarray:
    """Indices of at most `max_rows` evenly spaced rows out of n, always keeping the last."""
    if n <= max_rows:
        return np.arange(n)
    idx = np.unique(np.linspace(0, n - 1, max_rows).round().astype(np.int64))
    return idx


def common_range(h: HistSeries, *, robust: bool = True) -> tuple[float, float]:
    """[lo, hi] covering the recorded histograms; a degenerate range is widened. With `robust`
    (and 20+ steps) the few most extreme steps do not set the range: one blow-up step would
    otherwise squeeze every other column into a single row of the heatmap."""
    lo = h.lo[np.isfinite(h.lo)]
    hi = h.hi[np.isfinite(h.hi)]
    if lo.size == 0 or hi.size == 0:
        return -1.0, 1.0
    if robust and lo.size >= 20:
        a, b = float(np.quantile(lo, ROBUST_QUANTILE)), float(np.quantile(hi, 1 - ROBUST_QUANTILE))
    else:
        a, b = float(lo.min()), float(hi.max())
    if not b > a:
        pad = max(abs(a) * 0.05, 1e-6)
        a, b = a - pad, b + pad
    return a, b


def rebin(h: HistSeries, *, bins: int = GRID_BINS, max_columns: int = MAX_COLUMNS,
          value_range: tuple[float, float] | None = None) -> HistGrid:
    """Histograms of `h` on `bins` equal bins over `value_range` (default: the common range);
    values outside it are counted in the first or last bin."""
    if h is None or len(h.steps) == 0:
        raise ValueError("no histograms to rebin")
    rows = thin_rows(len(h.steps), max_columns)
    a, b = value_range or common_range(h)
    grid = np.linspace(a, b, bins + 1)
    out = np.zeros((len(rows), bins))
    outside = 0.0
    nb = h.bins
    frac = np.linspace(0.0, 1.0, nb + 1)
    for j, i in enumerate(rows):
        lo, hi, c = float(h.lo[i]), float(h.hi[i]), np.asarray(h.counts[i], dtype=float)
        if not (np.isfinite(lo) and np.isfinite(hi)):
            continue
        total = c.sum()
        if total <= 0:
            continue
        if hi <= lo:  # every value equal: all mass in the grid bin holding it
            k = int(np.clip(np.searchsorted(grid, lo, side="right") - 1, 0, bins - 1))
            out[j, k] = total
            continue
        edges = lo + frac * (hi - lo)
        cdf = np.concatenate([[0.0], np.cumsum(c)])
        at_grid = np.interp(grid, edges, cdf, left=0.0, right=total)
        out[j] = np.diff(at_grid)
        # mass outside the grid goes to the end bins, so every column keeps its full count
        below, above = at_grid[0], total - at_grid[-1]
        out[j, 0] += below
        out[j, -1] += above
        outside += below + above
    total = out.sum()
    return HistGrid(steps=np.asarray(h.steps)[rows], edges=grid, counts=out,
                    clipped=float(outside / total) if total > 0 else 0.0)


def at_step(h: HistSeries, step: int) -> tuple[int, np.ndarray, np.ndarray]:
    """(recorded step nearest to `step`, its bin edges, its counts)."""
    i = int(np.argmin(np.abs(np.asarray(h.steps) - step)))
    return int(h.steps[i]), h.edges(i), np.asarray(h.counts[i], dtype=float)

"""Per-layer verdicts: the one judgement that both the advice cards and the charts read.

A rule that talks about layers (dead units, saturation, vanishing or missing gradients, oversized
updates) takes its layers from these tables, and a page that colours a layer or writes "in range"
next to it shows the same rows. Each row says which statistic was compared with which threshold
over which steps, so a person can find the number on the chart.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from runstore import tags as T

# Verdict words (the only place they are spelled).
IN_RANGE = "in range"
LARGE = "large"            # above update_ratio_large: fine while the loss falls, first to lower if it climbs
TOO_LARGE = "too large"
TOO_SMALL = "too small"
ALIVE = "alive"
DEAD = "dead"
NOT_SATURATED = "not saturated"
SATURATED = "saturated"
FLOWING = "flowing"
VANISHING = "vanishing"
NO_GRADIENT = "no gradient"  # exactly zero: dead units upstream, a frozen or unused parameter

# Quantities judged per layer (the keys of RunView.verdicts).
UPDATES, DEAD_UNITS, SATURATION, GRADIENT_FLOW = "update_ratio", "frac_dead", "frac_saturated", "grad_flow"
QUANTITIES = (UPDATES, DEAD_UNITS, SATURATION, GRADIENT_FLOW)


@dataclass(frozen=True)
class LayerVerdict:
    """The judgement of one layer on one quantity."""

    name: str                    # module (activations) or parameter (gradients, updates)
    quantity: str                # one of QUANTITIES
    value: float                 # the statistic compared with the thresholds
    statistic: str               # how `value` summarises the recorded series, in words
    steps: tuple[int, int]       # the recorded steps the statistic covers
    verdict: str                 # one of the verdict words above
    severity: str | None = None  # None when nothing is wrong, else "info" | "warning" | "critical"
    since: int | None = None     # first recorded step at which the verdict's condition held

    @property
    def flagged(self) -> bool:
        return self.severity in ("warning", "critical")


def frame(verdicts: list[LayerVerdict]) -> pd.DataFrame:
    """The verdicts as a table (one row per layer, in network order)."""
    cols = [f for f in LayerVerdict.__dataclass_fields__]
    return pd.DataFrame([asdict(v) for v in verdicts], columns=cols)


def _first_at(s: pd.Series, mask) -> int | None:
    hit = s.index[np.asarray(mask, dtype=bool)]
    return int(hit[0]) if len(hit) else None


def _span(s: pd.Series) -> tuple[int, int]:
    return int(s.index[0]), int(s.index[-1])


# -- update-to-weight ratio ---------------------------------------------------------------------
def first_half(s: pd.Series) -> pd.Series:
    """The first half of a layer's record (at least one value): the large early updates, before a
    decaying schedule shrinks them."""
    return s.iloc[: max(1, (len(s) + 1) // 2)]


def update_verdicts(v) -> list[LayerVerdict]:
    """Each layer weight's update ratio: 90th percentile over the first half of its record."""
    th, out = v.th, []
    for p in v.layers.update_weights:
        s = v.run.series(T.update_ratio(p))
        s = s[np.isfinite(s.to_numpy(dtype=float))]
        if s.empty:
            continue
        half = first_half(s)
        value = float(half.quantile(0.9))
        if value > th.update_ratio_high:
            verdict, severity, since = TOO_LARGE, "warning", _first_at(half, half > th.update_ratio_high)
        elif value > th.update_ratio_large:
            verdict, severity, since = LARGE, None, _first_at(half, half > th.update_ratio_large)
        elif value < th.update_ratio_low:
            verdict, severity, since = TOO_SMALL, "warning", int(half.index[0])
        else:
            verdict, severity, since = IN_RANGE, None, None
        out.append(LayerVerdict(p, UPDATES, value, "90th percentile over the first half of the run", _span(half),
                                verdict, severity, since))
    return out


def typical_update(verdicts: list[LayerVerdict]) -> float | None:
    """The median over layer weights of their update statistic: what 'the updates' are for the
    learning-rate rules."""
    vals = [x.value for x in verdicts if math.isfinite(x.value)]
    return float(np.median(vals)) if vals else None


# -- activations ----------------------------------------------------------------------------------
def _tail_verdicts(v, names, stat: str, warn: float, critical: float, bad: str, good: str) -> list[LayerVerdict]:
    out = []
    for m in names:
        s = v.run.series(T.act(m, stat)).dropna()
        if s.empty:
            continue
        tail = v.tail(s)
        value = float(tail.median())
        since = _first_at(s, s >= warn)
        if value >= warn:
            severity = "critical" if value >= critical else "warning"
            out.append(LayerVerdict(m, stat, value, "median over the last part of the run", _span(tail), bad,
                                    severity, since))
        else:
            out.append(LayerVerdict(m, stat, value, "median over the last part of the run", _span(tail), good))
    return out


def dead_verdicts(v) -> list[LayerVerdict]:
    """ReLU-like modules: fraction of units that are zero for every sample (late-run median)."""
    names = [m for m in v.layers.activation_modules if v.layers.model.can_die(m)]
    return _tail_verdicts(v, names, "frac_dead", v.th.dead_warn, v.th.dead_critical, DEAD, ALIVE)


def saturation_verdicts(v) -> list[LayerVerdict]:
    """Bounded activations: fraction of outputs within 1% of a bound (late-run median)."""
    return _tail_verdicts(v, v.layers.activation_modules, "frac_saturated", v.th.saturation_warn,
                          v.th.saturation_critical, SATURATED, NOT_SATURATED)


# -- gradient flow --------------------------------------------------------------------------------
def relative_to_max(a: pd.DataFrame) -> pd.DataFrame:
    """Each layer's mean |grad| divided by the largest layer's at the same step (0 when no layer
    got any gradient at that step)."""
    vals = a.to_numpy(dtype=float, copy=True)
    vals[~np.isfinite(vals)] = np.nan
    with np.errstate(all="ignore"):
        mx = np.nanmax(np.where(np.isnan(vals), -np.inf, vals), axis=1)
    ok = np.isfinite(mx) & (mx >= 0)
    with np.errstate(all="ignore"):
        rel = np.where(mx[ok, None] > 0, vals[ok] / mx[ok, None], 0.0)
    return pd.DataFrame(rel, index=a.index[ok], columns=a.columns)


def gradient_verdicts(v) -> list[LayerVerdict]:
    """Each layer weight's mean |gradient| relative to the strongest layer's (median over the run).
    A layer whose gradient is exactly zero on most recorded steps gets NO_GRADIENT, not VANISHING:
    nothing flows at all (dead units feeding it, a frozen or unused parameter), which a different
    fix addresses than a gradient that shrinks through depth."""
    th, a = v.th, v.grad_abs_mean
    if a.empty:
        return []
    rel = relative_to_max(a) if a.shape[1] >= 2 else None
    out = []
    for p in a.columns:
        s = a[p].dropna()
        if s.empty:
            continue
        zero = s.to_numpy(dtype=float) == 0
        if zero.mean() >= 0.5:
            since = _first_at(s, zero)
            # From the first zero step on, the gradient stayed exactly zero (or the run ended).
            out.append(LayerVerdict(p, GRADIENT_FLOW, 0.0, "share of recorded steps with exactly zero gradient "
                                    f"{zero.mean():.0%}", _span(s), NO_GRADIENT, "critical" if zero.all() else "warning",
                                    since))
            continue
        if rel is None or p not in rel:
            continue
        r = rel[p].dropna()
        if r.empty:
            continue
        value = float(r.median())
        if value < th.vanish_ratio:
            severity = "critical" if value < th.vanish_ratio ** 2 else "warning"
            out.append(LayerVerdict(p, GRADIENT_FLOW, value, "median over the run of mean |grad| / the strongest "
                                    "layer's", _span(r), VANISHING, severity, _first_at(r, r < th.vanish_ratio)))
        else:
            out.append(LayerVerdict(p, GRADIENT_FLOW, value, "median over the run of mean |grad| / the strongest "
                                    "layer's", _span(r), FLOWING))
    return out


JUDGES = {UPDATES: update_verdicts, DEAD_UNITS: dead_verdicts, SATURATION: saturation_verdicts,
          GRADIENT_FLOW: gradient_verdicts}

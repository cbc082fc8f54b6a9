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


def flagged(verdicts: list[LayerVerdict], words=None) -> list[LayerVerdict]:
    """The rows a rule reports: those with one of `words` (default: any flagged row)."""
    if words is None:
        return [x for x in verdicts if x.flagged]
    return [x for x in verdicts if x.verdict in words]


def with_gradient(verdicts: list[LayerVerdict], flow: list[LayerVerdict]) -> list[LayerVerdict]:
    """`verdicts` without the layers the Gradients table (`flow`) reads NO_GRADIENT: their updates
    are zero whatever the step size, so they say nothing about it (no_gradient names them)."""
    none = {x.name for x in flow if x.verdict == NO_GRADIENT}
    return [x for x in verdicts if x.name not in none]


def majority(verdicts: list[LayerVerdict], words) -> bool:
    """Whether more than half of the judged layers read one of `words`."""
    return bool(verdicts) and 2 * len(flagged(verdicts, words)) > len(verdicts)


def as_evidence(verdicts: list[LayerVerdict]) -> list[dict]:
    """The rows as plain dicts (steps as a list), for Finding.evidence["verdicts"]: a finding
    carries the very rows the pages show, so both read the same numbers."""
    out = []
    for x in verdicts:
        d = asdict(x)
        d["steps"] = list(x.steps)
        out.append(d)
    return out


# -- update-to-weight ratio ---------------------------------------------------------------------
def first_half(s: pd.Series) -> pd.Series:
    """The first half of a layer's record (at least one value): the large early updates, before a
    decaying schedule shrinks them."""
    return s.iloc[: max(1, (len(s) + 1) // 2)]


UPDATE_STATISTIC = "90th percentile over the first half of the run, or over the whole run if that is larger"


def update_statistic(s: pd.Series) -> tuple[float, pd.Series]:
    """(value, the steps it covers) of one layer's update ratios: the 90th percentile over the first
    half of the record, where a decaying schedule has not yet shrunk the updates, or over the whole
    record when that is larger, as when the updates grow into a blow-up late in the run (a run that
    diverges at step 120 of 135 has normal updates in its first half)."""
    half = first_half(s)
    q_half, q_all = float(half.quantile(0.9)), float(s.quantile(0.9))
    return (q_all, s) if q_all > q_half else (q_half, half)


def update_verdicts(v) -> list[LayerVerdict]:
    """Each layer weight's update-to-weight ratio (update_statistic) against the thresholds."""
    th, out = v.th, []
    for p in v.layers.update_weights:
        s = v.run.series(T.update_ratio(p))
        s = s[np.isfinite(s.to_numpy(dtype=float))]
        if s.empty:
            continue
        value, part = update_statistic(s)
        if value > th.update_ratio_high:
            verdict, severity, since = TOO_LARGE, "warning", _first_at(part, part > th.update_ratio_high)
        elif value > th.update_ratio_large:
            verdict, severity, since = LARGE, None, _first_at(part, part > th.update_ratio_large)
        elif value < th.update_ratio_low:
            verdict, severity, since = TOO_SMALL, "warning", int(part.index[0])
        else:
            verdict, severity, since = IN_RANGE, None, None
        out.append(LayerVerdict(p, UPDATES, value, UPDATE_STATISTIC, _span(part), verdict, severity, since))
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


# A mean |gradient| below float32's smallest normal number is zero: what is left is denormal dust
# from multiplying zeros (1e-44 on dying_relu's dead layers), not a gradient that can move a weight.
ZERO_GRADIENT = float(np.finfo(np.float32).tiny)
RELATIVE_STATISTIC = "median over the run of mean |grad| / the strongest layer's (steps with a nonzero gradient)"


def zero_stretch(s: pd.Series, min_samples: int, share: float) -> tuple[pd.Series, int] | None:
    """(the final stretch, its zero count) of a gradient series that ends in at least `min_samples`
    exact zeros: the stretch starts at the earliest zero from which on at least `share` of the
    recorded values are zero. None when the series does not end that way."""
    vals = np.abs(s.to_numpy(dtype=float))
    zero = vals < ZERO_GRADIENT
    nonzero = np.flatnonzero(~zero)
    trailing = len(vals) - (int(nonzero[-1]) + 1 if len(nonzero) else 0)
    if trailing < min_samples:
        return None
    zeros_from = np.cumsum(zero[::-1])[::-1]          # zeros from i to the end
    count_from = np.arange(len(vals), 0, -1)           # values from i to the end
    ok = np.flatnonzero(zero & (zeros_from >= share * count_from))
    start = int(ok[0])
    return s.iloc[start:], int(zeros_from[start])


def gradient_verdicts(v) -> list[LayerVerdict]:
    """Each layer weight's mean |gradient| relative to the strongest layer's, median over the steps
    where it got a nonzero gradient.

    A layer whose gradient is exactly zero on its last no_gradient_min_samples recorded steps (or
    more) gets NO_GRADIENT, from the step after which no_gradient_share of its recorded gradients
    are zero; not VANISHING: nothing flows at all (dead units feeding it, an all-zero init, a
    parameter the loss does not depend on), which a different fix addresses than a gradient that
    shrinks through depth. Zero steps never enter the relative statistic, so a verdict never reads
    "0 of the strongest"."""
    th, a = v.th, v.grad_abs_mean
    if a.empty:
        return []
    rel = relative_to_max(a) if a.shape[1] >= 2 else None
    out = []
    for p in a.columns:
        s = a[p].dropna()
        s = s[np.isfinite(s.to_numpy(dtype=float))]
        if s.empty:
            continue
        found = zero_stretch(s, th.no_gradient_min_samples, th.no_gradient_share)
        if found is not None:
            zeros, k = found
            stat = (f"mean |grad| exactly 0 on {k} of the {len(zeros)} recorded steps from step {int(zeros.index[0])} "
                    f"on, the last {th.no_gradient_min_samples} or more included")
            out.append(LayerVerdict(p, GRADIENT_FLOW, 0.0, stat, _span(zeros), NO_GRADIENT, "critical",
                                    int(zeros.index[0])))
            continue
        if rel is None or p not in rel:
            continue
        nonzero = s[np.abs(s.to_numpy(dtype=float)) >= ZERO_GRADIENT]
        r = rel[p].reindex(nonzero.index).dropna()
        if r.empty:
            continue
        value = float(r.median())
        if value < th.vanish_ratio:
            severity = "critical" if value < th.vanish_ratio ** 2 else "warning"
            out.append(LayerVerdict(p, GRADIENT_FLOW, value, RELATIVE_STATISTIC, _span(r), VANISHING, severity,
                                    _first_at(r, r < th.vanish_ratio)))
        else:
            out.append(LayerVerdict(p, GRADIENT_FLOW, value, RELATIVE_STATISTIC, _span(r), FLOWING))
    return out


JUDGES = {UPDATES: update_verdicts, DEAD_UNITS: dead_verdicts, SATURATION: saturation_verdicts,
          GRADIENT_FLOW: gradient_verdicts}

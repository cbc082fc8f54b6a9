"""Pull what each page plots out of a Run, by the tag scheme of runstore.tags. No Streamlit."""

from __future__ import annotations

import numpy as np
import pandas as pd

from runstore import tags

_LAYER_FAMILIES = {"act", "grad", "weight", "update_ratio", "lr", "sys"}


def splits(run) -> list[str]:
    """Evaluation splits and "train" that have any scalar, train first then as recorded."""
    found: dict[str, None] = {}
    for t in run.scalar_tags() + run.hist_tags():
        fam, _, _ = tags.parse(t)
        if fam not in _LAYER_FAMILIES:
            found.setdefault(fam, None)
    out = list(found)
    return (["train"] if "train" in out else []) + [s for s in out if s != "train"]


def lr_tags(run) -> list[str]:
    """Learning-rate tags (one per param group), in group order."""
    ts = [t for t in run.scalar_tags() if t.startswith("lr/")]
    return sorted(ts, key=lambda t: (len(t), t))


def metric_tags(run) -> list[str]:
    """Scalar tags worth offering in a metric picker: splits' metrics and learning rates
    (per-layer statistics have their own pages)."""
    ts = [t for t in run.scalar_tags() if tags.parse(t)[0] not in _LAYER_FAMILIES or t.startswith("lr/")]
    return sorted(ts, key=lambda t: (0 if t.endswith("/loss") else 1, t))


def per_layer(run, family: str, names: list[str], stat: str | None) -> dict[str, pd.Series]:
    """{name: series} of one statistic for each module/parameter that recorded it."""
    out = {}
    have = set(run.scalar_tags())
    for n in names:
        tag = f"{family}/{n}/{stat}" if stat else f"{family}/{n}"
        if tag in have:
            out[n] = run.series(tag)
    return out


def act_stats(run, layers: list[str], stats) -> dict[str, dict[str, pd.Series]]:
    """{stat: {layer: series}} for activation statistics; stats never recorded are left out,
    and frac_saturated is left out when it is NaN throughout (no bounded activation)."""
    out = {}
    have = set(run.scalar_tags())
    for stat in stats:
        d = {}
        for layer in layers:
            tag = tags.act(layer, stat)
            if tag in have:
                s = run.series(tag)
                if not s.isna().all():
                    d[layer] = s
        if d:
            out[stat] = d
    return out


def ratio_series(num: pd.Series, den: pd.Series) -> pd.Series:
    """num / den on the steps both recorded; division by zero gives NaN, not Inf."""
    a, b = num.align(den, join="inner")
    with np.errstate(divide="ignore", invalid="ignore"):
        r = a.to_numpy(dtype=float) / b.to_numpy(dtype=float)
    r[~np.isfinite(r)] = np.nan
    return pd.Series(r, index=a.index, name="ratio")


def calibration(run, split: str) -> list[tuple[int, dict]]:
    """[(step, table)] of a split's calibration tables, in step order."""
    return sorted(run.tables(tags.calibration(split)), key=lambda t: t[0])

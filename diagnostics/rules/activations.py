"""Activation rules: dead_relu (units that never fire) and saturation (bounded units pinned at a
bound, where they pass almost no gradient)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from runstore import tags as T

from ..finding import Finding
from ..view import RELU_TYPES, RunView, pct
from . import fixes


def _tail_medians(v: RunView, df: pd.DataFrame) -> pd.Series:
    tail = v.tail(df)
    with np.errstate(all="ignore"):
        return tail.median(skipna=True)


def _flag_layers(v: RunView, df: pd.DataFrame, warn: float, critical: float):
    """(tail median per flagged layer, flagged layers in column order, severity) for the layers
    whose late-run median reaches `warn`; None when none does."""
    med = _tail_medians(v, df).dropna()
    flagged = med[med >= warn]
    if flagged.empty:
        return None
    layers = tuple(n for n in df.columns if n in flagged.index)
    return flagged, layers, "critical" if float(flagged.max()) >= critical else "warning"


def _first_reaching(df: pd.DataFrame, cols, level: float) -> int:
    hit = (df[list(cols)] >= level).any(axis=1)
    return int(hit.idxmax()) if hit.any() else int(df.index[0])


def _relu_modules(v: RunView) -> list[str]:
    names = v.names("act", "frac_dead")
    out = []
    for n in names:
        mtype = v.module_type(n)
        if mtype is None:
            if "relu" in n.lower():
                out.append(n)
        elif mtype in RELU_TYPES:
            out.append(n)
    return out


def dead_relu(v: RunView) -> list[Finding]:
    """A large fraction of a ReLU layer's units output zero for every sample, late in the run."""
    th = v.th
    names = _relu_modules(v)
    if not names:
        return []
    df = v.frame(lambda m: T.act(m, "frac_dead"), names)
    if df.empty:
        return []
    found = _flag_layers(v, df, th.dead_warn, th.dead_critical)
    if found is None:
        return []
    flagged, layers, severity = found
    rel = v.relative(float(v.smooth.iloc[-1])) if len(v.smooth) else None
    fits = rel is not None and rel < th.fits_well and v.first_nonfinite is None
    if fits and severity == "warning":
        severity = "info"  # lost capacity, but the network still fits its training data
    first = _first_reaching(df, layers, th.dead_warn)
    at_start = {n: float(df[n].dropna().iloc[0]) for n in layers if len(df[n].dropna())}
    dead_from_start = all(x >= th.dead_warn for x in at_start.values())
    per_layer = ", ".join(f"{n} {pct(flagged[n])}" for n in layers[:6])
    msg = (f"Dead ReLU units (zero for every sample of a batch) late in the run: {per_layer}"
           f"{' ...' if len(layers) > 6 else ''} (warn at {pct(th.dead_warn)}). First seen at step {first}.")
    if dead_from_start:
        msg += " They were already dead at the first sample, so the initialization (or input scale) killed them."
        fix = {**fixes.better_init(v)} or {"activation": "leaky_relu", "init": "kaiming"}
    else:
        msg += " They died during training, which large updates typically cause."
        fix = {"activation": "leaky_relu", "init": "kaiming"}
    if v.hparam("activation") in ("leaky_relu", "prelu", "elu", "gelu"):
        fix.pop("activation", None)
    if severity == "info":
        msg += " The training loss is nonetheless close to its floor, so this costs capacity rather than fit."
        fix = {}
    if dead_from_start:  # nothing has been learnt yet: the init (or the input scale) is the cause
        advice = ("Fix the initialization first: use He (Kaiming) init (never all-zero or strongly negative "
                  "biases) and check the inputs are normalized; leaky ReLU / PReLU / ELU keep a gradient for "
                  "negative inputs, and batch norm before the ReLU also helps.")
    else:
        advice = ("Lower the learning rate if it is high (the usual cause), use He (Kaiming) init, and consider "
                  "leaky ReLU / PReLU / ELU, which keep a gradient for negative inputs; batch norm before the ReLU "
                  "also helps.")
    return [Finding(
        rule="dead_relu", severity=severity, title="Dead ReLU units", message=msg, advice=advice,
        evidence={"frac_dead_tail_median": {n: float(flagged[n]) for n in layers},
                  "frac_dead_first_sample": at_start, "dead_warn": th.dead_warn, "dead_critical": th.dead_critical},
        steps=(first, int(df.index[-1])), layers=layers, fix=fix, chart="activations",
        tags=tuple(T.act(n, "frac_dead") for n in layers),
    )]


def saturation(v: RunView) -> list[Finding]:
    """Sigmoid/tanh-like layers with most outputs within 1% of their bounds."""
    th = v.th
    names = v.names("act", "frac_saturated")
    if not names:
        return []
    df = v.frame(lambda m: T.act(m, "frac_saturated"), names)
    df = df.loc[:, df.notna().any()]
    if df.empty:
        return []
    found = _flag_layers(v, df, th.saturation_warn, th.saturation_critical)
    if found is None:
        return []
    flagged, layers, severity = found
    first = _first_reaching(df, layers, th.saturation_warn)
    at_start = {n: float(df[n].dropna().iloc[0]) for n in layers if len(df[n].dropna())}
    per_layer = ", ".join(f"{n} {pct(flagged[n])}" for n in layers[:6])
    msg = (f"Saturated units (within 1% of the activation's bounds, where the derivative is ~0): {per_layer}"
           f"{' ...' if len(layers) > 6 else ''} (warn at {pct(th.saturation_warn)}). First seen at step {first}.")
    if all(x >= th.saturation_warn for x in at_start.values()):
        msg += " They were saturated from the first sample: the initial weights (or inputs) are too large."
    act = v.hparam("activation")
    fix = fixes.better_init(v)
    if not fix:
        fix = fixes.relu_with_he(v) if act in fixes.BOUNDED else {}
    fix.update(fixes.batch_norm_on(v))
    advice = ("Use Glorot (Xavier) init for tanh/sigmoid, normalize the inputs, add batch norm before the "
              "activation, or switch hidden layers to ReLU with He init; a lower learning rate keeps weights "
              "from growing into saturation.")
    return [Finding(
        rule="saturation", severity=severity, title="Saturated activations", message=msg, advice=advice,
        evidence={"frac_saturated_tail_median": {n: float(flagged[n]) for n in layers},
                  "frac_saturated_first_sample": at_start, "saturation_warn": th.saturation_warn,
                  "saturation_critical": th.saturation_critical},
        steps=(first, int(df.index[-1])), layers=layers, fix=fix, chart="activations",
        tags=tuple(T.act(n, "frac_saturated") for n in layers),
    )]

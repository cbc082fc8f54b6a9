"""Activation rules: dead_relu (units that never fire) and saturation (bounded units pinned at a
bound, where they pass almost no gradient). Both report the flagged rows of the Activations
page's verdict tables (diagnostics.verdicts.DEAD_UNITS, SATURATION), with their numbers."""

from __future__ import annotations

from runstore import tags as T

from .. import verdicts as V
from ..finding import Finding
from ..view import RunView, fmt, pct
from . import fixes

# What the probes count as saturated: within 1% of a bound of the activation (architecture.md).
SATURATION_BAND = 0.01


def _first_samples(v: RunView, rows: list[V.LayerVerdict], stat: str) -> dict[str, tuple[int, float]]:
    """{module: (first recorded step, value there)} of one activation statistic."""
    out = {}
    for row in rows:
        s = v.run.series(T.act(row.name, stat)).dropna()
        if len(s):
            out[row.name] = (int(s.index[0]), float(s.iloc[0]))
    return out


def _per_layer(rows: list[V.LayerVerdict], limit: int = 6) -> str:
    """'relu1 98% (from step 50), relu2 73% (from step 8)', or 'tanh1 96%, tanh2 95% (both from
    step 1)' when all share the step, for the flagged rows."""
    since = {x.since for x in rows}
    same = len(since) == 1 and None not in since and len(rows) > 1
    parts = [f"{x.name} {pct(x.value)}" + (f" (from step {x.since})" if x.since is not None and not same else "")
             for x in rows[:limit]]
    text = ", ".join(parts) + (f" and {len(rows) - limit} more" if len(rows) > limit else "")
    if same:
        text += f" ({'both' if len(rows) == 2 else 'all'} from step {since.pop()})"
    return text


def _span_text(rows: list[V.LayerVerdict]) -> str:
    spans = sorted({tuple(x.steps) for x in rows})
    return "; ".join(f"steps {a}-{b}" for a, b in spans)


def dead_relu(v: RunView) -> list[Finding]:
    """A large fraction of a ReLU layer's units output zero for every sample, late in the run."""
    th = v.th
    rows = V.flagged(v.verdicts(V.DEAD_UNITS), (V.DEAD,))
    if not rows:
        return []
    severity = "critical" if any(x.severity == "critical" for x in rows) else "warning"
    end = float(v.smooth.iloc[-1]) if len(v.smooth) else None
    rel = v.relative(end) if end is not None else None
    fits = rel is not None and rel < th.fits_well and v.first_nonfinite is None
    if fits and severity == "warning":
        severity = "info"  # lost capacity, but the network still fits its training data
    start = _first_samples(v, rows, "frac_dead")
    dead_from_start = bool(start) and all(x >= th.dead_warn for _, x in start.values())
    first = min(x.since for x in rows if x.since is not None) if any(x.since is not None for x in rows) \
        else min(x.steps[0] for x in rows)
    msg = (f"Dead ReLU units (zero for every sample of a batch), median over the last part of the run "
           f"({_span_text(rows)}): {_per_layer(rows)}; dead above {pct(th.dead_warn)}, critical above "
           f"{pct(th.dead_critical)}.")
    evidence = {"verdicts": V.as_evidence(rows), "dead_warn": th.dead_warn, "dead_critical": th.dead_critical,
                "frac_dead_first_sample": {n: x for n, (_, x) in start.items()},
                "frac_dead_first_sample_step": {n: s for n, (s, _) in start.items()}}
    if dead_from_start:
        msg += " They were already dead at the first sample, so the initialization (or input scale) killed them."
        fix = {**fixes.better_init(v)} or {"activation": "leaky_relu", "init": "kaiming"}
    else:
        msg += " They died during training, which large updates typically cause."
        fix = {"activation": "leaky_relu", "init": "kaiming"}
    if v.hparam("activation") in ("leaky_relu", "prelu", "elu", "gelu"):
        fix.pop("activation", None)
    if severity == "info":
        msg += (f" The smoothed training loss nonetheless ends at {fmt(end)} at step {int(v.smooth.index[-1])}, "
                f"{v.level_text(end)}, close to its floor: this costs capacity rather than fit.")
        evidence.update(final_smoothed_loss=end, final_smoothed_loss_step=int(v.smooth.index[-1]),
                        relative_level=rel, relative_level_step=int(v.smooth.index[-1]),
                        reference_loss=v.reference_loss, loss_floor=v.loss_floor, fits_well=th.fits_well,
                        smooth_window=v.window)
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
        evidence=evidence, steps=(first, max(x.steps[1] for x in rows)), layers=tuple(x.name for x in rows), fix=fix,
        chart="activations", tags=tuple(T.act(x.name, "frac_dead") for x in rows),
    )]


def saturation(v: RunView) -> list[Finding]:
    """Sigmoid/tanh-like layers with most outputs within 1% of their bounds."""
    th = v.th
    rows = V.flagged(v.verdicts(V.SATURATION), (V.SATURATED,))
    if not rows:
        return []
    severity = "critical" if any(x.severity == "critical" for x in rows) else "warning"
    start = _first_samples(v, rows, "frac_saturated")
    first = min(x.since for x in rows if x.since is not None) if any(x.since is not None for x in rows) \
        else min(x.steps[0] for x in rows)
    msg = (f"Saturated units (within {pct(SATURATION_BAND)} of the activation's bounds, where the derivative nearly vanishes), "
           f"median over the last part of the run ({_span_text(rows)}): {_per_layer(rows)}; saturated above "
           f"{pct(th.saturation_warn)}, critical above {pct(th.saturation_critical)}.")
    if start and all(x >= th.saturation_warn for _, x in start.values()):
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
        evidence={"verdicts": V.as_evidence(rows), "saturation_band": SATURATION_BAND,
                  "saturation_warn": th.saturation_warn, "saturation_critical": th.saturation_critical,
                  "frac_saturated_first_sample": {n: x for n, (_, x) in start.items()},
                  "frac_saturated_first_sample_step": {n: s for n, (s, _) in start.items()}},
        steps=(first, max(x.steps[1] for x in rows)), layers=tuple(x.name for x in rows), fix=fix,
        chart="activations", tags=tuple(T.act(x.name, "frac_saturated") for x in rows),
    )]

"""What the one-run pages show of the judgement (diagnostics.judge): the verdict tables, the layers
to pick first, the statistics drawn as segments, the spans without gradient. No Streamlit, so the
tests can check that every page shows exactly the judgement's verdicts and nothing of its own."""

from __future__ import annotations

import numpy as np
import pandas as pd

from diagnostics import verdicts as V
from diagnostics.finding import SEVERITY_RANK

from .figures.layers import Segment
from .format import number
from .series_ops import zero_steps

# The per-layer quantities each page shows, and whether their names are parameters or modules.
PAGE_QUANTITIES = {"updates": (V.UPDATES,), "gradients": (V.GRADIENT_FLOW,),
                   "activations": (V.DEAD_UNITS, V.SATURATION)}
PARAM_QUANTITIES = {V.UPDATES, V.GRADIENT_FLOW}
# Verdicts worth looking at first although the rules do not flag them (no severity).
NOTABLE = {V.LARGE}
TABLE_COLUMNS = ("layer", "value", "steps", "verdict", "since step")


def steps_text(steps: tuple[int, int]) -> str:
    a, b = steps
    return f"{a:,}–{b:,}" if a != b else f"{a:,}"


def verdict_table(verdicts: list[V.LayerVerdict], model) -> pd.DataFrame:
    """One row per layer, in network order: its label, the statistic the verdict compared (as the
    chart's segment shows it), the steps it covers, the verdict word and the step it began.
    Indexed by the layer's name. `model` is a runstore.layers.LayerModel."""
    rows = [{"layer": model.label(v.name, param=v.quantity in PARAM_QUANTITIES), "value": number(v.value),
             "steps": steps_text(v.steps), "verdict": v.verdict,
             "since step": f"{v.since:,}" if v.since is not None else ""} for v in verdicts]
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS), index=pd.Index([v.name for v in verdicts], name="name"))


def statistic_of(verdicts: list[V.LayerVerdict]) -> str | None:
    """The statistic the verdicts compare, in words (one per quantity; None without verdicts)."""
    words = list(dict.fromkeys(v.statistic for v in verdicts if v.verdict != V.NO_GRADIENT))
    return "; ".join(words) if words else None


def segments(verdicts: list[V.LayerVerdict]) -> list[Segment]:
    """Each verdict's statistic as a segment over the steps it covers."""
    return [Segment(v.name, v.value, v.steps, f"{number(v.value)} over steps {steps_text(v.steps)} → {v.verdict}")
            for v in verdicts]


def _rank(v: V.LayerVerdict) -> int:
    if v.severity is not None:
        return SEVERITY_RANK.get(v.severity, 0) + 1
    return 1 if v.verdict in NOTABLE else 0


def preferred_layers(judged, page: str, options: list[str], *, k: int = 8) -> list[str] | None:
    """The layers a page picks first: those the findings shown on it name, then those with the
    worst verdicts of its quantities (flagged before merely notable ones); None when nothing stands
    out, so the picker spreads its choice over the depth."""
    if judged is None:
        return None
    allowed = set(options)
    out: dict[str, None] = {}
    # the findings shown on this page first, then the others naming its layers, most severe first
    for f in sorted(judged.findings, key=lambda f: (f.chart != page, -SEVERITY_RANK.get(f.severity, 0))):
        for n in f.layers:
            if n in allowed:
                out.setdefault(n, None)
    ranked = []
    for q in PAGE_QUANTITIES.get(page, ()):
        ranked += [v for v in judged.layer_verdicts(q) if v.name in allowed and _rank(v) > 0]
    for v in sorted(ranked, key=lambda v: -_rank(v)):
        out.setdefault(v.name, None)
    picked = list(out)[:k]
    return [n for n in options if n in picked] or None


def no_gradient_spans(verdicts: list[V.LayerVerdict], labels: dict[str, str]) -> list[tuple[int, int, str]]:
    """(first step, last step, label) of each group of layers whose verdict is NO_GRADIENT, from the
    step the verdict says the gradient stopped."""
    groups: dict[tuple[int, int], list[str]] = {}
    for v in verdicts:
        if v.verdict == V.NO_GRADIENT:
            start = v.since if v.since is not None else v.steps[0]
            groups.setdefault((start, v.steps[1]), []).append(labels.get(v.name, v.name))
    return [(a, b, f"no gradient from step {a:,}") for (a, b) in sorted(groups)]


def no_gradient_lines(verdicts: list[V.LayerVerdict], labels: dict[str, str]) -> list[str]:
    """One sentence per group of layers the judgement found without gradient from the same step:
    'No gradient from step 127: fc1.weight (Linear), fc2.weight (Linear) (mean |grad| exactly 0 ...).'"""
    groups: dict[int, list[V.LayerVerdict]] = {}
    for v in verdicts:
        if v.verdict == V.NO_GRADIENT:
            groups.setdefault(v.since if v.since is not None else v.steps[0], []).append(v)
    out = []
    for start, vs in sorted(groups.items()):
        names = ", ".join(labels.get(v.name, v.name) for v in vs)
        stats = list(dict.fromkeys(v.statistic for v in vs))
        out.append(f"No gradient from step {start:,}: {names} ({'; '.join(stats)}).")
    return out


def exact_zeros(series: dict[str, pd.Series]) -> dict[str, tuple[int, int, int]]:
    """{name: (recorded steps with exactly 0, recorded steps, first such step)} for the series that
    have any: what a log axis cannot draw, said in words."""
    out = {}
    for n, s in series.items():
        z = zero_steps(s)
        if z.size:
            out[n] = (int(z.size), int(np.isfinite(s.to_numpy(dtype=float)).sum()), int(z[0]))
    return out

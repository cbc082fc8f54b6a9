"""One judge: on every bundled sample run, the Updates, Gradients and Activations pages show the
judgement's per-layer verdicts (diagnostics.judge), draw its thresholds, and agree with the advice
cards. The pages' data builders are called directly (no server), plus the app itself on the
runs a user reported."""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

import diagnostics
from dashboard.page_verdicts import PAGE_QUANTITIES, preferred_layers, verdict_table
from dashboard.views import activations, gradients, updates
from diagnostics import verdicts as V
from runstore import load_run

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_runs"
SAMPLE_NAMES = sorted(p.name for p in SAMPLES.glob("*") if (p / "run.json").is_file())
pytestmark = pytest.mark.skipif(not SAMPLE_NAMES, reason="sample_runs/ holds no runs")

# Rules that name layers, the quantity whose verdicts they come from, and the words a named layer has.
LAYER_RULES = {"dead_relu": (V.DEAD_UNITS, {V.DEAD}), "saturation": (V.SATURATION, {V.SATURATED}),
               "vanishing_gradients": (V.GRADIENT_FLOW, {V.VANISHING, V.NO_GRADIENT}),
               "no_gradient": (V.GRADIENT_FLOW, {V.NO_GRADIENT}),
               "lr_too_high": (V.UPDATES, {V.LARGE, V.TOO_LARGE}), "lr_too_low": (V.UPDATES, {V.TOO_SMALL})}


@lru_cache(maxsize=None)
def judged(name: str):
    run = load_run(SAMPLES / name)
    return run, diagnostics.judge(run)


def table_matches(table, verdicts) -> None:
    """The table a page shows lists exactly the verdicts, in their order, with their words and values."""
    assert list(table.index) == [v.name for v in verdicts]
    assert list(table["verdict"]) == [v.verdict for v in verdicts]
    for v, shown in zip(verdicts, table["value"]):
        assert float(shown) == pytest.approx(v.value, rel=0.01, abs=1e-300)


def shapes(fig) -> dict:
    return {s.name: s for s in fig.layout.shapes if s.name}


def few_log_labels(lo: float, hi: float, axis) -> bool:
    """Whether a log axis over [lo, hi] (log10 units) carries a readable number of labels: at most 8
    whole-decade steps or listed ticks, or Plotly's own within about a decade."""
    dtick, tickvals = axis["dtick"], axis["tickvals"]
    if isinstance(dtick, (int, float)):
        return (hi - lo) / dtick <= 8
    if tickvals is not None:
        return len(tickvals) <= 8
    return hi - lo <= 1.5


def segment_values(fig) -> dict[str, float]:
    """{layer: value} of the thick statistic segments drawn on a chart."""
    return {t.legendgroup: float(t.y[0]) for t in fig.data if t.mode == "lines" and "→" in (t.name or "")}


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_the_updates_page_shows_the_judgement(name):
    run, j = judged(name)
    options, ratios, verdicts, th, model = updates.page_data(run, j)
    assert verdicts == j.layer_verdicts(V.UPDATES)
    table_matches(verdict_table(verdicts, model), verdicts)
    fig = updates.figure(run, j, options)
    lines = shapes(fig)
    for field in ("update_ratio_low", "update_ratio_large", "update_ratio_high", "update_ratio_guide_cs231n",
                  "update_ratio_guide_notes"):
        assert lines[field].y0 == getattr(th, field), field
    assert (lines["in range"].y0, lines["in range"].y1) == (th.update_ratio_low, th.update_ratio_large)
    # the number in the table is on the chart, where the verdict band puts it
    segs = segment_values(fig)
    for v in verdicts:
        assert segs[v.name] == pytest.approx(v.value)
    # no user-adjustable target: the chart has no band other than the verdicts' zones
    assert {s.name for s in fig.layout.shapes if s.type == "rect" and s.xref == "paper"} <= \
        {"in range", "large", "too large", "too small"}


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_the_gradients_page_shows_the_judgement(name):
    run, j = judged(name)
    d = gradients.PageData(run, j)
    verdicts = j.layer_verdicts(V.GRADIENT_FLOW)
    assert d.verdicts == verdicts
    table_matches(verdict_table(d.verdicts, d.model), verdicts)
    shown = [p for p in d.options(False) if p in d.relative()]
    if not shown:
        return
    fig = d.flow_figure(shown)
    assert shapes(fig)["vanish_ratio"].y0 == j.thresholds.vanish_ratio
    lo, hi = fig.layout.yaxis.range
    assert hi - lo <= 11  # a readable axis, never 1e-20 to 1
    segs = segment_values(fig)
    notes = [a.text for a in fig.layout.annotations]
    for v in verdicts:
        if v.verdict == V.NO_GRADIENT:
            assert f"no gradient from step {v.since:,}" in notes
        elif v.value > 0:
            assert segs[v.name] == pytest.approx(v.value)
    norms = d.norms_figure(d.options(False))
    lo, hi = norms.layout.yaxis.range
    assert hi - lo <= 11 and few_log_labels(lo, hi, norms.layout.yaxis)


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_the_activations_page_shows_the_judgement(name):
    run, j = judged(name)
    d = activations.PageData(run, j)
    assert d.dead == j.layer_verdicts(V.DEAD_UNITS) and d.saturation == j.layer_verdicts(V.SATURATION)
    table_matches(verdict_table(d.dead, d.model), d.dead)
    table_matches(verdict_table(d.saturation, d.model), d.saturation)
    fig = d.figure(d.modules)
    layout = fig.layout.to_plotly_json()
    titles = {ax.get("title", {}).get("text") for k, ax in layout.items() if k.startswith("yaxis")}
    # a panel is drawn exactly when the network has modules it applies to
    assert ("dead units (fraction)" in titles) == bool(d.can_die)
    assert ("saturated (fraction)" in titles) == bool(d.bounded)
    lines = shapes(fig)
    th = j.thresholds
    if d.can_die:
        assert lines["dead_warn"].y0 == th.dead_warn and lines["dead_critical"].y0 == th.dead_critical
    if d.bounded:
        assert lines["saturation_warn"].y0 == th.saturation_warn
    segs = segment_values(fig)
    for v in d.dead + d.saturation:
        assert segs[v.name] == pytest.approx(v.value)


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_every_layer_a_finding_names_is_flagged_on_its_page_and_picked_first(name):
    run, j = judged(name)
    for f in j.findings:
        if f.rule not in LAYER_RULES:
            continue
        quantity, words = LAYER_RULES[f.rule]
        page = next(p for p, qs in PAGE_QUANTITIES.items() if quantity in qs)
        rows = {v.name: v.verdict for v in j.layer_verdicts(quantity)}
        for layer in f.layers:
            assert rows.get(layer) in words, (f.rule, layer, rows.get(layer))
        options = list(rows)
        preferred = preferred_layers(j, page, options, k=len(options))
        assert preferred and set(f.layers) <= set(preferred)


def test_the_user_reported_runs_read_the_same_on_the_updates_page_and_in_the_advice():
    _, j = judged("lr_too_high")
    assert any(f.rule == "lr_too_high" for f in j.findings)
    words = [v.verdict for v in j.layer_verdicts(V.UPDATES)]
    assert 2 * sum(w in (V.LARGE, V.TOO_LARGE) for w in words) > len(words)
    _, base = judged("baseline")
    assert not base.findings
    assert not {v.verdict for v in base.layer_verdicts(V.UPDATES)} & {V.TOO_LARGE, V.TOO_SMALL}
    for name in SAMPLE_NAMES:
        _, j = judged(name)
        if any(f.rule == "lr_too_low" for f in j.findings):
            assert any(v.verdict == V.TOO_SMALL for v in j.layer_verdicts(V.UPDATES)), name


@pytest.mark.skipif("lr_too_high" not in SAMPLE_NAMES or "dying_relu" not in SAMPLE_NAMES,
                    reason="needs the lr_too_high and dying_relu samples")
def test_the_app_shows_the_judgement_on_the_reported_runs(monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setattr(sys, "argv", ["app.py"])
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    at.session_state["current_run"] = os.path.abspath(SAMPLES / "lr_too_high")
    at.switch_page("dashboard/pages/updates.py").run()
    assert not at.exception, [e.value for e in at.exception]
    table = next(d.value for d in at.get("dataframe") if "verdict" in d.value.columns)
    _, j = judged("lr_too_high")
    assert list(table["verdict"]) == [v.verdict for v in j.layer_verdicts(V.UPDATES)]
    # dying_relu: the Gradients page says where the gradient is exactly 0 instead of plunging to 1e-20
    at.session_state["current_run"] = os.path.abspath(SAMPLES / "dying_relu")
    at.switch_page("dashboard/pages/gradients.py").run()
    assert not at.exception, [e.value for e in at.exception]
    spec = next(c for c in at.get("plotly_chart") if c.proto.id.endswith("grad-norms"))
    import json
    layout = json.loads(spec.proto.spec)["layout"]
    lo, hi = layout["yaxis"]["range"]
    assert lo > -12 and few_log_labels(lo, hi, {k: layout["yaxis"].get(k) for k in ("dtick", "tickvals")})
    shown = "\n".join([c.value for c in at.caption] + [w.value for w in at.warning]).lower()
    assert "exactly 0" in shown or "no gradient from step" in shown
    _, j = judged("dying_relu")
    for v in j.layer_verdicts(V.GRADIENT_FLOW):
        if v.verdict == V.NO_GRADIENT:
            assert f"no gradient from step {v.since:,}" in shown
    assert np.isfinite(lo)

"""Every card says only what its evidence holds, and agrees with the verdict tables the pages show.

For every finding on every bundled sample run (and a few synthetic ones):
- each number in the title, message and advice is a value of its evidence, written the way the
  card writes numbers (diagnostics.view.fmt with 3 or 2 digits, pct, or a plain integer), or a
  threshold, a step, or a constant of the run (diagnostics.finding.CONSTANT_EVIDENCE);
- each measured value it quotes has its step in the evidence (`<key>_step` / `<key>_steps`, or the
  steps of a verdict row), and a number said to be a step ("at step 57", "steps 1-113") is one;
- a finding that names layers from a verdict table carries exactly those rows of the judgement;
- the learning-rate findings agree with the Updates table, healthy samples have no layer outside
  the update band, and exactly-zero gradients are never reported as vanishing.
"""

from __future__ import annotations

import dataclasses
import math
import re
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

import diagnostics
from diagnostics import Thresholds
from diagnostics import verdicts as V
from diagnostics.finding import CONSTANT_EVIDENCE
from diagnostics.view import fmt, pct
from test_diagnostics_synth import healthy, layer_steps, write_run

SAMPLES = Path(__file__).resolve().parents[1] / "sample_runs"
SAMPLE_NAMES = sorted(p.name for p in SAMPLES.iterdir() if (p / "run.json").exists())
HEALTHY_SAMPLES = ("baseline", "batchnorm_high_lr", "deep_relu_he", "deep_sigmoid_bn", "digits_cnn", "lstm_clipped",
                   "overfitting_fixed", "tanh_xavier", "underfitting_fixed")
THRESHOLDS = {f.name for f in dataclasses.fields(Thresholds)}
# Rules whose layers are rows of one verdict table, and the verdict words those rows must read.
FROM_TABLE = {
    "dead_relu": (V.DEAD_UNITS, {V.DEAD}),
    "saturation": (V.SATURATION, {V.SATURATED}),
    "vanishing_gradients": (V.GRADIENT_FLOW, {V.VANISHING}),
    "no_gradient": (V.GRADIENT_FLOW, {V.NO_GRADIENT}),
    "lr_too_high": (V.UPDATES, {V.LARGE, V.TOO_LARGE}),
    "lr_too_low": (V.UPDATES, {V.TOO_SMALL}),
}
# Cards that quote text read from the run itself (reader warnings, an exception): not numbers of ours.
QUOTES_RUN_TEXT = {"partial_run", "rule_failed", "coverage"}

# A number as cards write them: 12, 0.303, 3.00e-04, 98%, 16.5x. Not part of a name: fc1.weight,
# relu#2, 0.weight, rnn.weight_ih_l0, lr/group0, CS231n.
NUMBER = re.compile(r"(?<![\w.#/])(\d+(?:\.\d+)?(?:e[+-]\d+)?)(%|x)?(?![\w#]|\.\w)")
CITATION = re.compile(r"\bet al\.,? \d{4}\b")
MORE = re.compile(r"\band (\d+) more\b")  # the tail of diagnostics.view.layer_list
AFTER_STEP = re.compile(r"\bsteps? $")


def quoted(text: str) -> list[tuple[str, str, bool]]:
    """(number as written, suffix '' | '%' | 'x', whether the text calls it a step) per number."""
    text = CITATION.sub("", text)
    out = []
    for m in NUMBER.finditer(text):
        before = text[max(0, m.start() - 6):m.start()]
        # "steps 182-201": the second number of a range is a step when the first is.
        is_step = bool(AFTER_STEP.search(before)) or bool(re.search(r"steps? \d+-$", text[max(0, m.start() - 16):m.start()]))
        out.append((m.group(1), m.group(2) or "", is_step))
    return out


def test_the_number_reader_is_precise():
    text = ("relu2 98% (from step 50); fc1.weight and 3.conv1.weight, 0.weight, relu#2 and rnn.weight_ih_l0 grew "
            "16.5x to 3.00e-04 over steps 182-201 (CS231n; Pascanu et al., 2013) at lr/group0 2.3.")
    assert quoted(text) == [("98", "%", False), ("50", "", True), ("16.5", "x", False), ("3.00e-04", "", False),
                            ("182", "", True), ("201", "", True), ("2.3", "", False)]


def forms(x) -> set[str]:
    """How a card may write the number x."""
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)) or not math.isfinite(float(x)):
        return set()
    x = float(x)
    out = {fmt(x), fmt(x, 2), pct(x)}
    if x == int(x):
        out.add(str(int(x)))
    return out


@dataclasses.dataclass
class Entry:
    key: str
    value: float
    kind: str            # "step" | "threshold" | "constant" | "measured"
    has_step: bool


def entries(evidence: dict) -> list[Entry]:
    """Every number of a finding's evidence with what it is and whether its step is there."""
    out = []

    def kind_of(key: str) -> str:
        if key.endswith(("_step", "_steps")):
            return "step"
        if key in THRESHOLDS or key.endswith("_limit"):
            return "threshold"
        if key in CONSTANT_EVIDENCE:
            return "constant"
        return "measured"

    for key, val in evidence.items():
        kind = kind_of(key)
        if key == "verdicts":
            for row in val:
                out.append(Entry(f"verdicts.{row['name']}.value", row["value"], "measured", bool(row["steps"])))
                out += [Entry(f"verdicts.{row['name']}.steps", s, "step", True) for s in row["steps"]]
                if row["since"] is not None:
                    out.append(Entry(f"verdicts.{row['name']}.since", row["since"], "step", True))
        elif isinstance(val, dict):
            for name, x in val.items():
                steps = [evidence.get(key + "_step"), evidence.get(key + "_steps")]
                has = any(isinstance(s, dict) and name in s for s in steps)
                if isinstance(x, (list, tuple)):
                    out += [Entry(f"{key}.{name}", y, kind, True) for y in x]
                else:
                    out.append(Entry(f"{key}.{name}", x, kind, has))
        elif isinstance(val, (list, tuple)):
            out += [Entry(key, x, kind, kind != "measured") for x in val if not isinstance(x, (str, dict))]
        else:
            has = kind != "measured" or (key + "_step") in evidence or (key + "_steps") in evidence
            out.append(Entry(key, val, kind, has))
    return [e for e in out if forms(e.value)]


def problems(f) -> list[str]:
    """What is wrong with one card's numbers (empty when every number is accounted for)."""
    if f.rule in QUOTES_RUN_TEXT:
        return []
    ev = entries(f.evidence)
    n_layers = max(len(f.layers), len(f.evidence.get("verdicts", [])))
    out = []
    for part in (f.title, f.message, f.advice):
        for m in MORE.finditer(part):
            if not 0 < int(m.group(1)) <= n_layers:
                out.append(f"'and {m.group(1)} more' but the finding has {n_layers} layers")
        for number, suffix, is_step in quoted(MORE.sub("", part)):
            written = number + "%" if suffix == "%" else number
            matches = [e for e in ev if written in forms(e.value)]
            if not matches:
                out.append(f"{written}{'x' if suffix == 'x' else ''} is not in the evidence")
            elif is_step and not any(e.kind == "step" for e in matches):
                out.append(f"step {written} is not a step of the evidence ({[e.key for e in matches]})")
            elif not any(e.has_step for e in matches):
                out.append(f"{written} ({[e.key for e in matches]}) has no step in the evidence")
    return out


@lru_cache(maxsize=None)
def judged(name: str):
    return diagnostics.judge(diagnostics.load_run(SAMPLES / name))


def all_findings():
    return [(name, f) for name in SAMPLE_NAMES for f in judged(name).findings]


def test_every_sample_is_judged():
    assert len(SAMPLE_NAMES) == 20
    rules = {f.rule for _, f in all_findings()}
    # The samples exercise most rules, so the checks below are not vacuous.
    assert {"lr_too_high", "lr_too_low", "dead_relu", "no_gradient", "vanishing_gradients", "saturation",
            "exploding_gradients", "underfitting", "loss_plateau", "overfitting", "nan_loss",
            "bad_init_loss", "low_confidence", "overconfidence"} <= rules


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_every_number_of_every_card_is_in_its_evidence_with_its_step(name):
    bad = {f.rule: problems(f) for f in judged(name).findings}
    assert not {k: v for k, v in bad.items() if v}


def test_the_check_catches_a_number_without_evidence():
    f = next(f for _, f in all_findings() if f.rule == "exploding_gradients")
    assert problems(f) == []
    # The numbers of a criterion that did not fire, quoted without their evidence: what a user
    # found on lr_too_high before (16.5x in the text, growth 8.845 in the evidence).
    wrong = dataclasses.replace(f, message=f.message + " The norm grew 8.85x by step 204.")
    stripped = dataclasses.replace(f, evidence={k: v for k, v in f.evidence.items() if k != "grad_norm_spike_step"})
    assert any("has no step" in p or "not a step" in p for p in problems(stripped))
    assert any("204" in p for p in problems(wrong))
    percent = dataclasses.replace(f, message="97% of it.")
    assert problems(percent) == ["97% is not in the evidence"]


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_findings_with_layers_carry_their_verdict_rows(name):
    j = judged(name)
    for f in j.findings:
        if f.rule not in FROM_TABLE:
            # Only exploding_gradients names layers without a verdict table: the ones with the
            # largest gradient norm at the step its evidence names.
            assert not f.layers or f.rule == "exploding_gradients", f.rule
            continue
        quantity, words = FROM_TABLE[f.rule]
        table = {row["name"]: row for row in V.as_evidence(j.verdicts[quantity])}
        rows = {row["name"]: row for row in f.evidence["verdicts"]}
        assert set(f.layers) <= set(rows), f.rule
        for layer in f.layers:
            assert rows[layer] == table[layer], (f.rule, layer)
            assert rows[layer]["verdict"] in words, (f.rule, layer, rows[layer]["verdict"])


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_learning_rate_findings_agree_with_the_updates_table(name):
    j = judged(name)
    table = j.verdicts[V.UPDATES]
    rules = {f.rule for f in j.findings}
    if "lr_too_high" in rules and table:
        assert V.majority(table, (V.LARGE, V.TOO_LARGE)), [(x.name, x.verdict) for x in table]
    low = [f for f in j.findings if f.rule == "lr_too_low"]
    if low and table:
        assert all(r["verdict"] == V.TOO_SMALL for r in low[0].evidence["verdicts"] if r["name"] in low[0].layers)
        assert V.majority([x for x in table if x.name in {r["name"] for r in low[0].evidence["verdicts"]}],
                          (V.TOO_SMALL,))
    if name in HEALTHY_SAMPLES:
        assert not [x.name for x in table if x.verdict in (V.TOO_LARGE, V.TOO_SMALL)]
        assert not [f.rule for f in j.findings if f.rank >= 1]


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_zero_gradients_are_never_called_vanishing(name):
    j = judged(name)
    for row in j.verdicts[V.GRADIENT_FLOW]:
        if row.verdict == V.VANISHING:
            assert row.value > 0, row
    for f in j.findings:
        assert not re.search(r"\b0 of the strongest", f.message)


@pytest.mark.parametrize("name,since", [("dying_relu", 127), ("zero_init", 1)])
def test_exactly_zero_gradients_get_no_gradient_from_the_step_they_stopped(name, since):
    j = judged(name)
    rows = {x.name: x for x in j.verdicts[V.GRADIENT_FLOW]}
    assert {n: x.verdict for n, x in rows.items()} == {n: V.NO_GRADIENT for n in rows}
    assert {x.since for x in rows.values()} == {since}
    f = next(f for f in j.findings if f.rule == "no_gradient")
    assert f"from step {since} on" in f.message and "vanishing_gradients" not in {g.rule for g in j.findings}
    assert "dead_relu" in f.evidence["likely_caused_by"]


def test_the_plateau_is_a_final_stretch():
    """dying_relu learned (train loss 0.24-0.9 over steps 11-54), then collapsed to chance: the
    plateau is the stretch after the collapse, not 'since step 3'."""
    j = judged("dying_relu")
    f = next(f for f in j.findings if f.rule == "loss_plateau")
    start = f.evidence["plateau_start_step"]
    assert start > 60 and f.evidence["lowest_before"] < 0.5
    sm = j.view.smooth.loc[start:]
    level = f.evidence["plateau_level"]
    # Within 3% of the level, apart from excursions shorter than the smoothing window.
    assert (np.abs(sm / level - 1) > f.evidence["plateau_tol"]).mean() < 0.2


def test_smoothed_values_quoted_are_on_the_curve_the_overview_draws():
    j = judged("lr_too_high")
    f = next(f for f in j.findings if f.rule == "lr_too_high")
    assert f.evidence["smooth_window"] == j.view.window
    for key in ("rise_from", "rise_to", "final_smoothed_loss"):
        step = f.evidence[key + "_step"]
        assert j.view.smooth.loc[step] == pytest.approx(f.evidence[key]), key


def test_exploding_gradients_quotes_only_the_criteria_that_fired():
    f = next(f for f in judged("lr_too_high").findings if f.rule == "exploding_gradients")
    assert "growth" not in f.evidence and "grad_to_weight_peak" not in f.evidence
    assert f"{fmt(f.evidence['grad_norm_spike'])}x" in f.message
    assert f"step {f.evidence['grad_norm_spike_step']}" in f.message and "train/grad_norm" in f.tags


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_advice_with_one_direction_and_size_carries_the_fix(name):
    for f in judged(name).findings:
        if "(the fix below" in f.advice:
            assert f.fix, (f.rule, f.advice)
        if f.rule in ("lr_too_high", "lr_too_low") or (f.rule == "underfitting" and f.severity == "info"):
            assert f.fix, f.rule
        if f.rule == "nan_loss":
            assert f.fix == ({} if "before any update" in f.advice else {"lr": f.fix["lr"], "grad_clip": 1.0})


def test_synthetic_pathologies_pass_the_same_checks(tmp_path):
    """Rules the samples do not reach (summed loss, NaN gradients, oscillation...) on synthetic runs."""
    specs = {}
    s = healthy()
    s["loss"][300:] = np.nan
    specs["nan"] = s
    s = healthy()
    m = len(layer_steps(s["n"], s["every"]))
    s["grad"]["net.2.weight"]["nonfinite"] = np.where(np.arange(m) >= 30, 5.0, 0.0)
    specs["nonfinite_grad"] = s
    s = healthy()
    s["hparams"]["batch_size"] = 4
    s["loss"][0] = 4 * np.log(10)
    specs["summed"] = s
    s = healthy()
    s["loss"] = 2.3 + 1.5 * np.abs(np.sin(np.arange(s["n"])))
    for p in s["update"]:
        s["update"][p] = np.full_like(s["update"][p], 0.3)
    specs["thrash"] = s
    s = healthy()
    for p in s["grad"]:
        s["grad"][p]["norm"] = s["grad"][p]["norm"] * np.geomspace(1, 1e4, m)
    specs["growth"] = s
    seen = set()
    for key, spec in specs.items():
        for f in diagnostics.advise(diagnostics.load_run(write_run(tmp_path / key, spec))):
            seen.add(f.rule)
            assert problems(f) == [], (key, f.rule, f.message)
    assert {"nan_loss", "exploding_gradients", "bad_init_loss", "lr_too_high"} <= seen

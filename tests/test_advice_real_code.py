"""Advice that holds on real code (issue 14), each behaviour on a small synthetic run written the way
the probes write one: task-aware loss levels (language models, declared floors, GANs), overfitting
with a flattened train loss, no pre-update symptom blamed on the learning rate, a noise-aware
lr_too_high and weight growth, the rules for real bugs, NaN provenance, findings grouped by problem,
and the probes' coverage events on a real (tiny) torch loop. Every new card passes the evidence
check of test_findings_evidence. benchmarks/advice_corpus.py measures the same on real-shaped
programs; these tests keep each piece from regressing, cheaply.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import diagnostics
from diagnostics.cli import render_table
from test_diagnostics_synth import MODULES, healthy, layer_steps, write_run
from test_findings_evidence import problems


def judge(tmp_path, spec, name="run"):
    run = diagnostics.load_run(write_run(tmp_path / name, spec))
    return run, diagnostics.advise(run)


def warned(findings) -> list[str]:
    return [f.rule for f in findings if f.rank >= 1]


def the(findings, rule):
    found = [f for f in findings if f.rule == rule]
    assert found, f"no {rule} in {[(f.rule, f.severity) for f in findings]}"
    assert problems(found[0]) == [], problems(found[0])
    return found[0]


def m_of(spec) -> int:
    return len(layer_steps(spec["n"], spec["every"]))


# -- task-aware levels ------------------------------------------------------------------------------
def language_model(vocab: int = 32, end: float = 1.9) -> dict:
    """A character model that converged at its text's entropy: ln(32) = 3.47 -> 1.9 (0.55 ln V), the
    validation loss flat beside it, a spread next-symbol distribution (confidence 0.35)."""
    spec = healthy()
    n, rng = spec["n"], np.random.default_rng(1)
    t = np.arange(1, n + 1) / n
    spec["loss"] = (end + (math.log(vocab) - end) * np.exp(-8 * t)) * (1 + 0.04 * rng.standard_normal(n))
    ev = spec["scalars"]["val/loss"][0]
    te = ev / n
    ls = layer_steps(n, spec["every"])
    spec["scalars"] = {"val/loss": (ev, end + 0.05 + (math.log(vocab) - end) * np.exp(-8 * te)),
                       "train/accuracy": (ls, np.full(len(ls), 0.4)), "train/confidence": (ls, np.full(len(ls), 0.35))}
    spec["meta"] = {"n_classes": vocab,
                    "model": {"class": "GPT", "modules": [{"name": "wte", "type": "Embedding", "params": vocab * 16}]
                              + MODULES}}
    return spec


def test_a_language_model_at_its_texts_entropy_is_not_underfitting_and_reads_as_perplexity(tmp_path):
    _, findings = judge(tmp_path, language_model())
    assert warned(findings) == []
    task = the(findings, "task_context")
    assert task.severity == "info" and task.evidence["task"] == "language_model"
    assert "perplexity" in task.message and task.evidence["final_eval_loss_perplexity"] == pytest.approx(
        math.exp(task.evidence["final_eval_loss"]))
    # Declared a classifier, the same numbers are underfitting: the floor is what changed.
    spec = language_model()
    spec["meta"]["task"] = "classification"
    _, findings = judge(tmp_path, spec, "declared")
    assert "underfitting" in warned(findings)


def test_a_declared_loss_floor_judges_the_level_against_it(tmp_path):
    spec = language_model(end=3.0)
    spec["meta"].update(task="lm", loss_floor=1.9)
    _, findings = judge(tmp_path, spec)
    f = the(findings, "underfitting")
    assert f.evidence["loss_floor"] == 1.9 and f.severity == "warning"


def test_a_gan_is_recognised_and_the_minimisation_rules_stand_down(tmp_path):
    spec = healthy()
    n, rng = spec["n"], np.random.default_rng(2)
    t = np.arange(1, n + 1) / n
    spec["loss"] = 0.7 + 0.8 * t + 0.3 * np.abs(rng.standard_normal(n))  # the generator's loss climbs: normal
    steps = np.arange(1, n + 1)
    spec["scalars"] = {"train/Loss_D": (steps, 1.3 - 0.6 * t)}
    spec["meta"] = {"model": {"class": "Generator", "modules": MODULES}}
    _, findings = judge(tmp_path, spec)
    assert not set(warned(findings)) & {"lr_too_high", "underfitting", "loss_plateau", "lr_too_low", "overfitting"}
    f = the(findings, "task_context")
    assert f.evidence["task"] == "adversarial" and "stand down" in f.message and "train/Loss_D" in f.tags


# -- overfitting ------------------------------------------------------------------------------------
def test_overfitting_is_caught_where_the_train_loss_has_flattened(tmp_path):
    """makemore on a few names: the train loss is flat long before the validation loss climbs, so
    'the train loss kept falling' never holds; the gap over the same steps shows it."""
    spec = healthy()
    n, rng = spec["n"], np.random.default_rng(3)
    t = np.arange(1, n + 1) / n
    spec["loss"] = (0.8 + 1.5 * np.exp(-40 * t)) * (1 + 0.05 * rng.standard_normal(n))
    ev = spec["scalars"]["val/loss"][0]
    spec["scalars"]["val/loss"] = (ev, np.linspace(2.4, 3.4, len(ev)))
    f = the(judge(tmp_path, spec)[1], "overfitting")
    assert f.severity == "warning" and f.evidence["loss_gap"] > 0.5
    assert "train_loss_at_best" not in f.evidence  # it did not fall: the gap is what fired


# -- optimizer-aware gradients, ranking -------------------------------------------------------------
def test_a_symptom_present_before_any_update_is_not_blamed_on_the_learning_rate(tmp_path):
    spec = healthy()
    m = m_of(spec)
    spec["act"]["net.1"]["frac_dead"] = np.full(m, 0.95)  # dead at the first sample: the init did it
    for p in spec["update"]:
        spec["update"][p] = np.full_like(spec["update"][p], 0.5)
    spec["loss"][5:] = 2.25 + 0.02 * np.sin(np.arange(len(spec["loss"]) - 5))
    spec["loss"][3] = 9.0
    findings = judge(tmp_path, spec)[1]
    assert "lr_too_high" in warned(findings)
    dead = the(findings, "dead_relu")
    assert "lr_too_high" not in dead.evidence.get("likely_caused_by", [])


def test_a_summed_loss_under_adam_gets_the_advice_of_a_mean_loss(tmp_path):
    """Adam's steps do not change when the loss is summed over a batch of 64 instead of averaged;
    neither may the verdict on its gradients."""
    results = []
    for name, scale in (("mean", 1.0), ("sum", 64.0)):
        spec = healthy()
        spec["hparams"] = {**spec["hparams"], "optimizer": "adam"}
        spec["loss"] = spec["loss"] * scale
        spec["scalars"]["val/loss"] = (spec["scalars"]["val/loss"][0], spec["scalars"]["val/loss"][1] * scale)
        for p in spec["grad"]:
            spec["grad"][p]["norm"] = spec["grad"][p]["norm"] * scale
            spec["grad"][p]["abs_mean"] = spec["grad"][p]["abs_mean"] * scale
        spec["meta"] = {"task": "regression"}  # no class count: a summed loss is not compared with ln(C)
        results.append(warned(judge(tmp_path, spec, name)[1]))
    assert results[0] == results[1] == []


# -- noise-aware lr_too_high, weight growth ---------------------------------------------------------
def _bumpy(noise: float) -> dict:
    spec = healthy()
    n, rng = spec["n"], np.random.default_rng(4)
    t = np.arange(1, n + 1) / n
    base = 1.0 + 1.3 * np.exp(-12 * t)
    base[200:260] += 0.65  # a bump of the smoothed loss: 1.65x its running minimum, 0.28x the initial loss
    spec["loss"] = np.clip(base + noise * rng.standard_normal(n), 0.05, None)
    for p in spec["update"]:
        spec["update"][p] = np.full_like(spec["update"][p], 0.06)  # "large": a high learning rate
    return spec


def test_a_rise_within_the_losss_own_noise_is_not_a_blow_up(tmp_path):
    assert "lr_too_high" not in warned(judge(tmp_path, _bumpy(noise=0.4), "noisy")[1])
    assert "lr_too_high" in warned(judge(tmp_path, _bumpy(noise=0.02), "quiet")[1])


def test_weights_growing_under_large_updates_are_a_too_high_learning_rate(tmp_path):
    spec = healthy()
    m = m_of(spec)
    spec["loss"] = spec["loss"] + 0.8  # does not reach its floor
    for p in spec["update"]:
        spec["update"][p] = np.full_like(spec["update"][p], 0.06)
    for p in spec["weight_norm"]:
        spec["weight_norm"][p] = np.geomspace(10, 80, m) if p.endswith("weight") else spec["weight_norm"][p]
    f = the(judge(tmp_path, spec)[1], "lr_too_high")
    assert f.evidence["weight_growth"] == pytest.approx(8.0, rel=0.01) and f.fix == {"lr": 0.017}


# -- real bugs --------------------------------------------------------------------------------------
def test_gradients_that_are_never_reset(tmp_path):
    spec = healthy()
    m = m_of(spec)
    acc = np.minimum(np.arange(1, m + 1), 12) * 4.0  # piles up, then (dead units) nothing new is added
    for p in spec["grad"]:
        spec["grad"][p]["norm"] = acc * (1 + 1e-4 * np.arange(m))
    findings = judge(tmp_path, spec)[1]
    f = the(findings, "grad_not_zeroed")
    assert warned(findings)[0] == "grad_not_zeroed" and "zero_grad()" in f.advice


def test_a_softmax_before_cross_entropy(tmp_path):
    spec = healthy()
    n, c = spec["n"], 10
    cap, floor = math.e / (math.e + c - 1), math.log(math.e + c - 1) - 1
    t = np.arange(1, n + 1) / n
    spec["loss"] = floor + (math.log(c) - floor) * np.exp(-6 * t)
    ev, ls = spec["scalars"]["val/loss"][0], layer_steps(n, spec["every"])
    spec["scalars"] = {"val/loss": (ev, floor + 0.03 + 0 * ev), "val/accuracy": (ev, np.full(len(ev), 0.96)),
                       "val/confidence": (ev, np.full(len(ev), cap * 0.985)),
                       "train/accuracy": (ls, np.full(len(ls), 0.97)), "train/confidence": (ls, np.full(len(ls), cap))}
    run, findings = judge(tmp_path, spec)
    f = the(findings, "probabilities_as_logits")
    assert warned(findings)[0] == "probabilities_as_logits"
    problems_, _ = diagnostics.group(findings)
    assert len(problems_) == 1 and {x.rule for x in problems_[0].consequences} >= {"underfitting"}
    assert "1 independent problem" in render_table(findings, run, color=False)


def _first_layers(spec, stds):
    for name, s in zip(("net.0", "net.1", "net.2"), stds):
        spec["act"][name]["std"] = np.full(m_of(spec), s)


def test_unnormalized_inputs_are_told_apart_from_a_large_init(tmp_path):
    spec = healthy()
    _first_layers(spec, (60.0, 35.0, 24.0))  # raw pixels: the first layer is large, the next scales by 0.69
    spec["hparams"]["normalize_inputs"] = False
    f = the(judge(tmp_path, spec, "raw")[1], "unnormalized_inputs")
    assert f.layers == ("net.0",) and f.fix == {"normalize_inputs": True}
    spec = healthy()
    _first_layers(spec, (7.0, 4.0, 39.0))  # a large init: every layer amplifies
    assert "unnormalized_inputs" not in warned(judge(tmp_path, spec, "init")[1])


def test_weight_decay_that_shrinks_the_weights_of_a_model_that_does_not_fit(tmp_path):
    spec = healthy()
    spec["loss"] = spec["loss"] + 1.1
    spec["hparams"]["weight_decay"] = 0.1
    for p in spec["weight_norm"]:
        spec["weight_norm"][p] = np.linspace(10, 3, m_of(spec))
    findings = judge(tmp_path, spec)[1]
    f = the(findings, "over_regularization")
    assert warned(findings)[0] == "over_regularization" and f.fix == {"weight_decay": 0.001}
    assert "over_regularization" in the(findings, "underfitting").evidence["likely_caused_by"]


def test_frozen_parameters_warn_only_where_the_model_does_not_fit(tmp_path):
    spec = healthy()
    spec["meta"] = {"n_classes": 10, "model": {"class": "MLP", "modules": MODULES, "n_params": 26122,
                                               "n_trainable": 1290}}
    spec["loss"] = spec["loss"] + 1.2
    assert the(judge(tmp_path, spec, "stuck")[1], "frozen_parameters").severity == "warning"
    spec = healthy()
    spec["meta"] = {"n_classes": 10, "model": {"class": "MLP", "modules": MODULES, "n_params": 26122,
                                               "n_trainable": 1290}}
    assert the(judge(tmp_path, spec, "fits")[1], "frozen_parameters").severity == "info"


def test_the_same_batches_in_the_same_order_every_epoch(tmp_path):
    """A class-sorted dataset read in order: the batch loss repeats its pattern every epoch (30
    steps here); shuffled batches do not, and a language model reading its corpus in order is
    trained that way on purpose."""
    spec = healthy()
    n, rng = spec["n"], np.random.default_rng(5)
    pattern = rng.random(30)  # each position of the epoch holds the same batch
    spec["loss"] = spec["loss"] * (1 + 2.0 * np.tile(pattern, n // 30 + 1)[:n])
    spec["hparams"]["shuffle"] = False
    f = the(judge(tmp_path, spec, "sorted")[1], "unshuffled_data")
    assert f.evidence["epoch_lag"] == 30 and f.fix == {"shuffle": True}
    assert "unshuffled_data" not in warned(judge(tmp_path, healthy(), "shuffled")[1])
    lm = language_model()
    lm["loss"] = lm["loss"] * (1 + 0.3 * np.tile(pattern, n // 30 + 1)[:n])
    assert "unshuffled_data" not in warned(judge(tmp_path, lm, "lm")[1])


# -- NaN provenance ---------------------------------------------------------------------------------
def test_nan_provenance_names_the_first_module_with_non_finite_outputs(tmp_path):
    spec = healthy()
    spec["loss"][300:] = np.nan
    m = m_of(spec)
    from_301 = np.where(layer_steps(spec["n"], spec["every"]) >= 301, 100.0, 0.0)
    for name in ("net.2", "net.3", "net.4"):
        spec["act"][name]["nonfinite"] = from_301
    f = the(judge(tmp_path, spec)[1], "nan_loss")
    assert f.evidence["nonfinite_module"] == "net.2" and f.evidence["nonfinite_module_step"] == 301
    assert "the modules before it were finite" in f.message and "act/net.2/nonfinite" in f.tags
    assert m > 0


# -- probes: coverage events on a real loop ---------------------------------------------------------
def test_coverage_events_for_functional_activations_closures_and_loops(tmp_path):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    import probes

    class Loop(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.cell, self.out = torch.nn.Linear(2, 8), torch.nn.Linear(8, 8), torch.nn.Linear(8, 1)

        def forward(self, x):
            h = F.relu(self.fc1(x))
            for _ in range(10):  # one module called ten times per forward pass
                h = torch.tanh(self.cell(h))
            return self.out(h)

    torch.manual_seed(0)
    model = Loop()
    opt = torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=3)
    x, y = torch.randn(16, 2), torch.randn(16, 1)
    rec = probes.attach(model, opt, run_dir=tmp_path / "r", every=1)
    for _ in range(3):
        def closure():
            opt.zero_grad()
            loss = F.mse_loss(model(x), y)
            loss.backward()
            return loss
        rec.record_step(opt.step(closure))
    rec.close()
    run = diagnostics.load_run(tmp_path / "r")
    notes = " | ".join(run.events[run.events["kind"] == "coverage"]["message"])
    assert "No activation module" in notes and "LBFGS takes a closure" in notes and "cell is called 10 times" in notes
    assert not [t for t in run.scalar_tags() if t.startswith("act/cell#5/")]  # capped at 4 calls
    assert 1 in run.series("grad/fc1.weight/norm").index  # the closure's gradient, from the first step on
    assert the(diagnostics.advise(run), "coverage").severity == "info"

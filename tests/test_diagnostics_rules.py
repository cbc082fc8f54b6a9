"""Each rule on a synthetic run with exactly one pathology (written through runstore.RunWriter like
probes would), the healthy baseline staying quiet, root-cause ranking, fixes and threshold overrides."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import diagnostics
from diagnostics import Finding, Thresholds
from test_diagnostics_synth import healthy, layer_steps, write_run
from test_findings_evidence import problems


def advise_spec(tmp_path, spec, config=None, name="run"):
    path = write_run(tmp_path / name, spec)
    return diagnostics.advise(diagnostics.load_run(path), config)


def alarms(findings):
    return [f.rule for f in findings if f.severity != "info"]


def by_rule(findings, rule) -> Finding:
    matches = [f for f in findings if f.rule == rule]
    assert matches, f"no {rule} finding in {[(f.rule, f.severity) for f in findings]}"
    return matches[0]


def test_healthy_run_has_no_warning(tmp_path):
    assert alarms(advise_spec(tmp_path, healthy())) == []


def test_diverging_run_ending_in_nan_leads_with_learning_rate(tmp_path):
    spec = healthy()
    loss = spec["loss"].copy()
    loss[100:200] = loss[100] * np.exp(np.linspace(0, 12, 100))  # climbs for 100 steps
    loss[200:] = np.nan
    spec["loss"] = loss
    for p in spec["update"]:
        spec["update"][p] = np.full_like(spec["update"][p], 0.3)
    findings = advise_spec(tmp_path, spec)
    first = findings[0]
    assert first.rule == "lr_too_high" and first.severity == "critical"
    assert first.fix == {"lr": 0.005}  # hparams lr 0.05 divided by 10
    assert first.steps[0] <= 200 and first.evidence["first_nonfinite_step"] == 201
    nan = by_rule(findings, "nan_loss")
    assert nan.evidence["first_nonfinite_step"] == 201
    assert nan.evidence["likely_caused_by"] == ["lr_too_high"]
    assert "consequence of lr_too_high" in nan.message


def test_nan_from_a_bad_batch_is_not_blamed_on_learning_rate(tmp_path):
    spec = healthy()
    spec["loss"][300:] = np.nan  # out of nowhere, no rise, normal update sizes
    findings = advise_spec(tmp_path, spec)
    assert "lr_too_high" not in alarms(findings)
    nan = by_rule(findings, "nan_loss")
    assert nan.severity == "critical" and nan.steps == (301, 600)
    assert "Last finite value" in nan.message


def test_nan_at_the_first_step_points_at_data(tmp_path):
    spec = healthy()
    spec["loss"][:] = np.nan
    findings = advise_spec(tmp_path, spec)
    nan = by_rule(findings, "nan_loss")
    assert nan.fix == {} and "before any update" in nan.advice
    assert "lr_too_high" not in alarms(findings)


def test_lr_too_low_from_tiny_updates(tmp_path):
    spec = healthy()
    spec["loss"] = np.linspace(2.3, 2.15, spec["n"]) + 0.01 * np.sin(np.arange(spec["n"]))
    for p in spec["update"]:
        spec["update"][p] = np.full_like(spec["update"][p], 1e-5)
    spec["scalars"]["val/loss"] = (spec["scalars"]["val/loss"][0], np.linspace(2.3, 2.17, 10))
    findings = advise_spec(tmp_path, spec)
    f = by_rule(findings, "lr_too_low")
    assert f.severity == "warning" and f.fix == {"lr": 0.5}  # 0.05 x 10
    assert f.evidence["typical_update"] == pytest.approx(1e-5)
    # The card's layers are the Updates table's "too small" rows, and it carries those rows.
    assert f.layers == ("net.0.weight", "net.2.weight", "net.4.weight") and f.chart == "updates"
    assert {r["verdict"] for r in f.evidence["verdicts"]} == {"too small"}
    assert findings[0].rule == "lr_too_low"  # the plateau/underfitting it causes come after


def test_lr_too_low_leaves_out_layers_without_any_gradient(tmp_path):
    """Zero gradients make zero updates whatever the step size: no_gradient, not lr_too_low."""
    spec = healthy()
    spec["loss"] = np.full(spec["n"], 2.3) + 0.01 * np.sin(np.arange(spec["n"]))
    for p in spec["grad"]:
        spec["grad"][p]["abs_mean"] = np.zeros_like(spec["grad"][p]["abs_mean"])
        spec["update"][p] = np.zeros_like(spec["update"][p])
    rules = alarms(advise_spec(tmp_path, spec))
    assert "no_gradient" in rules and "lr_too_low" not in rules and "vanishing_gradients" not in rules


def test_a_climbing_loss_under_ordinary_updates_is_not_blamed_on_the_learning_rate(tmp_path):
    """lr_too_high needs most layer weights at "large" or above on the Updates table: the same
    climb with in-range updates (one gradient spike, as in lstm_exploding) is left to the others."""
    spec = healthy()
    loss = spec["loss"].copy()
    loss[300:] = loss[300] * np.linspace(1, 6, spec["n"] - 300)
    spec["loss"] = loss
    assert "lr_too_high" not in alarms(advise_spec(tmp_path, spec, name="ordinary"))
    for p in spec["update"]:
        spec["update"][p] = np.full_like(spec["update"][p], 0.06)  # "large"
    f = by_rule(advise_spec(tmp_path, spec, name="large"), "lr_too_high")
    assert set(f.layers) == {"net.0.weight", "net.2.weight", "net.4.weight"}
    assert "read large or too large on the Updates page" in f.message


def test_loss_plateau_without_layer_statistics(tmp_path):
    spec = healthy()
    n = spec["n"]
    t = np.arange(n)
    spec["loss"] = np.where(t < 100, 2.3 - 0.5 * t / 100, 1.8) + 0.01 * np.cos(t)
    spec["update"], spec["grad"], spec["act"] = {}, {}, {}
    spec["scalars"] = {}
    f = by_rule(advise_spec(tmp_path, spec), "loss_plateau")
    assert 85 <= f.steps[0] <= 110 and f.steps[1] == n  # within plateau_tol (3%) of the final level
    assert f.evidence["plateau_fraction"] > 0.8


def test_overfitting_names_the_best_step(tmp_path):
    spec = healthy()
    ev = spec["scalars"]["val/loss"][0]
    val = np.array([1.5, 0.8, 0.5, 0.45, 0.5, 0.55, 0.62, 0.7, 0.75, 0.8])
    spec["scalars"]["val/loss"] = (ev, val)
    f = by_rule(advise_spec(tmp_path, spec), "overfitting")
    assert f.severity == "warning" and f.steps == (240, 600)
    assert f.evidence["best_eval_step"] == 240 and f.fix["dropout"] == 0.3
    assert "step 240" in f.advice


def test_underfitting_when_train_and_val_stay_high(tmp_path):
    spec = healthy()
    n = spec["n"]
    spec["loss"] = 1.5 + 0.8 * np.exp(-np.arange(n) / 30)
    ev = spec["scalars"]["val/loss"][0]
    spec["scalars"]["val/loss"] = (ev, np.full(len(ev), 1.55))
    spec["hparams"]["width"] = 8
    f = by_rule(advise_spec(tmp_path, spec), "underfitting")
    assert f.severity == "warning" and f.fix == {"width": 64}


def test_dead_relu_names_layer_and_step(tmp_path):
    spec = healthy()
    spec["loss"] = spec["loss"] + 0.5  # the network does not fit its data perfectly
    m = len(layer_steps(spec["n"], spec["every"]))
    dead = np.where(np.arange(m) < 20, 0.05, 0.7)
    spec["act"]["net.3"]["frac_dead"] = dead
    f = by_rule(advise_spec(tmp_path, spec), "dead_relu")
    assert f.layers == ("net.3",) and f.steps[0] == 201 and f.chart == "activations"
    assert f.fix == {"activation": "leaky_relu", "init": "kaiming"}
    assert "act/net.3/frac_dead" in f.tags


def test_dead_units_in_a_network_that_fits_are_only_info(tmp_path):
    spec = healthy()  # final train loss ~0.12, far below chance: the data is fit
    m = len(layer_steps(spec["n"], spec["every"]))
    spec["act"]["net.3"]["frac_dead"] = np.full(m, 0.6)
    f = by_rule(advise_spec(tmp_path, spec), "dead_relu")
    assert f.severity == "info" and f.fix == {}


def test_dead_relu_caused_by_huge_learning_rate_ranks_lr_first(tmp_path):
    spec = healthy()
    m = len(layer_steps(spec["n"], spec["every"]))
    spec["act"]["net.1"]["frac_dead"] = np.where(np.arange(m) < 5, 0.02, 0.95)
    for p in spec["update"]:
        spec["update"][p] = np.full_like(spec["update"][p], 0.5)
    loss = spec["loss"].copy()
    loss[5:] = 2.25 + 0.02 * np.sin(np.arange(len(loss) - 5))  # stuck near chance after the first steps
    loss[3] = 9.0  # the blow-up that killed the units
    spec["loss"] = loss
    findings = advise_spec(tmp_path, spec)
    assert findings[0].rule == "lr_too_high"
    dead = by_rule(findings, "dead_relu")
    assert dead.severity == "critical" and "lr_too_high" in dead.evidence["likely_caused_by"]
    assert alarms(findings).index("lr_too_high") < alarms(findings).index("dead_relu")


def test_saturation(tmp_path):
    spec = healthy()
    m = len(layer_steps(spec["n"], spec["every"]))
    spec["act"]["net.1"]["frac_saturated"] = np.full(m, 0.6)
    spec["hparams"].update(activation="tanh", init="large_normal")
    f = by_rule(advise_spec(tmp_path, spec), "saturation")
    assert f.layers == ("net.1",) and f.fix == {"init": "xavier_uniform", "batch_norm": True}


def test_exactly_zero_gradients_are_no_gradient_not_vanishing(tmp_path):
    """A layer whose gradient is exactly zero from some step to the end: its own verdict and card,
    from the step it stopped; the other layers' relative gradient is read without those zeros."""
    spec = healthy()
    m = len(layer_steps(spec["n"], spec["every"]))
    g = spec["grad"]["net.0.weight"]["abs_mean"]
    g[m // 2:] = 0.0
    g[m // 2 + 3] = 1e-44  # denormal dust counts as zero
    f = by_rule(advise_spec(tmp_path, spec), "no_gradient")
    since = int(layer_steps(spec["n"], spec["every"])[m // 2])
    assert f.layers == ("net.0.weight",) and f.severity == "critical" and f.chart == "gradients"
    assert f"net.0.weight from step {since} on" in f.message
    assert f.evidence["verdicts"][0]["since"] == since and f.evidence["verdicts"][0]["verdict"] == "no gradient"
    assert "vanishing_gradients" not in alarms(advise_spec(tmp_path, spec, name="again"))


def test_vanishing_gradients_names_the_starved_layer(tmp_path):
    spec = healthy()
    spec["grad"]["net.0.weight"]["abs_mean"] = spec["grad"]["net.0.weight"]["abs_mean"] * 1e-5
    spec["hparams"]["activation"] = "sigmoid"
    f = by_rule(advise_spec(tmp_path, spec), "vanishing_gradients")
    assert f.layers == ("net.0.weight",) and f.chart == "gradients"
    assert f.fix == {"activation": "relu", "init": "kaiming", "batch_norm": True}


def test_exploding_gradients_from_growing_norms(tmp_path):
    spec = healthy()
    m = len(layer_steps(spec["n"], spec["every"]))
    growth = np.geomspace(1, 1e4, m)
    for p in spec["grad"]:
        spec["grad"][p]["norm"] = spec["grad"][p]["norm"] * growth
    f = by_rule(advise_spec(tmp_path, spec), "exploding_gradients")
    assert f.evidence["growth"] > 100 and f.fix == {"grad_clip": 1.0}


def test_gradients_large_against_weights_under_sgd_but_not_under_adam(tmp_path):
    """Exploding is judged from the step the optimizer takes: SGD at lr 0.05 along a gradient 5x the
    weight rewrites a quarter of it per step; Adam normalises the gradient away (a summed loss and a
    mean loss take the same steps), so the same gradients say nothing there."""
    spec = healthy()
    for p in spec["grad"]:
        spec["grad"][p]["norm"] = spec["grad"][p]["norm"] * 0 + 50.0  # 5x the weight norm of 10
    f = by_rule(advise_spec(tmp_path, spec, name="sgd"), "exploding_gradients")
    assert f.evidence["grad_to_weight_at_peak"] == pytest.approx(5.0)
    assert f.evidence["sgd_step_peak"] == pytest.approx(0.25) and f.steps[0] > 1  # never from the first step
    spec["hparams"] = {**spec["hparams"], "optimizer": "adam"}
    assert "exploding_gradients" not in alarms(advise_spec(tmp_path, spec, name="adam"))


def test_a_large_sgd_step_that_shrinks_is_no_explosion_one_that_grows_is(tmp_path):
    """A high learning rate takes its largest steps on the untrained network and then smaller ones
    (the corpus's healthy ResNet at lr 0.2: 0.100, 0.105, then down); a gradient that explodes makes
    the step grow over the limit."""
    spec = healthy()
    m = len(layer_steps(spec["n"], spec["every"]))
    shrinking = np.concatenate([[2.2, 2.0, 2.1], np.geomspace(1.5, 0.01, m - 3)]) * 10  # x weight norm 10
    for p in spec["grad"]:
        spec["grad"][p]["norm"] = shrinking.copy()
    assert "exploding_gradients" not in alarms(advise_spec(tmp_path, spec, name="shrinks"))
    growing = np.concatenate([[0.5, 0.6], np.full(m - 2, 0.3)]) * 10
    growing[m // 2:m // 2 + 3] = [2.0 * 10, 3.0 * 10, 2.5 * 10]  # steps of 0.1-0.15 of the weights
    for p in spec["grad"]:
        spec["grad"][p]["norm"] = growing.copy()
    f = by_rule(advise_spec(tmp_path, spec, name="grows"), "exploding_gradients")
    assert f.evidence["sgd_step_peak"] == pytest.approx(0.15) and f.evidence["sgd_step_first"] == pytest.approx(0.03)


def test_a_large_gradient_at_the_first_step_alone_is_no_explosion(tmp_path):
    """The gradient before any update shows the init (or a summed loss), not a gradient that grew."""
    spec = healthy()
    for p in spec["grad"]:
        spec["grad"][p]["norm"][0] = 500.0  # 50x the weight norm, at step 1 only
    assert "exploding_gradients" not in alarms(advise_spec(tmp_path, spec))


def test_single_layer_without_batch_norm_neighbour(tmp_path):
    """One weight layer left after excluding those that feed batch norm (read-only arrays from the store)."""
    import test_diagnostics_synth as synth

    spec = healthy()
    modules = [dict(m) for m in synth.MODULES]
    modules.insert(2, {"name": "bn", "type": "BatchNorm1d", "params": 256})
    modules.insert(5, {"name": "bn2", "type": "BatchNorm1d", "params": 256})
    spec["meta"]["model"] = {"class": "MLP", "modules": modules}
    findings = advise_spec(tmp_path, spec)
    assert "rule_failed" not in [f.rule for f in findings] and alarms(findings) == []


def test_nonfinite_gradients_with_finite_loss_are_critical(tmp_path):
    spec = healthy()
    m = len(layer_steps(spec["n"], spec["every"]))
    spec["grad"]["net.2.weight"]["nonfinite"] = np.where(np.arange(m) >= 30, 5.0, 0.0)
    f = by_rule(advise_spec(tmp_path, spec), "exploding_gradients")
    assert f.severity == "critical" and "net.2.weight" in f.layers and f.steps[0] == 301


def test_overconfidence_with_calibration_table(tmp_path):
    spec = healthy()
    ev = spec["scalars"]["val/loss"][0]
    spec["scalars"]["val/accuracy"] = (ev, np.full(len(ev), 0.8))
    spec["scalars"]["val/confidence"] = (ev, np.full(len(ev), 0.99))
    spec["tables"] = [("val/calibration", 600, {"bin_lo": [0.0, 0.5], "bin_hi": [0.5, 1.0], "count": [10, 90],
                             "confidence": [0.4, 0.99], "accuracy": [0.3, 0.8]})]
    f = by_rule(advise_spec(tmp_path, spec), "overconfidence")
    assert f.evidence["gap"] == pytest.approx(0.19)
    assert f.evidence["ece"] == pytest.approx((10 * 0.1 + 90 * 0.19) / 100)
    assert f.fix == {"label_smoothing": 0.1} and f.chart == "predictions"


def test_low_confidence_near_uniform(tmp_path):
    spec = healthy()
    ev = spec["scalars"]["val/loss"][0]
    spec["scalars"]["val/confidence"] = (ev, np.full(len(ev), 0.15))
    f = by_rule(advise_spec(tmp_path, spec), "low_confidence")
    assert f.evidence["uniform"] == pytest.approx(0.1)


def test_bad_init_loss(tmp_path):
    spec = healthy()
    spec["loss"][0] = 9.0
    f = by_rule(advise_spec(tmp_path, spec), "bad_init_loss")
    assert f.steps == (1, 1) and f.evidence["ratio"] == pytest.approx(9.0 / np.log(10))


def test_summed_loss_is_recognised(tmp_path):
    spec = healthy()
    spec["hparams"]["batch_size"] = 4
    spec["loss"][0] = 4 * np.log(10)
    f = by_rule(advise_spec(tmp_path, spec), "bad_init_loss")
    assert "summed over the batch" in f.message


def test_thresholds_can_be_overridden(tmp_path):
    spec = healthy()
    spec["loss"] = spec["loss"] + 0.5
    m = len(layer_steps(spec["n"], spec["every"]))
    spec["act"]["net.3"]["frac_dead"] = np.full(m, 0.5)
    path = write_run(tmp_path / "r", spec)
    run = diagnostics.load_run(path)
    assert "dead_relu" in alarms(diagnostics.advise(run))
    strict = dataclasses.replace(Thresholds(), dead_warn=0.6)
    assert "dead_relu" not in alarms(diagnostics.advise(run, strict))
    assert Thresholds().with_overrides({"dead_warn": "0.6"}) == strict
    with pytest.raises(KeyError, match="unknown threshold"):
        Thresholds().with_overrides({"no_such": 1})
    with pytest.raises(TypeError):
        diagnostics.advise(run, {"dead_warn": 0.6})


def test_findings_serialise_to_json(tmp_path):
    spec = healthy()
    spec["loss"][300:] = np.nan
    for f in advise_spec(tmp_path, spec):
        d = f.to_dict()
        assert set(d) == {fl.name for fl in dataclasses.fields(Finding)}
        json.loads(json.dumps(d, allow_nan=False))


def test_a_failing_rule_is_reported_not_raised(tmp_path, monkeypatch):
    import diagnostics.engine as adv

    def broken(view):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(adv, "RULES", (broken,) + adv.RULES)
    findings = advise_spec(tmp_path, healthy())
    f = by_rule(findings, "rule_failed")
    assert f.severity == "info" and "boom" in f.message


def test_rules_never_fail_on_the_pathologies(tmp_path):
    """No rule may trip over odd data: every synthetic pathology yields no rule_failed finding."""
    spec = healthy()
    spec["loss"][::7] = np.inf
    spec["grad"]["net.0.weight"]["abs_mean"][:] = 0.0
    spec["update"]["net.0.weight"][:] = np.nan
    findings = advise_spec(tmp_path, spec)
    assert "rule_failed" not in [f.rule for f in findings]


def test_live_runs_hold_back_end_of_run_verdicts_until_enough_has_passed(tmp_path):
    """A running run (writer open) is judged on what it has: blow-ups are reported at once, but
    verdicts about how the run ends wait for live_min_progress of the planned steps."""
    from dashboard.synthetic import SyntheticSpec, write_synthetic_run
    from diagnostics.rules.loss import END_OF_RUN_RULES

    path = tmp_path / "live"
    writer = write_synthetic_run(path, SyntheticSpec(steps=600, fault="lr_high", status=None))
    try:
        def judged():
            run = diagnostics.load_run(path)
            assert run.status == "running"
            return {f.rule: f for f in diagnostics.advise(run)}

        # No plan in run.json: the end cannot be judged while it runs.
        found = judged()
        assert "lr_too_high" in found and not set(found) & set(END_OF_RUN_RULES)
        assert "does not say how many steps" in found["live_run"].message
        # 599 of 2400 planned steps (25%): still held back, and the card says from when.
        writer.update_meta(total_steps=2400)
        found = judged()
        assert not set(found) & set(END_OF_RUN_RULES)
        live = found["live_run"]
        assert live.severity == "info" and live.evidence["judged_from_step"] == 1200
        assert "step 599 of 2400 (25%)" in live.message
        # All planned steps recorded (the run is finishing): judged like an ended run.
        writer.update_meta(total_steps=600)
        found = judged()
        assert "live_run" not in found and "underfitting" in found
    finally:
        writer.close("finished")
    ended = {f.rule for f in diagnostics.advise(diagnostics.load_run(path))}
    assert "underfitting" in ended and "live_run" not in ended


def test_every_rule_that_waits_for_the_end_is_named_on_the_live_run_card(tmp_path):
    """The live_run card says which verdicts wait: every rule that reads RunView.judges_end (the gate
    on end-of-run verdicts) must be in END_OF_RUN_RULES, and the card must name each of them, or a
    user watching a live run takes the silence of a held-back rule for an all-clear."""
    import inspect

    from dashboard.synthetic import SyntheticSpec, write_synthetic_run
    from diagnostics.rules import RULES
    from diagnostics.rules.loss import END_OF_RUN_RULES, END_OF_RUN_VERDICTS

    waiting = {r.__name__ for r in RULES if r.__name__ != "live_run" and "judges_end" in inspect.getsource(r)}
    assert {"mismatched_labels", "lr_schedule_too_fast"} <= waiting
    assert waiting == set(END_OF_RUN_RULES)
    writer = write_synthetic_run(tmp_path / "live", SyntheticSpec(steps=200, status=None))
    try:
        live = {f.rule: f for f in diagnostics.advise(diagnostics.load_run(tmp_path / "live"))}["live_run"]
    finally:
        writer.close("finished")
    for words in END_OF_RUN_VERDICTS.values():
        assert words in live.message


def _stalled_sgd(tmp_path, name, *, lr, grad_to_weight, update, **hparams):
    """A run whose loss stays at chance while every layer weight moves by `update` of its norm per
    step and gets a gradient `grad_to_weight` x its weight norm, alike in every layer (so no layer's
    gradient vanishes relative to the strongest one)."""
    spec = healthy()
    n, m = spec["n"], len(layer_steps(spec["n"], spec["every"]))
    spec["loss"] = np.full(n, 2.3) + 0.01 * np.sin(np.arange(n))
    spec["scalars"]["val/loss"] = (spec["scalars"]["val/loss"][0], np.full(10, 2.3))
    spec["lr"] = np.full(n, lr)
    spec["hparams"].update(lr=lr, **hparams)
    for p in spec["grad"]:
        norm = grad_to_weight * spec["weight_norm"][p]
        spec["grad"][p]["norm"] = norm
        spec["grad"][p]["abs_mean"] = norm / np.sqrt(64 * 128 if p.endswith("weight") else 128)
        spec["update"][p] = np.full(m, update)
    return advise_spec(tmp_path, spec, name=name)


def test_tiny_updates_from_tiny_gradients_name_the_init_not_the_learning_rate(tmp_path):
    """The same far-too-small updates (1e-8 of the weights per step), two causes. Under SGD an
    update is lr x ||g|| / ||w||: at a sound lr (0.05) with gradients 2e-7 of the weights in every
    layer (a deep tanh net on a small_normal init: the signal collapses forward and back), no
    usable lr lifts them, so the finding is the vanishing signal with the init fix, critical (a
    sweep prunes it). At lr 1e-6 with sound gradients (0.01 of the weights) the step size is it."""
    init = _stalled_sgd(tmp_path, "small_init", lr=0.05, grad_to_weight=2e-7, update=1e-8, optimizer="sgd",
                        activation="tanh", init="small_normal", depth=6)
    assert "lr_too_low" not in alarms(init)
    f = by_rule(init, "vanishing_gradients")
    assert init[0] is f and f.severity == "critical"
    assert f.fix == {"init": "xavier_uniform"}
    assert f.evidence["lr_needed"] > Thresholds().sgd_lr_max and f.evidence["grad_to_weight"] == pytest.approx(2e-7)
    assert "not the learning rate" in f.message and f.layers == ()  # the Gradients table reads every layer flowing
    assert problems(f) == []  # every number the card quotes is in its evidence, with its step

    lr = _stalled_sgd(tmp_path, "tiny_lr", lr=1e-6, grad_to_weight=1e-2, update=1e-8, optimizer="sgd",
                      activation="tanh", init="xavier_uniform", depth=6)
    low = by_rule(lr, "lr_too_low")
    assert lr[0] is low and low.severity == "critical" and low.fix == {"lr": 1e-5}
    assert "vanishing_gradients" not in alarms(lr)
    # Adam's steps are about lr whatever the gradient's size: tiny updates there mean a tiny lr.
    adam = _stalled_sgd(tmp_path, "adam", lr=1e-7, grad_to_weight=2e-7, update=1e-8, optimizer="adam",
                        activation="tanh", init="small_normal", depth=6)
    assert by_rule(adam, "lr_too_low").severity == "critical" and "vanishing_gradients" not in alarms(adam)

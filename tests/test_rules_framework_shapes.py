"""The shapes the framework examples gave the rules, on synthetic runs (cheap, no training): a blow-up
whose Updates table reads "in range" (layers without a gradient after ReLUs died; Adam's first step
rewriting small init weights, after which the inflated weights read ordinary ratios), and a model
whose confidence still lags its accuracy because it is still learning. Each card also passes the
evidence check every sample card passes (test_findings_evidence.problems)."""

from __future__ import annotations

import numpy as np

from test_diagnostics_rules import advise_spec, alarms, by_rule
from test_diagnostics_synth import healthy, layer_steps
from test_findings_evidence import problems


def _records(spec) -> int:
    return len(layer_steps(spec["n"], spec["every"]))


def _dead_after_a_blow_up():
    """A healthy run whose layer weights get no gradient after the first record (every ReLU died)
    and whose updates are zero from then on, two oversized ones first."""
    spec = healthy()
    m = _records(spec)
    for i, p in enumerate(p for p in spec["update"] if p.endswith("weight")):
        spec["grad"][p]["abs_mean"][1:] = 0.0
        spec["grad"][p]["norm"][1:] = 0.0
        spec["update"][p] = np.zeros(m)
        spec["update"][p][:2] = (0.1, 0.8, 3.0)[i], 0.1
    return spec


def test_layers_without_a_gradient_say_nothing_about_the_step_size(tmp_path):
    """examples/lightning_classifier.py --lr 20: the loss blows up within a few steps, every ReLU
    dies, and from then on the weights have no gradient and their update ratio reads zero; the two
    oversized records fall outside the table's 90th percentile. The loss decides."""
    spec = _dead_after_a_blow_up()
    loss = spec["loss"].copy()
    loss[3:] = 10 + 5 * np.abs(np.sin(np.arange(len(loss) - 3)))  # 4x chance and more, from step 4 on
    spec["loss"] = loss
    findings = advise_spec(tmp_path, spec)
    f = findings[0]
    assert f.rule == "lr_too_high" and f.severity == "critical", alarms(findings)
    assert not f.layers and not problems(f)


def test_one_update_that_rewrote_the_weights_before_a_blow_up(tmp_path):
    """examples/hf_trainer.py --lr 0.3 (Adam, 100x): the first update moves the weights by 15x
    their norm, the loss spikes and recovers, and later ratios, against the inflated weights, read
    in range. Without that first step (a single gradient spike, as in the lstm_exploding sample,
    moves them by about half their norm) the same loss is left to the other rules."""
    spec = healthy()
    m = _records(spec)
    for p in spec["update"]:
        spec["update"][p] = np.full(m, 0.02)
        spec["update"][p][0] = 15.0
    loss = spec["loss"].copy()
    loss[5:40] = 3 * loss[0]  # from step 6 to 40, then back on its course
    spec["loss"] = loss
    f = by_rule(advise_spec(tmp_path, spec, name="rewrite"), "lr_too_high")
    assert f.evidence["rewrite_ratio"] == 15.0 and f.evidence["rewrite_ratio_step"] == 1
    assert "15x their norm" in f.message and not problems(f)
    for p in spec["update"]:
        spec["update"][p][0] = 0.5
    assert "lr_too_high" not in alarms(advise_spec(tmp_path, spec, name="spike"))


def _underconfident(spec, confidence):
    ev, accuracy = spec["scalars"]["val/accuracy"]
    spec["scalars"]["val/confidence"] = (ev, confidence(ev / spec["n"], accuracy))
    return spec


def test_confidence_that_still_closes_on_the_accuracy_is_a_note(tmp_path):
    """The healthy Trainer example: val accuracy 0.98, confidence 0.78 and still rising towards it.
    Confidence lags accuracy while a model learns; that is no fault to act on."""
    spec = _underconfident(healthy(), lambda t, acc: acc - 0.4 + 0.25 * t)
    f = by_rule(advise_spec(tmp_path, spec), "low_confidence")
    assert f.severity == "info" and f.evidence["closing"] > 0.1 and f.fix == {}
    assert "still rising" in f.message and "nothing to change" in f.advice and not problems(f)


def test_confidence_that_stopped_below_the_accuracy_is_a_warning(tmp_path):
    """Something flattens the outputs (label smoothing or dropout the run does not declare): the
    confidence settled 0.25 below the accuracy while the loss settled too."""
    spec = healthy()
    ev, _ = spec["scalars"]["val/accuracy"]
    spec["scalars"]["val/accuracy"] = (ev, np.full(len(ev), 0.95))
    spec = _underconfident(spec, lambda t, acc: acc - 0.25)
    f = by_rule(advise_spec(tmp_path, spec), "low_confidence")
    assert f.severity == "warning" and "closing" not in f.evidence and "loss_drop_share" not in f.evidence
    assert "label smoothing or dropout" in f.advice and not problems(f)


def test_a_validation_loss_rising_over_a_train_loss_above_chance_is_not_overfitting(tmp_path):
    """examples/lightning_classifier.py --lr 20: every ReLU dies early, the train loss stays at 4-6x
    ln(C) and the validation loss rises from its best to above it. Nothing was fitted, so there is
    nothing that fails to generalize: the card is lr_too_high's, not "add dropout"."""
    spec = _dead_after_a_blow_up()
    loss = spec["loss"].copy()
    loss[3:] = 10 + 3 * np.abs(np.sin(np.arange(len(loss) - 3)))
    spec["loss"] = loss
    ev, _ = spec["scalars"]["val/loss"]
    spec["scalars"]["val/loss"] = (ev, np.linspace(8.0, 20.0, len(ev)) - 2.0 * (np.arange(len(ev)) == 1))
    spec["scalars"]["val/accuracy"] = (ev, np.full(len(ev), 0.1))
    ls, acc = spec["scalars"]["train/accuracy"]
    spec["scalars"]["train/accuracy"] = (ls, np.full(len(acc), 0.1))
    findings = advise_spec(tmp_path, spec)
    assert findings[0].rule == "lr_too_high", alarms(findings)
    assert "overfitting" not in {f.rule for f in findings}, alarms(findings)


def _too_large_steps(killed: bool) -> dict:
    """examples/accelerate_loop.py --lr 5 (SGD with momentum, 100x its default): every layer weight
    moves by about 0.17 of its norm per step, the loss climbs to 3x and comes back down; with
    `killed`, the second ReLU layer dies during training and nothing behind it gets a gradient."""
    spec = healthy()
    m = _records(spec)
    for p in spec["update"]:
        spec["update"][p] = np.full(m, 0.17)
    loss = spec["loss"].copy()
    loss[20:60] = 3 * loss[0]
    spec["loss"] = loss
    if killed:
        dead = spec["act"]["net.3"]["frac_dead"]
        dead[3:] = 1.0
        for p in spec["grad"]:
            spec["grad"][p]["abs_mean"][4:] = 0.0
            spec["grad"][p]["norm"][4:] = 0.0
    return spec


def test_the_divisor_follows_the_severity_and_how_far_over_the_updates_are(tmp_path):
    """A step size that killed a layer has lost the run: the card is critical by its own evidence
    and divides by 10, not by the 3 of a loss that came back down (which made a critical card, lifted
    by its dead-ReLU consequence, say "divide by 3 -> 1.7"). Without dead layers the updates say how
    far over they are: 0.17 of the weights per step needs /4 to get under 0.04."""
    findings = advise_spec(tmp_path, _too_large_steps(killed=True), name="killed")
    f = by_rule(findings, "lr_too_high")
    assert f.severity == "critical" and f.evidence["lr_divisor"] == 10, (f.severity, f.advice)
    assert f.fix == {"lr": 0.005} and "by 10" in f.advice and not problems(f)
    assert findings[0].rule == "lr_too_high"
    f = by_rule(advise_spec(tmp_path, _too_large_steps(killed=False), name="alive"), "lr_too_high")
    assert f.severity == "warning" and f.evidence["lr_divisor"] == 4, (f.severity, f.advice)
    assert "by 4" in f.advice and "under 0.04 of the weights" in f.advice and not problems(f)
    # Ratios from weights that blew up (lbfgs_seq --lr high: 1e32 of the norm) say "far over", not how far.
    spec = _too_large_steps(killed=False)
    for p in spec["update"]:
        spec["update"][p][:] = 1e32
    f = by_rule(advise_spec(tmp_path, spec, name="blown"), "lr_too_high")
    assert f.evidence["lr_divisor"] == 10 and f.fix == {"lr": 0.005}, f.advice


def test_every_critical_sample_card_divides_the_learning_rate_by_ten():
    """Ranking lifts a cause to its consequences' severity; the sample runs' lr_too_high cards that end
    critical must already give a lost run's divisor, not a recovering run's third."""
    from diagnostics.rules.learning_rate import LOST_RUN_DIVISOR
    from test_findings_evidence import all_findings

    cards = [(name, f) for name, f in all_findings() if f.rule == "lr_too_high"]
    assert any(f.severity == "critical" for _, f in cards)
    for name, f in cards:
        if f.severity == "critical":
            assert f.evidence["lr_divisor"] >= LOST_RUN_DIVISOR, (name, f.advice)

"""Rerun with a fix (jobs.rerun): the rerun config has exactly the change the rule put in the
finding's `fix`, the sentence says what changed, changes that cannot apply are left out with a
reason, and a finding without a fix changes nothing (what to change is the rules' decision)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import diagnostics
import runstore
from diagnostics import Finding
from jobs import AppliedFix, Change, FixError, apply_fix, changes_between, config_from_hparams, rerunnable
from playground.config import Config
from runstore import tags as T

SAMPLES = Path(__file__).resolve().parents[1] / "sample_runs"


def _finding(rule="lr_too_high", severity="warning", fix=None, advice="Try something.") -> Finding:
    return Finding(rule=rule, severity=severity, title=rule.replace("_", " "), message="m", advice=advice,
                   fix=fix or {})


def _only_changed(before: Config, after: Config) -> dict:
    return {c.field: (c.old, c.new) for c in changes_between(before, after)}


def test_real_diverging_run_gets_exactly_the_advised_lr(tmp_path):
    """End to end: a recorded run whose loss blows up at lr 0.5 -> the rules advise lr 0.05 ->
    the rerun config differs from the run's only in lr."""
    hparams = Config(optimizer="sgd", lr=0.5).to_dict()
    w = runstore.RunWriter(tmp_path / "hot", {"name": "hot", "hparams": hparams, "workload": "digits"})
    n = 300
    steps = np.arange(1, n + 1)
    loss = 2.3 * np.exp(np.linspace(0, 3, n)) * (1 + 0.1 * np.random.default_rng(0).standard_normal(n))
    w.write(runstore.Batch(scalars={T.TRAIN_LOSS: (steps, loss), T.lr(0): (steps, np.full(n, 0.5))}), last_step=n)
    w.close()
    findings = diagnostics.advise(runstore.load_run(tmp_path / "hot"))
    lr_finding = next(f for f in findings if f.rule == "lr_too_high")
    applied = apply_fix(hparams, lr_finding)
    assert applied.sentence == "lr 0.5 -> 0.05"
    assert _only_changed(Config.from_dict(hparams), applied.config) == {"lr": (0.5, 0.05)}
    assert applied.config.lr == pytest.approx(0.05)


def test_fix_dict_changes_only_its_fields_and_says_so():
    base = Config(workload="digits", model="mlp", activation="sigmoid", init="default", batch_norm=False)
    applied = apply_fix(base, _finding("saturation", fix={"activation": "relu", "init": "kaiming",
                                                          "batch_norm": True}))
    assert _only_changed(base, applied.config) == {"activation": ("sigmoid", "relu"), "init": ("default", "kaiming"),
                                                   "batch_norm": (False, True)}
    # form order (FIELDS order), readable values
    assert applied.sentence == "activation sigmoid -> relu, batch_norm off -> on, init default -> kaiming"


def test_no_op_and_inapplicable_entries_are_left_out_with_a_reason():
    lstm = Config(workload="sequence", model="lstm", init="kaiming", grad_clip=0.0)
    applied = apply_fix(lstm, _finding("vanishing_gradients", fix={"init": "kaiming", "batch_norm": True,
                                                                   "activation": "relu", "grad_clip": 1.0}))
    assert _only_changed(lstm, applied.config) == {"grad_clip": (0.0, 1.0)}
    assert applied.sentence == "grad_clip 0 (off) -> 1"
    reasons = " | ".join(applied.skipped)
    assert "init: already kaiming" in reasons
    assert "batch_norm: not available for lstm" in reasons
    assert "activation" in reasons
    nothing = apply_fix(lstm, _finding(fix={"init": "kaiming"}))
    assert not nothing.changed and nothing.sentence == ""


def test_forget_bias_only_applies_to_lstm():
    gru = Config(workload="sequence", model="gru", forget_bias=0.0)
    applied = apply_fix(gru, _finding("vanishing_gradients", fix={"forget_bias": 1.0}))
    assert not applied.changed and "forget_bias: only used by lstm" in applied.skipped[0]


@pytest.mark.parametrize("sample,rule", [
    ("lr_too_high", "lr_too_high"), ("lr_too_low", "lr_too_low"), ("no_batchnorm_high_lr", "nan_loss"),
    ("optimizer_sgd", "underfitting"), ("overfitting", "overfitting"), ("lstm_exploding", "exploding_gradients"),
])
def test_a_sample_runs_finding_reruns_with_exactly_the_fix_its_rule_chose(sample, rule):
    run = diagnostics.load_run(SAMPLES / sample)
    finding = next(f for f in diagnostics.advise(run) if f.rule == rule)
    assert finding.fix, f"{rule} on {sample} proposes no change"
    base = Config.from_dict(run.hparams)
    applied = apply_fix(run.hparams, finding)
    assert _only_changed(base, applied.config) == {k: (getattr(base, k), v) for k, v in finding.fix.items()}
    assert not applied.skipped and applied.sentence


def test_a_finding_without_a_fix_changes_nothing():
    """Advice with several reasonable answers (e.g. "stop early, add dropout or get more data")
    stays a human decision: no rerun is derived from its text."""
    base = Config(lr=0.2, epochs=10)
    for finding in (_finding("underfitting", "warning", advice="Train longer: multiply epochs by 2."),
                    _finding("lr_too_high", "critical", advice="Divide the learning rate by 10.")):
        applied = apply_fix(base, finding)
        assert not applied.changed and applied.config == base and applied.sentence == ""


def test_a_fix_that_makes_the_config_invalid_is_refused_with_the_field_named():
    with pytest.raises(FixError, match="epochs"):
        apply_fix(Config(epochs=8000), _finding("underfitting", "info", fix={"epochs": 16000}))
    with pytest.raises(FixError, match="does not have: learning_rate"):
        apply_fix(Config(), {"learning_rate": 0.1})


def test_config_from_hparams_accepts_playground_runs_only():
    cfg, notes = config_from_hparams({**Config(lr=0.3).to_dict(), "extra_knob": 1})
    assert cfg.lr == 0.3 and "extra_knob" in notes[0]
    with pytest.raises(FixError, match="not trained by the playground"):
        config_from_hparams({"lr": 0.1, "batch_size": 32})
    with pytest.raises(FixError, match="no recorded hyperparameters"):
        config_from_hparams({})
    with pytest.raises(FixError, match="dropout"):
        config_from_hparams({**Config().to_dict(), "dropout": 1.5})
    assert rerunnable(Config().to_dict()) and not rerunnable({"lr": 0.1}) and not rerunnable(None)


def test_a_gpu_run_reruns_on_auto_where_there_is_no_gpu():
    cfg, notes = config_from_hparams(Config(device="cuda").to_dict(), devices=["cpu"])
    assert cfg.device == "auto" and "cuda" in notes[0]
    cfg, notes = config_from_hparams(Config(device="cuda").to_dict(), devices=["cuda", "cpu"])
    assert cfg.device == "cuda" and not notes


def test_change_text_formats():
    assert Change("weight_decay", 0.0, 1e-4).text() == "weight_decay 0 -> 0.0001"
    assert Change("normalize_inputs", False, True).text() == "normalize_inputs off -> on"
    assert Change("train_subset", 200, 0).text() == "train_subset 200 -> 0 (all)"
    assert isinstance(apply_fix(Config(), {"lr": 0.01}), AppliedFix)

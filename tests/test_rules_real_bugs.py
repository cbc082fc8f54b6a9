"""The real-bug rules that need more than one statistic to tell a bug from a healthy run: a
learning-rate schedule stepped per batch (lr_schedule_too_fast), labels that do not belong to the
inputs (mismatched_labels), and targets passed to record_step that are another batch's
(mismatched_targets, from the cross-entropy the probes recompute). Synthetic runs for the first
two; a tiny real recording of a few dozen steps for the third, since it reads what probes record."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import diagnostics
import probes
from diagnostics.rules import RULE_IDS
import runstore
from jobs.rerun import apply_fix
from runstore import tags as T
from test_diagnostics_synth import healthy, layer_steps, write_run
from test_findings_evidence import problems

SAMPLES = Path(__file__).resolve().parents[1] / "sample_runs"


def rules(path) -> dict:
    return {f.rule: f for f in diagnostics.advise(diagnostics.load_run(path))}


def warnings(path) -> set[str]:
    return {r for r, f in rules(path).items() if f.rank >= 1}


# -- lr_schedule_too_fast -------------------------------------------------------------------------
def _with_lr(lr: np.ndarray, loss: np.ndarray, **hparams) -> dict:
    spec = healthy()
    spec["lr"], spec["loss"] = lr, loss
    spec["hparams"] = {**spec["hparams"], "lr": float(lr.max()), **hparams}
    return spec


def _stalled_loss(n: int, stall: int, seed: int = 0) -> np.ndarray:
    """A loss that falls until `stall` and is flat (noise only) from there on."""
    rng = np.random.default_rng(seed)
    steps = np.arange(1, n + 1)
    level = 2.3 - 0.5 * (1 - np.exp(-np.minimum(steps, stall) / (stall / 3)))
    return level * (1 + 0.05 * rng.standard_normal(n))


def test_an_exponential_schedule_stepped_every_batch_is_found_with_a_fix(tmp_path):
    n = 600
    steps = np.arange(1, n + 1)
    lr = 0.05 * 0.9 ** (steps - 1)  # ExponentialLR(0.9) meant per epoch, stepped per batch
    spec = _with_lr(lr, _stalled_loss(n, 45), workload="digits", schedule="exponential", step_size=1, gamma=0.9,
                    batch_size=64)
    spec["meta"] = {**spec["meta"], "train_examples": 1200}
    found = rules(write_run(tmp_path / "r", spec))
    f = found["lr_schedule_too_fast"]
    assert f.severity == "warning"
    assert f.evidence["lr_collapsed_step"] == 45  # 0.9 ** 44 = 0.0097: the first step at 1/100 of the peak
    assert f.evidence["lr_drop"] >= 100 and f.evidence["collapse_share"] < 0.1
    assert f.evidence["gain_after"] < 0.05
    assert problems(f) == []  # every number of the card is in its evidence, with its step
    assert f.fix == {"step_size": 19}  # 1200 examples / 64 per batch: one epoch is 19 steps
    applied = apply_fix(spec["hparams"], f)
    assert applied.config.step_size == 19
    # Consequences of the stalled loss are grouped under it.
    for rule in ("loss_plateau", "underfitting", "lr_too_low"):
        if rule in found and found[rule].rank >= 1:
            assert "lr_schedule_too_fast" in found[rule].evidence["likely_caused_by"], rule


def test_a_torch_step_schedule_outside_the_playground_gets_the_text_fix_only(tmp_path):
    n = 600
    steps = np.arange(1, n + 1)
    lr = 0.1 * 0.1 ** ((steps - 1) // 30)  # StepLR(step_size=30, gamma=0.1) called every batch
    f = rules(write_run(tmp_path / "r", _with_lr(lr, _stalled_loss(n, 60))))["lr_schedule_too_fast"]
    assert f.fix == {} and "once per epoch" in f.advice
    assert f.evidence["lr_collapsed_step"] == 61
    # Down to exactly 0 (a lambda schedule gone wrong): no ratio to quote, and no "inf" either.
    zero = np.where(steps <= 40, 0.1, 0.0)
    f = rules(write_run(tmp_path / "zero", _with_lr(zero, _stalled_loss(n, 40))))["lr_schedule_too_fast"]
    assert f.evidence["lr_collapsed"] == 0 and "lr_drop" not in f.evidence and "inf" not in f.message
    assert problems(f) == []


@pytest.mark.parametrize("shape", ["cosine_to_zero", "warmup_cosine", "onecycle", "step_at_two_thirds",
                                   "warm_restarts", "plateau_after_the_loss_stalled"])
def test_healthy_schedules_are_not_a_too_fast_schedule(tmp_path, shape):
    """Schedules that decay to ~0 at the end, a step schedule reaching 1/100 at 2/3 of the run,
    SGDR's warm restarts, and reduce-on-plateau cutting the lr after the loss stalled, even where
    the loss flattened early (a converged model)."""
    assert "lr_schedule_too_fast" in RULE_IDS  # judged, and silent
    n = 600
    t = np.arange(n) / (n - 1)
    loss = _stalled_loss(n, 60)
    lr = {
        "cosine_to_zero": 0.05 * 0.5 * (1 + np.cos(np.pi * t)),
        "warmup_cosine": np.where(t < 0.05, 0.05 * (t + 1 / n) / 0.05,
                                  0.05 * 0.5 * (1 + np.cos(np.pi * np.clip((t - 0.05) / 0.95, 0, 1)))),
        "onecycle": np.where(t < 0.3, 0.002 + (0.05 - 0.002) * 0.5 * (1 - np.cos(np.pi * t / 0.3)),
                             0.05 * 0.5 * (1 + np.cos(np.pi * (t - 0.3) / 0.7)) + 2e-7),
        "step_at_two_thirds": 0.1 * 0.1 ** np.floor(t * 3),
        "warm_restarts": 0.05 * 0.5 * (1 + np.cos(np.pi * ((np.arange(n) % 50) / 50))),
        # ReduceLROnPlateau(patience of 10% of the run) after the stall at step 60
        "plateau_after_the_loss_stalled": 0.05 * 0.1 ** ((np.arange(n) >= 120).astype(int)
                                                         + (np.arange(n) >= 140).astype(int)),
    }[shape]
    assert "lr_schedule_too_fast" not in rules(write_run(tmp_path / "r", _with_lr(lr, loss)))


# -- mismatched_labels ----------------------------------------------------------------------------
def _at_chance(train_end: float, update: float = 3e-3) -> dict:
    """A 10-class run whose validation stays at chance (accuracy ~0.1, loss ~ln 10 and rising a
    little) while the train loss falls from ln 10 to `train_end`."""
    spec = healthy()
    n, rng = spec["n"], np.random.default_rng(1)
    steps = np.arange(1, n + 1)
    spec["loss"] = (math.log(10) - (math.log(10) - train_end) * steps / n) * (1 + 0.03 * rng.standard_normal(n))
    ev = spec["scalars"]["val/loss"][0]
    spec["scalars"]["val/loss"] = (ev, math.log(10) + 0.05 * ev / n)
    spec["scalars"]["val/accuracy"] = (ev, 0.1 + 0.01 * rng.standard_normal(len(ev)))
    spec["scalars"]["val/confidence"] = (ev, np.full(len(ev), 0.13))
    ls = layer_steps(n, spec["every"])
    spec["scalars"]["train/accuracy"] = (ls, np.full(len(ls), 0.15))
    spec["scalars"]["train/confidence"] = (ls, np.full(len(ls), 0.15))
    spec["update"] = {p: np.full(len(ls), update) for p in spec["update"]}
    return spec


def test_labels_that_do_not_match_the_inputs_are_the_root_cause(tmp_path):
    found = rules(write_run(tmp_path / "r", _at_chance(train_end=1.9)))
    f = found["mismatched_labels"]
    assert f.severity == "critical"
    assert abs(f.evidence["eval_accuracy"] - 0.1) < 0.02 and f.evidence["train_gap"] > 0.1
    assert problems(f) == []
    acting = [g for g in diagnostics.advise(diagnostics.load_run(tmp_path / "r")) if g.rank >= 1]
    assert acting[0].rule == "mismatched_labels"
    grouped, _ = diagnostics.group(acting)
    assert len(grouped) == 1


def test_a_run_that_has_not_learned_yet_or_learns_too_slowly_is_not_mismatched_labels(tmp_path):
    assert "mismatched_labels" in RULE_IDS  # judged, and silent
    # Merely short or slow: train and validation both still at ln(C), no memorisation gap.
    assert "mismatched_labels" not in rules(write_run(tmp_path / "short", _at_chance(train_end=math.log(10))))
    # A learning rate far too low: the updates are tiny, so the lr rules speak, not this one.
    assert "mismatched_labels" not in rules(write_run(tmp_path / "low", _at_chance(train_end=1.9, update=1e-5)))
    # A healthy run leaves chance: nothing to say.
    assert "mismatched_labels" not in rules(write_run(tmp_path / "ok", healthy()))


# -- mismatched_targets (probes recompute the cross-entropy) --------------------------------------
def _record(run_dir, *, prefetch: bool, scale: float = 1.0, steps: int = 40):
    """A linear classifier on separable blobs, recorded every step. With `prefetch` the targets
    passed are the next batch's (nanoGPT's loop), with `scale` the passed loss is divided by a
    gradient-accumulation factor."""
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(4, 8, generator=g) * 3

    def batch():
        y = torch.randint(0, 4, (32,), generator=g)
        return centers[y] + torch.randn(32, 8, generator=g), y

    model = nn.Linear(8, 4)
    nn.init.zeros_(model.weight)  # starts at a uniform guess, as a small init nearly does
    nn.init.zeros_(model.bias)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with probes.attach(model, opt, run_dir=run_dir, every=1) as rec:
        x, y = batch()
        for _ in range(steps):
            logits = model(x)
            loss = F.cross_entropy(logits, y) / scale
            if prefetch:
                x, y = batch()
            opt.zero_grad()
            loss.backward()
            opt.step()
            rec.record_step(loss * 1.0, logits=logits, targets=y)
            if not prefetch:
                x, y = batch()
    return runstore.load_run(run_dir)


def test_probes_record_the_cross_entropy_of_the_passed_logits_and_targets(tmp_path):
    torch.manual_seed(0)
    model = nn.Linear(6, 5)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(16, 6), torch.randint(0, 5, (16,))
    y[:3] = -100  # ignored positions count in no statistic, as in the loss
    expected = []
    with probes.attach(model, opt, run_dir=tmp_path / "r", every=1) as rec:
        for _ in range(3):
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            rec.record_step(loss, logits=logits, targets=y)
            expected.append(loss.item())
            rec.record_step(loss, logits=logits)  # no targets: no cross-entropy (nor accuracy)
    run = runstore.load_run(tmp_path / "r")
    xent = run.series(T.split_metric("train", "cross_entropy"))
    assert list(xent.index) == [1, 3, 5]
    assert xent.tolist() == pytest.approx(expected, rel=1e-5)


def test_targets_of_the_next_batch_are_found_and_a_matching_or_scaled_loss_is_not(tmp_path):
    bad = _record(tmp_path / "prefetch", prefetch=True)
    f = {g.rule: g for g in diagnostics.advise(bad)}["mismatched_targets"]
    assert f.severity == "warning" and f.evidence["loss_ratio"] < 0.5
    assert abs(f.evidence["start_ratio"] - 1) < 0.1  # untrained: any targets give about ln(C)
    assert "read Y before fetching the next batch" in f.advice
    assert problems(f) == []
    assert "mismatched_targets" not in {g.rule for g in diagnostics.advise(_record(tmp_path / "ok", prefetch=False))}
    # A loss divided for gradient accumulation is off by its factor from the first step: not this.
    scaled = _record(tmp_path / "scaled", prefetch=False, scale=4.0)
    assert "mismatched_targets" not in {g.rule for g in diagnostics.advise(scaled)}
    # Runs recorded before the probes recomputed the cross-entropy are judged as before.
    run = diagnostics.load_run(SAMPLES / "baseline")
    assert T.split_metric("train", "cross_entropy") not in run.scalar_tags()
    got = {f.rule for f in diagnostics.advise(run)}
    assert "rule_failed" not in got and "mismatched_targets" not in got


def test_a_run_blowing_up_above_chance_is_not_memorising_labels(tmp_path):
    """Both losses climbing far above ln(C) (a forgotten zero_grad: the corpus's seed-2 run ended at a
    train loss of 45 and a validation loss of 48) puts the train loss below the validation loss, but
    a train loss above chance has fitted nothing: no memorising, so no mismatched labels."""
    spec = _at_chance(train_end=1.9)
    n, rng = spec["n"], np.random.default_rng(2)
    steps = np.arange(1, n + 1)
    spec["loss"] = (math.log(10) + 40 * steps / n) * (1 + 0.03 * rng.standard_normal(n))
    ev = spec["scalars"]["val/loss"][0]
    spec["scalars"]["val/loss"] = (ev, math.log(10) + 45 * ev / n)
    assert "mismatched_labels" not in rules(write_run(tmp_path / "r", spec))
    # The same run with the train loss memorised below chance is the bug.
    spec["loss"] = (math.log(10) - 0.5 * steps / n) * (1 + 0.03 * rng.standard_normal(n))
    f = rules(write_run(tmp_path / "m", spec))["mismatched_labels"]
    assert f.evidence["train_below_chance"] >= 0.03 and problems(f) == []

"""Sweeps (the `sweep` package and `python -m playground sweep`): search spaces checked against the
playground's config, coarse-to-fine narrowing, studies created and resumed from SQLite storage,
two worker processes sharing one study without losing a trial, a trial with a planted fault pruned
with its finding stored as the reason, healthy configurations never pruned (live, and replayed over
the bundled healthy samples), diagnosis OR median, a stop of the sweep, and the diagnosis pruner in
a user's own Optuna objective through sweep.attach.""" 

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

import runstore  # noqa: E402
import sweep  # noqa: E402
from playground.config import Config  # noqa: E402
from sweep import records  # noqa: E402
from sweep.pruner import DiagnosisPruner  # noqa: E402
from sweep.replay import first_prune  # noqa: E402
from sweep.space import CATEGORICAL, FLOAT, INT, Param  # noqa: E402
from sweep.study import TrialSeededSampler, load, trial_rows, workers  # noqa: E402
from sweep.worker import run_worker  # noqa: E402
from playground.cli import main  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_runs"
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
# Tiny but real: digits, a small MLP, evaluations every 10 steps.
TINY = Config(workload="digits", depth=2, width=32, epochs=4, eval_every=10, probe_every=5, device="cpu")


def _url(tmp_path: Path) -> str:
    return sweep.default_url(tmp_path / "runs")


# -- search spaces -----------------------------------------------------------------------------------
def test_param_text_round_trips_and_picks_the_scale_and_type_from_the_field():
    space = sweep.parse_space("lr=1e-4:1\nwidth=16:256\ndepth=1:4\noptimizer=sgd,adam\nbatch_norm=false,true\n"
                              "weight_decay=1e-6:1e-2\ndropout=0:0.5")
    by = {p.name: p for p in space}
    assert by["lr"] == Param("lr", FLOAT, 1e-4, 1.0, log=True)
    assert by["width"].kind == INT and by["width"].log and by["depth"].kind == INT and not by["depth"].log
    assert by["weight_decay"].log and not by["dropout"].log  # penalties on a log scale, dropout linear
    assert by["batch_norm"].choices == (False, True) and by["optimizer"].kind == CATEGORICAL
    assert sweep.parse_space(sweep.space_text(space)) == space
    sweep.space.validate_space(space, Config())


@pytest.mark.parametrize("text, words", [
    ("lrr=1e-4:1", "did you mean 'lr'"),
    ("rate=1e-4:1", "can search: .*weight_decay"),
    ("workload=digits,spirals", "stays fixed"),
    ("weight_decay=0:1e-2:log", "must start above 0"),
    ("lr=1:1e-4", "must be below"),
    ("optimizer=sgd,adamx", "adamx"),
    ("depth=1.5:3", "not a whole number"),
    ("activation=relu:tanh", "list the choices"),
])
def test_invalid_search_spaces_name_the_field_and_the_fix(text, words):
    with pytest.raises(sweep.SpaceError, match=words):
        sweep.space.validate_space(sweep.parse_space(text), Config())


def test_impossible_combinations_are_refused_before_any_trial_runs():
    # a cnn holds at most 3 conv blocks: depth up to 5 is fine for the mlp but not for the cnn
    space = sweep.parse_space("model=mlp,cnn\ndepth=1:5")
    with pytest.raises(sweep.SpaceError, match="model=cnn, depth=5"):
        sweep.space.validate_space(space, Config(workload="digits"))
    # the default space fits each workload's models
    for base in (Config(), Config(workload="digits", model="cnn"), Config(workload="sequence", model="lstm")):
        assert sweep.default_space(base)


def test_narrowing_keeps_the_region_of_the_best_trials():
    space = sweep.parse_space("lr=1e-4:1\ndepth=1:8\noptimizer=sgd,momentum,adam")
    results = [(0, 0.97, {"lr": 3e-3, "depth": 3, "optimizer": "adam"}),
               (1, 0.96, {"lr": 1e-2, "depth": 4, "optimizer": "adam"}),
               (2, 0.95, {"lr": 5e-3, "depth": 3, "optimizer": "momentum"}),
               (3, 0.20, {"lr": 0.8, "depth": 8, "optimizer": "sgd"}),
               (4, 0.10, {"lr": 1e-4, "depth": 1, "optimizer": "sgd"}),
               (5, float("nan"), {"lr": 0.5, "depth": 2, "optimizer": "sgd"})]
    n = sweep.narrow(space, results, maximize=True, top_fraction=0.5)
    by = {p.name: p for p in n.space}
    assert [t[0] for t in n.top] == [0, 1, 2]
    assert 1e-4 < by["lr"].low <= 3e-3 and 1e-2 <= by["lr"].high < 0.8 and by["lr"].log
    assert 1 <= by["depth"].low <= 3 and 4 <= by["depth"].high < 8
    assert by["optimizer"].choices == ("momentum", "adam")
    assert any(c.startswith("lr:") for c in n.changes)
    with pytest.raises(sweep.SpaceError, match="no completed trial"):
        sweep.narrow(space, [(0, None, {})], maximize=True)


def test_trial_n_draws_the_same_config_whatever_the_pruner_or_worker():
    space = sweep.parse_space("lr=1e-4:1\ndepth=1:4\noptimizer=sgd,adam")
    drawn = []
    for pruner in (optuna.pruners.NopPruner(), DiagnosisPruner()):
        study = optuna.create_study(direction="maximize", sampler=TrialSeededSampler(7), pruner=pruner)
        study.optimize(lambda t: sum(hash(str(p.suggest(t))) % 3 for p in space), n_trials=5)
        drawn.append([t.params for t in study.trials])
    assert drawn[0] == drawn[1]
    assert len({json.dumps(p, sort_keys=True) for p in drawn[0]}) == 5  # different trials, different configs


# -- studies in storage ------------------------------------------------------------------------------
def test_a_study_is_created_once_and_resumed_from_its_storage(tmp_path):
    url = _url(tmp_path)
    spec = sweep.SweepSpec(base=TINY, space=sweep.parse_space("lr=1e-3:1e-1"), n_trials=3, pruner="both")
    sweep.create_study(url, "s", spec)
    with pytest.raises(sweep.StudyError, match="already exists"):
        sweep.create_study(url, "s", spec)
    with pytest.raises(sweep.StudyError, match="other settings"):
        sweep.create_study(url, "s", dataclasses.replace(spec, pruner="none"), resume=True)
    sweep.create_study(url, "s", spec.with_budget(5), resume=True)  # a new budget is fine
    study, loaded = load(url, "s")  # as another process would: only the URL and the name
    assert loaded == spec.with_budget(5)
    assert isinstance(study.pruner, DiagnosisPruner) and study.pruner.wrapped_pruner is not None
    assert sweep.study_names(url) == ["s"]
    with pytest.raises(sweep.SpecError, match="study name"):
        sweep.create_study(url, "../escape", spec)


def test_diagnosis_or_median_stores_which_one_pruned():
    pruner = DiagnosisPruner(optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0))
    study = optuna.create_study(direction="maximize", pruner=pruner, sampler=TrialSeededSampler(0))

    def objective(trial):  # no run directory: only the median can decide
        level = [0.9, 0.8, 0.1][trial.number]
        for step in range(1, 4):
            trial.report(level, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return level

    study.optimize(objective, n_trials=3)
    states = [t.state for t in study.trials]
    assert states[:2] == [optuna.trial.TrialState.COMPLETE] * 2 and states[2] == optuna.trial.TrialState.PRUNED
    assert study.trials[2].user_attrs["pruned"]["by"] == "median"
    assert study.trials[2].user_attrs["pruned"]["step"] == 1


# -- the diagnosis pruner on the bundled samples ------------------------------------------------------
# (A trial with a planted fault pruned live, with its reason stored, and healthy trials completing:
# tests/test_sweep_page.py trains such a study once for all its tests.)
HEALTHY = ("baseline", "overfitting_fixed", "underfitting_fixed", "deep_relu_he", "deep_sigmoid_bn", "tanh_xavier",
           "lstm_clipped", "batchnorm_high_lr", "digits_cnn", "optimizer_sgd")
# Not healthy, but not hopeless either: they end worse than they could, not broken.
NOT_HOPELESS = ("overfitting", "underfitting")
HOPELESS = {"zero_init": ("dead_relu", "no_gradient"), "saturated_tanh": ("saturation",),
            "vanishing_sigmoid": ("vanishing_gradients",), "dying_relu": ("lr_too_high", "dead_relu"),
            "lr_too_low": ("lr_too_low",)}  # SGD at 1e-4: updates far too small, accuracy stays at chance


@pytest.mark.parametrize("name", HEALTHY + NOT_HOPELESS)
def test_the_bundled_healthy_configs_are_never_pruned(name):
    # What the pruner saw live at each evaluation is exactly the recording up to that step.
    assert first_prune(runstore.load_run(SAMPLES / name)) is None


@pytest.mark.parametrize("name", sorted(HOPELESS))
def test_hopeless_samples_are_pruned_in_the_first_third(name):
    run = runstore.load_run(SAMPLES / name)
    step, reason = first_prune(run)
    assert reason["trigger"] in HOPELESS[name]
    assert step <= run.meta["total_steps"] / 3


def test_a_far_too_low_learning_rate_is_critical_as_soon_as_the_updates_show_it():
    """lr_too_low is critical when the typical update is below update_ratio_far_low while the
    gradients flow, and a live run gets it before live_min_progress; not during a warm-up, not when
    vanishing gradients make the updates tiny, and a slow but working run (SGD) never gets it."""
    import diagnostics
    from sweep.replay import Recording

    rec = Recording(runstore.load_run(SAMPLES / "lr_too_low"))
    total = rec.run.meta["total_steps"]
    early = rec.view(60)  # a sixth of the run: end-of-run verdicts wait until half of it
    [low] = [f for f in diagnostics.advise(early) if f.rule == "lr_too_low"]
    assert low.severity == "critical" and low.title == "Learning rate far too low"
    assert low.evidence["typical_update"] < low.evidence["update_ratio_far_low"] == \
        diagnostics.Thresholds().update_ratio_far_low
    assert low.fix == {"lr": pytest.approx(1e-3)}  # x10
    assert not [f for f in diagnostics.advise(rec.view(60), dataclasses.replace(
        diagnostics.Thresholds(), update_ratio_far_low=1e-6)) if f.rule == "lr_too_low"]  # early: only "far"
    steps, lr = rec.scalars["lr/group0"]
    rec.scalars["lr/group0"] = (steps, lr * (1 + steps / total))  # a warm-up: still rising
    assert not [f for f in diagnostics.advise(rec.view(60)) if f.rule == "lr_too_low"]
    ended = diagnostics.advise(rec.run)  # the recorded run (constant lr), judged at its end: critical too
    assert [f.severity for f in ended if f.rule == "lr_too_low"] == ["critical"]
    for name in ("vanishing_sigmoid", "optimizer_sgd"):  # tiny updates from vanishing gradients; slow SGD
        assert not [f for f in diagnostics.advise(runstore.load_run(SAMPLES / name))
                    if f.rule == "lr_too_low" and f.severity == "critical"], name


# -- worker processes and the command line ---------------------------------------------------------------
def _cli(*args, timeout=240):
    return subprocess.run([sys.executable, "-m", "playground", "sweep", *map(str, args)], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=timeout)


def test_two_workers_share_one_sqlite_study_without_lost_trials_and_it_resumes(tmp_path, capsys):
    runs = tmp_path / "runs"
    common = ["--study", "par", "--runs-dir", runs, "--workload", "digits", "--epochs", "1", "--eval-every", "10",
              "--device", "cpu", "--param", "lr=1e-3:3e-2", "--param", "width=16:64", "--pruner", "none", "--quiet"]
    first = _cli(*common, "--n-trials", 4, "--workers", 2)
    assert first.returncode == 0, first.stderr
    url = sweep.default_url(runs)
    study, spec = load(url, "par")
    rows = trial_rows(study)
    assert [r.number for r in rows] == list(range(4))  # none lost, none extra (the workers share a lock)
    assert all(r.state == "complete" and r.value is not None for r in rows)
    assert len({r.run_dir for r in rows}) == 4
    for r in rows:
        meta = runstore.read_meta(r.run_dir)
        assert meta["status"] == "finished" and meta["sweep"] == {**meta["sweep"], "study": "par", "trial": r.number}
        assert meta["hparams"]["lr"] == pytest.approx(r.params["lr"])
    joined = workers(study)
    assert len(joined) == 2 and all(w.ended and not w.alive for w in joined)
    assert len({study.trials[r.number].user_attrs[records.WORKER] for r in rows}) == 2  # both trained trials
    assert "best val_accuracy" in first.stdout

    # resume from the storage alone, as a worker on another machine does: its own runs folder (the
    # study's folder there is new, so it shares no lock with this machine's workers); numbering goes on
    sweep.create_study(url, "par", spec.with_budget(5), resume=True)
    other_machine = tmp_path / "machine-b" / "runs"
    assert run_worker(url, "par", other_machine, log=lambda m: None) == 1
    rows = trial_rows(load(url, "par")[0])
    assert [r.number for r in rows] == list(range(5)) and rows[-1].state == "complete"
    assert Path(rows[-1].run_dir) == other_machine.resolve() / "par" / "trial-0004"
    assert runstore.read_meta(rows[-1].run_dir)["sweep"]["trial"] == 4
    assert all(Path(r.run_dir).parent == runs.resolve() / "par" for r in rows[:4])
    # the command line resumes only with the same settings, and reports the study
    assert main(["sweep", *map(str, common[:4]), "--pruner", "median", "--quiet"]) == 2
    assert "other settings" in capsys.readouterr().err
    assert main(["sweep", "--study", "par", "--runs-dir", str(runs), "--status"]) == 0
    out = capsys.readouterr().out
    assert out.count("complete") == 5 and "5/5 trials" in out


# -- your own objective ---------------------------------------------------------------------------------
def test_a_users_own_objective_gets_the_pruner_with_sweep_attach(tmp_path):
    import torch
    from torch import nn

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(512, 20, generator=gen)
    y = (x[:, :4].argmax(1)).long()

    def objective(trial):
        init = trial.suggest_categorical("init", ["zeros", "default"])
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
        if init == "zeros":
            for p in model.parameters():
                nn.init.zeros_(p)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        with sweep.attach(trial, model, opt, run_dir=tmp_path / f"trial-{trial.number}", every=5) as rec:
            for step in range(1, 121):
                idx = torch.randint(0, 512, (64,), generator=gen)
                logits = model(x[idx])
                loss = nn.functional.cross_entropy(logits, y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                rec.record_step(loss, logits=logits, targets=y[idx])
                if step % 20 == 0:
                    with torch.no_grad():
                        val_logits = model(x)
                    rec.record_eval(loss=nn.functional.cross_entropy(val_logits, y), logits=val_logits, targets=y)
                    accuracy = (val_logits.argmax(1) == y).float().mean().item()
                    trial.report(accuracy, rec.step)
                    if trial.should_prune():
                        raise optuna.TrialPruned()
        return accuracy

    study = optuna.create_study(direction="maximize", pruner=DiagnosisPruner(interval_steps=20))
    study.enqueue_trial({"init": "zeros"})
    study.enqueue_trial({"init": "default"})
    study.optimize(objective, n_trials=2)
    pruned, healthy = study.trials
    assert pruned.state == optuna.trial.TrialState.PRUNED and healthy.state == optuna.trial.TrialState.COMPLETE
    assert pruned.user_attrs["pruned"]["rule"] in ("dead_relu", "no_gradient")
    meta = runstore.read_meta(tmp_path / "trial-0")
    assert meta["status"] == "stopped" and meta["error"].startswith("pruned by the diagnosis")
    assert meta["sweep"]["trial"] == 0 and meta["hparams"] == {"init": "zeros"}
    assert runstore.read_meta(tmp_path / "trial-1")["status"] == "finished"

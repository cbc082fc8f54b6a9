"""Every bundled sample run shows, in its recorded numbers, the symptom its description claims.

These read the committed files in sample_runs/ only (no training). When a change to the
playground or the probes alters what a sample shows, regenerate it
(`python -m playground make-samples --only NAME`) and these checks say whether it is still true.
"""

import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

import runstore
from playground import Config
from playground.samples import SAMPLES

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "sample_runs"
LN10 = math.log(10)


@lru_cache(maxsize=None)
def run(name: str) -> runstore.Run:
    return runstore.load_run(SAMPLE_DIR / name)


def smooth_loss(name: str, window: int = 20):
    """Training loss averaged over `window` steps: per-batch noise hides trends."""
    return run(name).series("train/loss").rolling(window, min_periods=1).mean()


def final(name: str, tag: str) -> float:
    return float(run(name).series(tag).iloc[-1])


def last_probe(name: str, tag: str) -> float:
    s = run(name).series(tag).dropna()
    return float(s.iloc[-1])


def median(name: str, tag: str) -> float:
    return float(run(name).series(tag).median())


def weight_update_ratio(name: str) -> float:
    """Median update-to-weight ratio over the weight matrices (biases excluded)."""
    r = run(name)
    tags = [t for t in r.scalar_tags() if t.startswith("update_ratio/") and t.endswith(".weight")
            and not t.startswith("update_ratio/bn")]
    return float(np.nanmedian([r.series(t).median() for t in tags]))


def frac_dead(name: str, layer: str) -> float:
    return last_probe(name, f"act/{layer}/frac_dead")


# -- every sample -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(SAMPLES))
def test_sample_is_complete_and_matches_its_definition(name):
    r = run(name)
    sample = SAMPLES[name]
    assert not r.warnings
    assert r.meta["name"] == name and r.meta["description"] == sample.description
    # The committed run was trained with the config the code defines (regenerate after changing it).
    assert Config.from_dict(r.hparams, check_device=False) == sample.config, \
        f"sample_runs/{name} is stale: run `python -m playground make-samples --only {name}`"
    expected = "failed" if name == "no_batchnorm_high_lr" else "finished"
    assert r.status == expected
    if expected == "finished":
        assert r.last_step == sample.config.total_steps()
    if sample.parent:
        assert r.meta["parent"] == f"../{sample.parent}"
        assert runstore.is_run_dir(SAMPLE_DIR / name / r.meta["parent"])
    assert r.series("val/loss").index[0] == 0  # evaluated before training too
    assert r.hist_tags(), "samples keep histograms for the dashboard"


def test_samples_fit_the_disk_budget():
    total = sum(f.stat().st_size for f in SAMPLE_DIR.rglob("*") if f.is_file())
    assert total < 30 * 2**20
    # Shipped self-contained: no WAL or shared-memory files left beside the databases.
    assert not list(SAMPLE_DIR.rglob("*-wal")) and not list(SAMPLE_DIR.rglob("*-shm"))


# -- the symptoms -------------------------------------------------------------------------------------
def test_baseline_is_healthy():
    assert final("baseline", "val/accuracy") >= 0.93
    assert smooth_loss("baseline").iloc[-1] < 0.1 * smooth_loss("baseline").iloc[0]
    # CS231n: updates of roughly 1e-3 of the weights' scale are healthy.
    assert 1e-4 < weight_update_ratio("baseline") < 1e-2
    assert frac_dead("baseline", "relu1") < 0.1 and frac_dead("baseline", "relu2") < 0.1


def test_lr_too_high_falls_then_climbs_with_large_updates():
    loss = smooth_loss("lr_too_high")
    assert loss.iloc[-1] > 2 * loss.min()  # it got lower and then went back up
    assert loss.idxmin() < loss.index[-1] * 0.8
    assert weight_update_ratio("lr_too_high") > 1e-2
    assert final("lr_too_high", "val/accuracy") < final("baseline", "val/accuracy") - 0.2


def test_lr_too_low_crawls_with_tiny_updates():
    val = run("lr_too_low").series("val/loss")
    assert val.iloc[-1] > 0.98 * val.iloc[0] and abs(val.iloc[-1] - LN10) < 0.05
    assert weight_update_ratio("lr_too_low") < 1e-4
    assert final("lr_too_low", "val/accuracy") < 0.3


def test_overfitting_val_loss_rises_while_train_loss_falls():
    val = run("overfitting").series("val/loss")
    best = val.idxmin()
    assert best < val.index[-1] / 4  # validation loss bottoms out early ...
    assert val.iloc[-1] > 2 * val.min()  # ... and ends more than twice as high
    train = smooth_loss("overfitting")
    assert train.iloc[-1] < train.loc[:best].iloc[-1]  # while training loss kept falling
    assert train.iloc[-1] < 0.01
    gap = val.iloc[-1] - train.iloc[-1]
    assert gap > 0.5


def test_overfitting_fixed_keeps_val_loss_down():
    assert final("overfitting_fixed", "val/loss") < 0.5 * final("overfitting", "val/loss")
    assert final("overfitting_fixed", "val/accuracy") >= final("overfitting", "val/accuracy")
    h = run("overfitting_fixed").hparams
    assert h["dropout"] > 0 and h["weight_decay"] > 0 and h["train_subset"] == run("overfitting").hparams["train_subset"]


def test_underfitting_plateaus_high_without_a_generalisation_gap():
    train = smooth_loss("underfitting")
    val = run("underfitting").series("val/loss")
    assert train.iloc[-1] > 0.5 and final("underfitting", "val/accuracy") < 0.75
    assert abs(val.iloc[-1] - train.iloc[-1]) < 0.1  # not overfitting: train and val agree
    # Plateau: the last third of training improved the loss by under 5%.
    third = train.iloc[len(train) * 2 // 3]
    assert train.iloc[-1] > 0.95 * third
    assert final("underfitting_fixed", "val/accuracy") > 0.95


def test_dying_relu_kills_a_layer_and_accuracy_collapses():
    dead = run("dying_relu").series("act/relu2/frac_dead")
    assert dead.iloc[0] < 0.1 and dead.loc[:140].iloc[-1] > 0.9 and dead.iloc[-1] > 0.9
    acc = run("dying_relu").series("val/accuracy")
    assert acc.max() > 0.8 and acc.iloc[-1] < 0.3
    # Dead units pass no gradient: the layer feeding them stops receiving any.
    assert last_probe("dying_relu", "grad/fc2.weight/norm") < 1e-3 * median("baseline", "grad/fc2.weight/norm")


def test_vanishing_sigmoid_gradients_shrink_towards_the_input():
    first = median("vanishing_sigmoid", "grad/fc1.weight/norm")
    last = median("vanishing_sigmoid", "grad/out.weight/norm")
    assert first < 1e-4 * last
    # Layer by layer, each earlier layer gets a smaller gradient.
    norms = [median("vanishing_sigmoid", f"grad/fc{i}.weight/norm") for i in range(1, 9)]
    assert all(a < b for a, b in zip(norms, norms[1:]))
    assert final("vanishing_sigmoid", "val/accuracy") <= 0.15
    assert abs(final("vanishing_sigmoid", "val/loss") - LN10) < 0.05


@pytest.mark.parametrize("name", ["deep_relu_he", "deep_sigmoid_bn"])
def test_deep_net_fixes_keep_gradients_flowing(name):
    ratio = median(name, "grad/fc1.weight/norm") / median(name, "grad/out.weight/norm")
    assert ratio > 0.1
    assert final(name, "val/accuracy") > 0.9
    same = {k: v for k, v in run(name).hparams.items() if k not in ("activation", "init", "batch_norm")}
    assert same == {k: v for k, v in run("vanishing_sigmoid").hparams.items()
                    if k not in ("activation", "init", "batch_norm")}


def test_saturated_tanh_sits_at_the_bounds():
    r = run("saturated_tanh")
    sat = [last_probe("saturated_tanh", f"act/tanh{i}/frac_saturated") for i in range(1, 9)]
    assert np.mean(sat) > 0.7 and min(sat) > 0.5
    assert r.series("train/loss").iloc[0] > 5  # far too large init: wildly confident wrong logits
    assert final("saturated_tanh", "val/accuracy") < 0.6
    assert float(r.series("weight/fc2.weight/norm").iloc[0]) > 30  # N(0,1) on 64x64: norm ~64


def test_xavier_init_avoids_the_saturation():
    sat = [last_probe("tanh_xavier", f"act/tanh{i}/frac_saturated") for i in range(1, 9)]
    assert max(sat) < 0.1
    assert final("tanh_xavier", "val/accuracy") > 0.9
    assert run("tanh_xavier").hparams == {**run("saturated_tanh").hparams, "init": "xavier_normal"}


def test_zero_init_never_learns():
    r = run("zero_init")
    for p in ("fc1.weight", "fc2.weight", "out.weight"):
        assert (r.series(f"grad/{p}/norm") == 0).all(), p
    assert frac_dead("zero_init", "relu1") == 1.0 and frac_dead("zero_init", "relu2") == 1.0
    assert abs(final("zero_init", "val/loss") - LN10) < 1e-3


def test_lstm_without_clipping_explodes_and_clipping_fixes_it():
    g = run("lstm_exploding").series("train/grad_norm")
    assert g.max() > 20 * g.median()
    spike = g.idxmax()
    loss = run("lstm_exploding").series("train/loss")
    before = loss.loc[spike - 20:spike - 1].mean()
    after = loss.loc[spike + 1:spike + 20].mean()
    assert after > before + 0.2  # the spike undid what had been learnt
    assert final("lstm_exploding", "val/accuracy") < 0.8
    clipped = run("lstm_clipped")
    assert clipped.hparams["grad_clip"] > 0 and clipped.series("train/grad_norm").max() > 5  # spike still seen
    assert final("lstm_clipped", "val/accuracy") > 0.95


def test_batchnorm_allows_the_high_learning_rate():
    r = run("no_batchnorm_high_lr")
    assert "diverged" in r.meta["error"]
    assert not np.isfinite(r.series("train/loss").values[-1])
    assert "nonfinite_loss" in set(r.events["kind"])
    bn = run("batchnorm_high_lr")
    assert bn.hparams["lr"] == r.hparams["lr"] and bn.hparams["batch_norm"] and not r.hparams["batch_norm"]
    assert final("batchnorm_high_lr", "val/accuracy") > 0.9


def test_sgd_is_behind_adam_after_the_same_steps():
    assert run("optimizer_sgd").hparams["optimizer"] == "sgd" and run("baseline").hparams["optimizer"] == "adam"
    assert run("optimizer_sgd").last_step == run("baseline").last_step
    assert final("optimizer_sgd", "val/accuracy") < final("baseline", "val/accuracy") - 0.15
    assert final("optimizer_sgd", "val/loss") > 3 * final("baseline", "val/loss")


def test_digits_cnn_is_healthy():
    assert final("digits_cnn", "val/accuracy") > 0.95
    assert frac_dead("digits_cnn", "relu1") < 0.2 and frac_dead("digits_cnn", "relu2") < 0.2
    assert run("digits_cnn").histograms("act/conv1") is not None

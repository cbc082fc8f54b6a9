"""The playground's data, models, schedules and training loop, trained for a few steps on CPU."""

import io
import math
import threading

import numpy as np
import pytest
import torch

import runstore
from playground import Config, train
from playground import data as pdata
from playground import models, optim
from playground.config import WORKLOAD_SIZES
from playground.loop import MAX_NONFINITE_STEPS
from playground.progress import ProgressBar

TINY = dict(train_subset=64, batch_size=32, epochs=1, eval_every=1, probe_every=1, device="cpu", width=8)


def tiny(**kw) -> Config:
    return Config(**{**TINY, **kw})


# -- data ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("workload", ["digits", "spirals", "sequence"])
def test_workload_sizes_match_the_config_table(workload):
    model = "lstm" if workload == "sequence" else "mlp"
    d = pdata.load(Config(workload=workload, model=model))
    assert (d.n_train, len(d.y_val)) == WORKLOAD_SIZES[workload]
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert tuple(d.x_train.shape[1:]) == d.input_shape
    # Every class is in the validation set, in near-equal numbers (stratified split).
    counts = torch.bincount(d.y_val, minlength=d.n_classes)
    assert counts.min() >= counts.max() - 1


def test_normalisation_uses_training_statistics_and_the_split_ignores_the_seed():
    raw = pdata.load(Config(normalize_inputs=False))
    norm = pdata.load(Config(normalize_inputs=True, seed=5))
    assert raw.x_train.max() == 16.0  # digits pixels are 0..16
    used = raw.x_train.std(0) > 0
    assert torch.allclose(norm.x_train.mean(0), torch.zeros(64), atol=1e-5)
    assert torch.allclose(norm.x_train.std(0, unbiased=False)[used], torch.ones(int(used.sum())), atol=1e-4)
    assert torch.equal(raw.y_val, norm.y_val)  # same validation set for every seed


def test_train_subset_and_class_weights():
    d = pdata.load(Config(train_subset=100))
    assert d.n_train == 100 and len(d.y_val) == WORKLOAD_SIZES["digits"][1]
    imbalanced = pdata.Workload("t", None, torch.tensor([0, 0, 0, 1]), None, None, 2, (1,))
    w = imbalanced.class_weights()
    assert w[1] / w[0] == pytest.approx(3.0) and w.mean() == pytest.approx(1.0)


# -- models and initialisation -------------------------------------------------------------------
def _build(**kw):
    cfg = Config(**kw)
    torch.manual_seed(0)
    return models.build(cfg, pdata.load(cfg))


def test_layer_names_are_readable():
    names = [n for n, _ in _build(depth=2, batch_norm=True, dropout=0.1, activation="tanh").named_children()]
    assert names == ["fc1", "bn1", "tanh1", "drop1", "fc2", "bn2", "tanh2", "drop2", "out"]
    cnn = [n for n, _ in _build(model="cnn", depth=2).named_children()]
    assert cnn == ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "flatten", "out"]


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "prelu", "elu", "gelu", "tanh", "sigmoid"])
def test_every_activation_builds_and_runs(activation):
    model = _build(activation=activation, depth=1)
    assert model(torch.randn(4, 64)).shape == (4, 10)


def test_init_schemes():
    zeros = _build(init="zeros")
    assert all(float(p.detach().abs().sum()) == 0 for p in zeros.parameters())
    large = _build(init="large_normal", width=256)
    assert float(large.fc2.weight.detach().std()) == pytest.approx(1.0, rel=0.05)
    he = _build(init="kaiming", width=256)
    assert float(he.fc2.weight.detach().std()) == pytest.approx(math.sqrt(2 / 256), rel=0.05)
    assert float(he.out.weight.detach().std()) == pytest.approx(math.sqrt(1 / 256), rel=0.1)  # gain 1 before softmax
    orth = _build(init="orthogonal", width=64, activation="tanh")
    w = orth.fc2.weight.detach()
    assert torch.allclose(w @ w.T, (5 / 3) ** 2 * torch.eye(64), atol=1e-4)
    for scheme in ("small_normal", "xavier_uniform", "xavier_normal", "default"):
        _build(init=scheme)


@pytest.mark.parametrize("init", ["default", "orthogonal", "zeros"])
def test_lstm_forget_gate_bias(init):
    model = _build(workload="sequence", model="lstm", depth=2, width=16, forget_bias=2.5, init=init)
    for layer in range(2):
        b = getattr(model.rnn, f"bias_ih_l{layer}") + getattr(model.rnn, f"bias_hh_l{layer}")
        assert torch.allclose(b[16:32], torch.full((16,), 2.5))


def test_recurrent_models_classify_sequences():
    for kind in ("lstm", "gru"):
        model = _build(workload="sequence", model=kind, depth=1, width=16)
        assert model(torch.randn(3, pdata.SEQ_LEN, pdata.SEQ_SYMBOLS + 1)).shape == (3, pdata.SEQ_SYMBOLS)


# -- schedules ------------------------------------------------------------------------------------
def _lrs(total=100, **kw):
    s = optim.Schedule(Config(lr=1.0, **kw), total)
    return [s.lr_at(i) for i in range(total)]


def test_schedules():
    assert _lrs(schedule="constant") == [1.0] * 100
    step = _lrs(schedule="step", step_size=30, gamma=0.1)
    assert step[29] == 1.0 and step[30] == pytest.approx(0.1) and step[60] == pytest.approx(0.01)
    expo = _lrs(schedule="exponential", step_size=10, gamma=0.5)
    assert expo[10] == pytest.approx(0.5) and expo[5] == pytest.approx(0.5 ** 0.5)
    cos = _lrs(schedule="cosine")
    assert cos[0] == 1.0 and cos[50] == pytest.approx(0.5) and cos[-1] < 0.001
    warm = _lrs(schedule="warmup", warmup_steps=10)
    assert warm[0] == pytest.approx(0.1) and warm[9] == 1.0 and warm[50] == 1.0
    warm_cos = _lrs(schedule="cosine", warmup_steps=20)
    assert warm_cos[19] == 1.0 and warm_cos[20] == 1.0 and warm_cos[-1] < 0.001


def test_reduce_on_plateau_cuts_after_step_size_steps_without_improvement():
    s = optim.Schedule(Config(lr=1.0, schedule="plateau", step_size=20, gamma=0.5), 200)
    assert not s.observe_val(0, 1.0)
    assert not s.observe_val(10, 0.5)
    assert not s.observe_val(20, 0.6)  # 10 steps without improvement: not yet
    assert s.observe_val(30, 0.6)  # 20 steps: cut
    assert s.lr_at(31) == 0.5
    assert not s.observe_val(40, 0.6)  # waits another step_size after a cut
    assert s.observe_val(50, 0.6) and s.lr_at(51) == 0.25


@pytest.mark.parametrize("name", ["sgd", "momentum", "rmsprop", "adam", "adamw"])
def test_optimizers(name):
    model = _build()
    opt = optim.build_optimizer(Config(optimizer=name, lr=0.01, weight_decay=1e-3, momentum=0.8), model)
    expected = {"sgd": torch.optim.SGD, "momentum": torch.optim.SGD, "rmsprop": torch.optim.RMSprop,
                "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name]
    assert type(opt) is expected
    g = opt.param_groups[0]
    assert g["lr"] == 0.01 and g["weight_decay"] == 1e-3
    if name in ("sgd", "momentum"):
        assert g["momentum"] == (0.8 if name == "momentum" else 0)


# -- the training loop ---------------------------------------------------------------------------
@pytest.mark.parametrize("workload, model", [("digits", "mlp"), ("digits", "cnn"), ("spirals", "mlp"),
                                             ("sequence", "lstm"), ("sequence", "gru")])
def test_every_workload_trains_and_writes_a_readable_run(tmp_path, workload, model):
    cfg = tiny(workload=workload, model=model)
    status = train(cfg, tmp_path / "run", meta={"description": "tiny"})
    assert status == "finished"
    run = runstore.load_run(tmp_path / "run")
    assert run.status == "finished" and not run.warnings
    assert run.meta["hparams"] == cfg.to_dict()
    assert run.meta["workload"] == workload and run.meta["description"] == "tiny"
    assert run.meta["total_steps"] == cfg.total_steps() == 2 == run.last_step
    loss = run.series("train/loss")
    assert list(loss.index) == [1, 2] and np.isfinite(loss.values).all()
    assert list(run.series("val/loss").index) == [0, 1, 2]  # step 0 = the untrained model
    assert run.series("val/accuracy").between(0, 1).all()
    assert run.series("train/grad_norm").gt(0).all()
    assert any(t.startswith("act/") for t in run.scalar_tags())
    assert any(t.startswith("update_ratio/") for t in run.scalar_tags())
    assert Config.from_dict(run.meta["hparams"]) == cfg  # rerunnable from the stored hparams


def test_same_seed_same_run_and_other_seed_other_run(tmp_path):
    cfg = tiny(dropout=0.2, epochs=2, train_subset=128)
    train(cfg, tmp_path / "a")
    train(cfg, tmp_path / "b")
    train(cfg.replace(seed=1), tmp_path / "c")
    a, b, c = (runstore.load_run(tmp_path / n) for n in "abc")
    for tag in ("train/loss", "val/loss", "grad/fc1.weight/norm", "act/relu1/mean"):
        assert np.array_equal(a.series(tag).values, b.series(tag).values), tag
    assert not np.array_equal(a.series("train/loss").values, c.series("train/loss").values)


def test_recorded_learning_rate_follows_the_schedule(tmp_path):
    cfg = tiny(schedule="step", step_size=2, gamma=0.5, lr=0.1, epochs=3, eval_every=100, probe_every=100)
    train(cfg, tmp_path / "r")
    lr = runstore.load_run(tmp_path / "r").series("lr/group0")
    assert lr.values.tolist() == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])


def test_l1_penalty_and_regularisers_are_recorded(tmp_path):
    cfg = tiny(l1=1e-3, weight_decay=1e-2, label_smoothing=0.1, class_weighted=True, grad_clip=0.5,
               optimizer="adamw", schedule="cosine", warmup_steps=1, shuffle=False)
    assert train(cfg, tmp_path / "r") == "finished"
    run = runstore.load_run(tmp_path / "r")
    assert run.series("train/l1_penalty").gt(0).all()
    # Gradients are clipped before the optimizer sees them: the probes' per-parameter norms
    # (taken at optimizer.step) cannot add up to more than the clip norm.
    total = np.sqrt(sum(run.series(t).values ** 2 for t in run.scalar_tags()
                        if t.startswith("grad/") and t.endswith("/norm")))
    assert (total <= 0.5 + 1e-4).all()


def test_divergence_stops_early_as_failed_and_keeps_the_data(tmp_path):
    cfg = Config(optimizer="sgd", lr=10.0, init="large_normal", normalize_inputs=False, epochs=5,
                 eval_every=5, probe_every=5, device="cpu")
    status = train(cfg, tmp_path / "r")
    run = runstore.load_run(tmp_path / "r")
    assert status == run.status == "failed"
    assert "diverged" in run.meta["error"] and "Lower the learning rate" in run.meta["error"]
    loss = run.series("train/loss")
    assert not np.isfinite(loss.values[-MAX_NONFINITE_STEPS:]).any()
    assert run.last_step < cfg.total_steps()
    assert "nonfinite_loss" in set(run.events["kind"])


def test_stop_event_ends_the_run_as_stopped(tmp_path):
    stop = threading.Event()
    seen = []

    def progress(p):
        seen.append(p.step)
        if p.step == 3:
            stop.set()

    status = train(tiny(epochs=5), tmp_path / "r", progress=progress, stop=stop)
    run = runstore.load_run(tmp_path / "r")
    assert status == run.status == "stopped"
    assert run.last_step == 3 == seen[-1]
    assert "stopped on request at step 3 of 10" in run.meta["error"]
    assert len(run.series("train/loss")) == 3


def test_keyboard_interrupt_stops_and_other_errors_fail(tmp_path):
    def interrupt(p):
        raise KeyboardInterrupt

    assert train(tiny(), tmp_path / "a", progress=interrupt) == "stopped"

    def broken(p):
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        train(tiny(), tmp_path / "b", progress=broken)
    run = runstore.load_run(tmp_path / "b")
    assert run.status == "failed" and run.meta["error"] == "ValueError: boom"


def test_an_existing_run_is_not_overwritten_by_accident(tmp_path):
    train(tiny(), tmp_path / "r")
    with pytest.raises(runstore.RunExistsError):
        train(tiny(), tmp_path / "r")
    assert train(tiny(seed=3), tmp_path / "r", overwrite=True) == "finished"
    assert runstore.load_run(tmp_path / "r").hparams["seed"] == 3


def test_invalid_config_is_rejected_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match="^dropout:"):
        train(Config(dropout=1.5), tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_progress_bar_line():
    from playground.loop import Progress

    out = io.StringIO()
    bar = ProgressBar(stream=out, log_every_s=0)
    p = Progress(step=50, total=200, epoch=3, loss=0.4321, val_loss=0.5, val_accuracy=0.9, elapsed_s=10.0)
    bar(p)
    line = out.getvalue()
    assert "50/200" in line and "25%" in line and "loss 0.4321" in line and "acc 90.0%" in line
    assert "00:10<00:30" in line  # elapsed < ETA at the average pace

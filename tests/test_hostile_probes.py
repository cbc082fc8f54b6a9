"""Hostile input and a hostile disk: a bad call to the probes fails at once with a message naming
what was expected and records nothing; bad options fail at attach time before any folder exists;
a disk that fills up during training never stops the training, and the run says what was lost."""

import errno
import math
import os
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import probes
import runstore
from runstore import RunWriter, tags


def _model():
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def _backprop(model, opt):
    loss = F.cross_entropy(model(torch.randn(8, 4)), torch.randint(0, 3, (8,)))
    opt.zero_grad(); loss.backward(); opt.step()


def _train(model, opt, rec, steps):
    for _ in range(steps):
        x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        opt.zero_grad(); loss.backward(); opt.step()
        rec.record_step(loss, logits=logits, targets=y)


# -- record_step / record_eval ----------------------------------------------------------------
@pytest.mark.parametrize("args, kwargs, exc, match", [
    (("abc",), {}, TypeError, "loss must be a number or a one-element tensor, got str"),
    (("1.5",), {}, TypeError, "loss must be a number"),  # text is not a loss, even if it parses
    ((None,), {}, TypeError, "loss must be a number"),
    ((torch.ones(3),), {}, ValueError, r"loss must be a single number .* shape \(3,\)"),
    ((np.ones(2),), {}, ValueError, "loss must be a single number"),
    ((1.0,), {"grad_norm": "big"}, TypeError, "grad_norm must be a number"),
    ((1.0,), {"logits": [0.1, 0.9]}, TypeError, "logits must be a tensor, got list"),
    ((1.0,), {"logits": torch.tensor(2.0)}, ValueError, r"logits must be real class scores .* shape \(\)"),
    ((1.0,), {"targets": torch.zeros(8)}, ValueError, "targets were passed without logits"),
    ((1.0,), {"logits": torch.randn(8, 3), "targets": [0] * 8}, TypeError, "targets must be a tensor"),
])
def test_a_bad_record_step_call_raises_and_records_nothing(tmp_path, args, kwargs, exc, match):
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    rec = probes.attach(model, opt, run_dir=tmp_path / "r", every=1)
    _backprop(model, opt)
    rec.record_step(0.5)
    _backprop(model, opt)
    with pytest.raises(exc, match=match):
        rec.record_step(*args, **kwargs)
    assert rec.step == 1  # the bad call did not take a step number
    rec.record_step(0.25)  # and this optimizer step is not reported as skipped
    rec.close()
    run = runstore.load_run(tmp_path / "r")
    assert run.series(tags.TRAIN_LOSS).to_dict() == {1: 0.5, 2: 0.25}
    assert list(run.series(tags.WALL_TIME).index) == [1, 2]
    assert list(run.series(tags.lr(0)).index) == [1, 2]
    assert run.status == "finished" and not len(run.events)


def test_a_bad_record_eval_call_raises_and_records_nothing(tmp_path):
    rec = probes.attach(_model(), run_dir=tmp_path / "r")
    with pytest.raises(TypeError, match="accuracy must be a number"):
        rec.record_eval(loss=0.3, accuracy="high")
    with pytest.raises(ValueError, match=r"targets of shape \(5,\) do not match logits of shape \(8, 3\)"):
        rec.record_eval(loss=0.3, logits=torch.randn(8, 3), targets=torch.zeros(5, dtype=torch.long))
    rec.close()
    run = runstore.load_run(tmp_path / "r")
    assert not [t for t in run.scalar_tags() if t.startswith("val/")]


def test_targets_that_do_not_match_the_logits_are_an_error_naming_both_shapes(tmp_path):
    """Before, the accuracy was left out without a word when the batch sizes differed."""
    rec = probes.attach(_model(), run_dir=tmp_path / "r", every=1)
    for logits, targets in [(torch.randn(8, 3), torch.zeros(4, dtype=torch.long)),
                            (torch.randn(2, 5, 7), torch.zeros(2, 4, dtype=torch.long)),
                            (torch.randn(8), torch.zeros(4)),
                            (torch.randn(8, 3), torch.zeros(8, 3, dtype=torch.long))]:  # multi-hot ints
        with pytest.raises(ValueError, match=rf"targets of shape \({targets.shape[0]},.* do not match logits "
                                             rf"of shape \({logits.shape[0]},"):
            rec.record_step(1.0, logits=logits, targets=targets)
    assert rec.step == 0
    rec.close()


def test_every_supported_logit_shape_records_its_accuracy(tmp_path):
    """(B, C) with class indices or probabilities, (B, T, V) language-model logits with (B, T)
    targets (ignore_index left out of accuracy and confidence), and binary logits (B,) or (B, 1) with 0/1 labels."""
    torch.manual_seed(0)
    lm_t = torch.randint(0, 7, (2, 5))
    lm_t[0, 0] = -100
    multi = [(torch.randn(8, 3), torch.randint(0, 3, (8,))),
             (torch.randn(8, 3), F.one_hot(torch.randint(0, 3, (8,)), 3).float()),
             (torch.randn(2, 5, 7), lm_t)]
    binary = [(torch.randn(16), torch.randint(0, 2, (16,)).float()),
              (torch.randn(16, 1), torch.randint(0, 2, (16, 1))),
              (torch.randn(16), torch.randint(0, 2, (16,)))]
    for name, cases, classes in (("multi", multi, 3), ("binary", binary, 2)):
        rec = probes.attach(_model(), run_dir=tmp_path / name, every=1)
        for logits, targets in cases:
            rec.record_step(1.0, logits=logits, targets=targets)
        rec.close()
        run = runstore.load_run(tmp_path / name)
        assert run.meta["n_classes"] == classes
        acc, conf = run.series("train/accuracy"), run.series("train/confidence")
        assert list(acc.index) == [1, 2, 3]
        for step, (logits, targets) in enumerate(cases, 1):
            if name == "binary":
                z, t = logits.reshape(-1), targets.reshape(-1)
                want_acc = ((z > 0).long() == t.long()).float().mean()
                p = torch.sigmoid(z)
                want_conf = torch.maximum(p, 1 - p).mean()
            else:
                z = logits.reshape(-1, logits.shape[-1])
                t = targets.reshape(-1, 3).argmax(-1) if targets.is_floating_point() else targets.reshape(-1)
                keep = t >= 0
                want_acc = (z.argmax(-1)[keep] == t[keep]).float().mean()
                want_conf = z.softmax(-1).max(-1).values[keep].mean()  # ignored positions count in no statistic
            assert acc[step] == pytest.approx(want_acc.item(), abs=1e-6), (name, step)
            assert conf[step] == pytest.approx(want_conf.item(), rel=1e-5), (name, step)


# -- options, run_dir and run metadata, all checked before any folder is made -------------------
@pytest.mark.parametrize("option, value, exc, match", [
    ("flush_secs", math.nan, ValueError, "flush_secs must be a finite number of seconds greater than 0, got nan"),
    ("flush_secs", math.inf, ValueError, "flush_secs must be a finite"),
    ("flush_secs", 0, ValueError, "flush_secs"),
    ("flush_secs", "2", TypeError, "flush_secs must be a number of seconds, got str"),
    ("flush_steps", 2.5, TypeError, "flush_steps must be a whole number"),
    ("flush_steps", 0, ValueError, "flush_steps must be a whole number of at least 1, got 0"),
    ("hist_sample", "big", TypeError, "hist_sample must be a whole number of at least 1000, got str 'big'"),
    ("hist_sample", -5, ValueError, "hist_sample must be a whole number of at least 1000, got -5"),
    ("hist_bins", -3, ValueError, "hist_bins must be a whole number from 2 to 1000, got -3"),
    ("hist_bins", 40.0, TypeError, "hist_bins"),
    ("every", True, TypeError, "every must be a whole number"),
    ("every", 0, ValueError, "every"),
    ("record_histograms", "no", TypeError, "record_histograms must be True or False"),
    ("overwrite", 1, TypeError, "overwrite must be True or False"),
    ("exclude", "0", TypeError, r"exclude must be a list of module names"),
    ("modules", "0", TypeError, r"modules must be a list of module names"),
    ("meta", ["name"], TypeError, "meta must be a dict"),
    ("name", "baseline", TypeError, r"unknown option\(s\) 'name'.*meta="),
])
def test_bad_options_fail_at_attach_naming_option_and_value(tmp_path, option, value, exc, match):
    with pytest.raises(exc, match=match):
        probes.attach(_model(), run_dir=tmp_path / "r", **{option: value})
    assert not (tmp_path / "r").exists()


def test_numpy_whole_numbers_are_accepted_as_options(tmp_path):
    rec = probes.attach(_model(), run_dir=tmp_path / "r", every=np.int64(5), flush_secs=np.float32(1.5))
    assert type(rec.options.every) is int and rec.options.every == 5
    rec.close()
    assert runstore.load_run(tmp_path / "r").meta["probes"]["every"] == 5


@pytest.mark.parametrize("run_dir, exc, match", [
    ("", ValueError, "run_dir must name a folder for the run, got ''"),
    ("   ", ValueError, "run_dir must name a folder"),
    (None, TypeError, "run_dir must be a path"),
    ("runs/a\0b", ValueError, "run_dir must not contain a NUL"),
])
def test_a_run_dir_that_names_no_folder_is_refused(tmp_path, monkeypatch, run_dir, exc, match):
    """An empty run_dir used to write run.json and run.db into the current directory."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(exc, match=match):
        probes.attach(_model(), run_dir=run_dir)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("meta, match", [
    ({"name": "base\0line"}, r"meta\['name'\] must not contain control characters.*'\\x00'"),
    ({"description": "lr 0.1\0"}, r"meta\['description'\] must not contain control characters"),
    ({"name": "two\nlines"}, r"meta\['name'\]"),
    ({"name": "\x1b[31mred"}, r"meta\['name'\]"),  # a terminal escape, printed by the CLI
    ({"workload": "digits\0"}, r"meta\['workload'\] must not contain a NUL"),
])
def test_control_characters_in_run_text_are_refused_before_any_folder(tmp_path, meta, match):
    with pytest.raises(ValueError, match=match):
        probes.attach(_model(), run_dir=tmp_path / "r", meta=meta)
    assert not (tmp_path / "r").exists()


def test_a_multi_line_description_is_kept(tmp_path):
    rec = probes.attach(_model(), run_dir=tmp_path / "r", meta={"name": "base", "description": "a\n\tb"})
    rec.close()
    assert runstore.load_run(tmp_path / "r").meta["description"] == "a\n\tb"


def test_missing_tensorboard_leaves_no_run_behind(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "torch.utils.tensorboard", None)  # import fails
    with pytest.raises(ImportError, match="pip install tensorboard"):
        probes.attach(_model(), run_dir=tmp_path / "r", tensorboard=True)
    assert not (tmp_path / "r").exists()


def test_a_bad_close_status_leaves_the_recorder_open(tmp_path):
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    rec = probes.attach(model, opt, run_dir=tmp_path / "r", every=1)
    with pytest.raises(ValueError, match="status must be one of"):
        rec.close("done")
    with pytest.raises(TypeError, match="error must be a message"):
        rec.close("failed", error=ValueError("x"))
    assert not rec.closed
    _train(model, opt, rec, 1)  # hooks and writer still work
    rec.close()
    run = runstore.load_run(tmp_path / "r")
    assert run.status == "finished" and tags.grad("0.weight", "norm") in run.scalar_tags()


# -- a full disk --------------------------------------------------------------------------------
def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _write_warnings(caught):
    return [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning) and "probes" in str(w.message)]


def test_a_disk_that_fills_up_does_not_stop_training_and_the_run_says_so(tmp_path, monkeypatch):
    """Flushes 2 and 3 (steps 3-6) fail with ENOSPC, then space comes back: training never sees an
    error, the user gets one warning, close() does not raise and the run is failed, with why."""
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    real_write = RunWriter.write

    def write(self, batch, last_step=None):
        if last_step in (4, 6):  # the disk is full for these two flushes, whenever they are written
            _enospc()
        return real_write(self, batch, last_step=last_step)
    monkeypatch.setattr(RunWriter, "write", write)
    # Flushes by step count only, so which steps are lost does not depend on the machine's speed.
    rec = probes.attach(model, opt, run_dir=tmp_path / "r", every=1, flush_steps=2, flush_secs=1e9)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _train(model, opt, rec, 8)
        rec.close()
    assert rec.closed and rec.step == 8
    assert len(_write_warnings(caught)) == 1, _write_warnings(caught)
    assert "No space left on device" in _write_warnings(caught)[0]
    assert isinstance(rec.write_error, OSError) and rec.write_error.errno == errno.ENOSPC
    run = runstore.load_run(tmp_path / "r")
    assert run.status == "failed"
    assert "could not write 2 of" in run.meta["error"] and "No space left on device" in run.meta["error"]
    assert list(run.series(tags.TRAIN_LOSS).index) == [1, 2, 7, 8]  # what was written is kept


def test_a_user_error_and_a_write_failure_are_both_recorded(tmp_path, monkeypatch):
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    rec = probes.attach(model, opt, run_dir=tmp_path / "r", every=1, flush_steps=1, flush_secs=1e9)
    monkeypatch.setattr(RunWriter, "write", _enospc)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        with pytest.raises(ZeroDivisionError):
            with rec:
                _train(model, opt, rec, 2)
                1 / 0
    error = runstore.load_run(tmp_path / "r").meta["error"]
    assert error.startswith("ZeroDivisionError") and "No space left on device" in error


def test_when_nothing_can_be_written_close_warns_instead_of_raising(tmp_path, monkeypatch):
    """Not even run.json can be rewritten: close() still returns (the training script goes on to
    save its model), removes every hook, and the warning says the run will read as killed."""
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    rec = probes.attach(model, opt, run_dir=tmp_path / "r", every=1, flush_steps=2, flush_secs=1e9)
    monkeypatch.setattr(RunWriter, "write", _enospc)
    monkeypatch.setattr(RunWriter, "write_meta", _enospc)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _train(model, opt, rec, 4)
        rec.close()
    said = _write_warnings(caught)
    assert len(said) == 2, said  # the lost data, then the run's end that could not be written
    assert "No space left on device" in said[0] and "still says it is running" in said[1]
    assert rec.closed and rec.write_error.errno == errno.ENOSPC
    assert not any(len(m._forward_hooks) for m in model.modules()) and not opt._optimizer_step_post_hooks

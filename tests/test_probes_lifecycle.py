"""Hooks come and go cleanly; runs can be read while written and survive a killed process; the
TensorBoard mirror is readable by TensorBoard; bad input gets a clear error."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import probes
import runstore
from runstore import tags

WORKER = Path(__file__).with_name("probe_worker.py")


def _model():
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def _hook_count(model, opt):
    n = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())
    return n + len(opt._optimizer_step_pre_hooks) + len(opt._optimizer_step_post_hooks)


def _one_step(model, opt, rec):
    loss = F.cross_entropy(model(torch.randn(4, 4)), torch.zeros(4, dtype=torch.long))
    opt.zero_grad(); loss.backward(); opt.step()
    rec.record_step(loss)


def test_close_removes_every_hook_and_is_idempotent(tmp_path):
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    rec = probes.attach(model, opt, run_dir=tmp_path / "r", every=1)
    assert _hook_count(model, opt) > 0
    _one_step(model, opt, rec)
    rec.close()
    rec.close()
    assert _hook_count(model, opt) == 0
    # the model behaves exactly as before: same outputs as an identical un-probed copy
    twin = _model()
    with torch.no_grad():
        for p, q in zip(twin.parameters(), model.parameters()):
            p.copy_(q)
    x = torch.randn(5, 4)
    assert torch.equal(model(x), twin(x))
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_exception_inside_with_marks_failed_and_keeps_data(tmp_path):
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ZeroDivisionError):
        with probes.attach(model, opt, run_dir=tmp_path / "r", every=1) as rec:
            for _ in range(3):
                _one_step(model, opt, rec)
            1 / 0
    assert _hook_count(model, opt) == 0
    run = runstore.load_run(tmp_path / "r")
    assert run.status == "failed" and "ZeroDivisionError" in run.meta["error"]
    assert len(run.series("train/loss")) == 3


def test_recorder_does_not_keep_the_model_alive(tmp_path):
    import gc
    import weakref
    model = _model()
    ref = weakref.ref(model)
    rec = probes.attach(model, None, run_dir=tmp_path / "r")
    del model
    gc.collect()
    assert ref() is None
    rec.close()


def test_clear_errors_for_bad_input(tmp_path):
    model = _model()
    with pytest.raises(TypeError, match="torch.nn.Module"):
        probes.attach("not a model", run_dir=tmp_path / "a")
    with pytest.raises(ValueError, match="every"):
        probes.attach(model, run_dir=tmp_path / "b", every=0)
    with pytest.raises(ValueError, match="not in the model"):
        probes.attach(model, run_dir=tmp_path / "c", modules=["nope"])
    rec = probes.attach(model, run_dir=tmp_path / "d")
    rec.close()
    with pytest.raises(RuntimeError, match="after close"):
        rec.record_step(1.0)
    with pytest.raises(runstore.RunExistsError, match="already holds a run"):
        probes.attach(model, run_dir=tmp_path / "d")
    rec = probes.attach(model, run_dir=tmp_path / "d", overwrite=True)
    with pytest.raises(ValueError, match="single number"):
        rec.record_step(torch.ones(3))
    rec.close()


def test_reader_polls_while_a_training_process_writes(tmp_path):
    run_dir = tmp_path / "live"
    proc = subprocess.Popen([sys.executable, str(WORKER), str(run_dir), "60", "0.05"], stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while not runstore.is_run_dir(run_dir) and time.time() < deadline:
            time.sleep(0.05)
        run = runstore.load_run(run_dir)
        seen = []
        while proc.poll() is None and time.time() < deadline:
            run.refresh()
            seen.append(len(run.series("train/loss")))
            assert run.status in ("running", "finished")
            time.sleep(0.15)
        proc.wait(30)
        run.refresh()
    finally:
        proc.kill()
    growth = sorted(set(seen))
    assert len(growth) >= 3, f"the reader should see the run grow while it is written, saw {growth}"
    assert seen == sorted(seen)
    assert run.status == "finished" and len(run.series("train/loss")) == 60
    assert run.series("train/loss").index.tolist() == list(range(1, 61))


def test_killed_training_leaves_a_readable_run(tmp_path):
    run_dir = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(WORKER), str(run_dir), "100000", "0.01"], stdout=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if int(line) >= 40:
                break
        time.sleep(0.5)  # at least one more flush
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    run = runstore.load_run(run_dir)
    assert run.status == "killed"
    loss = run.series("train/loss")
    assert len(loss) >= 40 and loss.index.is_monotonic_increasing
    assert len(run.series(tags.act("1", "frac_dead"))) >= 8


def test_tensorboard_mirror_is_read_by_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    rec = probes.attach(model, opt, run_dir=tmp_path / "r", every=1, tensorboard=True)
    for _ in range(4):
        _one_step(model, opt, rec)
    rec.close()
    acc = EventAccumulator(str(tmp_path / "r" / "tb"), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    run = runstore.load_run(tmp_path / "r")
    loss = [e.value for e in acc.Scalars("train/loss")]
    assert loss == pytest.approx(run.series("train/loss").tolist(), rel=1e-6)
    assert [e.step for e in acc.Scalars(tags.update_ratio("0.weight"))] == [1, 2, 3, 4]
    h = acc.Histograms(tags.act("1"))
    assert len(h) == 4
    ours = run.histograms(tags.act("1"))
    assert h[0].histogram_value.num == ours.counts[0].sum()
    assert h[0].histogram_value.min == pytest.approx(ours.lo[0])

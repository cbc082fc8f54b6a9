"""Reading runs for diagnostics: damaged, empty, half-written and still-running run directories,
and TensorBoard logs written by torch.utils.tensorboard.SummaryWriter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import diagnostics
import runstore
from diagnostics import RunReadError
from diagnostics.tb_import import _rebin, map_scalar_tag
from runstore import tags as T
from test_diagnostics_synth import healthy, write_run

ROOT = Path(__file__).resolve().parents[1]


# -- our run directories ----------------------------------------------------------------------
def test_missing_and_empty_paths_raise_clear_errors(tmp_path):
    with pytest.raises(RunReadError, match="does not exist"):
        diagnostics.load_run(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunReadError, match="empty"):
        diagnostics.load_run(tmp_path / "empty")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("hello")
    with pytest.raises(RunReadError, match="neither a run directory"):
        diagnostics.load_run(tmp_path / "other")


def test_folder_of_runs_lists_them(tmp_path):
    for name in ("a", "b"):
        write_run(tmp_path / "runs" / name, healthy(n=50))
    with pytest.raises(RunReadError, match=r"folder of 2 runs \(a, b\)"):
        diagnostics.load_run(tmp_path / "runs")


def test_garbage_db_without_metadata_is_an_error(tmp_path):
    d = tmp_path / "r"
    d.mkdir()
    (d / "run.db").write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(RunReadError, match="neither readable metadata nor any recorded numbers"):
        diagnostics.load_run(d)


def test_garbage_db_with_metadata_loads_partially_with_a_warning(tmp_path):
    path = Path(write_run(tmp_path / "r", healthy(n=100)))
    (path / "run.db").write_bytes(b"\x00garbage" * 500)
    for side in ("run.db-wal", "run.db-shm"):
        (path / side).unlink(missing_ok=True)
    run = diagnostics.load_run(path)
    assert run.warnings and run.meta["name"] == "synthetic"
    findings = diagnostics.advise(run)
    rules = [f.rule for f in findings]
    assert "partial_run" in rules and "short_run" in rules and "rule_failed" not in rules


def test_truncated_run_json_keeps_the_numbers(tmp_path):
    path = Path(write_run(tmp_path / "r", healthy(n=300)))
    text = (path / "run.json").read_text()
    (path / "run.json").write_text(text[: len(text) // 2])
    run = diagnostics.load_run(path)
    assert any("run.json" in w for w in run.warnings)
    assert len(run.series(T.TRAIN_LOSS)) == 300
    findings = diagnostics.advise(run)
    assert findings[0].rule == "partial_run" and "rule_failed" not in [f.rule for f in findings]


def test_truncated_db_file_gives_partial_result_not_traceback(tmp_path):
    path = Path(write_run(tmp_path / "r", healthy(n=600)))
    db = path / "run.db"
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 3])
    run = diagnostics.load_run(path)
    findings = diagnostics.advise(run)  # must not raise
    assert "rule_failed" not in [f.rule for f in findings]


def test_run_with_only_a_few_steps(tmp_path):
    spec = healthy(n=8, every=2)
    spec["scalars"] = {}
    run = diagnostics.load_run(write_run(tmp_path / "r", spec))
    findings = diagnostics.advise(run)
    assert [f.rule for f in findings] == ["short_run"]
    assert "only 8 finite train/loss values" in findings[0].message


def test_run_with_metadata_only(tmp_path):
    w = runstore.RunWriter(tmp_path / "r", {"name": "fresh"})
    run = diagnostics.load_run(tmp_path / "r")
    assert run.status == "running"
    findings = diagnostics.advise(run)
    assert [f.rule for f in findings] == ["short_run"]
    w.close()


def test_reading_a_run_that_is_still_being_written(tmp_path):
    spec = healthy(n=400)
    w = runstore.RunWriter(tmp_path / "live", {"name": "live", "hparams": spec["hparams"], "n_classes": 10})
    steps = np.arange(1, 401)
    w.write(runstore.Batch(scalars={T.TRAIN_LOSS: (steps[:200], spec["loss"][:200])}), last_step=200)
    run = diagnostics.load_run(tmp_path / "live")
    assert run.status == "running" and len(run.series(T.TRAIN_LOSS)) == 200
    diagnostics.advise(run)
    w.write(runstore.Batch(scalars={T.TRAIN_LOSS: (steps[200:], spec["loss"][200:])}), last_step=400)
    assert run.refresh()
    assert len(run.series(T.TRAIN_LOSS)) == 400
    assert "rule_failed" not in [f.rule for f in diagnostics.advise(run)]
    w.close()


def test_diagnostics_never_imports_torch_streamlit_or_plotly(tmp_path):
    path = write_run(tmp_path / "r", healthy(n=100))
    code = ("import sys, diagnostics; diagnostics.advise(diagnostics.load_run(sys.argv[1])); "
            "bad = [m for m in ('torch', 'streamlit', 'plotly') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code, path], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


# -- TensorBoard logs --------------------------------------------------------------------------
def test_tag_mapping():
    assert map_scalar_tag("Loss/train") == "train/loss"
    assert map_scalar_tag("train_loss") == "train/loss"
    assert map_scalar_tag("loss") == "train/loss"
    assert map_scalar_tag("train_loss_step") == "train/loss"
    assert map_scalar_tag("val_loss") == "val/loss"
    assert map_scalar_tag("Loss/validation") == "val/loss"
    assert map_scalar_tag("validation/epoch_loss") == "val/loss"
    assert map_scalar_tag("Accuracy/val") == "val/accuracy"
    assert map_scalar_tag("test_acc") == "test/accuracy"
    assert map_scalar_tag("lr") == "lr/group0"
    assert map_scalar_tag("lr-Adam/pg2") == "lr/group1"
    assert map_scalar_tag("learning_rate") == "lr/group0"
    assert map_scalar_tag("grad_norm") is None
    assert map_scalar_tag("loss_reconstruction") is None
    assert map_scalar_tag("train/loss") == "train/loss"


def test_rebin_preserves_counts():
    buckets = np.array([[0.0, 1.0, 10.0], [1.0, 3.0, 20.0], [3.0, 3.0, 5.0]])
    lo, hi, counts = _rebin(buckets, 6)
    assert (lo, hi) == (0.0, 3.0) and counts.sum() == pytest.approx(35.0)
    assert counts[:2].sum() == pytest.approx(10.0)  # the first bucket covers the first third
    assert counts[-1] == pytest.approx(5.0 + 20 / 4)  # point mass at 3.0 plus a quarter of [1, 3]


def _write_tb(logdir: Path, n_steps: int, hist_steps=(), nan_from=None):
    import torch
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(logdir))
    for s in range(1, n_steps + 1):
        loss = 2.3 * np.exp(-s / (n_steps / 4)) + 0.1
        if nan_from is not None and s >= nan_from:
            loss = float("nan")
        w.add_scalar("Loss/train", loss, s)
        if s % 100 == 0:
            w.add_scalar("val_loss", loss * 1.1, s)
            w.add_scalar("Accuracy/val", 0.9, s)
        w.add_scalar("lr", 0.01, s)
    w.add_scalar("grad_norm", 1.5, 1)
    gen = torch.Generator().manual_seed(0)
    for s in hist_steps:
        w.add_histogram("fc1.weight", torch.randn(1000, generator=gen), s)
    w.close()


def test_tensorboard_log_loads_every_value(tmp_path):
    _write_tb(tmp_path / "tb", 12_000, hist_steps=range(0, 50, 10))
    run = diagnostics.load_run(tmp_path / "tb")
    loss = run.series(T.TRAIN_LOSS)
    # TensorBoard's EventAccumulator keeps 10,000 scalars and 1 histogram per tag by default.
    assert len(loss) == 12_000 and loss.index[0] == 1 and loss.index[-1] == 12_000
    assert len(run.series("val/loss")) == 120 and len(run.series("lr/group0")) == 12_000
    assert run.series("val/accuracy").iloc[-1] == pytest.approx(0.9)
    assert len(run.series("grad_norm")) == 1  # unmapped tags keep their own names
    h = run.histograms("fc1.weight")
    assert list(h.steps) == [0, 10, 20, 30, 40]
    assert h.counts.shape == (5, 40) and np.allclose(h.counts.sum(axis=1), 1000)
    assert np.all(h.lo < -2) and np.all(h.hi > 2)
    assert run.meta["source"] == "tensorboard" and run.meta["tensorboard"]["tag_map"]["Loss/train"] == "train/loss"


def test_tensorboard_log_gets_advice(tmp_path):
    _write_tb(tmp_path / "tb", 400, nan_from=350)
    findings = diagnostics.advise(diagnostics.load_run(tmp_path / "tb"))
    nan = next(f for f in findings if f.rule == "nan_loss")
    assert nan.evidence["first_nonfinite_step"] == 350


def test_keras_style_train_and_validation_subdirectories(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    for sub, scale in (("train", 1.0), ("validation", 1.2)):
        w = SummaryWriter(str(tmp_path / "logs" / sub))
        for epoch in range(30):
            w.add_scalar("epoch_loss", scale * 2.0 / (epoch + 1), epoch)
        w.close()
    run = diagnostics.load_run(tmp_path / "logs")
    assert len(run.series("train/loss")) == 30 and len(run.series("val/loss")) == 30
    assert run.series("val/loss").iloc[0] == pytest.approx(2.4)


def test_several_lightning_versions_are_refused(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    for v in ("version_0", "version_1"):
        w = SummaryWriter(str(tmp_path / "lightning_logs" / v))
        w.add_scalar("train_loss", 1.0, 1)
        w.close()
    with pytest.raises(RunReadError, match="2 separate runs"):
        diagnostics.load_run(tmp_path / "lightning_logs")
    assert len(diagnostics.load_run(tmp_path / "lightning_logs" / "version_1").series("train/loss")) == 1


def test_truncated_event_file_keeps_what_was_written(tmp_path):
    _write_tb(tmp_path / "tb", 500)
    f = next((tmp_path / "tb").glob("*tfevents*"))
    data = f.read_bytes()
    f.write_bytes(data[:-37])  # a writer killed mid-record
    run = diagnostics.load_run(tmp_path / "tb")
    n = len(run.series(T.TRAIN_LOSS))
    assert 400 < n <= 500
    assert "rule_failed" not in [x.rule for x in diagnostics.advise(run)]


def test_event_dir_without_scalars_is_an_error(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(tmp_path / "tb"))
    w.add_text("note", "hello", 1)
    w.close()
    with pytest.raises(RunReadError, match="no scalars or histograms"):
        diagnostics.load_run(tmp_path / "tb")


def test_hparams_from_add_hparams(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(tmp_path / "tb"))
    for s in range(1, 30):
        w.add_scalar("train_loss", 1.0 / s, s)
    w.add_hparams({"lr": 0.3, "optimizer": "sgd"}, {"hparam/final": 0.5}, run_name=".")
    w.close()
    run = diagnostics.load_run(tmp_path / "tb")
    assert run.meta["hparams"] == {"lr": 0.3, "optimizer": "sgd"}
    assert json.dumps(run.meta)  # plain data only

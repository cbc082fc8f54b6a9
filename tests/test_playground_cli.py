"""`python -m playground` end to end, in subprocesses: flags, config files, errors, clean stops on
SIGTERM/SIGINT, and regenerating a sample."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import runstore
from playground import Config
from playground.samples import SAMPLES

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
FAST = ["--train-subset", "64", "--batch-size", "32", "--epochs", "1", "--device", "cpu"]


def cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "playground", *map(str, args)], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=timeout)


def test_train_with_flags(tmp_path):
    out = cli("train", "--workload", "sequence", "--width", "8", "--lr", "0.01", "--no-shuffle",
              "--normalize-inputs", "false", "--grad-clip", "1", "--run-dir", tmp_path / "r",
              "--description", "from the CLI", *FAST)
    assert out.returncode == 0, out.stderr
    run = runstore.load_run(tmp_path / "r")
    assert run.status == "finished"
    hp = run.hparams
    # A bare --workload sequence brings its own default model (lstm).
    assert (hp["workload"], hp["model"], hp["width"], hp["lr"], hp["shuffle"], hp["normalize_inputs"],
            hp["grad_clip"]) == ("sequence", "lstm", 8, 0.01, False, False, 1.0)
    assert run.meta["description"] == "from the CLI"
    assert f"finished: {tmp_path / 'r'}" in out.stderr
    assert "2/2" in out.stderr  # the progress line's final state


def test_config_file_with_flag_overrides(tmp_path):
    cfg = Config(workload="spirals", depth=3, width=16, activation="tanh", lr=0.05, optimizer="momentum")
    cfg.save(tmp_path / "cfg.json")
    out = cli("train", "--config", tmp_path / "cfg.json", "--lr", "0.02", "--run-dir", tmp_path / "r", "--quiet",
              *FAST)
    assert out.returncode == 0, out.stderr
    hp = runstore.load_run(tmp_path / "r").hparams
    assert (hp["workload"], hp["depth"], hp["activation"], hp["optimizer"], hp["lr"]) == \
        ("spirals", 3, "tanh", "momentum", 0.02)


@pytest.mark.parametrize("args, words", [
    (["--dropout", "1"], ["dropout:", "[0, 1)"]),
    (["--lr", "-0.5"], ["lr:", "(0, 10]"]),
    (["--optimizer", "adagrad"], ["optimizer:", "sgd, momentum"]),
    (["--workload", "spirals", "--model", "cnn"], ["model:", "not available for workload 'spirals'"]),
    (["--batch-norm", "maybe"], ["--batch-norm", "true or false"]),
    (["--epochs", "two"], ["--epochs", "invalid int"]),
])
def test_invalid_flags_exit_2_with_a_clear_message_and_write_nothing(tmp_path, args, words):
    out = cli("train", "--run-dir", tmp_path / "r", *args)
    assert out.returncode == 2
    for w in words:
        assert w in out.stderr, out.stderr
    assert not (tmp_path / "r").exists()


def test_bad_config_file_and_existing_run(tmp_path):
    (tmp_path / "bad.json").write_text(json.dumps({"lr": 0.1, "layers": 3}))
    out = cli("train", "--config", tmp_path / "bad.json", "--run-dir", tmp_path / "r")
    assert out.returncode == 2 and "unknown config field(s): 'layers'" in out.stderr
    assert cli("train", "--run-dir", tmp_path / "r", "--quiet", *FAST).returncode == 0
    before = (tmp_path / "r" / "run.json").read_text()
    again = cli("train", "--run-dir", tmp_path / "r", "--quiet", *FAST)
    assert again.returncode == 2 and "already holds a run" in again.stderr and "--overwrite" in again.stderr
    assert (tmp_path / "r" / "run.json").read_text() == before  # the old run is untouched


def _wait_for_steps(run_dir: Path, proc, timeout=60.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        if (run_dir / "run.db").exists():
            try:
                step = runstore.load_run(run_dir).last_step
            except runstore.RunReadError:
                step = -1
            if step > 0:
                return step
        time.sleep(0.2)
    raise AssertionError("training recorded no step in time")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly_and_keeps_the_data(tmp_path, sig):
    run_dir = tmp_path / "r"
    proc = subprocess.Popen([sys.executable, "-m", "playground", "train", "--workload", "sequence", "--epochs",
                             "200", "--width", "16", "--device", "cpu", "--run-dir", str(run_dir)],
                            cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_steps(run_dir, proc)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert f"stopped ({signal.Signals(sig).name})" in err
    run = runstore.load_run(run_dir)
    assert run.status == "stopped"
    total = Config(workload="sequence", model="lstm", epochs=200).total_steps()
    assert 0 < run.last_step < total
    loss = run.series("train/loss")
    assert len(loss) == run.last_step and loss.notna().all()
    assert "stopped on request" in run.meta["error"]


def test_make_samples_list_and_one_sample(tmp_path):
    listed = cli("make-samples", "--list")
    assert listed.returncode == 0
    for name in SAMPLES:
        assert name in listed.stdout
    bad = cli("make-samples", "--only", "no_such_sample", "--out", tmp_path)
    assert bad.returncode == 2 and "unknown sample(s): no_such_sample" in bad.stderr
    out = cli("make-samples", "--only", "dying_relu", "--out", tmp_path, "--quiet")
    assert out.returncode == 0, out.stderr
    assert "| dying_relu | finished |" in out.stdout
    run = runstore.load_run(tmp_path / "dying_relu")
    assert run.meta["description"] == SAMPLES["dying_relu"].description
    assert run.meta["parent"] == "../baseline"
    # Shipped samples are self-contained: no WAL, rollback-journal mode, readable read-only.
    assert sorted(p.name for p in (tmp_path / "dying_relu").iterdir()) == ["run.db", "run.json"]
    with sqlite3.connect(tmp_path / "dying_relu" / "run.db") as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert "dying_relu" in (tmp_path / "README.md").read_text()
    # Regenerating gives the committed numbers. Only the first steps are compared, and with a
    # tolerance: another CPU may round differently, and this run is chaotic once units die.
    committed = runstore.load_run(ROOT / "sample_runs" / "dying_relu").series("train/loss")
    assert np.allclose(committed.values[:30], run.series("train/loss").values[:30], rtol=1e-4)

"""A long run (100,000 steps, 30 watched layers at the probes' cadence) is read completely and
advised without error. How long that takes is measured by benchmarks/load_run.py (target < 2 s to
load), not here: a test must not depend on how busy the machine is."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import diagnostics
from runstore import tags as T

ROOT = Path(__file__).resolve().parents[1]


def _benchmark_module():
    spec = importlib.util.spec_from_file_location("load_run_benchmark", ROOT / "benchmarks" / "load_run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_long_run_is_read_completely_and_advised(tmp_path):
    bench = _benchmark_module()
    path = tmp_path / "run"
    bench.synthesize(path, steps=100_000, layers=30, every=10, flush=100, bins=40)
    run = diagnostics.load_run(path)
    assert len(run.series(T.TRAIN_LOSS)) == 100_000
    assert len(run.series(T.act("layers.1", "frac_dead"))) == 10_000
    assert run.histograms(T.grad("layers.0.weight")).counts.shape == (10_000, 40)
    assert not run.warnings
    findings = diagnostics.advise(run)
    assert not [f for f in findings if f.rule == "rule_failed"]

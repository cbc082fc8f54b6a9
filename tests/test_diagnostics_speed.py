"""load_run on a long run: 100,000 steps with 30 watched layers at the probes' cadence loads in under
2 s (benchmarks/load_run.py writes the run; best of 3 to ride out a busy machine)."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import diagnostics
from runstore import tags as T

ROOT = Path(__file__).resolve().parents[1]


def _benchmark_module():
    spec = importlib.util.spec_from_file_location("load_run_benchmark", ROOT / "benchmarks" / "load_run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_long_run_loads_in_under_two_seconds(tmp_path):
    bench = _benchmark_module()
    path = tmp_path / "run"
    bench.synthesize(path, steps=100_000, layers=30, every=10, flush=100, bins=40)
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        run = diagnostics.load_run(path)
        best = min(best, time.perf_counter() - t0)
    assert len(run.series(T.TRAIN_LOSS)) == 100_000
    assert len(run.series(T.act("layers.1", "frac_dead"))) == 10_000
    assert run.histograms(T.grad("layers.0.weight")).counts.shape == (10_000, 40)
    assert best < 2.0, f"load_run took {best:.2f} s"
    t0 = time.perf_counter()
    diagnostics.advise(run)
    assert time.perf_counter() - t0 < 5.0

"""How long loading and advising a long run takes.

Synthesizes a run of 100,000 optimizer steps with 30 watched layers through runstore.RunWriter at
the cadence probes use (loss, learning rate and wall time every step; activation, gradient, weight
and update statistics plus histograms every 10 steps; one flush per 100 steps), then times
diagnostics.load_run and diagnostics.advise on it, best of a few repetitions.

    python benchmarks/load_run.py [--steps 100000] [--layers 30] [--every 10] [--flush 100] [--bins 40]

Target (docs/diagnostics.md): load_run under 2 s for the default size.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import runstore  # noqa: E402
from runstore import tags as T  # noqa: E402

import diagnostics  # noqa: E402


def synthesize(path: Path, *, steps: int, layers: int, every: int, flush: int, bins: int, seed: int = 0) -> dict:
    """Write the run; returns counts of what was written. Half the watched modules are Linear
    layers (each with a weight and a bias), half the ReLUs after them."""
    rng = np.random.default_rng(seed)
    n_lin = layers // 2
    linears = [f"layers.{2 * i}" for i in range(n_lin)]
    relus = [f"layers.{2 * i + 1}" for i in range(layers - n_lin)]
    modules = [{"name": "model", "type": "MLP", "params": 0}]
    for i in range(layers):
        name = f"layers.{i}"
        modules.append({"name": name, "type": "Linear" if i % 2 == 0 else "ReLU",
                        "params": 256 * 256 + 256 if i % 2 == 0 else 0})
    params = [f"{m}.{leaf}" for m in linears for leaf in ("weight", "bias")]
    meta = {"name": "benchmark", "hparams": {"lr": 0.01, "batch_size": 128}, "n_classes": 10,
            "model": {"class": "MLP", "modules": modules}}
    w = runstore.RunWriter(path, meta, overwrite=True)
    t = np.arange(1, steps + 1)
    loss = 0.1 + 2.2 * np.exp(-t / (steps / 5)) * (1 + 0.1 * rng.standard_normal(steps))
    rows = 0
    for start in range(1, steps + 1, flush):
        s = np.arange(start, min(start + flush, steps + 1), dtype=np.int64)
        b = runstore.Batch()
        b.scalars[T.TRAIN_LOSS] = (s, loss[s - 1])
        b.scalars[T.lr(0)] = (s, np.full(len(s), 0.01))
        b.scalars[T.WALL_TIME] = (s, 1.7e9 + s * 0.01)
        ls = s[(s - 1) % every == 0]
        k = len(ls)
        if k:
            b.scalars["train/accuracy"] = (ls, np.clip(1 - loss[ls - 1] / 2.3, 0, 1))
            b.scalars["train/confidence"] = (ls, np.clip(1 - loss[ls - 1] / 2.5, 0, 1))
            for m in linears + relus:
                for stat in T.ACT_STATS:
                    b.scalars[T.act(m, stat)] = (ls, rng.random(k))
                b.hists[T.act(m)] = (ls, -np.ones(k), np.ones(k), rng.random((k, bins)).astype(np.float32))
            for p in params:
                for stat in T.GRAD_STATS:
                    b.scalars[T.grad(p, stat)] = (ls, 1e-3 * rng.random(k))
                b.scalars[T.weight(p, "norm")] = (ls, 10 + rng.random(k))
                b.scalars[T.update_ratio(p)] = (ls, 1e-3 * (1 + rng.random(k)))
                for h in (T.grad(p), T.weight(p)):
                    b.hists[h] = (ls, -np.ones(k), np.ones(k), rng.random((k, bins)).astype(np.float32))
        if start // flush % 10 == 9:
            b.scalars["val/loss"] = (s[-1:], loss[s[-1:] - 1] * 1.1)
            b.scalars["val/accuracy"] = (s[-1:], np.array([0.9]))
        w.write(b, last_step=int(s[-1]))
        rows += len(b.scalars) + len(b.hists)
    w.close()
    size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    return {"rows": rows, "bytes": size, "params": len(params), "modules": layers}


def best_of(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--layers", type=int, default=30)
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--flush", type=int, default=100)
    ap.add_argument("--bins", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "run"
        t0 = time.perf_counter()
        info = synthesize(path, steps=a.steps, layers=a.layers, every=a.every, flush=a.flush, bins=a.bins)
        write_s = time.perf_counter() - t0
        load_s, run = best_of(lambda: diagnostics.load_run(path), a.repeat)
        advise_s, findings = best_of(lambda: diagnostics.advise(diagnostics.load_run(path)), a.repeat)
        advise_only = advise_s - load_s
        print(f"run: {a.steps:,} steps, {info['modules']} watched modules ({info['params']} parameters), "
              f"stats every {a.every} steps, flush every {a.flush} steps")
        print(f"     {info['rows']:,} chunk rows, {info['bytes'] / 2**20:.0f} MiB on disk (written in {write_s:.1f} s)")
        print(f"load_run:          {load_s:6.2f} s   (best of {a.repeat}; target < 2 s)")
        print(f"load_run + advise: {advise_s:6.2f} s   (advise alone ~{advise_only:.2f} s, {len(findings)} findings)")
        n = len(run.series(T.TRAIN_LOSS))
        assert n == a.steps, f"loaded {n} loss values, expected {a.steps}"
    return 0


if __name__ == "__main__":
    sys.exit(main())

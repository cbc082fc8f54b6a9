"""Synthetic runs for the diagnostics unit tests: a healthy baseline written through
runstore.RunWriter with the cadence probes uses, and one pathology at a time on top of it.

Other test_diagnostics_* files import write_run/healthy from here; the tests below check that the
synthetic runs read back as written (so a rule test cannot pass on a broken fixture).
"""

from __future__ import annotations

import math

import numpy as np

import runstore
from runstore import tags as T

LINEARS = ("net.0", "net.2", "net.4")
RELUS = ("net.1", "net.3")
MODULES = [{"name": "net", "type": "Sequential", "params": 0},
           {"name": "net.0", "type": "Linear", "params": 64 * 128 + 128},
           {"name": "net.1", "type": "ReLU", "params": 0},
           {"name": "net.2", "type": "Linear", "params": 128 * 128 + 128},
           {"name": "net.3", "type": "ReLU", "params": 0},
           {"name": "net.4", "type": "Linear", "params": 128 * 10 + 10}]


def layer_steps(n: int, every: int) -> np.ndarray:
    return np.arange(1, n + 1, every, dtype=np.int64)


def healthy(n: int = 600, every: int = 10, seed: int = 0) -> dict:
    """A run that trains well: loss 2.3 -> ~0.15, sane updates, few dead units, calibrated."""
    rng = np.random.default_rng(seed)
    steps = np.arange(1, n + 1, dtype=np.int64)
    t = steps / n
    loss = 0.12 + 2.18 * np.exp(-6 * t)
    loss = loss * (1 + 0.15 * rng.standard_normal(n))
    ls = layer_steps(n, every)
    m = len(ls)
    tl = ls / n
    act = {}
    for name in LINEARS:
        act[name] = {"mean": np.zeros(m), "std": np.ones(m), "frac_zero": np.zeros(m), "frac_dead": np.zeros(m),
                     "frac_saturated": np.full(m, np.nan), "nonfinite": np.zeros(m)}
    for name in RELUS:
        act[name] = {"mean": np.full(m, 0.4), "std": np.full(m, 0.6), "frac_zero": np.full(m, 0.55),
                     "frac_dead": 0.02 + 0.03 * tl, "frac_saturated": np.full(m, np.nan), "nonfinite": np.zeros(m)}
    grad, update = {}, {}
    for i, name in enumerate(LINEARS):
        scale = 1e-3 * (1.5 ** i) * (0.3 + 0.7 * np.exp(-3 * tl)) * (1 + 0.1 * rng.standard_normal(m))
        for leaf, size in (("weight", 64 * 128), ("bias", 128)):
            p = f"{name}.{leaf}"
            grad[p] = {"abs_mean": scale.copy(), "norm": scale * math.sqrt(size) * 1.25, "nonfinite": np.zeros(m)}
            update[p] = 3e-3 * (0.5 + 0.5 * np.exp(-2 * tl)) * (1 + 0.1 * rng.standard_normal(m))
    ev = np.arange(max(1, n // 10), n + 1, max(1, n // 10), dtype=np.int64)[:10]
    te = ev / n
    val_loss = 0.2 + 2.1 * np.exp(-6 * te)
    val_acc = 0.95 - 0.85 * np.exp(-6 * te)
    val_conf = np.clip(val_acc + 0.02, 0, 1)
    acc_train = 0.97 - 0.87 * np.exp(-6 * tl)
    scalars = {
        "train/accuracy": (ls, acc_train), "train/confidence": (ls, np.clip(acc_train + 0.01, 0, 1)),
        "val/loss": (ev, val_loss), "val/accuracy": (ev, val_acc), "val/confidence": (ev, val_conf),
    }
    weight_norm = {p: np.full(m, 10.0 if p.endswith("weight") else 1.0) for p in grad}
    return dict(n=n, every=every, loss=loss, lr=np.full(n, 0.05), act=act, grad=grad, update=update,
                weight_norm=weight_norm,
                scalars=scalars, hparams={"lr": 0.05, "activation": "relu", "init": "default", "dropout": 0.0,
                                          "weight_decay": 0.0, "grad_clip": 0.0, "batch_norm": False,
                                          "label_smoothing": 0.0, "schedule": "constant", "width": 128,
                                          "depth": 2, "epochs": 10, "batch_size": 64},
                meta={"workload": "digits", "n_classes": 10}, events=[], tables=[])


def write_run(path, spec: dict, *, chunk: int = 100, status: str = "finished") -> str:
    """Write `spec` (as returned by healthy()) to `path` in flushes of `chunk` steps."""
    n, every = spec["n"], spec["every"]
    meta = {"name": spec.get("name", "synthetic"), "hparams": spec["hparams"],
            "model": {"class": "MLP", "modules": MODULES}, **spec.get("meta", {})}
    w = runstore.RunWriter(path, meta)
    steps = np.arange(1, n + 1, dtype=np.int64)
    ls = layer_steps(n, every)
    for start in range(1, n + 1, chunk):
        end = start + chunk  # exclusive
        b = runstore.Batch()
        sel = (steps >= start) & (steps < end)
        b.scalars[T.TRAIN_LOSS] = (steps[sel], spec["loss"][sel])
        b.scalars[T.lr(0)] = (steps[sel], spec["lr"][sel])
        lsel = (ls >= start) & (ls < end)
        if lsel.any():
            for mod, stats in spec["act"].items():
                for stat, vals in stats.items():
                    b.scalars[T.act(mod, stat)] = (ls[lsel], vals[lsel])
            for p, stats in spec["grad"].items():
                for stat, vals in stats.items():
                    b.scalars[T.grad(p, stat)] = (ls[lsel], vals[lsel])
            for p, vals in spec["update"].items():
                b.scalars[T.update_ratio(p)] = (ls[lsel], vals[lsel])
            for p, vals in spec.get("weight_norm", {}).items():
                b.scalars[T.weight(p, "norm")] = (ls[lsel], vals[lsel])
        for tag, (s, v) in spec["scalars"].items():
            k = (s >= start) & (s < end)
            if k.any():
                b.scalars[tag] = (s[k], v[k])
        b.tables = [t for t in spec.get("tables", []) if start <= t[1] < end]
        b.events = [e for e in spec.get("events", []) if e[0] is not None and start <= e[0] < end]
        w.write(b, last_step=int(min(end - 1, n)))
    w.close(status)
    return str(path)


def test_synthetic_run_reads_back(tmp_path):
    spec = healthy(n=300)
    write_run(tmp_path / "r", spec, chunk=70)
    run = runstore.load_run(tmp_path / "r")
    loss = run.series(T.TRAIN_LOSS)
    assert len(loss) == 300 and np.allclose(loss.to_numpy(), spec["loss"])
    dead = run.series(T.act("net.1", "frac_dead"))
    assert list(dead.index) == list(layer_steps(300, 10))
    assert run.series("val/loss").index[-1] == 300
    assert run.status == "finished" and run.meta["n_classes"] == 10

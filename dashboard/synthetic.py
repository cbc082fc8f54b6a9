"""Synthetic runs with a known shape (healthy or one planted fault), written through
runstore.RunWriter exactly as the probes lay them out. Used by the tests and the render benchmark,
and to try the app without training: `python -m dashboard.synthetic OUT_DIR`.

The numbers are made up to look like a small MLP (Linear + ReLU blocks) learning a 10-class task;
nothing here claims to be a real measurement.
"""

from __future__ import annotations

import argparse
import math
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from runstore import Batch, RunWriter, tags

FAULTS = (None, "dead_relu", "vanishing", "lr_high", "nan", "overconfident")


@dataclass(frozen=True)
class SyntheticSpec:
    """Shape of a synthetic run. `fault` plants one recognisable problem (see FAULTS)."""

    steps: int = 2000
    layers: int = 4            # Linear layers; a ReLU follows every one but the last
    every: int = 25            # cadence of layer statistics and histograms, as probes' default
    bins: int = 40
    val_every: int = 200
    flush_steps: int = 200
    fault: str | None = None
    lr: float = 0.05
    seed: int = 0
    name: str | None = None
    workload: str | None = "spirals"
    status: str | None = "finished"   # None leaves the run "running" (writer kept open by caller)
    hparams: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.fault not in FAULTS:
            raise ValueError(f"fault must be one of {FAULTS}, got {self.fault!r}")


def module_names(layers: int) -> tuple[list[str], list[str]]:
    """(Linear module names, ReLU module names) of the synthetic nn.Sequential "net"."""
    lin = [f"net.{2 * i}" for i in range(layers)]
    act = [f"net.{2 * i + 1}" for i in range(layers - 1)]
    return lin, act


def _meta(spec: SyntheticSpec) -> dict:
    lin, act = module_names(spec.layers)
    modules = [{"name": "model", "type": "Sequential", "params": 0}]
    for i in range(spec.layers):
        modules.append({"name": lin[i], "type": "Linear", "params": 64 * 64 + 64})
        if i < spec.layers - 1:
            modules.append({"name": act[i], "type": "ReLU", "params": 0})
    hp = {"model": "mlp", "depth": spec.layers, "width": 64, "activation": "relu", "optimizer": "sgd",
          "lr": spec.lr, "batch_size": 64, "seed": spec.seed, **spec.hparams}
    return {"run_id": uuid.uuid4().hex, "name": spec.name or f"synthetic-{spec.fault or 'healthy'}",
            "description": "synthetic run", "workload": spec.workload, "parent": None, "hparams": hp,
            "model": {"class": "Sequential", "n_params": spec.layers * (64 * 64 + 64),
                      "n_trainable": spec.layers * (64 * 64 + 64), "modules": modules},
            "optimizer": {"class": "SGD", "param_groups": [{"lr": spec.lr, "momentum": 0.0, "weight_decay": 0.0,
                                                            "n_params": spec.layers * 2}]},
            "device": "cpu", "probes": {"every": spec.every, "hist_bins": spec.bins}}


def _gauss_hist(mu: np.ndarray, sd: np.ndarray, bins: int, n: float = 4096.0, zero_frac=None):
    """Histograms of N(mu, sd) over [mu-4sd, mu+4sd] (rows = steps); zero_frac piles mass at 0."""
    lo, hi = mu - 4 * sd, mu + 4 * sd
    edges = lo[:, None] + (hi - lo)[:, None] * np.linspace(0, 1, bins + 1)[None, :]
    z = (edges - mu[:, None]) / sd[:, None]
    cdf = 0.5 * (1 + _erf(z / math.sqrt(2)))
    counts = np.diff(cdf, axis=1) * n
    if zero_frac is not None:
        lo = np.minimum(lo, 0.0)
        edges = lo[:, None] + (hi - lo)[:, None] * np.linspace(0, 1, bins + 1)[None, :]
        counts = counts * (1 - zero_frac)[:, None]
        k = np.clip(((0 - lo) / (hi - lo) * bins).astype(int), 0, bins - 1)
        counts[np.arange(len(mu)), k] += zero_frac * n
    return lo, hi, counts.astype(np.float32)


def _erf(x: np.ndarray) -> np.ndarray:
    # Abramowitz & Stegun 7.1.26, |error| < 1.5e-7: plenty for made-up histograms, and vectorised.
    s = np.sign(x)
    x = np.abs(x)
    t = 1 / (1 + 0.3275911 * x)
    y = 1 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * np.exp(-x * x)
    return s * y


def _series(spec: SyntheticSpec, rng: np.random.Generator) -> dict:
    """Every scalar and histogram of the run, as whole arrays (split into flushes later)."""
    n, f = spec.steps, spec.fault
    t = np.arange(n, dtype=float)
    tau = max(n / 6, 1.0)
    s = {}
    base = 2.3 * np.exp(-t / tau) + 0.15
    if f == "lr_high":
        base = 1.2 + 0.6 * np.abs(np.sin(t / 37.0)) + 0.3 * np.exp(-t / tau)
    noise = rng.normal(0, 0.04, n) * (1 + base)
    loss = np.maximum(base + noise, 1e-3)
    if f == "nan":
        blow = int(n * 0.6)
        loss[blow - 40:blow] *= np.geomspace(1, 1e4, 40)
        loss[blow:] = np.nan
    s[tags.TRAIN_LOSS] = (t, loss)
    s[tags.lr(0)] = (t, spec.lr * (0.5 * (1 + np.cos(np.pi * t / n))) + spec.lr * 0.01)
    s[tags.WALL_TIME] = (t, 1.7e9 + t * 0.01)
    ls = np.arange(0, n, spec.every, dtype=float)
    m = len(ls)
    prog = 1 - np.exp(-ls / tau)
    acc = np.clip(0.1 + 0.85 * prog + rng.normal(0, 0.02, m), 0, 1)
    if f in ("lr_high", "nan"):
        acc = np.clip(0.1 + 0.3 * prog + rng.normal(0, 0.03, m), 0, 1)
    conf = np.clip(acc + (0.25 * prog if f == "overconfident" else 0.01), 0, 1)
    s["train/accuracy"] = (ls, acc)
    s["train/confidence"] = (ls, conf)
    s["train/entropy"] = (ls, np.maximum(2.3 * (1 - conf), 0.01))
    vs = np.arange(spec.val_every - 1, n, spec.val_every, dtype=float)
    vprog = 1 - np.exp(-vs / tau)
    vloss = 2.3 * np.exp(-vs / tau) + 0.25 + (0.5 * vprog ** 3 if f == "overconfident" else 0)
    if f == "lr_high":
        vloss = 1.3 + 0.2 * rng.random(len(vs))
    if f == "nan":
        vloss = np.where(vs >= int(n * 0.6), np.nan, vloss)
    vacc = np.clip(0.1 + 0.8 * vprog, 0, 1)
    s["val/loss"] = (vs, vloss)
    s["val/accuracy"] = (vs, vacc)
    vconf = np.clip(vacc + (0.15 * vprog if f == "overconfident" else 0.02), 0, 1)
    s["val/confidence"] = (vs, vconf)
    s["val/entropy"] = (vs, np.maximum(2.3 * (1 - vconf), 0.01))

    lin, act = module_names(spec.layers)
    h = {}
    depth = spec.layers
    for i, name in enumerate(act):
        dead = np.full(m, 0.02) + 0.01 * rng.random(m)
        if f == "dead_relu":
            dead = np.clip(0.2 + 0.75 * prog, 0, 0.97)
        std = 0.8 + 0.1 * np.sin(ls / 300 + i) + 0.05 * rng.random(m)
        s[tags.act(name, "mean")] = (ls, std * 0.4 * (1 - dead))
        s[tags.act(name, "std")] = (ls, std * (1 - dead))
        s[tags.act(name, "frac_zero")] = (ls, 0.5 * (1 - dead) + dead)
        s[tags.act(name, "frac_dead")] = (ls, dead)
        s[tags.act(name, "frac_saturated")] = (ls, np.full(m, np.nan))
        s[tags.act(name, "nonfinite")] = (ls, np.zeros(m))
        h[tags.act(name)] = (ls, *_relu_hist(std, 0.5 * (1 - dead) + dead, spec.bins))
    for i, name in enumerate(lin):
        mean = rng.normal(0, 0.05, m)
        std = (1.0 + 0.2 * i) * (1 + 0.1 * prog)
        std = np.broadcast_to(std, (m,)).astype(float)
        for stat, v in (("mean", mean), ("std", std), ("frac_zero", np.zeros(m)), ("frac_dead", np.zeros(m)),
                        ("frac_saturated", np.full(m, np.nan)), ("nonfinite", np.zeros(m))):
            s[tags.act(name, stat)] = (ls, v)
        h[tags.act(name)] = (ls, *_gauss_hist(mean, std, spec.bins))
        for p in ("weight", "bias"):
            param = f"{name}.{p}"
            gscale = 0.05 * np.exp(-ls / tau) + 0.01
            if f == "vanishing":
                gscale = gscale * 10.0 ** (-6.0 * (depth - 1 - i) / max(depth - 1, 1))
            if f == "nan":
                gscale = np.where(ls >= int(n * 0.6) - 40, np.where(ls >= int(n * 0.6), np.nan, 1e3), gscale)
            gnorm = gscale * (1 + 0.1 * rng.random(m)) * (0.3 if p == "bias" else 1.0)
            s[tags.grad(param, "norm")] = (ls, gnorm)
            s[tags.grad(param, "abs_mean")] = (ls, gnorm / 64)
            s[tags.grad(param, "nonfinite")] = (ls, np.where(np.isfinite(gnorm), 0.0, 64.0))
            gm = np.where(np.isfinite(gnorm), gnorm, 1.0) / 64
            h[tags.grad(param)] = (ls, *_gauss_hist(np.zeros(m), gm, spec.bins))
            wnorm = 4.0 + 0.5 * prog + (0.2 if p == "bias" else 0)
            s[tags.weight(param, "norm")] = (ls, np.broadcast_to(wnorm, (m,)).astype(float))
            h[tags.weight(param)] = (ls, *_gauss_hist(np.zeros(m), np.full(m, 0.1), spec.bins))
            ratio = 10 ** (-2.2 + 0.2 * rng.standard_normal(m)) * (1 - 0.5 * prog)
            if f == "lr_high":
                ratio = 10 ** (-0.4 + 0.2 * rng.standard_normal(m))
            if f == "vanishing":
                ratio = ratio * 10.0 ** (-5.0 * (depth - 1 - i) / max(depth - 1, 1))
            s[tags.update_ratio(param)] = (ls, ratio)
    # softmax max-probability histograms over [0, 1]
    for split, steps_, cmean in (("train", ls, conf), ("val", vs, vconf)):
        h[f"{split}/confidence"] = (steps_, np.zeros(len(steps_)), np.ones(len(steps_)),
                                    _beta_hist(np.clip(cmean, 0.15, 0.97), spec.bins))
    return {"scalars": s, "hists": h, "val_steps": vs, "val_acc": vacc, "val_conf": vconf}


def _relu_hist(sd: np.ndarray, zero_frac: np.ndarray, bins: int, n: float = 4096.0):
    """Histograms of ReLU outputs: `zero_frac` of the mass at 0, the rest a half-normal of scale sd."""
    hi = 3.5 * sd
    edges = hi[:, None] * np.linspace(0, 1, bins + 1)[None, :]
    cdf = _erf(edges / (sd[:, None] * math.sqrt(2)))  # half-normal CDF
    counts = np.diff(cdf, axis=1) / cdf[:, -1:] * ((1 - zero_frac) * n)[:, None]
    counts[:, 0] += zero_frac * n
    return np.zeros(len(sd)), hi, counts.astype(np.float32)


def _beta_hist(mean: np.ndarray, bins: int, n: float = 2048.0, k: float = 8.0) -> np.ndarray:
    """Histograms over [0, 1] of a Beta distribution with the given means (concentration k)."""
    x = (np.arange(bins) + 0.5) / bins
    a, b = (mean * k)[:, None], ((1 - mean) * k)[:, None]
    logpdf = (a - 1) * np.log(x)[None, :] + (b - 1) * np.log1p(-x)[None, :]
    pdf = np.exp(logpdf - logpdf.max(axis=1, keepdims=True))
    return (pdf / pdf.sum(axis=1, keepdims=True) * n).astype(np.float32)


def _calibration(acc: float, conf: float, over: bool) -> dict:
    lo = np.linspace(0, 1, 11)[:-1]
    hi = lo + 0.1
    centre = lo + 0.05
    weights = np.exp(-((centre - conf) ** 2) / 0.02)
    count = np.round(weights / weights.sum() * 600)
    accuracy = np.clip(centre - (0.25 * centre if over else 0.02 * (centre - 0.5)), 0, 1)
    accuracy = np.where(count > 0, accuracy, 0.0)
    total = count.sum()
    ece = float(np.sum(count / total * np.abs(accuracy - centre))) if total else float("nan")
    return {"bin_lo": lo.tolist(), "bin_hi": hi.tolist(), "count": count.tolist(), "confidence": centre.tolist(),
            "accuracy": accuracy.tolist(), "ece": ece}


def write_synthetic_run(run_dir: str | Path, spec: SyntheticSpec = SyntheticSpec(), *, overwrite: bool = False) -> RunWriter:
    """Write a synthetic run flush by flush. Returns the writer: closed with spec.status, or
    still open (status running) when spec.status is None, so a test can keep appending."""
    rng = np.random.default_rng(spec.seed)
    data = _series(spec, rng)
    w = RunWriter(run_dir, _meta(spec), overwrite=overwrite)
    cal_steps = set(data["val_steps"].astype(int).tolist())
    for start in range(0, spec.steps, spec.flush_steps):
        end = min(start + spec.flush_steps, spec.steps)
        b = Batch()
        for tag, (st, v) in data["scalars"].items():
            a, z = np.searchsorted(st, [start, end])  # steps are sorted: slice, don't mask
            if z > a:
                b.scalars[tag] = (st[a:z].astype(np.int64), v[a:z])
        for tag, (st, lo, hi, c) in data["hists"].items():
            a, z = np.searchsorted(st, [start, end])
            if z > a:
                b.hists[tag] = (st[a:z].astype(np.int64), np.asarray(lo)[a:z], np.asarray(hi)[a:z], c[a:z])
        for i, vstep in enumerate(data["val_steps"].astype(int)):
            if start <= vstep < end and vstep in cal_steps:
                b.tables.append((tags.calibration("val"), vstep,
                                 _calibration(data["val_acc"][i], data["val_conf"][i], spec.fault == "overconfident")))
        if spec.fault == "nan" and start <= int(spec.steps * 0.6) < end:
            b.events.append((int(spec.steps * 0.6), 1.7e9, "nonfinite_loss", "loss became NaN"))
        w.write(b, last_step=end - 1)
    if spec.status is not None:
        w.close(spec.status)
    return w


def main(argv=None) -> None:
    """Write one synthetic run per fault under OUT_DIR."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out_dir")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--layers", type=int, default=5)
    a = p.parse_args(argv)
    lrs = {None: 0.05, "dead_relu": 0.5, "vanishing": 0.05, "lr_high": 2.0, "nan": 1.0, "overconfident": 0.05}
    for i, fault in enumerate(FAULTS):
        name = fault or "healthy"
        write_synthetic_run(Path(a.out_dir) / name, SyntheticSpec(steps=a.steps, layers=a.layers, fault=fault,
                                                                  name=name, seed=i, lr=lrs[fault]), overwrite=True)
        print("wrote", Path(a.out_dir) / name)


if __name__ == "__main__":
    main()

"""The playground's datasets: real 8x8 digits, 2-D spirals, and a sequence recall task.

Each is split into a fixed train / validation partition (independent of the run's seed, so runs
with different seeds are compared on the same validation set) and returned as tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .config import WORKLOAD_SIZES, Config

# The data never changes with the run's seed: only initialisation, shuffling and dropout do.
DATA_SEED = 1234

# Sequence task: the input at each of SEQ_LEN steps is a one-hot symbol plus a marker bit; the
# label is the symbol at the marked step, which lies in the first MARK_WITHIN steps. Recalling it
# needs memory over at least SEQ_LEN - MARK_WITHIN steps.
SEQ_LEN = 20
SEQ_SYMBOLS = 8
MARK_WITHIN = 5

SPIRAL_ARMS = 3  # CS231n's "minimal neural network case study" uses 3 arms
SPIRAL_NOISE = 0.25


@dataclass
class Workload:
    """Tensors of one workload (on CPU) and what a model needs to know about them."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    n_classes: int
    input_shape: tuple  # shape of one example: (64,), (1, 8, 8), (2,), (SEQ_LEN, features)

    @property
    def n_train(self) -> int:
        return len(self.y_train)

    def class_weights(self) -> torch.Tensor:
        """Inverse-frequency weights of the training labels, normalised to mean 1."""
        counts = torch.bincount(self.y_train, minlength=self.n_classes).float().clamp_min(1.0)
        w = counts.sum() / (self.n_classes * counts)
        return w / w.mean()


def _stratified_split(y: np.ndarray, n_val: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val) with n_val validation examples spread evenly over the classes."""
    val = []
    classes = np.unique(y)
    per_class = np.full(len(classes), n_val // len(classes))
    per_class[: n_val - per_class.sum()] += 1
    for c, k in zip(classes, per_class):
        idx = rng.permutation(np.flatnonzero(y == c))
        val.append(idx[:k])
    val = np.sort(np.concatenate(val))
    train = np.setdiff1d(np.arange(len(y)), val)
    return rng.permutation(train), val


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # bundled with scikit-learn: no download

    d = load_digits()
    return d.data.astype(np.float32), d.target.astype(np.int64)


def _spirals(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    per = n // SPIRAL_ARMS
    xs, ys = [], []
    for k in range(SPIRAL_ARMS):
        r = np.linspace(0.05, 1.0, per)
        t = np.linspace(k * 4.0, (k + 1) * 4.0, per) + rng.normal(0, SPIRAL_NOISE, per)
        # Coordinates in "centimetres" around an off-centre point, so that input normalisation
        # has something to fix, as with real measured features.
        xs.append(np.stack([3.0 + 5.0 * r * np.sin(t), -2.0 + 5.0 * r * np.cos(t)], 1))
        ys.append(np.full(per, k))
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys).astype(np.int64)


def _sequence(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    symbols = rng.integers(0, SEQ_SYMBOLS, size=(n, SEQ_LEN))
    marks = rng.integers(0, MARK_WITHIN, size=n)
    x = np.zeros((n, SEQ_LEN, SEQ_SYMBOLS + 1), np.float32)
    x[np.arange(n)[:, None], np.arange(SEQ_LEN)[None, :], symbols] = 1.0
    x[np.arange(n), marks, SEQ_SYMBOLS] = 1.0
    return x, symbols[np.arange(n), marks].astype(np.int64)


def load(config: Config) -> Workload:
    """Build the workload of `config`: split, optional training subset, optional normalisation."""
    rng = np.random.default_rng(DATA_SEED)
    n_train, n_val = WORKLOAD_SIZES[config.workload]
    if config.workload == "digits":
        x, y = _digits()
        shape = (1, 8, 8) if config.model == "cnn" else (64,)
    elif config.workload == "spirals":
        x, y = _spirals(n_train + n_val, rng)
        shape = (2,)
    elif config.workload == "sequence":
        x, y = _sequence(n_train + n_val, rng)
        shape = (SEQ_LEN, SEQ_SYMBOLS + 1)
    else:  # validate() rejects this earlier; kept so a bad call fails loudly
        raise ValueError(f"unknown workload {config.workload!r}")
    tr, va = _stratified_split(y, n_val, rng)
    assert (len(tr), len(va)) == (n_train, n_val), "WORKLOAD_SIZES in config.py is out of date"
    if config.train_subset:
        # A fixed random subset, the same for every seed, so "more data" comparisons are fair.
        tr = tr[: config.train_subset]
    x_tr, x_va = x[tr], x[va]
    if config.normalize_inputs:
        # Per feature; for sequences the statistics are pooled over time steps.
        mean = x_tr.reshape(-1, x_tr.shape[-1]).mean(0)
        std = x_tr.reshape(-1, x_tr.shape[-1]).std(0)
        std[std < 1e-6] = 1.0  # constant features (border pixels of the digits) stay at 0
        x_tr, x_va = (x_tr - mean) / std, (x_va - mean) / std
    n_classes = int(y.max()) + 1
    to_t = torch.from_numpy
    return Workload(config.workload, to_t(np.ascontiguousarray(x_tr.reshape(len(tr), *shape))), to_t(y[tr]),
                    to_t(np.ascontiguousarray(x_va.reshape(len(va), *shape))), to_t(y[va]), n_classes, shape)

"""Shared pieces of the advice corpus programs: command line, seeding, and deterministic data.

The programs in this folder are written the way their public namesakes are (nanoGPT's train.py,
makemore, pytorch/examples' word_language_model, vae, dcgan, time_sequence_prediction and mnist, a
CIFAR-style ResNet loop), shrunk to run on one CPU core in seconds, with the 5-10 lines a user adds
to record a run with probes. Nothing here may depend on the network: the text corpora are drawn
from fixed random Markov chains (so the lowest reachable loss, the chain's entropy rate, is known
and well above 0, like real text), the images are scikit-learn's bundled 8x8 digits.
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch


def parse(variants) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--run-dir", required=True)
    p.add_argument("--variant", choices=sorted(variants), default="healthy")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    torch.set_num_threads(1)
    return a


# -- text from a Markov chain -------------------------------------------------------------------
class MarkovChain:
    """An order-k chain over `vocab` symbols whose rows are Dirichlet draws: concentration
    `alpha` x `base` (a base tilted towards low ids gives Zipf-like word frequencies). Rows are drawn
    lazily and deterministically from (seed, context)."""

    def __init__(self, vocab: int, order: int, alpha: float, seed: int, zipf: float = 0.0):
        self.vocab, self.order, self.alpha, self.seed = vocab, order, alpha, seed
        base = 1.0 / np.arange(1, vocab + 1) ** zipf
        self.base = base / base.sum() * vocab
        self._rows: dict[tuple, np.ndarray] = {}

    def row(self, ctx: tuple) -> np.ndarray:
        got = self._rows.get(ctx)
        if got is None:
            code = 0
            for c in ctx:
                code = code * self.vocab + c
            rng = np.random.default_rng([self.seed, code])
            got = self._rows[ctx] = np.cumsum(rng.dirichlet(self.alpha * self.base))
        return got

    def sample(self, n: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        u = rng.random(n)
        out = np.zeros(n, dtype=np.int64)
        ctx = tuple([0] * self.order)
        for i in range(n):
            c = min(int(np.searchsorted(self.row(ctx), u[i])), self.vocab - 1)
            out[i] = c
            ctx = ctx[1:] + (c,) if self.order else ()
        return out

    def entropy_rate(self, stream: np.ndarray) -> float:
        """Mean per-symbol entropy of the chain along a sample: the cross-entropy a perfect model
        reaches on it (nats), i.e. the lowest reachable loss."""
        h, ctx = 0.0, tuple([0] * self.order)
        for c in stream:
            p = np.diff(np.concatenate([[0.0], self.row(ctx)]))
            p = p[p > 0]
            h -= float(np.sum(p * np.log(p)))
            ctx = ctx[1:] + (int(c),) if self.order else ()
        return h / max(1, len(stream))


def char_text(n: int, seed: int = 7, vocab: int = 32, alpha: float = 0.2) -> tuple[np.ndarray, int, float]:
    """(symbols, vocab size, entropy rate) of a character stream: an order-1 chain with Zipf-like
    letter frequencies (entropy rate 1.88 nats = 0.54 ln 32, unigram entropy 2.6)."""
    chain = MarkovChain(vocab, 1, alpha, seed, zipf=1.0)
    s = chain.sample(n, seed + 1)
    return s, vocab, chain.entropy_rate(s[:4000])


def char_batches(block_size: int, batch_size: int, n: int = 60000):
    """(get_batch, vocab size) over char_text(n) split 90/10, as nanoGPT's train.py samples it:
    get_batch(split) draws batch_size random offsets and returns (x, y), y shifted by one."""
    text, vocab_size, _ = char_text(n)
    data = torch.tensor(text)
    cut = int(0.9 * len(data))
    splits = {"train": data[:cut], "val": data[cut:]}

    def get_batch(split):
        d = splits[split]
        ix = torch.randint(len(d) - block_size, (batch_size,))
        x = torch.stack([d[i:i + block_size] for i in ix])
        y = torch.stack([d[i + 1:i + 1 + block_size] for i in ix])
        return x, y

    return get_batch, vocab_size


def word_text(n: int, seed: int = 11, vocab: int = 400) -> tuple[np.ndarray, int, float]:
    """(word ids, vocab size, entropy rate) of an order-1 word stream with Zipf-like frequencies."""
    chain = MarkovChain(vocab, 1, 0.08, seed, zipf=1.0)
    s = chain.sample(n, seed + 1)
    return s, vocab, chain.entropy_rate(s[:4000])


def names(n: int, seed: int = 3) -> list[list[int]]:
    """makemore-style names: symbol 0 is the '.' that starts and ends a name, 1-26 letters. An
    order-1 chain (a letter depends on the one before, entropy ~1.7 nats) whose rows favour the end
    symbol more as a name grows gives names of ~6 letters."""
    chain = MarkovChain(27, 1, 0.15, seed, zipf=0.5)
    rng = np.random.default_rng(seed + 1)
    out = []
    while len(out) < n:
        prev, name = 0, []
        while len(name) < 12:
            p = np.diff(np.concatenate([[0.0], chain.row((prev,))]))
            p[0] += 0.12 * (len(name) >= 3)
            c = int(rng.choice(27, p=p / p.sum()))
            if c == 0:
                break
            name.append(c)
            prev = c
        if len(name) >= 2:
            out.append(name)
    return out


# -- images -------------------------------------------------------------------------------------
def digits(normalize: bool = True, n_val: int = 360, seed: int = 0):
    """scikit-learn's 8x8 digits as (x_train, y_train, x_val, y_val) float tensors (N, 1, 8, 8);
    pixel values 0-16, standardised when `normalize`."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.data.astype(np.float32)
    if normalize:
        x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(x))
    x = torch.tensor(x[idx]).reshape(-1, 1, 8, 8)
    y = torch.tensor(d.target[idx])
    return x[n_val:], y[n_val:], x[:n_val], y[:n_val]


def perplexity(loss: float) -> float:
    return math.exp(min(loss, 50.0))

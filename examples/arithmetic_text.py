"""Text generated on the fly for the language-model examples: lines such as "37+45=82;", one
character per token. Only the answer ("82;") is scored: the prompt and the padding after the line
get the label -100, which the loss and the probes leave out."""

from __future__ import annotations

import random

import torch

CHARS = "0123456789+=;."
PAD = "."
VOCAB = len(CHARS)
STOI = {c: i for i, c in enumerate(CHARS)}
IGNORE = -100


def line(rng: random.Random, digits: int = 2) -> str:
    a, b = rng.randrange(10 ** digits), rng.randrange(10 ** digits)
    return f"{a}+{b}={a + b};"


def length(digits: int = 2) -> int:
    """Characters in the longest line."""
    return 2 * digits + 2 + digits + 1 + 1


def batch(rng: random.Random, size: int, digits: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, labels), both (size, length): the characters, padded with PAD, and the same ids with
    the prompt (up to and including '=') and the padding set to IGNORE. A model that shifts labels
    itself (Hugging Face causal LMs) takes them as they are; for one that does not, predict
    labels[:, 1:] from ids[:, :-1]."""
    n = length(digits)
    ids = torch.full((size, n), STOI[PAD], dtype=torch.long)
    labels = torch.full((size, n), IGNORE, dtype=torch.long)
    for i in range(size):
        text = line(rng, digits)
        codes = torch.tensor([STOI[c] for c in text])
        ids[i, :len(text)] = codes
        answer = text.index("=") + 1
        labels[i, answer:len(text)] = codes[answer:]
    return ids, labels


def decode(ids) -> str:
    return "".join(CHARS[int(i)] for i in ids)

"""What the framework callbacks share: their options checked up front, hyperparameters made
plain, and the logits of an evaluation pass kept until it ends."""

from __future__ import annotations

import math
import numbers
import warnings

import torch

from .. import logits as L
from ..options import ProbeOptions, check_run_dir

# An evaluation's logits are kept (on their device) until the evaluation ends, up to this many
# values: 2**24 float32 values are 64 MB, e.g. 16,384 tokens of a 1,024-token vocabulary or 330
# tokens of GPT-2's 50,257. Batches past it count in the evaluation loss but not in its confidence,
# accuracy and calibration, and a warning says how many were left out.
EVAL_LOGITS_LIMIT = 1 << 24


def check_options(run_dir, options: dict) -> tuple:
    """(run_dir, options) checked when the callback is made, so that a typo fails before training
    starts rather than at its first step."""
    run_dir = check_run_dir(run_dir)
    ProbeOptions.from_kwargs(options)
    return run_dir, dict(options)


def with_meta(options: dict, **meta) -> dict:
    """The options with extra run.json fields; the user's own meta={...} wins."""
    return {**options, "meta": {**{k: v for k, v in meta.items() if v is not None}, **options.get("meta", {})}}


def plain_hparams(values) -> dict:
    """The entries of a mapping that read well in a hyperparameter table: numbers, text, booleans
    and None (lists of them as text); nested objects are left out rather than stored as repr()."""
    out = {}
    for k, v in dict(values or {}).items():
        if isinstance(v, bool) or v is None or isinstance(v, str):
            out[str(k)] = v
        elif isinstance(v, numbers.Real):
            v = float(v) if not isinstance(v, numbers.Integral) else int(v)
            out[str(k)] = v if not isinstance(v, float) or math.isfinite(v) else str(v)
        elif isinstance(v, (list, tuple)) and all(isinstance(x, (str, int, float, bool)) for x in v):
            out[str(k)] = ", ".join(map(str, v))
    return out


def one_number(value):
    """A 0-d or one-element tensor, or a plain number, else None (what a loss looks like)."""
    if isinstance(value, torch.Tensor):
        return value.detach() if value.numel() == 1 and value.is_floating_point() else None
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    return None


def next_is_sampled(rec) -> bool:
    """Whether the recorder's next step records logit statistics (a NullRecorder's never does), so
    that a callback holds on to logits only when they will be used."""
    options = getattr(rec, "options", None)
    return options is not None and rec.step % options.every == 0


def causal_shift(logits: torch.Tensor, targets: torch.Tensor | None):
    """(logits, targets) of a causal language model whose loss predicts token t+1 at position t:
    the last position's logits and the first label have no partner."""
    if targets is None or logits.ndim != 3 or targets.ndim != 2 or logits.shape[:2] != targets.shape:
        return logits, targets
    return logits[:, :-1], targets[:, 1:]


class EvalLogits:
    """The logits (and targets) of one evaluation pass, detached and flattened to (predictions,
    classes), kept up to `limit` values in all."""

    def __init__(self, limit: int = EVAL_LOGITS_LIMIT):
        self.limit = limit
        self.clear()

    def clear(self) -> None:
        self.logits, self.targets, self.size, self.left_out = [], [], 0, 0
        self.no_targets = False

    def add(self, logits, targets=None) -> None:
        """Keep this batch's logits, if they fit; `targets` as record_step takes them."""
        if not isinstance(logits, torch.Tensor) or logits.numel() == 0:
            return
        L.check(logits, targets)
        if self.size + logits.numel() > self.limit:
            self.left_out += 1
            return
        self.size += logits.numel()
        flat = logits.detach().reshape(-1) if logits.ndim == 1 else logits.detach().reshape(-1, logits.shape[-1])
        self.logits.append(flat)
        if targets is None:
            self.no_targets = True
        else:
            t = targets.detach()
            probabilities = t.is_floating_point() and t.shape == logits.shape and logits.ndim > 1
            self.targets.append(t.reshape(-1, t.shape[-1]) if probabilities else t.reshape(-1))

    def take(self):
        """(logits, targets or None) of everything kept, or (None, None); then empty again."""
        if self.left_out:
            warnings.warn(f"probes: {self.left_out} evaluation batch(es) past the first {self.size:,} logit values "
                          f"are left out of the evaluation's confidence, accuracy and calibration "
                          f"(eval_logits_limit={self.limit:,})", RuntimeWarning, stacklevel=3)
        logits = torch.cat(self.logits) if self.logits else None
        targets = None
        if logits is not None and not self.no_targets and self.targets:
            targets = torch.cat([t.to(logits.device) for t in self.targets])
        self.clear()
        return logits, targets

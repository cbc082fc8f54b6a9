"""Statistics of a batch of class logits (runstore.tags.LOGIT_STATS: mean confidence, mean entropy,
accuracy, cross-entropy against the targets) and the calibration table of an evaluation, in torch
(device, sync-free) and numpy (CPU) side by side.

The cross-entropy is the one CrossEntropyLoss (BCEWithLogitsLoss for binary logits) computes from
the same logits and targets, mean over the counted positions. It costs one gather per batch and
lets the diagnostics compare it with the loss the caller passed: targets of another batch (nanoGPT
prefetches the next batch into Y before the step is recorded) make the passed loss far lower.

Language models give logits (batch, tokens, vocabulary) and targets (batch, tokens) in which padding
and prompt tokens carry an ignore index (-100 for torch's cross_entropy and Hugging Face labels):
those positions count in none of the statistics, as they count in no loss."""

from __future__ import annotations

import math
from collections import namedtuple
from collections.abc import Mapping

import numpy as np
import torch

from runstore import tags
from .arrays import as_numpy, ones
from .histograms import fixed_torch

# Reliability diagrams use 15 equal-width confidence bins, as in Guo et al. 2017 ("On Calibration
# of Modern Neural Networks"), which introduced the expected calibration error in this form.
CALIBRATION_BINS = 15

LogitStats = namedtuple("LogitStats", tags.LOGIT_STATS)
_NEED_TARGETS = frozenset(tags.LOGIT_STATS.index(s) for s in tags.TARGET_STATS)


def kept_stats(split: str, explicit, has_targets: bool) -> tuple[list[int], tuple[str, ...]]:
    """(positions in LogitStats, their tags) of the statistics to record: not those the caller
    passed explicitly as scalars, and no accuracy or cross-entropy without targets."""
    keep = [i for i, s in enumerate(tags.LOGIT_STATS) if s not in explicit and (has_targets or i not in _NEED_TARGETS)]
    return keep, tags.stat_tags(tags.split_metric, (split,), [tags.LOGIT_STATS[i] for i in keep])


def _binary(logits: torch.Tensor) -> bool:
    """(batch,) or (..., 1) logits: one logit per prediction, as BCEWithLogitsLoss takes."""
    return logits.ndim == 1 or logits.shape[-1] == 1


def n_classes(logits: torch.Tensor) -> int:
    return 2 if _binary(logits) else int(logits.shape[-1])


def logits_of(outputs):
    """The logits in what a model returned: a tensor as it is; the "logits" entry of a dict or a
    Hugging Face ModelOutput; the first floating tensor with a class axis (not a 0-d loss) of a
    tuple or list, so (logits, loss) and (loss, logits) both work. Anything else is returned as it
    is, for check() to name."""
    if isinstance(outputs, torch.Tensor):
        return outputs
    if isinstance(outputs, Mapping):
        if "logits" not in outputs:
            raise ValueError(f"logits were given as a {type(outputs).__name__} without a 'logits' entry "
                             f"(keys: {', '.join(map(str, list(outputs)[:8]))}); pass the logits tensor itself")
        return outputs["logits"]
    if isinstance(outputs, (tuple, list)):
        for item in outputs:
            if isinstance(item, torch.Tensor) and item.ndim >= 1 and item.is_floating_point():
                return item
    return outputs


def check(logits, targets, ignore_index=None) -> None:
    """Raise a TypeError or ValueError naming both shapes unless logits (and targets) have a shape
    the statistics below take. Cheap (no tensor op): record_step calls it on every step, so a
    mismatch fails at the first call instead of leaving the accuracy out without a word."""
    if ignore_index is not None and (not isinstance(ignore_index, int) or isinstance(ignore_index, bool)):
        raise TypeError(f"ignore_index must be a class index (int) such as -100, or None; got {ignore_index!r}")
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"logits must be a tensor, got {type(logits).__name__}")
    if logits.ndim == 0 or logits.numel() == 0 or logits.is_complex():
        raise ValueError(f"logits must be real class scores of shape (batch, classes), (batch, ..., classes) "
                         f"or (batch,) for binary logits; got shape {tuple(logits.shape)} ({logits.dtype})")
    if targets is None:
        return
    if not isinstance(targets, torch.Tensor):
        raise TypeError(f"targets must be a tensor (class indices or probabilities), got {type(targets).__name__}")
    binary = _binary(logits)
    predictions = logits.numel() if binary else logits.numel() // logits.shape[-1]
    if targets.numel() == predictions:  # class indices (or 0/1 labels for binary logits)
        return
    if not binary and targets.is_floating_point() and targets.shape == logits.shape:  # probabilities
        return
    raise ValueError(
        f"targets of shape {tuple(targets.shape)} do not match logits of shape {tuple(logits.shape)}: the logits "
        f"hold {predictions} prediction(s), the targets {targets.numel()} value(s). Pass one class index per "
        f"prediction ((B,) for (B, C) logits, (B, T) for (B, T, V)), class probabilities of the logits' shape, "
        f"or no targets (then no accuracy is recorded).")


def _scores(logits: torch.Tensor) -> torch.Tensor:
    """Class scores (..., classes): a binary logit z is the two classes (0, z), whose softmax is
    (1 - sigmoid(z), sigmoid(z)), so confidence, entropy and accuracy follow as for any classes."""
    if not _binary(logits):
        return logits
    z = logits.detach().reshape(-1)
    return torch.stack([torch.zeros_like(z), z], dim=-1)


def _class_targets(targets: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Class indices, on the logits' device: probability (one-hot or soft) targets become their
    argmax; with binary logits, probability labels round to 0 or 1."""
    t = targets.detach()
    if t.device != logits.device:
        t = t.to(logits.device)
    if _binary(logits):
        return t.round() if t.is_floating_point() else t
    if t.is_floating_point() and t.shape == logits.shape:
        t = t.reshape(-1, logits.shape[-1]).argmax(-1)
    return t


def _index_targets(targets: torch.Tensor | None, logits: torch.Tensor) -> bool:
    """Whether targets are class indices (which may hold an ignore index), not probabilities."""
    return targets is not None and not (not _binary(logits) and targets.is_floating_point()
                                        and targets.shape == logits.shape)


def _ignored(t, ignore_index):
    """Positions left out: negative class indices (no class is negative; -100 is cross_entropy's
    default ignore_index) and `ignore_index` when it is a real class (e.g. a padding token id)."""
    out = t < 0
    if ignore_index is not None and ignore_index >= 0:
        out |= t == ignore_index
    return out


def _soft_targets(targets: torch.Tensor, logits: torch.Tensor) -> torch.Tensor | None:
    """Class probabilities (predictions, classes) when the targets are probabilities: soft or one-hot
    rows of the logits' shape, or a probability per binary logit (BCEWithLogitsLoss's labels),
    which is the two classes (1 - p, p). None for class indices."""
    if _binary(logits):
        if not targets.is_floating_point():
            return None
        p = targets.detach().reshape(-1)
        return torch.stack([1 - p, p], dim=-1)
    if targets.is_floating_point() and targets.shape == logits.shape:
        return targets.detach().reshape(-1, logits.shape[-1])
    return None


def stats_torch(logits: torch.Tensor, targets: torch.Tensor | None, ignore_index: int | None = None):
    """(confidence per prediction, LogitStats as one vector with NaN accuracy and cross-entropy without targets,
    correct per prediction or None, valid per prediction or None) for class logits of shape
    (..., classes), on their device. Targets may be class indices (...) or probabilities
    (..., classes). Positions whose index is ignored (_ignored) count in no statistic: `valid` marks
    the others, since leaving them out would give a data-dependent shape (a host sync); it is None
    when every prediction counts. No position counted gives NaN statistics. Binary logits (batch,)
    or (..., 1) count as two classes (_scores)."""
    t = None if targets is None else _class_targets(targets, logits).reshape(-1)
    valid = ~_ignored(t, ignore_index) if _index_targets(targets, logits) else None
    soft = None if targets is None else _soft_targets(targets, logits)
    logits = _scores(logits)
    z = logits.detach().float().reshape(-1, logits.shape[-1])
    logp = torch.log_softmax(z, dim=-1)
    p = logp.exp()
    conf, pred = p.max(dim=-1)
    entropy = -(p * logp).nan_to_num_(0.0).sum(-1)
    correct = None
    acc = xent = torch.full((), float("nan"), device=z.device)
    if valid is None:
        mean_conf, mean_entropy = conf.mean(), entropy.mean()
    else:
        counted = valid.sum()  # 0 when every position is ignored: 0 / 0 gives NaN, not a made-up 0
        mean_conf = torch.where(valid, conf, 0.0).sum() / counted
        mean_entropy = torch.where(valid, entropy, 0.0).sum() / counted
    if t is not None:
        correct = pred == t
        if valid is not None:
            correct &= valid
            acc = correct.sum() / counted
        else:
            acc = correct.float().mean()
        if soft is not None:  # -sum p log q; a class of probability 0 with a -inf logit counts 0 (p log q -> 0)
            nll = -(soft.to(logp.device, logp.dtype) * logp).nan_to_num_(0.0).sum(-1)
        else:
            nll = -logp.gather(1, t.long().clamp(0, z.shape[-1] - 1)[:, None])[:, 0]
        xent = nll.mean() if valid is None else torch.where(valid, nll, 0.0).sum() / counted
    return (conf, torch.stack(LogitStats(confidence=mean_conf, entropy=mean_entropy, accuracy=acc.float(),
                                         cross_entropy=xent.float())), correct, valid)


def confidence_counts_torch(conf: torch.Tensor, valid: torch.Tensor | None, bins: int) -> torch.Tensor:
    """Counts of the confidences of the counted predictions in `bins` equal bins over [0, 1]
    (histograms.fixed_torch, with ignored positions weighted 0)."""
    if valid is None:
        return fixed_torch(conf, bins, 0.0, 1.0)
    idx = (conf.detach().float() * bins).to(torch.int64).clamp_(0, bins - 1)
    return torch.zeros(bins, device=conf.device).scatter_add_(0, idx, valid.float())


def stats_numpy(logits: torch.Tensor, targets: torch.Tensor | None, ignore_index: int | None = None):
    """(confidence per counted prediction, LogitStats, correct per counted prediction or None, None),
    as stats_torch. On the CPU the ignored positions are simply dropped, so `valid` is always None."""
    # Few numpy calls on small arrays: on a training step each call costs more than the arithmetic.
    t = None if targets is None else _class_targets(targets, logits).numpy().reshape(-1)
    soft = None if targets is None else _soft_targets(targets, logits)
    soft = None if soft is None else as_numpy(soft.cpu())
    z = as_numpy(_scores(logits))
    classes = z.shape[-1]
    z = z.reshape(-1, classes)
    if _index_targets(targets, logits) and (np.minimum.reduce(t) < 0 or ignore_index is not None):
        keep = ~_ignored(t, ignore_index)
        if not keep.all():
            z, t = z[keep], t[keep]
            soft = None if soft is None else soft[keep]
    n = len(z)
    if n == 0:  # every position ignored
        nan = math.nan
        return np.zeros(0, np.float32), LogitStats(confidence=nan, entropy=nan, accuracy=nan, cross_entropy=nan), \
            (None if t is None else np.zeros(0, bool)), None
    zs = z - z.max(axis=1, keepdims=True)  # <= 0: exp cannot overflow
    e = np.exp(zs)
    s = np.dot(e, ones(classes))
    conf = 1.0 / s  # the top class has exp(0) = 1
    # H = -sum p log p = log s - sum(p * zs) per sample, with p = e / s
    pz = float(np.vdot(e * conf[:, None], zs))
    if not math.isfinite(pz):  # a -inf logit gives 0 * -inf: count it as 0, as torch does
        pz = float(np.nan_to_num(e * conf[:, None] * zs, nan=0.0).sum())
    log_s = float(np.add.reduce(np.log(s)))
    entropy = (log_s - pz) / n
    correct, acc, xent = None, math.nan, math.nan
    if t is not None:
        correct = z.argmax(axis=1) == t
        acc = np.count_nonzero(correct) / n
        # -log q(target) = log s - zs[target] per prediction (zs: logits minus their max)
        if soft is not None:
            tz = float(np.vdot(soft, zs))
            if not math.isfinite(tz):  # a class of probability 0 with a -inf logit counts 0, as in stats_torch
                tz = float(np.nan_to_num(soft * zs, nan=0.0).sum())
        else:
            tz = float(np.add.reduce(zs[np.arange(n), t.astype(np.intp)]))
        xent = (log_s - tz) / n
    return conf, LogitStats(confidence=float(np.add.reduce(conf)) / n, entropy=entropy, accuracy=acc,
                            cross_entropy=xent), correct, None


def calibration_sums_torch(conf: torch.Tensor, correct: torch.Tensor, bins: int,
                           valid: torch.Tensor | None = None) -> torch.Tensor:
    """(3, bins): per equal-width confidence bin, the count, sum of confidence and number correct
    (the ingredients of a reliability diagram and the expected calibration error), of the counted
    predictions (`valid`, as stats_torch gives it)."""
    idx = (conf * bins).long().clamp_(0, bins - 1)
    out = torch.zeros(3, bins, device=conf.device)
    if valid is None:
        out[0].scatter_add_(0, idx, torch.ones_like(conf))
    else:
        out[0].scatter_add_(0, idx, valid.to(conf.dtype))
        conf = torch.where(valid, conf, 0.0)
    out[1].scatter_add_(0, idx, conf)
    out[2].scatter_add_(0, idx, correct.float())
    return out


def calibration_sums_numpy(conf: np.ndarray, correct: np.ndarray, bins: int) -> np.ndarray:
    """(3, bins), as calibration_sums_torch."""
    idx = (conf * bins).astype(np.intp)  # conf in (0, 1], or NaN from NaN logits
    np.maximum(idx, 0, out=idx)
    np.minimum(idx, bins - 1, out=idx)
    return np.stack([np.bincount(idx, minlength=bins), np.bincount(idx, conf, minlength=bins),
                     np.bincount(idx, correct, minlength=bins)]).astype(np.float64)


def calibration_table(sums: np.ndarray) -> dict:
    """The stored calibration table (tags.calibration) from either calibration_sums: per bin its
    edges, count, mean confidence and accuracy, plus the expected calibration error."""
    count, conf_sum, correct = sums
    bins = len(count)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.where(count > 0, conf_sum / count, np.nan)
        acc = np.where(count > 0, correct / count, np.nan)
    total = count.sum()
    ece = float(np.nansum(count * np.abs(acc - conf)) / total) if total else math.nan
    edges = np.linspace(0, 1, bins + 1)
    return {"bin_lo": edges[:-1].tolist(), "bin_hi": edges[1:].tolist(), "count": count.tolist(),
            "confidence": conf.tolist(), "accuracy": acc.tolist(), "ece": ece, "n": float(total)}

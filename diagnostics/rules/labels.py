"""Rules for labels and targets that do not belong to the inputs they are given with:

- mismatched_labels: the training labels do not match the inputs (shuffled separately from them,
  an off-by-one index into the label list): the network can only memorise the examples it sees
  again, so the train loss falls while held-out accuracy stays at chance and the held-out loss at
  ln(C) or above, with updates of a healthy size and gradients flowing;
- mismatched_targets: the targets passed to record_step are not the logits' batch (nanoGPT
  fetches the next batch into Y before its logging code runs): the loss passed with them is far
  below the cross-entropy the probes recompute from those logits and targets, so the recorded
  train accuracy is measured against the wrong labels. The training itself may be fine.
"""

from __future__ import annotations

import math

import numpy as np

from runstore import tags as T

from .. import verdicts as V
from ..finding import Finding
from ..task import CLASSIFICATION, LANGUAGE_MODEL
from ..view import RunView, fmt
from .generalization import _train_over


def _finite(s):
    s = s.dropna()
    return s[np.isfinite(s.to_numpy(dtype=float))]


def _tail(s, frac: float = 1 / 3):
    return s.iloc[-max(1, int(math.ceil(len(s) * frac))):]


# -- labels that do not belong to the inputs ------------------------------------------------------
def mismatched_labels(v: RunView) -> list[Finding]:
    """Held-out accuracy ends at chance and the held-out loss at ln(C) or above without falling, while
    the train loss over the same steps is clearly below it and below ln(C) (memorised examples: a
    train loss above chance has fitted nothing, whatever the validation loss), the updates are of
    a healthy size (most layer weights in the update band, or large) and no layer's gradient
    vanishes: the network learns, and what it learns does not carry over to inputs it has not seen.
    A run that is short or too slow has no such gap; a too-small step size shows in the updates."""
    th, c = v.th, v.n_classes
    split = v.eval_split
    if (v.task.kind != CLASSIFICATION or not c or split is None or not v.judges_end or not v.enough_loss
            or v.first_nonfinite is not None or not v.minimised):
        return []
    acc, loss = _finite(v.split_series(split, "accuracy")), _finite(v.split_series(split, "loss"))
    if len(acc) < 3 or len(loss) < 3:
        return []
    chance, ln_c = 1.0 / c, math.log(c)
    acc_t, loss_t = _tail(acc), _tail(loss)
    acc_end, loss_end, loss_first = float(acc_t.mean()), float(loss_t.mean()), float(loss.iloc[0])
    above = (acc_end - chance) / (1 - chance)
    if above > th.labels_chance_acc:
        return []
    if loss_end < ln_c * (1 - th.labels_chance_loss) or loss_end < loss_first * (1 - th.labels_chance_loss):
        return []
    a, b = int(loss_t.index[0]), int(loss_t.index[-1])
    train = _train_over(v, "loss", a, b)
    if train is None:
        return []
    train_mean, train_steps = train
    gap = (loss_end - train_mean) / ln_c
    # Memorising takes a train loss below chance too: one far above ln(C) (a run blowing up, both
    # losses rising) sits below a validation loss that rose further without having fitted anything.
    below_chance = (ln_c - train_mean) / ln_c
    if gap < th.labels_train_gap or below_chance < th.labels_train_gap:
        return []
    updates = v.verdicts(V.UPDATES)
    if updates and not V.majority(updates, (V.IN_RANGE, V.LARGE)):
        return []  # too small (or too large) a step explains a run that learns nothing: the lr rules say so
    if V.flagged(v.verdicts(V.GRADIENT_FLOW)):
        return []  # gradients that vanish or stop explain it too
    typical = V.typical_update(updates) if updates else None
    acc_steps, loss_steps = [int(acc_t.index[0]), int(acc_t.index[-1])], [a, b]
    msg = (f"On {split}, the accuracy stays at chance: {fmt(acc_end)} (mean over steps {acc_steps[0]}-{acc_steps[1]}) "
           f"with {c} classes, where a uniform guess gets {fmt(chance)}; and the {split} loss stays at "
           f"{fmt(loss_end)} (mean over steps {a}-{b}; ln({c}) = {fmt(ln_c)}, first evaluation {fmt(loss_first)} at "
           f"step {int(loss.index[0])}). Yet the network learns: the train loss over the same steps is "
           f"{fmt(train_mean)} (steps {train_steps[0]}-{train_steps[1]}), {fmt(gap, 2)} x ln({c}) below it and "
           f"{fmt(below_chance, 2)} x ln({c}) below chance")
    msg += (f", with updates of a healthy size (the typical layer weight moves by {fmt(typical)} of its norm per "
            f"step)" if typical is not None else "")
    msg += (" and gradients reaching every layer. It memorises the examples it sees again and learns nothing "
            "that carries over to new ones: the labels do not belong to the inputs.")
    evidence = {"eval_accuracy": acc_end, "eval_accuracy_steps": acc_steps, "chance_accuracy": chance,
                "chance_accuracy_steps": acc_steps, "above_chance": above, "above_chance_steps": acc_steps,
                "n_classes": c, "reference_loss": ln_c, "eval_loss": loss_end, "eval_loss_steps": loss_steps,
                "first_eval_loss": loss_first, "first_eval_loss_step": int(loss.index[0]),
                "train_loss": train_mean, "train_loss_steps": train_steps, "train_gap": gap,
                "train_gap_steps": loss_steps, "train_below_chance": below_chance,
                "train_below_chance_steps": train_steps, "split": split, "labels_chance_acc": th.labels_chance_acc,
                "labels_chance_loss": th.labels_chance_loss, "labels_train_gap": th.labels_train_gap}
    if typical is not None:
        evidence.update(typical_update=typical, typical_update_steps=[min(x.steps[0] for x in updates),
                                                                      max(x.steps[1] for x in updates)])
    return [Finding(
        rule="mismatched_labels", severity="critical", title="Labels do not match the inputs", message=msg,
        advice=("Check that each input is paired with its own label: shuffle inputs and labels together (one "
                "permutation indexing both, or a Dataset returning (x, y) pairs), check indices into label lists "
                "for an off-by-one, and that training and validation labels use the same class order. Print a few "
                "training examples with their labels to see it."),
        evidence=evidence, steps=(acc_steps[0], b), chart="predictions",
        tags=(T.split_metric(split, "accuracy"), T.split_metric(split, "loss"), T.TRAIN_LOSS),
    )]


# -- targets of another batch ---------------------------------------------------------------------
def mismatched_targets(v: RunView) -> list[Finding]:
    """The passed loss is below targets_loss_ratio x the recomputed cross-entropy of the passed logits
    and targets (median over the second half of the sampled steps), and agreed with it at the first
    step when the record starts there. Only for cross-entropy tasks (classification, language
    models) and runs recorded with targets (and since the probes recompute it)."""
    th = v.th
    if v.task.kind not in (CLASSIFICATION, LANGUAGE_MODEL):
        return []
    xent = _finite(v.run.series(T.split_metric("train", "cross_entropy")))
    xent = xent[xent > 0]
    loss = v.finite_loss
    common = xent.index.intersection(loss.index)
    if len(common) < 6:
        return []
    ratio = loss.loc[common] / xent.loc[common]
    half = ratio.iloc[len(ratio) // 2:]
    med = float(half.median())
    if med >= th.targets_loss_ratio:
        return []
    evidence = {}
    start_note = ""
    s0 = int(common[0])
    if v.starts_at_beginning and s0 == int(loss.index[0]):
        r0 = float(ratio.iloc[0])
        if abs(r0 - 1) > th.targets_start_agree:
            return []  # off from the first step: a scaled loss (gradient accumulation), not another batch's targets
        evidence.update(start_ratio=r0, start_ratio_step=s0, start_loss=float(loss.loc[s0]), start_loss_step=s0,
                        start_cross_entropy=float(xent.loc[s0]), start_cross_entropy_step=s0,
                        targets_start_agree=th.targets_start_agree)
        start_note = (f" At step {s0}, before the model had learned anything, they agreed ({fmt(float(loss.loc[s0]))} "
                      f"and {fmt(float(xent.loc[s0]))}): untrained predictions give any targets about the same loss.")
    steps = [int(half.index[0]), int(half.index[-1])]
    passed, recomputed = float(loss.loc[half.index].median()), float(xent.loc[half.index].median())
    evidence.update(loss_ratio=med, loss_ratio_steps=steps, passed_loss=passed, passed_loss_steps=steps,
                    recomputed_cross_entropy=recomputed, recomputed_cross_entropy_steps=steps,
                    targets_loss_ratio=th.targets_loss_ratio)
    msg = (f"The loss passed to record_step is {fmt(med, 2)} of the cross-entropy of the passed logits against the "
           f"passed targets (median over the sampled steps {steps[0]}-{steps[1]}: {fmt(passed)} passed, "
           f"{fmt(recomputed)} recomputed).{start_note} A loss computed on these logits can only be this much lower if it was computed "
           f"against other targets: the targets passed to record_step do not belong to the logits' batch, as when "
           f"the next batch is fetched into Y before the step is recorded (nanoGPT's loop). The recorded train "
           f"accuracy and everything read from it are measured against the wrong labels; the training itself is "
           f"not affected. (A loss that is not the plain cross-entropy of these logits, such as a distillation or "
           f"focal loss, or mixup's mixed targets, is also lower.)")
    return [Finding(
        rule="mismatched_targets", severity="warning", title="Targets passed to record_step are another batch's",
        message=msg,
        advice=("Pass the targets of the same batch: read Y before fetching the next batch (call record_step before "
                "`X, Y = get_batch('train')`, or keep the batch's targets in a variable of their own). If the loss is "
                "not the cross-entropy of these logits on purpose, pass the targets it was computed against, or none."),
        evidence=evidence, steps=(s0, steps[1]), chart="predictions",
        tags=(T.TRAIN_LOSS, T.split_metric("train", "cross_entropy")),
    )]

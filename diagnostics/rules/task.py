"""task_context (info): what the run was read as (diagnostics.task) when that changes how its loss
is judged: a language model (perplexity; no floor of 0), a loss without classes (no known floor),
an adversarial run (the minimisation rules stand down), or a `task` declaration not understood."""

from __future__ import annotations

import math

import numpy as np

from runstore import tags as T

from .. import task as K
from ..finding import Finding
from ..view import RunView, fmt

# The rules that read train/loss as a loss to minimise; they stand down on an adversarial run.
MINIMISATION_RULES = ("lr_too_high (from a climbing or spiking loss)", "lr_too_low", "loss_plateau", "underfitting",
                      "overfitting", "bad_init_loss")


def _last(s) -> tuple[float, int] | None:
    s = s.dropna()
    s = s[np.isfinite(s.to_numpy(dtype=float))]
    return (float(s.iloc[-1]), int(s.index[-1])) if len(s) else None


def task_context(v: RunView) -> list[Finding]:
    task = v.task
    if v.finite_loss.empty or task.kind == K.CLASSIFICATION and task.ignored_declaration is None:
        return []
    evidence: dict = {"task": task.kind}
    if v.n_classes:
        evidence["n_classes"] = v.n_classes
    parts = [f"This run is read as {task.name}: {task.how}."]
    tags = [T.TRAIN_LOSS]
    if task.ignored_declaration is not None:
        parts.append(f"Its declared task {task.ignored_declaration!r} is not one of "
                     f"{', '.join(sorted(set(K.ALIASES)))}, so it was inferred instead.")
    if task.floor is not None:
        evidence["loss_floor"] = task.floor
        parts.append(f"Loss levels are judged against the declared lowest reachable loss {fmt(task.floor)}.")
    if task.kind == K.ADVERSARIAL:
        parts.append("Its losses compete instead of falling together, so the rules that read the loss as something "
                     "to minimise stand down: " + ", ".join(MINIMISATION_RULES) + ". NaN, gradient, update-size, "
                     "dead-unit and saturation rules still apply.")
        tags += list(task.other_losses)
        advice = ("Judge a GAN by its samples and by the balance of its losses (D(x) drifting to one and D(G(z)) to zero means "
                  "the discriminator wins); declare task='gan' in probes.attach's meta to say so explicitly.")
    else:
        if task.floor is None:
            what = ("the entropy of the text itself" if task.kind == K.LANGUAGE_MODEL
                    else "set by the noise in the targets")
            parts.append(f"Its lowest reachable loss is {what} and unknown here, so loss levels are judged by how far "
                         f"the loss came down and where the validation loss is heading, not against zero.")
        if task.kind == K.LANGUAGE_MODEL:
            for split in ([v.eval_split] if v.eval_split else []) + ["train"]:
                src = v.split_series(split, "loss") if split != "train" else v.smooth
                got = _last(src)
                if got is None or got[0] > 50:
                    continue
                loss, step = got
                key = "final_eval_loss" if split != "train" else "final_train_loss"
                evidence.update({key: loss, f"{key}_step": step, f"{key}_perplexity": math.exp(loss),
                                 f"{key}_perplexity_step": step})
                if split == "train":
                    evidence.update(smooth_window=v.window)
                what = f"the {split} loss" if split != "train" else f"the smoothed train loss (median of {v.window} steps)"
                parts.append(f"At step {step} {what} is {fmt(loss)}: perplexity {fmt(math.exp(loss))}.")
                tags.append(T.split_metric(split, "loss"))
                break
        advice = ("To have levels judged against a floor, declare it: probes.attach(..., meta={'task': "
                  f"'{task.kind}', 'loss_floor': <lowest reachable loss>}}).")
    return [Finding(
        rule="task_context", severity="info", title=f"Read as {task.name}", message=" ".join(parts), advice=advice,
        evidence=evidence, steps=(int(v.loss.index[0]), int(v.loss.index[-1])) if len(v.loss) else None,
        chart="overview", tags=tuple(dict.fromkeys(tags)),
    )]

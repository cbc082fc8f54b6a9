"""The diagnosis pruner in your own Optuna objective: one line replaces `probes.attach`.

    import optuna, sweep

    def objective(trial):
        lr = trial.suggest_float("lr", 1e-4, 1, log=True)
        model, optimizer = build(lr)
        with sweep.attach(trial, model, optimizer, run_dir=f"runs/my-study/trial-{trial.number}") as rec:
            for step, (x, y) in enumerate(loader, 1):
                ...                                   # forward, backward, optimizer.step()
                rec.record_step(loss, logits=logits, targets=y)
                if step % 100 == 0:
                    rec.record_eval(loss=val_loss, logits=val_logits, targets=val_y)
                    trial.report(val_accuracy, rec.step)
                    if trial.should_prune():
                        raise optuna.TrialPruned()
        return val_accuracy

    study = optuna.create_study(direction="maximize", pruner=sweep.DiagnosisPruner(optuna.pruners.MedianPruner()))

`attach` records the run exactly as probes.attach does (same options), adds the study and trial
number to its run.json, and tells the trial where its recording is, so the study's
DiagnosisPruner reads it when `should_prune()` is asked. Report with the optimizer step
(`rec.step`) after `record_eval` (which flushes), and the pruner judges everything up to it. A
TrialPruned raised inside the `with` block ends the run as "stopped", saying why it was pruned;
any other exception ends it "failed", as with probes.
"""

from __future__ import annotations

import os

import optuna

from runstore import schema

from . import records
from .pruner import expect_recorded, forget


class TrialRecorder:
    """A probes Recorder bound to an Optuna trial: every Recorder method and attribute works the
    same; record_eval also tells the pruner how far the recording is, and leaving the `with`
    block on optuna.TrialPruned closes the run as stopped with the prune reason."""

    def __init__(self, trial, recorder, run_dir: str):
        self._trial, self._rec, self._run_dir = trial, recorder, run_dir

    def __getattr__(self, name):
        return getattr(self._rec, name)

    def record_eval(self, *args, **kwargs) -> None:
        self._rec.record_eval(*args, **kwargs)
        expect_recorded(self._run_dir, self._rec.step)

    def close(self, status=None, *, error=None) -> None:
        forget(self._run_dir)
        self._rec.close(status, error=error)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and issubclass(exc_type, optuna.TrialPruned):
            reason = _reason(self._trial)
            self.close(schema.STOPPED, error=records.pruned_words(reason) if reason else f"pruned: {exc}")
            if reason:
                records.note_pruned(self._run_dir, reason)
            return False
        forget(self._run_dir)
        return self._rec.__exit__(exc_type, exc, tb)

    def __repr__(self):
        return f"TrialRecorder(trial={self._trial.number}, {self._rec!r})"


def _reason(trial) -> dict | None:
    try:  # the pruner stored it through the storage; the live Trial object does not see it
        reason = trial.study._storage.get_trial(trial._trial_id).user_attrs.get(records.PRUNED)
    except Exception:  # noqa: BLE001 - a reason is a courtesy; never let it hide the prune
        return None
    return reason if isinstance(reason, dict) else None


def attach(trial: optuna.Trial, model, optimizer=None, *, run_dir: str | os.PathLike, hparams: dict | None = None,
           **options) -> TrialRecorder:
    """probes.attach for a trial: records `model` into `run_dir` (options as probes.attach; `meta`
    is merged) and links the run and the trial both ways. hparams default to the trial's params."""
    import probes  # deferred: importing sweep does not import torch

    study_name = trial.study.study_name
    params = dict(trial.params)
    link = records.run_meta(study_name, trial.number, "", params)
    meta = {**link, **(options.pop("meta", None) or {})}
    meta[records.META_KEY] = {**link[records.META_KEY], **(meta.get(records.META_KEY) or {})}
    rec = probes.attach(model, optimizer, run_dir=run_dir, hparams=hparams if hparams is not None else params,
                        meta=meta, **options)
    path = str(getattr(rec, "run_dir", None) or run_dir)
    trial.set_user_attr(records.RUN_DIR, os.path.abspath(path))
    trial.set_user_attr(records.STEP_UNIT, "optimizer")
    total = meta.get("total_steps")
    if isinstance(total, int) and total > 0:
        trial.set_user_attr(records.TOTAL_STEPS, total)
    return TrialRecorder(trial, rec, os.path.abspath(path))

"""The objective of a playground sweep: one trial = one playground training, recorded as an
ordinary run under <runs>/<study>/trial-NNNN, in this process (so the pruner reads the
recording while it grows).

After every evaluation the trial reports the objective (validation accuracy or loss) at that
optimizer step and asks the study's pruner; a pruned trial stops at its next step (its run ends
"stopped" and says it was pruned and why) and raises optuna.TrialPruned. A stop of the sweep
(the study's stop flag, or SIGTERM to the worker) ends the running trial the same way, as a
trial "stopped on request". A run that diverged is a failed trial (TrialFailed). Imports torch
(through playground.loop) when called.
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time

import optuna

from runstore import read_meta_or_none, schema

from . import records
from .pruner import expect_recorded, forget
from .space import trial_config
from .spec import SweepSpec
from .storage import redact
from .study import STOP_ATTR, STOPPED_ON_REQUEST

STOP_POLL_S = 2.0  # how often a running trial looks at the study's stop flag


class SweepStopped(Exception):
    """The sweep was asked to stop while a trial ran; the trial is recorded as failed."""


class TrialFailed(Exception):
    """The trial's run failed (it diverged: its loss stayed NaN/inf, so the playground stopped it);
    the trial is recorded as failed with the run's error. Its last evaluation came before the
    blow-up, so it is not the trial's result."""


class PlaygroundObjective:
    """Callable objective(trial) -> value for study.optimize.

    stop: a threading.Event (SIGTERM sets it in a worker); log: print-like, one line per trial;
    started: called first thing in each trial (the worker releases its budget lock there).
    """

    def __init__(self, spec: SweepSpec, runs_dir, *, storage_url: str = "", stop: threading.Event | None = None,
                 log=None, stop_poll_s: float = STOP_POLL_S, started=None):
        self.spec = spec
        self.runs_dir = runs_dir
        self.storage = redact(storage_url) if storage_url else ""
        self.stop = stop if stop is not None else threading.Event()
        self.log = log or (lambda *a, **k: None)
        self.stop_poll_s = stop_poll_s
        self.started = started  # called once the trial exists (the worker's ask lock is released)

    def __call__(self, trial: optuna.Trial) -> float:
        from playground.loop import train  # deferred: the study tools stay torch-free

        if self.started is not None:
            self.started()
        if self.stop.is_set():
            trial.set_user_attr(records.ERROR, f"{STOPPED_ON_REQUEST} before it started")
            raise SweepStopped("the sweep was stopped before this trial started")
        study_name = trial.study.study_name
        params = {p.name: p.suggest(trial) for p in self.spec.space}
        config = trial_config(self.spec.base, params)
        run_dir = records.trial_dir(self.runs_dir, study_name, trial.number)
        total = config.total_steps()
        for key, value in ((records.RUN_DIR, str(run_dir)), (records.HOST, socket.gethostname()),
                           (records.TOTAL_STEPS, total), (records.STEP_UNIT, "optimizer"),
                           (records.WORKER, f"{socket.gethostname()}:{os.getpid()}")):
            trial.set_user_attr(key, value)
        watcher = _TrialWatcher(self, trial, config, str(run_dir))
        t0 = time.monotonic()
        try:
            status = train(config, run_dir, meta=records.run_meta(study_name, trial.number, self.storage, params),
                           progress=watcher, stop=watcher.should_stop)
        except Exception as e:
            trial.set_user_attr(records.RUN_STATUS, schema.FAILED)
            trial.set_user_attr(records.ERROR, f"{type(e).__name__}: {e}"[:500])
            self.log(f"trial {trial.number}: crashed: {type(e).__name__}: {e}")
            raise
        finally:
            forget(run_dir)
        took = time.monotonic() - t0
        trial.set_user_attr(records.RUN_STATUS, status)
        if watcher.pruned and status == schema.STOPPED:
            reason = _stored_reason(trial) or {"by": "pruner", "step": watcher.last_step}
            records.note_pruned(run_dir, reason, total)
            words = records.pruned_words(reason, total)
            self.log(f"trial {trial.number}: {words} ({took:.1f} s)")
            raise optuna.TrialPruned(words)
        if status == schema.STOPPED:
            trial.set_user_attr(records.ERROR, f"{STOPPED_ON_REQUEST} (the sweep was stopped)")
            self.log(f"trial {trial.number}: stopped on request at step {watcher.last_step} ({took:.1f} s)")
            raise SweepStopped("stopped on request")
        if status == schema.FAILED:
            error = str((read_meta_or_none(run_dir) or {}).get("error") or "the run failed")
            trial.set_user_attr(records.ERROR, error[:500])
            self.log(f"trial {trial.number}: failed at step {watcher.last_step} ({took:.1f} s): {error}")
            raise TrialFailed(error)
        value = watcher.value()
        self.log(f"trial {trial.number}: {status}, {self.spec.objective} {value:.4g} "
                 f"({total} steps, {took:.1f} s): {_params_text(params)}")
        return value


def _stored_reason(trial: optuna.Trial) -> dict | None:
    reason = trial.study._storage.get_trial(trial._trial_id).user_attrs.get(records.PRUNED)
    return reason if isinstance(reason, dict) else None


def _params_text(params: dict) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


class _TrialWatcher:
    """The training loop's progress callback: reports each evaluation to the trial, asks the
    pruner, and polls the study's stop flag."""

    def __init__(self, objective: PlaygroundObjective, trial: optuna.Trial, config, run_dir: str):
        self.objective, self.trial, self.run_dir = objective, trial, run_dir
        self.eval_every, self.total = config.eval_every, config.total_steps()
        self.key = "val_accuracy" if objective.spec.objective == "val_accuracy" else "val_loss"
        self.pruned = False
        self.last_step = 0
        self.last_value: float | None = None
        self._stop_now = False
        self._next_poll = time.monotonic() + objective.stop_poll_s

    def __call__(self, p) -> None:
        self.last_step = p.step
        if p.step % self.eval_every == 0 or p.step == self.total:
            value = getattr(p, self.key)
            if value is not None:
                self.last_value = float(value)
            if value is not None and math.isfinite(value) and p.step < self.total:
                expect_recorded(self.run_dir, p.step)  # record_eval just flushed this step
                self.trial.report(float(value), p.step)
                if self.trial.should_prune():
                    self.pruned = True
                    self._stop_now = True
        now = time.monotonic()
        if now >= self._next_poll:
            self._next_poll = now + self.objective.stop_poll_s
            if self.trial.study.user_attrs.get(STOP_ATTR):
                self.objective.stop.set()

    def should_stop(self) -> bool:
        return self._stop_now or self.objective.stop.is_set()

    def value(self) -> float:
        """The trial's result: the objective at the last evaluation (NaN when there was none or it
        was not finite; Optuna records such a trial as failed)."""
        return self.last_value if self.last_value is not None else math.nan

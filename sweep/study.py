"""Studies in their storage: create one from a SweepSpec, load it back (resume), list the trials
with their runs and prune reasons, stop it, narrow it (coarse to fine), and the best trial's
config for a longer rerun. Torch-free: the dashboard and the CLI's monitor use it."""

from __future__ import annotations

import math
import os
import socket
import time
import zlib
from dataclasses import dataclass, replace

import optuna
from optuna.samplers import BaseSampler, RandomSampler, TPESampler
from optuna.trial import TrialState

from playground.config import Config
from runstore import pid_alive

from . import records
from .pruner import make_pruner
from .space import narrow
from .spec import SPEC_ATTR, SpecError, SweepSpec, check_study_name
from .storage import open_storage

STOP_ATTR = "stop_requested"  # study user attribute: when a stop was asked for (any worker obeys)
WORKER_PREFIX = "worker:"     # study user attributes "worker:<host>:<pid>" -> the worker's record
# Trial states in words, in the order a table lists them.
STATE_WORDS = {TrialState.RUNNING: "running", TrialState.WAITING: "waiting", TrialState.COMPLETE: "complete",
               TrialState.PRUNED: "pruned", TrialState.FAIL: "failed"}
FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
STOPPED = "stopped"  # a failed trial that a stop of the sweep ended (its error starts with STOPPED_ON_REQUEST)
STOPPED_ON_REQUEST = "stopped on request"

optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial is the worker's own log


class StudyError(RuntimeError):
    """A study cannot be created, found or used; the message says why."""


# -- samplers --------------------------------------------------------------------------------------
class TrialSeededSampler(BaseSampler):
    """Random search in which trial N's config depends only on the seed and N: every worker,
    every resume and every pruner setting draws the same config for the same trial number (so
    benchmarks compare pruners on identical trials, and parallel workers never repeat each other)."""

    def __init__(self, seed: int = 0):
        self.seed = int(seed)

    def infer_relative_search_space(self, study, trial):
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def sample_independent(self, study, trial, param_name, param_distribution):
        key = zlib.crc32(f"{self.seed}:{trial.number}:{param_name}".encode())
        return RandomSampler(seed=key).sample_independent(study, trial, param_name, param_distribution)


def make_sampler(spec: SweepSpec, worker_index: int = 0) -> BaseSampler:
    """The sampler of a spec for one worker. TPE gets seed + worker index, so workers started
    together do not draw the same startup trials."""
    if spec.sampler == "tpe":
        return TPESampler(seed=spec.seed + worker_index)
    return TrialSeededSampler(spec.seed)


# -- create, load, list ----------------------------------------------------------------------------
def study_names(storage_url: str) -> list[str]:
    """Names of the studies in a storage, newest first."""
    storage = open_storage(storage_url)
    studies = storage.get_all_studies()
    return [s.study_name for s in sorted(studies, key=lambda s: s._study_id, reverse=True)]


def create_study(storage_url: str, name: str, spec: SweepSpec, *, resume: bool = False) -> optuna.Study:
    """A new study `name` for `spec` in the storage. With resume=True an existing study of that name
    is returned when its settings are the same except the budget (which `spec` then sets);
    otherwise an existing name is a StudyError."""
    check_study_name(name)
    spec.validate()
    storage = open_storage(storage_url)
    if name in study_names(storage_url):
        study = optuna.load_study(study_name=name, storage=storage)
        try:
            old = SweepSpec.from_dict(study.user_attrs.get(SPEC_ATTR))
        except SpecError as e:
            raise StudyError(f"a study named {name!r} already exists in this storage and {e}") from None
        if not resume:
            raise StudyError(f"a study named {name!r} already exists in this storage; choose another name, "
                             f"or resume it.")
        if replace(old, n_trials=spec.n_trials) != spec:
            raise StudyError(f"a study named {name!r} already exists with other settings ({_difference(old, spec)}); "
                             f"resume it without changing them, or choose another name.")
        if old.n_trials != spec.n_trials:
            study.set_user_attr(SPEC_ATTR, spec.to_dict())
        return study
    study = optuna.create_study(storage=storage, study_name=name, direction=spec.direction)
    study.set_user_attr(SPEC_ATTR, spec.to_dict())
    return study


def _difference(old: SweepSpec, new: SweepSpec) -> str:
    a, b = old.to_dict(), new.to_dict()
    keys = [k for k in a if k not in ("n_trials",) and a[k] != b.get(k)]
    return "different " + ", ".join(keys) if keys else "different settings"


def load(storage_url: str, name: str, *, worker_index: int = 0, pruner=None) -> tuple[optuna.Study, SweepSpec]:
    """The study `name` with the sampler and pruner its settings name (or `pruner`), and its spec."""
    storage = open_storage(storage_url)
    try:
        bare = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise StudyError(f"no study named {name!r} in this storage.") from None
    try:
        spec = SweepSpec.from_dict(bare.user_attrs.get(SPEC_ATTR))
    except SpecError as e:
        raise StudyError(f"study {name!r}: {e}") from None
    study = optuna.load_study(study_name=name, storage=storage, sampler=make_sampler(spec, worker_index),
                              pruner=pruner if pruner is not None else make_pruner(spec.pruner))
    return study, spec


def load_spec(study: optuna.Study) -> SweepSpec:
    return SweepSpec.from_dict(study.user_attrs.get(SPEC_ATTR))


# -- stopping --------------------------------------------------------------------------------------
def request_stop(study: optuna.Study) -> None:
    """Ask every worker of the study, on any machine, to stop: running trials end at their next
    step (recorded as stopped; the trial as failed, "stopped on request") and no new one starts."""
    study.set_user_attr(STOP_ATTR, time.time())


def clear_stop(study: optuna.Study) -> None:
    """Let workers run the study again (starting workers on a stopped study does this)."""
    if study.user_attrs.get(STOP_ATTR):
        study.set_user_attr(STOP_ATTR, None)


def stop_requested(study: optuna.Study) -> bool:
    return bool(study.user_attrs.get(STOP_ATTR))


# -- workers ---------------------------------------------------------------------------------------
def worker_key(host: str | None = None, pid: int | None = None) -> str:
    return f"{WORKER_PREFIX}{host or socket.gethostname()}:{pid or os.getpid()}"


def register_worker(study: optuna.Study, runs_dir: str) -> str:
    key = worker_key()
    study.set_user_attr(key, {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time(),
                              "runs_dir": str(runs_dir), "ended": None, "trials": 0})
    return key


def update_worker(study: optuna.Study, key: str, **fields) -> None:
    record = study.user_attrs.get(key)
    if isinstance(record, dict):
        study.set_user_attr(key, {**record, **fields})


@dataclass(frozen=True)
class WorkerInfo:
    host: str
    pid: int
    started: float
    runs_dir: str
    ended: float | None
    trials: int
    local: bool
    alive: bool | None  # None: on another machine, not known from here

    @property
    def label(self) -> str:
        return f"{self.host}:{self.pid}"


def workers(study: optuna.Study, attrs: dict | None = None) -> list[WorkerInfo]:
    """The workers that joined the study, newest first; `alive` from the process table for this
    machine's workers."""
    here = socket.gethostname()
    out = []
    for key, rec in (attrs if attrs is not None else study.user_attrs).items():
        if not key.startswith(WORKER_PREFIX) or not isinstance(rec, dict):
            continue
        host, pid = str(rec.get("host")), rec.get("pid")
        if not isinstance(pid, int):
            continue
        local = host == here
        ended = rec.get("ended") if isinstance(rec.get("ended"), (int, float)) else None
        alive = (ended is None and pid_alive(pid)) if local else (False if ended else None)
        out.append(WorkerInfo(host, pid, float(rec.get("started") or 0), str(rec.get("runs_dir") or ""), ended,
                              int(rec.get("trials") or 0), local, alive))
    out.sort(key=lambda w: w.started, reverse=True)
    return out


# -- trials ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrialRow:
    """One trial as the table and the CLI show it."""

    number: int
    state: str
    value: float | None
    params: dict
    run_dir: str | None
    host: str | None
    pruned: dict | None
    run_status: str | None
    error: str | None
    last_step: int | None   # last reported step
    last_value: float | None  # value reported there
    total_steps: int | None
    started: float | None
    duration_s: float | None
    intermediate: dict

    @property
    def reason(self) -> str:
        """Why it ended where it did, in one line ("" for a trial that completed normally)."""
        if self.state == "pruned":
            return records.pruned_words(self.pruned, self.total_steps)
        if self.state in ("failed", STOPPED):
            return self.error or ("failed: its worker stopped answering" if self.state == "failed" else STOPPED)
        if self.run_status == "failed" and self.error:
            return self.error
        return ""


def _time(dt) -> float | None:
    return dt.timestamp() if dt is not None else None


def trial_rows(study: optuna.Study, trials=None) -> list[TrialRow]:
    """Every trial of the study, in trial-number order."""
    out = []
    for t in trials if trials is not None else study.get_trials(deepcopy=False):
        ua = t.user_attrs
        steps = sorted(t.intermediate_values)
        last = steps[-1] if steps else None
        start, end = _time(t.datetime_start), _time(t.datetime_complete)
        value = t.value if t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value) else None
        state = STATE_WORDS.get(t.state, str(t.state))
        if t.state == TrialState.FAIL and str(ua.get(records.ERROR) or "").startswith(STOPPED_ON_REQUEST):
            state = STOPPED
        out.append(TrialRow(
            number=t.number, state=state, value=value, params=dict(t.params),
            run_dir=ua.get(records.RUN_DIR) if isinstance(ua.get(records.RUN_DIR), str) else None,
            host=ua.get(records.HOST), pruned=ua.get(records.PRUNED) if isinstance(ua.get(records.PRUNED), dict) else None,
            run_status=ua.get(records.RUN_STATUS), error=ua.get(records.ERROR),
            last_step=last, last_value=t.intermediate_values.get(last) if last is not None else None,
            total_steps=ua.get(records.TOTAL_STEPS) if isinstance(ua.get(records.TOTAL_STEPS), int) else None,
            started=start, duration_s=(end if end is not None else time.time()) - start if start is not None else None,
            intermediate=dict(t.intermediate_values)))
    out.sort(key=lambda r: r.number)
    return out


@dataclass(frozen=True)
class Progress:
    """Where a study stands: trials by state, the budget, the best trial."""

    n_trials: int
    counts: dict  # state word -> count
    best: TrialRow | None
    stop_requested: bool

    @property
    def finished(self) -> int:
        """Trials that used up the budget and ended (stopped ones do not count)."""
        return sum(self.counts.get(s, 0) for s in ("complete", "pruned", "failed"))

    @property
    def running(self) -> int:
        return self.counts.get("running", 0)

    @property
    def done(self) -> bool:
        return self.finished >= self.n_trials


def counts_toward_budget(row: TrialRow) -> bool:
    """Whether a trial uses up the budget: it completed, was pruned, is running, or failed on its
    own. Trials ended by a stop of the sweep, or lost with a worker that died (failed without an
    error of their own), do not: resuming the sweep trains that many more. Queued (waiting)
    trials count once a worker runs them."""
    if row.state in ("complete", "pruned", "running"):
        return True
    return row.state == "failed" and bool(row.error)


def budget_left(study: optuna.Study, spec: SweepSpec) -> int:
    """Trials still to start before the study has its budget."""
    return spec.n_trials - sum(1 for r in trial_rows(study) if counts_toward_budget(r))


def best_row(rows: list[TrialRow], maximize: bool) -> TrialRow | None:
    done = [r for r in rows if r.value is not None]
    if not done:
        return None
    return (max if maximize else min)(done, key=lambda r: (r.value if maximize else -r.value, -r.number))


def progress(study: optuna.Study, spec: SweepSpec, rows: list[TrialRow] | None = None,
             attrs: dict | None = None) -> Progress:
    rows = trial_rows(study) if rows is None else rows
    counts: dict = {}
    for r in rows:
        counts[r.state] = counts.get(r.state, 0) + 1
    attrs = study.user_attrs if attrs is None else attrs
    return Progress(spec.n_trials, counts, best_row(rows, spec.maximize), bool(attrs.get(STOP_ATTR)))


# -- what to do next -------------------------------------------------------------------------------
def rerun_best(study: optuna.Study, spec: SweepSpec, *, epochs: int | None = None,
               factor: int = 2) -> tuple[Config, TrialRow]:
    """The best trial's config with more epochs (`epochs`, or its epochs x `factor`), validated,
    and the trial (its run is the new run's parent). StudyError without a completed trial."""
    best = best_row(trial_rows(study), spec.maximize)
    if best is None:
        raise StudyError("no trial has completed yet: there is no best trial to rerun.")
    config = spec.base.replace(validate=False, **best.params)
    epochs = epochs if epochs is not None else config.epochs * factor
    try:
        return config.replace(epochs=int(epochs), check_device=False), best
    except Exception as e:  # noqa: BLE001 - a ConfigError in the user's terms
        raise StudyError(f"cannot rerun the best trial with {epochs} epochs: {e}") from None


def narrowed(study: optuna.Study, spec: SweepSpec, *, n_trials: int | None = None, top_fraction: float = 0.25,
             name: str | None = None) -> SweepSpec:
    """Coarse to fine: the spec of a second study searching the region of the best trials of
    this one (space.narrow), linked to it as its parent."""
    results = [(r.number, r.value, r.params) for r in trial_rows(study) if r.value is not None]
    n = narrow(spec.space, results, maximize=spec.maximize, top_fraction=top_fraction)
    notes = tuple(n.changes) or ("the best trials span the whole space: nothing narrowed",)
    return replace(spec, space=n.space, n_trials=n_trials or spec.n_trials, parent=name or study.study_name,
                   notes=notes).validate()

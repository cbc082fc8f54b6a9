"""The diagnosis pruner: an Optuna pruner that reads the trial's own recording while it trains and
prunes it when the diagnostics find it hopeless (NaN loss, a learning rate far too high or far too
low, mass dead units, saturation, gradients gone or exploding), storing the finding as the reason.

    pruner = DiagnosisPruner()                                   # diagnosis only
    pruner = DiagnosisPruner(optuna.pruners.MedianPruner())      # diagnosis OR median

Every Optuna pruner only sees the objective's numbers; this one also sees why a trial fails. It
reads the run directory named by the trial's `run_dir` user attribute (the playground objective
and `sweep.attach` set it), re-reads only what was flushed since its last look (Run.refresh) and
judges it with `diagnostics.advise`, the same findings the dashboard shows.

Conservative by default, so a healthy trial is not pruned: only critical findings of the rules in
HOPELESS_RULES count; the same one must be found on `confirm` (2) checks in a row; a run the
playground is still recording gets the diagnostics' live verdicts (nothing that needs the end of
the run); and a trial whose objective at that step is better than the median of what the other
trials reported there is spared (its numbers say it is doing fine, whatever the recording shows:
a one-layer net at a huge learning rate can thrash its loss and still end well). Checks are
spaced `interval_steps` apart (by default a tenth of the planned steps) and judging may cost at
most `max_overhead` (10%) of the trial's projected time (its time so far scaled to its planned
steps, so the checks come early, where a prune saves the most), so tiny trials get fewer checks
(except the check that confirms a suspicion, which comes at the next report and is never put off).
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import optuna
from optuna.pruners import BasePruner

import diagnostics
from runstore import RunReadError, load_run

from .records import PRUNED, RUN_DIR, STEP_UNIT, TOTAL_STEPS

# The rules whose critical findings make a trial hopeless: numbers that have gone non-finite, a
# learning rate that throws the loss back up or is far too low to move the weights (lr_too_low is
# critical only then: updates below diagnostics' update_ratio_far_low while the gradients flow),
# units that are dead or saturated for good (they pass no gradient, so they do not come back),
# and gradients that are gone, vanishing or exploding (vanishing_gradients is critical also when
# the gradients are too small in every layer for any usable learning rate to move the weights: a
# collapsed signal, which lr_too_low leaves to it).
# bad_init_loss, underfitting, overfitting, plateaus and confidence are left out: a run with them
# can still end well (and the end-of-run ones wait for the end anyway).
HOPELESS_RULES = ("nan_loss", "lr_too_high", "lr_too_low", "dead_relu", "saturation", "no_gradient",
                  "vanishing_gradients", "exploding_gradients")
CRITICAL = "critical"
DEFAULT_CHECKS = 10  # looks per trial when the planned steps are known
# Judging a trial may cost at most this share of its projected time (its time so far scaled to
# its planned steps); a check due beyond it waits for the next report (tiny trials get fewer
# checks, long ones all of them).
MAX_OVERHEAD = 0.1
WAIT_S = 2.0  # how long a check waits for the writer thread to store the step just reported
_KEEP = 8  # trials whose loaded runs are kept between checks (a worker trains one at a time)

# In-process hints: the optimizer step whose data has just been handed to the writer, per run
# directory, so a check right after an evaluation waits the few milliseconds the writer needs
# instead of judging one flush behind (see expect_recorded).
_expected: dict[str, int] = {}
_expected_lock = threading.Lock()


def expect_recorded(run_dir, step: int) -> None:
    """Tell the pruner that the recording of `run_dir` has been flushed up to `step` (the
    playground objective calls it after each evaluation, sweep.attach after record_eval)."""
    with _expected_lock:
        _expected[str(run_dir)] = int(step)


def forget(run_dir) -> None:
    with _expected_lock:
        _expected.pop(str(run_dir), None)


def _expected_step(run_dir: str) -> int | None:
    with _expected_lock:
        return _expected.get(run_dir)


@dataclass
class _Watch:
    """What the pruner keeps about one trial between checks."""

    run_dir: str
    run: object = None  # runstore.Run, loaded at the first check
    next_step: int = 0
    streak: dict = field(default_factory=dict)  # rule -> consecutive checks it was found on
    seconds: float = 0.0  # spent judging this trial


@dataclass
class PruneStats:
    """How much judging cost (for the benchmark and the worker's log)."""

    checks: int = 0
    seconds: float = 0.0
    pruned: int = 0
    spared: int = 0  # trials the diagnosis would have pruned but whose objective was not behind
    skipped: int = 0  # due checks left out to keep judging within max_overhead of the trial's time


def finding_reason(finding, step: int, *, trigger: str | None = None) -> dict:
    """The JSON a pruned trial stores about the finding that pruned it."""
    return {"by": "diagnosis", "step": int(step), "rule": finding.rule, "severity": finding.severity,
            "title": finding.title, "message": finding.message, "advice": finding.advice,
            "fix": dict(finding.fix), "chart": finding.chart, "trigger": trigger or finding.rule}


def hopeless(findings, rules=HOPELESS_RULES) -> list:
    """The findings (ranked, root cause first) that make a trial hopeless: critical ones of `rules`."""
    return [f for f in findings if f.severity == CRITICAL and f.rule in rules]


class DiagnosisPruner(BasePruner):
    """Prunes a trial the diagnostics find hopeless; optionally also when `wrapped_pruner` (any
    Optuna pruner, e.g. MedianPruner) says so, which makes "diagnosis OR median".

    rules: rule ids whose critical findings prune (HOPELESS_RULES). confirm: checks in a row the
    same rule must be found on. interval_steps: steps between checks (None: a tenth of the trial's
    planned steps, from its `total_steps` attribute; every report when unknown). n_warmup_steps:
    no check before this step. spare_above_median: do not prune a trial whose value at the step is
    better than the median of the other trials' values there. max_overhead: the largest share of a
    trial's projected time that judging it may take (None: no limit). thresholds:
    diagnostics.Thresholds to judge with.

    The reason is stored in the trial's user attribute `pruned` ({"by": "diagnosis", "rule",
    "title", "message", "step", ...}, or {"by": "median", ...} when the wrapped pruner fired).
    """

    def __init__(self, wrapped_pruner: BasePruner | None = None, *, rules=HOPELESS_RULES, confirm: int = 2,
                 interval_steps: int | None = None, n_warmup_steps: int = 0, checks: int = DEFAULT_CHECKS,
                 spare_above_median: bool = True, max_overhead: float | None = MAX_OVERHEAD,
                 thresholds: diagnostics.Thresholds | None = None):
        if wrapped_pruner is not None and not isinstance(wrapped_pruner, BasePruner):
            raise TypeError(f"wrapped_pruner must be an Optuna pruner, got {type(wrapped_pruner).__name__}")
        unknown = [r for r in rules if r not in diagnostics.RULE_IDS]
        if unknown:
            raise ValueError(f"unknown rule id(s) {unknown}; known: {', '.join(diagnostics.RULE_IDS)}")
        for name, value, lo in (("confirm", confirm, 1), ("n_warmup_steps", n_warmup_steps, 0), ("checks", checks, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < lo:
                raise ValueError(f"{name} must be a whole number >= {lo}, got {value!r}")
        if interval_steps is not None and (isinstance(interval_steps, bool) or not isinstance(interval_steps, int)
                                           or interval_steps < 1):
            raise ValueError(f"interval_steps must be a whole number >= 1 or None, got {interval_steps!r}")
        self.wrapped_pruner = wrapped_pruner
        self.rules = tuple(rules)
        self.confirm = confirm
        self.interval_steps = interval_steps
        self.n_warmup_steps = n_warmup_steps
        self.checks = checks
        if max_overhead is not None and not (isinstance(max_overhead, (int, float)) and max_overhead > 0):
            raise ValueError(f"max_overhead must be a positive fraction or None, got {max_overhead!r}")
        self.spare_above_median = bool(spare_above_median)
        self.max_overhead = max_overhead
        self.thresholds = thresholds
        self.stats = PruneStats()
        self._watches: OrderedDict[int, _Watch] = OrderedDict()
        self._lock = threading.Lock()

    # -- Optuna's interface ------------------------------------------------------------------------
    def prune(self, study: optuna.study.Study, trial: optuna.trial.FrozenTrial) -> bool:
        step = trial.last_step
        if step is None:
            return False
        reason = self.diagnose(trial, step)
        if reason is not None and self.spare_above_median and _not_behind(study, trial, step):
            self.stats.spared += 1
            reason = None
        if reason is None and self.wrapped_pruner is not None and self.wrapped_pruner.prune(study, trial):
            value = trial.intermediate_values.get(step)
            name = type(self.wrapped_pruner).__name__
            by = "median" if name == "MedianPruner" else name
            reason = {"by": by, "step": int(step), "value": value,
                      "message": f"Optuna's {name}: the value {_num(value)} at step {step} was worse than "
                                 f"what earlier trials had reached at that step."}
        if reason is None:
            return False
        self.stats.pruned += 1
        _store_reason(study, trial, reason)
        return True

    # -- the diagnosis ----------------------------------------------------------------------------
    def diagnose(self, trial: optuna.trial.FrozenTrial, step: int) -> dict | None:
        """The reason to prune `trial` at `step` from its recording, or None. Judges only on the
        check schedule; between checks it returns None at once."""
        run_dir = trial.user_attrs.get(RUN_DIR)
        if not self.rules or not isinstance(run_dir, str) or step < self.n_warmup_steps:
            return None
        with self._lock:
            watch = self._watches.get(trial.number)
            if watch is None or watch.run_dir != run_dir:
                watch = self._watches[trial.number] = _Watch(run_dir)
                while len(self._watches) > _KEEP:
                    self._watches.popitem(last=False)
            total = trial.user_attrs.get(TOTAL_STEPS)
            if not self._due(watch, step, total if isinstance(total, int) else None):
                return None
            # A trial under suspicion (a hopeless finding on its last check) is checked again on
            # schedule, over budget or not, so a real problem is confirmed at once.
            if not any(watch.streak.values()) and self._over_budget(watch, trial):
                self.stats.skipped += 1
                watch.next_step = step  # check again at the next report
                return None
            run = self._load(watch, trial, step)
            return None if run is None else self.judge(watch, run, step)

    def _over_budget(self, watch: _Watch, trial) -> bool:
        """Whether judging this trial has already cost more than max_overhead of its projected
        time: its time so far scaled to its planned steps (just its time so far when the plan is
        unknown). Projecting lets the checks come early, where stopping a hopeless trial saves the
        most, while a trial that trains to its end still spends at most about max_overhead of its
        time being judged (the projection settles as the trial runs)."""
        if self.max_overhead is None or watch.seconds == 0:
            return False
        elapsed = self._elapsed(watch, trial)
        if elapsed is None:
            return False
        step, total = trial.last_step, trial.user_attrs.get(TOTAL_STEPS)
        if isinstance(total, int) and isinstance(step, int) and 0 < step < total:
            elapsed *= total / step
        return watch.seconds > self.max_overhead * elapsed

    def _elapsed(self, watch: _Watch, trial) -> float | None:
        """Seconds the trial has run so far (sweep.replay gives the recorded run's own time)."""
        if trial.datetime_start is None:
            return None
        return time.time() - trial.datetime_start.timestamp()

    def _due(self, watch: _Watch, step: int, total: int | None) -> bool:
        """Whether a check is due at `step`; if so, the next one is scheduled. A trial under
        suspicion (a hopeless finding on its last check) is checked again at its next report: the
        confirmation costs one evaluation interval, not a tenth of the trial."""
        if step < watch.next_step and not any(watch.streak.values()):
            return False
        if self.interval_steps is not None:
            interval = self.interval_steps
        else:
            interval = max(1, total // self.checks) if total and total > 0 else 1
        watch.next_step = step + interval
        return True

    def _load(self, watch: _Watch, trial, step: int):
        """The trial's run, read up to `step` when the objective said that step was flushed."""
        try:
            if watch.run is None:
                watch.run = load_run(watch.run_dir)
            else:
                watch.run.refresh()
            if trial.user_attrs.get(STEP_UNIT) == "optimizer":
                target = _expected_step(watch.run_dir)
                if target is not None:
                    target = min(target, step)
                    deadline = time.monotonic() + WAIT_S
                    while watch.run.last_step < target and time.monotonic() < deadline:
                        time.sleep(0.005)
                        watch.run.refresh()
        except (RunReadError, OSError):
            return None  # nothing readable yet (the run is starting): judge at the next check
        return watch.run

    def judge(self, watch: _Watch, run, step: int) -> dict | None:
        """Judge `run` as it is at `step` and update the trial's streaks; the reason to prune or None."""
        t0 = time.perf_counter()
        try:
            findings = diagnostics.advise(run, self.thresholds)
        finally:
            took = time.perf_counter() - t0
            self.stats.checks += 1
            self.stats.seconds += took
            watch.seconds += took
        return self._decide(watch, findings, step)

    def _decide(self, watch: _Watch, findings, step: int) -> dict | None:
        found = hopeless(findings, self.rules)
        rules_now = {f.rule for f in found}
        watch.streak = {r: watch.streak.get(r, 0) + 1 for r in rules_now}
        confirmed = [f for f in found if watch.streak[f.rule] >= self.confirm]
        if not confirmed:
            return None
        # The reason is the most likely root cause among the critical findings (advise ranks them),
        # which may be a rule outside `rules` (bad_init_loss behind saturation, say).
        root = next(f for f in findings if f.severity == CRITICAL)
        return finding_reason(root, step, trigger=confirmed[0].rule)


def _not_behind(study, trial, step: int) -> bool:
    """Whether the trial's value at `step` is better than the median of the values other trials
    reported at that step (False when no other trial got there). A tie is not "doing fine": in a
    coarse search most trials may sit at chance level, and so does their median."""
    value = trial.intermediate_values.get(step)
    if value is None or not math.isfinite(value):
        return False
    others = [t.intermediate_values[step] for t in study.get_trials(deepcopy=False)
              if t.number != trial.number and step in t.intermediate_values
              and math.isfinite(t.intermediate_values[step])]
    if not others:
        return False
    median = statistics.median(others)
    return value > median if study.direction == optuna.study.StudyDirection.MAXIMIZE else value < median


def _num(value) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.4g}"


def _store_reason(study, trial, reason: dict) -> None:
    # Pruners write to the trial through the storage, as Optuna's own SuccessiveHalvingPruner does
    # (study._storage, trial._trial_id): prune() gets a frozen copy of the trial, not the live one.
    study._storage.set_trial_user_attr(trial._trial_id, PRUNED, reason)


def make_pruner(name: str, *, median_startup: int = 5, median_warmup_steps: int = 0) -> BasePruner:
    """The pruner a sweep's `pruner` setting names: "diagnosis", "both" (diagnosis OR median),
    "median" (Optuna's MedianPruner, its defaults: 5 startup trials, no warm-up) or "none"."""
    def median():
        return optuna.pruners.MedianPruner(n_startup_trials=median_startup, n_warmup_steps=median_warmup_steps)

    if name == "diagnosis":
        return DiagnosisPruner()
    if name == "both":
        return DiagnosisPruner(median())
    if name == "median":
        return _Explained(median())
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"unknown pruner {name!r}; choose diagnosis, both, median or none")


class _Explained(BasePruner):
    """An Optuna pruner that also stores why it pruned (the table shows a reason for every pruned
    trial, whichever pruner the sweep uses)."""

    def __init__(self, pruner: BasePruner):
        self.pruner = pruner
        self._diagnosis = DiagnosisPruner(pruner, rules=())  # only its wrapped branch ever fires

    def prune(self, study, trial) -> bool:
        return self._diagnosis.prune(study, trial)

"""A finished run seen as it was while it trained, for checking the diagnosis pruner without
training again: `live_view(run, step)` holds exactly what a live reader had at `step` (every
scalar, histogram, calibration table and event up to it, status "running"); `first_prune` runs a
DiagnosisPruner's check schedule over a run's evaluations; `ReplayPruner` is a DiagnosisPruner
that, inside an ordinary Optuna study, judges finished recordings as they were at each reported
step, with the run's own recorded time as its clock. Because a trial's run is recorded the same
way whether or not a pruner watches it (the pruner only decides where it stops), this is what the
pruner would have decided live (tests check the bundled healthy samples this way;
benchmarks/sweep.py replays every pruner setting over the same fully trained trials)."""

from __future__ import annotations

import numpy as np

from runstore import HistSeries, Run, schema, tags

from .pruner import DiagnosisPruner, _Watch

# A host no process runs on: the view's "running" status must not be checked against this
# machine's process table (runstore.effective_status would call it killed).
REPLAY_HOST = "(replay)"


class Recording:
    """A finished run read once, cut at any step cheaply (the arrays are kept, views slice them)."""

    def __init__(self, run: Run):
        self.run = run
        self.meta = {k: v for k, v in run.meta.items() if k not in ("pid", "ended", "error", "last_step")}
        self.meta.update(status=schema.RUNNING, host=REPLAY_HOST)
        self.scalars = {}
        for tag in run.scalar_tags():
            s = run.series(tag)
            self.scalars[tag] = (s.index.to_numpy(), s.to_numpy())
        self.hists = {tag: run.histograms(tag) for tag in run.hist_tags()}
        self.tables = []
        for split in ("val", "train", "test"):
            tag = tags.calibration(split)
            self.tables += [(tag, st, data) for st, data in run.tables(tag)]
        self.events = [tuple(e) for e in run.events.itertuples(index=False)]

    def view(self, step: int) -> Run:
        """The run as a reader saw it while it was at `step`."""
        scalars = {}
        for tag, (steps, values) in self.scalars.items():
            n = int(np.searchsorted(steps, step, side="right")) if len(steps) and np.all(steps[:-1] <= steps[1:]) \
                else None
            if n is None:
                keep = steps <= step
                scalars[tag] = (steps[keep], values[keep])
            else:
                scalars[tag] = (steps[:n], values[:n])
        hists = {}
        for tag, h in self.hists.items():
            keep = np.asarray(h.steps) <= step
            hists[tag] = HistSeries(np.asarray(h.steps)[keep], np.asarray(h.lo)[keep], np.asarray(h.hi)[keep],
                                    np.asarray(h.counts)[keep])
        tables = [t for t in self.tables if t[1] <= step]
        events = [e for e in self.events if e[0] is None or e[0] != e[0] or e[0] <= step]
        return Run.from_arrays(self.run.path, self.meta, scalars=scalars, hists=hists, tables=tables, events=events)


def live_view(run: Run, step: int) -> Run:
    """`run` as a reader saw it while the run was at `step`."""
    return Recording(run).view(step)


def report_steps(run: Run, split: str = "val") -> list[int]:
    """The steps a sweep trial reported at: the evaluations after step 0 and before the last step."""
    tag = tags.split_metric(split, "loss")
    if tag not in run.scalar_tags():
        return []
    total = run.meta.get("total_steps")
    steps = [int(s) for s in run.series(tag).index if s > 0]
    return [s for s in steps if not isinstance(total, int) or s < total]


def first_prune(run: Run, pruner: DiagnosisPruner | None = None) -> tuple[int, dict] | None:
    """(step, reason) of the first check at which `pruner` (default settings if None) would have
    pruned the run, or None: the pruner's own schedule (interval from run.json's total_steps) and
    confirmation rule, applied to live views of the run at each evaluation."""
    pruner = pruner or DiagnosisPruner()
    watch = _Watch(str(run.path))
    total = run.meta.get("total_steps")
    recording = Recording(run)
    for step in report_steps(run):
        if step < pruner.n_warmup_steps or not pruner._due(watch, step, total if isinstance(total, int) else None):
            continue
        reason = pruner.judge(watch, recording.view(step), step)
        if reason is not None:
            return step, reason
    return None


class ReplayPruner(DiagnosisPruner):
    """A DiagnosisPruner for trials whose runs were already trained to the end: it judges the
    recording of the trial's `run_dir` as it was at the reported step instead of reading the
    folder, and measures its overhead against the run's recorded time at that step (plus its own
    judging), as it would have live.

    recordings: run_dir -> Recording. clock(run_dir, step): seconds the trial had trained when it
    reached `step` (data loading and recording included)."""

    def __init__(self, wrapped_pruner=None, *, recordings: dict, clock, **kwargs):
        super().__init__(wrapped_pruner, **kwargs)
        self.recordings = recordings
        self.clock = clock

    def _load(self, watch: _Watch, trial, step: int):
        recording = self.recordings.get(watch.run_dir)
        return None if recording is None else recording.view(step)

    def _elapsed(self, watch: _Watch, trial) -> float | None:
        step = trial.last_step
        return None if step is None else self.clock(watch.run_dir, step) + watch.seconds

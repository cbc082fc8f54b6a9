"""A finished run seen as it was while it trained, for checking the diagnosis pruner without
training: `live_view(run, step)` holds exactly what a live reader had at `step` (every scalar,
calibration table and event up to it, status "running"), and `first_prune` runs a
DiagnosisPruner's check schedule over a run's evaluations. Because a trial's run is recorded the
same way whether or not a pruner watches it, this is what the pruner would have decided live
(tests check the bundled healthy samples this way; benchmarks/sweep.py counts false prunes)."""

from __future__ import annotations

from runstore import Run, schema, tags

from .pruner import DiagnosisPruner, _Watch

# A host no process runs on: the view's "running" status must not be checked against this
# machine's process table (runstore.effective_status would call it killed).
REPLAY_HOST = "(replay)"


def live_view(run: Run, step: int) -> Run:
    """`run` as a reader saw it while the run was at `step`."""
    meta = {k: v for k, v in run.meta.items() if k not in ("pid", "ended", "error", "last_step")}
    meta.update(status=schema.RUNNING, host=REPLAY_HOST)
    scalars = {}
    for tag in run.scalar_tags():
        s = run.series(tag)
        keep = s.index <= step
        scalars[tag] = (s.index[keep].to_numpy(), s.to_numpy()[keep])
    tables = []
    for split in ("val", "train", "test"):
        tag = tags.calibration(split)
        tables += [(tag, st, data) for st, data in run.tables(tag) if st <= step]
    events = [tuple(e) for e in run.events.itertuples(index=False) if e.step is None or e.step != e.step
              or e.step <= step]
    return Run.from_arrays(run.path, meta, scalars=scalars, tables=tables, events=events)


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
    for step in report_steps(run):
        if step < pruner.n_warmup_steps or not pruner._due(watch, step, total if isinstance(total, int) else None):
            continue
        reason = pruner.judge(watch, live_view(run, step), step)
        if reason is not None:
            return step, reason
    return None

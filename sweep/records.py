"""How a trial and its recorded run point at each other.

The study side: a trial's user attributes (the keys below, spelled only here). The run side: the
run directory is an ordinary run (probes on) under <runs>/<study>/trial-NNNN, whose run.json
carries `sweep: {study, trial, storage}` through the playground's meta mechanism, so every
dashboard page works on it and a run knows which study it belongs to.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from runstore import read_meta_or_none, schema, write_json_atomic
from runstore.files import MAX_META_BYTES, read_json_or_none

from .space import value_text

# Trial user attributes.
RUN_DIR = "run_dir"          # absolute path of the trial's run directory
HOST = "host"                # machine that trained it (run directories are local to it)
TOTAL_STEPS = "total_steps"  # optimizer steps planned (the diagnosis pruner spaces its checks by it)
STEP_UNIT = "step_unit"      # "optimizer": reported steps are optimizer steps (the pruner waits for them)
PRUNED = "pruned"            # why it was pruned: {by, step, rule, severity, title, message, advice, fix, chart}
RUN_STATUS = "run_status"    # the run's final status (runstore.schema)
ERROR = "error"              # why it failed, in words
WORKER = "worker"            # "<host>:<pid>" of the worker process
# The run.json field linking a run to its study.
META_KEY = "sweep"
TRIAL_PREFIX = "trial-"


def study_dir(runs_dir: str | os.PathLike, study_name: str) -> Path:
    """The folder holding a study's trial runs (and its workers' log)."""
    return Path(runs_dir).expanduser().resolve() / study_name


def trial_dir(runs_dir: str | os.PathLike, study_name: str, number: int) -> Path:
    """A fresh run directory for trial `number`: trial-0007, or trial-0007-2 when a run of an
    earlier study of the same name is already there."""
    base = study_dir(runs_dir, study_name) / f"{TRIAL_PREFIX}{number:04d}"
    candidate, i = base, 2
    while candidate.exists():
        candidate, i = base.with_name(f"{base.name}-{i}"), i + 1
    return candidate


def run_meta(study_name: str, number: int, storage: str, params: dict) -> dict:
    """The run.json fields of a trial's run: its name, a description of what it tries, and the link
    to its study (`sweep`)."""
    shown = ", ".join(f"{k} {value_text(v, '.3g')}" for k, v in params.items())
    return {"name": f"{study_name} #{number}", "description": f"Sweep {study_name}, trial {number}: {shown}.",
            META_KEY: {"study": study_name, "trial": number, "storage": storage, "host": socket.gethostname()}}


def sweep_link(meta: dict | None) -> dict | None:
    """The `sweep` field of a run.json ({study, trial, ...}), or None for a run outside any sweep."""
    link = (meta or {}).get(META_KEY)
    return link if isinstance(link, dict) and isinstance(link.get("study"), str) else None


def note_pruned(run_dir: str | os.PathLike, reason: dict, total_steps: int | None = None) -> None:
    """Say in an ended trial run's run.json that the sweep pruned it and why: `error` reads
    "pruned by the sweep at step N of M: <finding>" instead of the loop's "stopped on request",
    and `sweep.pruned` holds the reason. Only a run the loop ended as "stopped" is touched."""
    path = Path(run_dir) / schema.META_FILE
    raw = read_json_or_none(path, max_bytes=MAX_META_BYTES)
    meta = read_meta_or_none(run_dir)
    if raw is None or meta is None or meta.get("status") != schema.STOPPED:
        return
    link = raw.get(META_KEY) if isinstance(raw.get(META_KEY), dict) else {}
    raw[META_KEY] = {**link, "pruned": reason}
    raw["error"] = pruned_words(reason, total_steps)
    write_json_atomic(path, raw)


def pruned_words(reason: dict | None, total_steps: int | None = None) -> str:
    """One line: why a trial was pruned ("pruned by the diagnosis at step 120 of 460: Dead ReLUs
    (dead_relu, critical)")."""
    if not isinstance(reason, dict):
        return "pruned"
    step = reason.get("step")
    where = f" at step {step}" + (f" of {total_steps}" if total_steps else "") if step is not None else ""
    by = reason.get("by") or "the pruner"
    if by == "diagnosis":
        what = reason.get("title") or reason.get("rule") or "a critical finding"
        return f"pruned by the diagnosis{where}: {what} ({reason.get('rule')}, {reason.get('severity')})"
    return f"pruned by {by}{where}" + (f": {reason['message']}" if reason.get("message") else "")

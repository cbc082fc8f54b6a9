"""One-line summaries of runs for the Runs table and the run menus, and the hyperparameters that
differ between runs.

A folder may hold a thousand runs, so a summary comes in two parts, each cached until its files
change (SummaryStore, one per process):

- RunInfo, from run.json alone (name, status, workload, hyperparameters): read for every run
  listed, again only when run.json changes.
- RunData, from run.db (steps, final losses, findings counts): the run is loaded, summarised and
  let go, once per change of its files. With more than SYNC_RUNS runs to read, a background thread
  reads them, newest first, while the table shows what is known, so a click never waits for all.

Whatever one run holds, its summary is built or it is listed as unreadable with the reason: one
bad folder never takes the table, the menus or another run down.
"""

from __future__ import annotations

import copy
import heapq
import itertools
import threading
import traceback
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from runstore import effective_status, meta_signature, read_meta, schema, tags
from runstore.meta import clean_number

from . import format as fmt
from .discovery import TENSORBOARD, RunRef
from .loading import HandlePool, RunHandle, disk_signature, short_error
from .status import UNREADABLE

# Shown first when present: the knobs the tuning notes say matter most.
KEY_HPARAMS = ("model", "depth", "width", "activation", "batch_norm", "dropout", "init", "optimizer", "lr",
               "momentum", "weight_decay", "schedule", "batch_size", "grad_clip")


# Run settings the Runs table shows in columns of their own, left out of its hyperparameters text.
OWN_COLUMNS = ("workload", "lr")

# Up to this many runs whose numbers are not summarised yet (or changed) are read while the Runs
# table is drawn; more are read by a background thread, and the table refreshes until all are in.
SYNC_RUNS = 50
# Summaries kept per process (a few hundred bytes each): more than any folder of runs one app lists.
MAX_SUMMARIES = 20_000
# Whole run.json files kept (for the pages that need more than a summary: layer names, the Train
# page's hyperparameters); a big model's run.json lists thousands of modules.
MAX_FULL_METAS = 64
# Run-derived text is cut to this many characters in a table cell or a menu label.
MAX_TEXT = 300


def key_hparams(hparams: dict, *, first=(), limit: int = 8, skip=()) -> str:
    """The most telling hyperparameters as "k=v" pairs: those in `first` (e.g. the ones that differ
    between the runs listed), KEY_HPARAMS before others, then the remaining KEY_HPARAMS, then the
    rest; `skip` leaves some out (those the table shows in columns of their own). Values that are
    text already (RunInfo.hparam_text) are taken as they are."""
    first = [k for k in KEY_HPARAMS if k in first] + [k for k in first if k not in KEY_HPARAMS]
    keys = [k for k in dict.fromkeys(first + list(KEY_HPARAMS) + list(hparams)) if k in hparams and k not in skip]
    return ", ".join(f"{k}={hparams[k] if isinstance(hparams[k], str) else fmt.value(hparams[k])}"
                     for k in keys[:limit])


def varying_keys(hparams_list) -> list[str]:
    """Hyperparameters whose value is not the same in every one of the given dicts."""
    hparams_list = list(hparams_list)
    keys = list(dict.fromkeys(k for hp in hparams_list for k in hp))
    return [k for k in keys if len({fmt.value(hp[k]) if k in hp else None for hp in hparams_list}) > 1]


def hparams_of(meta: dict) -> dict:
    """run.json's hparams plus the optimizer class and first lr from its optimizer record when the
    hparams lack them (runs recorded by code that logs no hyperparameters)."""
    hp = meta.get("hparams")
    hp = dict(hp) if isinstance(hp, dict) else {}
    opt = meta.get("optimizer") if isinstance(meta.get("optimizer"), dict) else {}
    if "optimizer" not in hp and opt.get("class"):
        hp["optimizer"] = opt["class"]
    groups = opt.get("param_groups")
    if "lr" not in hp and isinstance(groups, list) and groups and isinstance(groups[0], dict) and "lr" in groups[0]:
        hp["lr"] = groups[0]["lr"]
    return hp


def effective_hparams(run) -> dict:
    """hparams_of a loaded run's run.json."""
    return hparams_of(run.meta if isinstance(run.meta, dict) else {})


def differing_hparams(hparams_by_run: dict[str, dict], *, only_differing: bool = True) -> pd.DataFrame:
    """Rows = hyperparameters, columns = runs, cells as strings (format.MISSING where a run lacks one).
    With only_differing, rows where every run has the same value are dropped."""
    keys: dict[str, None] = {}
    for k in KEY_HPARAMS:
        if any(k in hp for hp in hparams_by_run.values()):
            keys[k] = None
    for hp in hparams_by_run.values():
        for k in hp:
            keys.setdefault(k, None)
    data = {run: [fmt.value(hp[k]) if k in hp else fmt.MISSING for k in keys] for run, hp in hparams_by_run.items()}
    df = pd.DataFrame(data, index=pd.Index(list(keys), name="hyperparameter"))
    if only_differing and len(df.columns) > 1:
        df = df[df.nunique(axis=1) > 1]
    return df


def final_value(s: pd.Series, *, window: int = 20) -> float:
    """Mean of the last `window` recorded values (the last raw step is noisy); NaN if the series
    ends non-finite (a diverged loss must not look fine) or was never recorded."""
    if s.empty:
        return float("nan")
    tail = s.to_numpy(dtype=float)[-window:]
    if not np.isfinite(tail[-1]):
        return float("nan")
    return float(np.nanmean(np.where(np.isfinite(tail), tail, np.nan)))


def _text(v) -> str | None:
    """A run.json text field for a cell or a label: None unless it is non-empty text, cut to MAX_TEXT."""
    if not isinstance(v, str) or not v.strip():
        return None
    v = " ".join(v.split())
    return v if len(v) <= MAX_TEXT else v[:MAX_TEXT - 1] + "…"


def _cell(v: str) -> str:
    return v if len(v) <= MAX_TEXT else v[:MAX_TEXT - 1] + "…"


def _when(t) -> datetime | None:
    t = clean_number(t)
    if t is None:
        return None
    try:
        return datetime.fromtimestamp(t)
    except (ValueError, OverflowError, OSError):
        return None


# -- what run.json says ----------------------------------------------------------------------------
@dataclass(frozen=True)
class RunInfo:
    """A run as run.json describes it (cheap: no run.db). `problem` says why run.json could not be
    read; the run is then listed by its folder name."""

    label: str                     # the folder, relative to the scanned folder
    name: str                      # run.json's name, else the label
    status: str                    # stored status (schema word), "unknown" for TensorBoard logs, UNREADABLE
    workload: str | None = None
    hparams: dict = field(default_factory=dict)   # hparams_of(meta)
    hparam_text: dict = field(default_factory=dict, repr=False)  # the same, each value as format.value writes it
    created: datetime | None = None
    problem: str | None = None
    meta: dict = field(default_factory=dict, repr=False)  # run.json's fields the live status needs

    def live_status(self, last_flush: float | None = None) -> str:
        """The status to show: a "running" run whose writer is gone is "killed"."""
        if self.problem is not None or self.status not in schema.STATUSES:
            return self.status
        try:
            return effective_status(self.meta, last_flush)
        except Exception:  # noqa: BLE001 - a status that cannot be worked out is shown as stored
            return self.status


def run_info(ref: RunRef, meta: dict | str) -> RunInfo:
    """RunInfo from read_meta's result (a dict) or the reason it failed (a string)."""
    if ref.kind == TENSORBOARD:
        return RunInfo(label=ref.label, name=ref.label, status="unknown", workload="TensorBoard log")
    if not isinstance(meta, dict):
        return RunInfo(label=ref.label, name=ref.label, status=UNREADABLE, problem=str(meta))
    status = meta.get("status", schema.RUNNING)
    hp = hparams_of(meta)
    return RunInfo(label=ref.label, name=_text(meta.get("name")) or ref.label,
                   status=status if isinstance(status, str) else UNREADABLE, workload=_text(meta.get("workload")),
                   hparams=hp, hparam_text={str(k): _cell(fmt.value(v)) for k, v in hp.items()},
                   created=_when(meta.get("created")),
                   meta={k: meta[k] for k in ("status", "pid", "host", "created") if k in meta})


def read_meta_safely(path: str) -> dict | str:
    """run.json (runstore.read_meta: types checked), or one line saying why it cannot be read."""
    try:
        meta = read_meta(path)
    except Exception as e:  # noqa: BLE001 - RunReadError, and anything runstore did not expect
        return short_error(e)
    return meta if isinstance(meta, dict) else f"{schema.META_FILE} is not a JSON object."


# -- what run.db says ------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunData:
    """A run's numbers in one line: read once per change of its files. `problem` says why the run
    could not be loaded (its numbers are then unknown)."""

    status: str | None = None      # the loaded run's effective status
    steps: int | None = None
    train_loss: float = float("nan")
    val_loss: float = float("nan")
    val_accuracy: float = float("nan")
    critical: int = 0
    warnings: int = 0
    last_flush: float | None = None
    problem: str | None = None
    trace: str | None = field(default=None, repr=False)


def run_data(run, findings) -> RunData:
    """RunData of a loaded runstore.Run and its findings."""
    sev = [getattr(f, "severity", "info") for f in findings]
    last = run.last_step if isinstance(run.last_step, int) and not isinstance(run.last_step, bool) else None
    return RunData(status=run.status, steps=last if last is not None and last >= 0 else None,
                   train_loss=final_value(run.series(tags.TRAIN_LOSS)),
                   val_loss=final_value(run.series(tags.split_metric("val", "loss")), window=1),
                   val_accuracy=final_value(run.series(tags.split_metric("val", "accuracy")), window=1),
                   critical=sev.count("critical"), warnings=sev.count("warning"), last_flush=clean_number(run.last_flush))


def handle_data(h: RunHandle) -> RunData:
    """RunData of a synced handle (its findings are computed once per new data)."""
    if h.error is not None:
        return RunData(problem=h.error, trace=h.trace)
    findings, _ = h.findings()
    return run_data(h.run, findings)


# -- rows ------------------------------------------------------------------------------------------
COLUMNS = ("run", "status", "workload", "critical", "warnings", "steps", "train loss", "val loss", "val accuracy",
           "lr", "hyperparameters", "created", "folder", "path")


def row(ref: RunRef, info: RunInfo, data: RunData | None, *, first_keys=()) -> dict:
    """The Runs-table row of a run: run.json's part always, run.db's part once read (None/NaN
    until then). A run that cannot be read says why in the hyperparameters column."""
    # run.json's problem first: when the run cannot be loaded either, it is usually why
    problem = info.problem or (data.problem if data is not None else None)
    if data is not None and data.problem is None:  # the loaded run knows best without a run.json
        status = data.status if info.problem or ref.kind == TENSORBOARD else info.live_status(data.last_flush)
    else:
        status = UNREADABLE if problem else info.live_status()
    lr = info.hparams.get("lr")
    return {
        "run": info.name,
        "status": status,
        "workload": info.workload or ("TensorBoard log" if ref.kind == TENSORBOARD else "custom"),
        "critical": data.critical if data is not None and data.problem is None else None,
        "warnings": data.warnings if data is not None and data.problem is None else None,
        "steps": data.steps if data is not None else None,
        "train loss": data.train_loss if data is not None else float("nan"),
        "val loss": data.val_loss if data is not None else float("nan"),
        "val accuracy": data.val_accuracy if data is not None else float("nan"),
        "lr": clean_number(lr),
        "hyperparameters": problem if problem else key_hparams(info.hparam_text or info.hparams, first=first_keys,
                                                               skip=OWN_COLUMNS),
        "created": info.created,
        "folder": ref.folder,
        "path": ref.path,
    }


def run_row(ref, run, findings, *, first_keys=()) -> dict:
    """The Runs-table row of a loaded run."""
    return row(ref, run_info(ref, run.meta), run_data(run, findings), first_keys=first_keys)


# -- the store -------------------------------------------------------------------------------------
class SummaryStore:
    """RunInfo and RunData of every run listed, each re-read only when its files change; shared by
    all sessions of a process (thread-safe), at most MAX_SUMMARIES of each, least recently used
    dropped first. Open runs (in `pool`) and live ones (added to it: they are read bit by bit as
    they grow) are summarised from memory; others are loaded, summarised and let go."""

    def __init__(self, pool: HandlePool, max_entries: int = MAX_SUMMARIES):
        self.pool = pool
        self.max_entries = max_entries
        self._infos: OrderedDict[str, tuple] = OrderedDict()   # path -> (run.json signature, RunInfo)
        self._full: OrderedDict[str, tuple] = OrderedDict()    # path -> (run.json signature, run.json or reason)
        self._data: OrderedDict[str, tuple] = OrderedDict()    # path -> (files' signature, RunData)
        self._lock = threading.Lock()
        self.loads: Counter = Counter()  # path -> times its run.db was read for a summary
        # The background reader's queue: (rank, arrival, ref) and the paths in it.
        self._queue: list = []
        self._queued: set[str] = set()
        self._order = itertools.count()
        self._reader: threading.Thread | None = None

    @staticmethod
    def _bounded(cache: OrderedDict, key, value, limit: int) -> None:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > limit:
            cache.popitem(last=False)

    def _read_meta(self, ref: RunRef, sig) -> dict | str:
        meta = read_meta_safely(ref.path) if ref.kind != TENSORBOARD else {}
        with self._lock:
            self._bounded(self._full, ref.path, (sig, meta), MAX_FULL_METAS)
        return meta

    def info(self, ref: RunRef) -> RunInfo:
        """What run.json says about a run, re-read only when run.json changes."""
        sig = meta_signature(ref.path) if ref.kind != TENSORBOARD else None
        with self._lock:
            hit = self._infos.get(ref.path)
            if hit is not None and hit[0] == sig:
                self._infos.move_to_end(ref.path)
                return hit[1]
        meta = self._read_meta(ref, sig)
        try:
            info = run_info(ref, meta)
        except Exception as e:  # noqa: BLE001 - one odd run.json must not take the listing down
            info = RunInfo(label=ref.label, name=ref.label, status=UNREADABLE, problem=short_error(e))
        with self._lock:
            self._bounded(self._infos, ref.path, (sig, info), self.max_entries)
        return info

    def meta(self, ref: RunRef) -> dict | str:
        """run.json of a run (a copy: change it freely), or the reason it cannot be read."""
        sig = meta_signature(ref.path) if ref.kind != TENSORBOARD else None
        with self._lock:
            hit = self._full.get(ref.path)
        meta = hit[1] if hit is not None and hit[0] == sig else self._read_meta(ref, sig)
        return copy.deepcopy(meta) if isinstance(meta, dict) else meta

    def data(self, ref: RunRef) -> RunData | None:
        """The run's last RunData (None if never read); possibly out of date, see `refresh`."""
        with self._lock:
            hit = self._data.get(ref.path)
        return hit[1] if hit is not None else None

    def _stale(self, ref: RunRef) -> tuple[bool, object]:
        sig = disk_signature(ref)
        with self._lock:
            hit = self._data.get(ref.path)
        return hit is None or hit[0] != sig, sig

    def _read(self, ref: RunRef, sig) -> None:
        h = self.pool.peek(ref.path)
        try:
            if (h is None or h.ref != ref) and self.info(ref).live_status() == schema.RUNNING:
                h = self.pool.get(ref)  # a live run changes at every flush: read it as the open runs are, bit by bit
            if h is not None and h.ref == ref:
                data = handle_data(h.sync(min_interval=0))  # its files changed: no throttle
            else:
                with self._lock:
                    self.loads[ref.path] += 1
                data = handle_data(RunHandle(ref).sync(min_interval=0))
        except Exception as e:  # noqa: BLE001 - e.g. the rules fail on it: listed with the reason
            data = RunData(problem=short_error(e), trace=traceback.format_exc())
        with self._lock:
            self._bounded(self._data, ref.path, (sig, data), self.max_entries)

    def refresh(self, refs) -> int:
        """Bring the numbers of `refs` up to date: runs never read or changed since are read now when
        there are at most SYNC_RUNS of them, else queued for the background reader (never-read runs
        first, newest first), so the page does not wait. Returns how many runs are still to be read."""
        todo = []
        for ref in refs:
            stale, sig = self._stale(ref)
            if stale:
                created = self.info(ref).created
                todo.append(((self.data(ref) is not None, -created.timestamp() if created else 0.0), ref, sig))
        if len(todo) <= SYNC_RUNS:
            for _, ref, sig in todo:
                with self._lock:
                    queued = ref.path in self._queued
                if not queued:  # else the background reader is at it
                    self._read(ref, sig)
            return self.pending()
        with self._lock:
            for rank, ref, _ in todo:
                if ref.path not in self._queued:
                    self._queued.add(ref.path)
                    heapq.heappush(self._queue, (rank, next(self._order), ref))
            if self._reader is None or not self._reader.is_alive():
                self._reader = threading.Thread(target=self._read_queued, name="run-summaries", daemon=True)
                self._reader.start()
        return self.pending()

    def pending(self) -> int:
        """How many runs the background reader has still to read."""
        with self._lock:
            return len(self._queued)

    def _read_queued(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._reader = None
                    return
                _, _, ref = heapq.heappop(self._queue)
            try:
                stale, sig = self._stale(ref)
                if stale:  # not read meanwhile by a page that had it open
                    self._read(ref, sig)
            except Exception as e:  # noqa: BLE001 - listed with the reason; the other runs go on
                with self._lock:
                    self._bounded(self._data, ref.path, (None, RunData(problem=short_error(e),
                                                                       trace=traceback.format_exc())),
                                  self.max_entries)
            finally:
                with self._lock:
                    self._queued.discard(ref.path)

    def rows(self, refs) -> list[dict]:
        """A row per run, from what is known now (see refresh); a run whose summary cannot be built is
        an unreadable row with the reason."""
        infos = {}
        for ref in refs:
            infos[ref.path] = self.info(ref)
        first = varying_keys([i.hparam_text for i in infos.values() if i.problem is None])
        out = []
        for ref in refs:
            try:
                out.append(row(ref, infos[ref.path], self.data(ref), first_keys=first))
            except Exception as e:  # noqa: BLE001 - one odd run must not take the table down
                out.append(row(ref, RunInfo(label=ref.label, name=ref.label, status=UNREADABLE,
                                            problem=short_error(e)), None))
        return out

    def problems(self, refs) -> list[tuple[RunRef, str, str | None]]:
        """(run, why it cannot be read, traceback or None) for each listed run that cannot be read."""
        out = []
        for ref in refs:
            data, info = self.data(ref), self.info(ref)
            if data is None or data.problem:  # unknown yet, or cannot be loaded
                why = info.problem or (data.problem if data is not None else None)
                if why:
                    out.append((ref, why, data.trace if data is not None else None))
        return out

    def is_open(self, path: str) -> bool:
        return path in self.pool

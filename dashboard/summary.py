"""One-line summaries of runs for the Runs table, and the hyperparameters that differ between runs."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from runstore import tags

from .discovery import TENSORBOARD
from . import format as fmt
from .status import UNREADABLE

# Shown first when present: the knobs the tuning notes say matter most.
KEY_HPARAMS = ("model", "depth", "width", "activation", "batch_norm", "dropout", "init", "optimizer", "lr",
               "momentum", "weight_decay", "schedule", "batch_size", "grad_clip")


# Run settings the Runs table shows in columns of their own, left out of its hyperparameters text.
OWN_COLUMNS = ("workload", "lr")


def key_hparams(hparams: dict, *, first=(), limit: int = 8, skip=()) -> str:
    """The most telling hyperparameters as "k=v" pairs: those in `first` (e.g. the ones that differ
    between the runs listed), KEY_HPARAMS before others, then the remaining KEY_HPARAMS, then the
    rest; `skip` leaves some out (those the table shows in columns of their own)."""
    first = [k for k in KEY_HPARAMS if k in first] + [k for k in first if k not in KEY_HPARAMS]
    keys = [k for k in dict.fromkeys(first + list(KEY_HPARAMS) + list(hparams)) if k in hparams and k not in skip]
    return ", ".join(f"{k}={fmt.value(hparams[k])}" for k in keys[:limit])


def varying_keys(hparams_list) -> list[str]:
    """Hyperparameters whose value is not the same in every one of the given dicts."""
    keys = list(dict.fromkeys(k for hp in hparams_list for k in hp))
    return [k for k in keys if len({fmt.value(hp[k]) if k in hp else None for hp in hparams_list}) > 1]


def effective_hparams(run) -> dict:
    """run.hparams plus optimizer class and lr from run.json when the hparams lack them."""
    hp = dict(run.hparams)
    meta = run.meta
    opt = meta.get("optimizer") if isinstance(meta.get("optimizer"), dict) else {}
    if "optimizer" not in hp and opt.get("class"):
        hp["optimizer"] = opt["class"]
    groups = opt.get("param_groups") or []
    if "lr" not in hp and groups and isinstance(groups[0], dict) and "lr" in groups[0]:
        hp["lr"] = groups[0]["lr"]
    return hp


def final_value(s: pd.Series, *, window: int = 20) -> float:
    """Mean of the last `window` recorded values (the last raw step is noisy); NaN if the series
    ends non-finite (a diverged loss must not look fine) or was never recorded."""
    if s.empty:
        return float("nan")
    tail = s.to_numpy(dtype=float)[-window:]
    if not np.isfinite(tail[-1]):
        return float("nan")
    return float(np.nanmean(np.where(np.isfinite(tail), tail, np.nan)))


def run_row(ref, run, findings, *, first_keys=()) -> dict:
    """The Runs-table row of a loaded run."""
    hp = effective_hparams(run)
    meta = run.meta
    sev = [getattr(f, "severity", "info") for f in findings]
    created = meta.get("created")
    return {
        "run": run.name,
        "status": run.status,
        "workload": meta.get("workload") or ("TensorBoard log" if ref.kind == TENSORBOARD else "custom"),
        "critical": sev.count("critical"),
        "warnings": sev.count("warning"),
        "steps": int(run.last_step) if run.last_step is not None and run.last_step >= 0 else None,
        "train loss": final_value(run.series(tags.TRAIN_LOSS)),
        "val loss": final_value(run.series(tags.split_metric("val", "loss")), window=1),
        "val accuracy": final_value(run.series(tags.split_metric("val", "accuracy")), window=1),
        "lr": hp.get("lr") if isinstance(hp.get("lr"), (int, float)) else None,
        "hyperparameters": key_hparams(hp, first=first_keys, skip=OWN_COLUMNS),
        "created": datetime.fromtimestamp(created) if isinstance(created, (int, float)) else None,
        "folder": ref.folder,
        "path": ref.path,
    }


def error_row(ref, message: str) -> dict:
    """The Runs-table row of a run that could not be read."""
    return {"run": ref.label, "status": UNREADABLE, "workload": None, "critical": 0, "warnings": 0,
            "steps": None, "train loss": float("nan"), "val loss": float("nan"), "val accuracy": float("nan"),
            "lr": None, "hyperparameters": message, "created": None, "folder": ref.folder, "path": ref.path}


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

"""Options of probes.attach, with the reason for each default."""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch.nn as nn


@dataclass(frozen=True)
class ProbeOptions:
    """What the probes record and how often. Pass any field to probes.attach as a keyword."""

    # Layer statistics (activations, gradients, weights, update ratios, logit confidence) are
    # taken on steps 1, 1+every, 1+2*every, ...; the loss and learning rate on every step.
    # 50 keeps the default overhead within 5% even on a tiny CPU model whose step takes 1.6 ms
    # (benchmarks/overhead.py: a sampled step costs about twice a bare one there), while a
    # 1,000-step run still gets 20 samples per layer. W&B's watch() logs histograms every 1,000
    # steps by default; ask for every=1 to see every step.
    every: int = 50
    # 40 equal-width bins between the tensor's own min and max: enough to see a spike at zero
    # (dead ReLUs) or mass piling at +-1 (saturation) without bloating the run store.
    hist_bins: int = 40
    # Histograms of tensors larger than this describe a sample of at most this many elements, taken
    # as evenly spaced runs of 8 (histograms.sample_runs); statistics (mean, std, fractions, norms)
    # always use every element. 2,048 samples put ~50 per bin on average: a bin holding 10% of the
    # mass is estimated within +-0.7 percentage points (binomial standard error) when neighbouring
    # elements are unrelated, and within +-1.9 points in the worst case of each run of 8 being
    # alike (then only the 256 runs count), finer than a heatmap's colour scale shows. On a CPU,
    # histograms are the largest per-element cost of every-step recording; 4,096 samples cost
    # ~0.1 ms more per step on the reference MLP (benchmarks/overhead.py).
    hist_sample: int = 2048
    record_histograms: bool = True
    # Which modules get activation hooks: None = every module with its own parameters or that is
    # an activation function; else a list of module names or a predicate (name, module) -> bool.
    modules: Sequence[str] | Callable[[str, nn.Module], bool] | None = None
    exclude: Sequence[str] = ()
    # Flush buffered values to disk after this many steps or seconds, whichever comes first. A
    # flush is the only point where a GPU run waits for the device; 2 s keeps the dashboard live.
    flush_steps: int = 200
    flush_secs: float = 2.0
    # Mirror scalars and histograms into TensorBoard event files under <run_dir>/tb. Off by
    # default: it needs the tensorboard package and doubles the disk used.
    tensorboard: bool = False
    # Under torch.distributed, rank 0 records and other ranks get a no-op recorder, unless this is
    # set: then every rank records into <run_dir>/rank<r>.
    all_ranks: bool = False
    # Replace a run that already exists in run_dir instead of refusing.
    overwrite: bool = False
    # Extra run.json fields: name, description, workload, parent, ...
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        # Checked here, once, so that a bad value fails at attach time with its name, before any
        # folder is created, and never as a numpy error deep inside a training step.
        for name, lo, hi in (("every", 1, None), ("hist_bins", 2, 1000), ("hist_sample", 1000, None),
                             ("flush_steps", 1, None)):
            object.__setattr__(self, name, _whole(name, getattr(self, name), lo, hi))
        object.__setattr__(self, "flush_secs", _seconds("flush_secs", self.flush_secs))
        for name in ("record_histograms", "tensorboard", "all_ranks", "overwrite"):
            value = getattr(self, name)
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"{name} must be True or False, got {value!r}")
            object.__setattr__(self, name, bool(value))
        if not (self.modules is None or callable(self.modules)):
            object.__setattr__(self, "modules", _names("modules", self.modules))
        object.__setattr__(self, "exclude", _names("exclude", self.exclude))
        if not isinstance(self.meta, dict):
            raise TypeError(f"meta must be a dict of extra run metadata fields, got {type(self.meta).__name__}")
        _check_meta_text(self.meta)

    @classmethod
    def from_kwargs(cls, options: dict) -> "ProbeOptions":
        """The options passed to probes.attach as keywords; an unknown one is named in the error."""
        known = [f.name for f in fields(cls)]
        unknown = [k for k in options if k not in known]
        if unknown:
            hint = (" Run metadata such as name and description goes in meta={...}."
                    if set(unknown) & {"name", "description", "workload", "parent"} else "")
            raise TypeError(f"probes.attach got unknown option(s) {', '.join(map(repr, unknown))}; "
                            f"the options are {', '.join(known)}.{hint}")
        return cls(**options)

    def describe(self) -> dict:
        """JSON-friendly form for run.json."""
        d = asdict(self)
        d.pop("meta")
        if callable(self.modules):
            d["modules"] = getattr(self.modules, "__name__", "callable")
        return d


def _whole(name: str, value, lo: int, hi: int | None) -> int:
    """value as an int, if it is a whole number (not a bool) in [lo, hi]."""
    span = f"from {lo} to {hi}" if hi is not None else f"of at least {lo}"
    if not isinstance(value, numbers.Integral) or isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a whole number {span}, got {type(value).__name__} {value!r}")
    if value < lo or (hi is not None and value > hi):
        raise ValueError(f"{name} must be a whole number {span}, got {value!r}")
    return int(value)


def _seconds(name: str, value) -> float:
    """value as a float, if it is a finite positive number of seconds."""
    if not isinstance(value, numbers.Real) or isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__} {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number of seconds greater than 0, got {value!r}")
    return float(value)


def _names(name: str, value) -> tuple[str, ...]:
    """A list of module names as a tuple; a single string would be read letter by letter."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, set, frozenset)) \
            or not all(isinstance(v, str) for v in value):
        raise TypeError(f"{name} must be a list of module names (strings), such as ['fc1']; got {value!r}")
    return tuple(value)


def _control_chars(text: str, allowed: str = "") -> list[str]:
    return [c for c in text if (ord(c) < 32 or 127 <= ord(c) < 160) and c not in allowed]


def _check_meta_text(meta: dict) -> None:
    """The run's name and description are shown in the dashboard and on terminals, and other text
    fields (workload, parent: a path) reach file systems: no NUL or other control characters."""
    for key, allowed in (("name", ""), ("description", "\t\n\r")):
        value = meta.get(key)
        if value is not None and not isinstance(value, str):
            raise TypeError(f"meta[{key!r}] must be a string, got {type(value).__name__}")
        bad = _control_chars(value or "", allowed)
        if bad:
            raise ValueError(f"meta[{key!r}] must not contain control characters; {value!r} contains "
                             f"{', '.join(sorted(set(map(repr, bad))))}")
    for key, value in meta.items():
        if isinstance(value, str) and "\0" in value:
            raise ValueError(f"meta[{key!r}] must not contain a NUL character; got {value!r}")


def check_run_dir(run_dir) -> Path:
    """run_dir as a Path, refusing what would silently write somewhere unexpected: an empty or
    blank name would be the current directory."""
    if not isinstance(run_dir, (str, os.PathLike)):
        raise TypeError(f"run_dir must be a path (str or pathlib.Path), got {type(run_dir).__name__}")
    text = os.fspath(run_dir)
    if not isinstance(text, str):
        raise TypeError(f"run_dir must be a text path, got {text!r}")
    if not text.strip():
        raise ValueError(f"run_dir must name a folder for the run, got {text!r}; an empty name would "
                         f"write into the current directory")
    if "\0" in text:
        raise ValueError(f"run_dir must not contain a NUL character, got {text!r}")
    return Path(text)

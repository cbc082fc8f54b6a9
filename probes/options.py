"""Options of probes.attach, with the reason for each default."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

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
        if not isinstance(self.every, int) or self.every < 1:
            raise ValueError(f"every must be a positive whole number of steps, got {self.every!r}")
        if not isinstance(self.hist_bins, int) or not 2 <= self.hist_bins <= 1000:
            raise ValueError(f"hist_bins must be a whole number from 2 to 1000, got {self.hist_bins!r}")
        if self.hist_sample < 1000:
            raise ValueError(f"hist_sample must be at least 1000 elements, got {self.hist_sample!r}")
        if self.flush_steps < 1 or self.flush_secs <= 0:
            raise ValueError("flush_steps must be >= 1 and flush_secs > 0")
        if not isinstance(self.meta, dict):
            raise TypeError(f"meta must be a dict of extra run metadata fields, got {type(self.meta).__name__}")

    def describe(self) -> dict:
        """JSON-friendly form for run.json."""
        d = asdict(self)
        d.pop("meta")
        if callable(self.modules):
            d["modules"] = getattr(self.modules, "__name__", "callable")
        return d

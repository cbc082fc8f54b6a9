"""A read-only view of a loaded run with the derived quantities several rules share (smoothed
loss, initial loss, class count, layer order, per-layer statistic frames), computed once."""

from __future__ import annotations

import math
from functools import cached_property

import numpy as np
import pandas as pd

from runstore import tags as T
from runstore import schema
from runstore.layers import RunLayers

from . import task as K
from . import verdicts as V
from .thresholds import Thresholds

# Class counts of the playground workloads, for runs whose metadata does not state one.
WORKLOAD_CLASSES = {"digits": 10}
CLASS_KEYS = ("n_classes", "num_classes", "classes", "n_outputs")
# Optimizers whose step is normalised per parameter by a running gradient scale (names lower-cased,
# torch classes and the playground's vocabulary): their updates do not grow with the gradient.
ADAPTIVE_OPTIMIZERS = ("adam", "rmsprop", "adagrad", "adadelta", "adamax", "nadam", "radam", "lion", "adafactor",
                       "lamb", "sparseadam")


class RunView:
    """Derived, cached quantities of one run for the rules. `run` is a runstore.Run."""

    def __init__(self, run, th: Thresholds):
        self.run = run
        self.th = th

    # -- metadata ------------------------------------------------------------------------------
    @cached_property
    def meta(self) -> dict:
        return self.run.meta or {}

    @cached_property
    def hparams(self) -> dict:
        return self.meta.get("hparams") or {}

    @cached_property
    def layers(self) -> RunLayers:
        """The run's layer model (order, kinds, labels) applied to what it recorded."""
        return RunLayers(self.run)

    def module_type(self, name: str) -> str | None:
        return self.layers.model.module_type(name)

    def verdicts(self, quantity: str) -> list[V.LayerVerdict]:
        """Per-layer verdicts on one quantity (verdicts.QUANTITIES), computed once per view: what
        the rules flag and what the pages show."""
        cache = self.__dict__.setdefault("_verdicts", {})
        if quantity not in cache:
            cache[quantity] = V.JUDGES[quantity](self)
        return cache[quantity]

    def hparam(self, key: str, default=None):
        return self.hparams.get(key, default)

    # -- live runs -----------------------------------------------------------------------------
    @cached_property
    def live(self) -> bool:
        """Whether the run is still being written: runstore's effective status is "running" (an
        imported TensorBoard log reads as schema.IMPORTED and is judged as it stands)."""
        return getattr(self.run, "status", None) == schema.RUNNING

    @cached_property
    def total_steps(self) -> int | None:
        """The planned number of optimizer steps, when run.json states it (the playground does)."""
        v = self.meta.get("total_steps")
        return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 else None

    @cached_property
    def last_step(self) -> int:
        """The last step recorded so far (the train loss's, else the run's heartbeat)."""
        s = self.loss
        return int(s.index[-1]) if len(s) else int(getattr(self.run, "last_step", -1))

    @cached_property
    def progress(self) -> float | None:
        """Fraction of the planned steps recorded so far (None when the plan is unknown)."""
        if self.total_steps is None:
            return None
        return min(1.0, max(0, self.last_step) / self.total_steps)

    @cached_property
    def judges_end(self) -> bool:
        """Whether "by the end of the run" verdicts (rules.loss.END_OF_RUN_RULES: every rule that
        reads this) may be given: always for an ended run; for a live one once live_min_progress of
        its planned steps have passed, and not before it ends when the plan is unknown."""
        if not self.live:
            return True
        return self.progress is not None and self.progress >= self.th.live_min_progress

    @cached_property
    def n_classes(self) -> int | None:
        """Number of classes when the run says it (metadata, hparams or a known workload)."""
        probes = self.meta.get("probes") if isinstance(self.meta.get("probes"), dict) else {}
        for source in (self.meta, probes, self.hparams):
            for key in CLASS_KEYS:
                v = source.get(key)
                if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 2:
                    return int(v)
        workload = self.meta.get("workload") or self.hparams.get("workload")
        return WORKLOAD_CLASSES.get(workload) if isinstance(workload, str) else None

    @cached_property
    def task(self) -> K.Task:
        """What the run trains for (diagnostics.task): decides what a loss level means."""
        return K.recognise(self.meta, self.hparams, self.scalar_tags, self.n_classes)

    @cached_property
    def minimised(self) -> bool:
        """Whether train/loss is a loss the run minimises (not one of a GAN's competing losses):
        the rules that read it as such (a climb, a plateau, too little progress) stand down if not."""
        return self.task.minimised

    @cached_property
    def floor_known(self) -> bool:
        """Whether the lowest reachable loss is known: 0 (or the label-smoothing entropy) for a
        classifier, or a floor the user declared. A language model's or a regression's is not."""
        return self.task.floor is not None or self.task.kind == K.CLASSIFICATION

    @cached_property
    def optimizer_class(self) -> str | None:
        opt = self.meta.get("optimizer")
        name = opt.get("class") if isinstance(opt, dict) else None
        return str(name) if name else (str(self.hparams["optimizer"]) if isinstance(self.hparams.get("optimizer"), str)
                                       else None)

    @cached_property
    def closure_optimizer(self) -> bool:
        """Whether the optimizer re-evaluates the loss through a closure inside its step (LBFGS):
        its recorded gradients come from after the step's inner iterations."""
        return (self.optimizer_class or "").upper() == "LBFGS"

    @cached_property
    def adaptive(self) -> bool:
        """Whether the optimizer normalises each step by a running gradient scale (Adam, RMSprop,
        ...): then the size of a gradient, or of the loss it came from, does not size the update."""
        name = (self.optimizer_class or "").lower()
        return any(k in name for k in ADAPTIVE_OPTIMIZERS)

    @cached_property
    def weight_decay(self) -> tuple[float, bool]:
        """(the largest weight decay configured: hparams weight_decay, else the optimizer's param
        groups; whether it is decoupled, AdamW-style, rather than an L2 term in the gradient)."""
        groups = (self.meta.get("optimizer") or {}).get("param_groups") or []
        wd = self.hparams.get("weight_decay")
        if not isinstance(wd, (int, float)) or isinstance(wd, bool):
            vals = [g.get("weight_decay") for g in groups if isinstance(g, dict)]
            vals = [float(x) for x in vals if isinstance(x, (int, float)) and not isinstance(x, bool)]
            wd = max(vals) if vals else 0.0
        decoupled = "adamw" in (self.optimizer_class or "").lower() or any(
            isinstance(g, dict) and g.get("decoupled_weight_decay") is True for g in groups)
        return float(wd) if math.isfinite(float(wd)) else 0.0, decoupled

    @cached_property
    def chance_loss(self) -> float | None:
        """ln(C): the cross-entropy of a uniform prediction over C classes."""
        return math.log(self.n_classes) if self.n_classes else None

    # -- learning rate -------------------------------------------------------------------------
    @cached_property
    def lr_series(self) -> pd.Series:
        return self.run.series(T.lr(0))

    @cached_property
    def lr(self) -> float | None:
        """The configured learning rate: hparams['lr'], else the optimizer's, else the peak of
        the recorded schedule."""
        for v in (self.hparams.get("lr"), self.hparams.get("learning_rate")):
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
                return float(v)
        groups = (self.meta.get("optimizer") or {}).get("param_groups") or []
        if groups and isinstance(groups[0], dict):
            v = groups[0].get("initial_lr", groups[0].get("lr"))
            if isinstance(v, (int, float)) and v > 0:
                return float(v)
        s = self.lr_series.dropna()
        return float(s.max()) if len(s) and s.max() > 0 else None

    def lr_at(self, step: int) -> float | None:
        s = self.lr_series.dropna()
        if not len(s):
            return self.lr
        i = s.index.searchsorted(step, side="right") - 1
        return float(s.iloc[max(i, 0)])

    # -- loss ----------------------------------------------------------------------------------
    @cached_property
    def loss(self) -> pd.Series:
        return self.run.series(T.TRAIN_LOSS)

    @cached_property
    def finite_loss(self) -> pd.Series:
        s = self.loss
        return s[np.isfinite(s.to_numpy())]

    @cached_property
    def first_nonfinite(self) -> int | None:
        s = self.loss
        bad = ~np.isfinite(s.to_numpy())
        return int(s.index[np.argmax(bad)]) if bad.any() else None

    @cached_property
    def window(self) -> int:
        return max(self.th.smooth_min, int(len(self.finite_loss) * self.th.smooth_frac))

    @cached_property
    def smooth(self) -> pd.Series:
        """Rolling median of the finite train loss (centered; robust to single bad batches)."""
        s = self.finite_loss
        if s.empty:
            return s
        return s.rolling(self.window, center=True, min_periods=1).median()

    @cached_property
    def enough_loss(self) -> bool:
        return len(self.finite_loss) >= self.th.min_steps

    @cached_property
    def starts_at_beginning(self) -> bool:
        """Whether the loss record starts at the run's first steps (not a resumed run)."""
        s = self.loss
        return bool(len(s)) and int(s.index[0]) <= max(5, int(0.01 * (int(s.index[-1]) + 1)))

    @cached_property
    def init_loss(self) -> float | None:
        """Median of the first few recorded losses, if they are finite and from the start."""
        s = self.loss
        if not self.starts_at_beginning:
            return None
        head = s.iloc[: self.th.init_steps].to_numpy()
        head = head[np.isfinite(head)]
        return float(np.median(head)) if len(head) else None

    @cached_property
    def reference_loss(self) -> float | None:
        """What "no progress" means: ln(C) when the class count is known, else the initial loss."""
        return self.chance_loss or self.init_loss or (float(self.smooth.iloc[0]) if len(self.smooth) else None)

    @cached_property
    def loss_floor(self) -> float:
        """Lowest reachable loss: the floor the user declared, else for cross-entropy the entropy of
        the label-smoothed targets (0 without smoothing; with smoothing e over C classes the target
        keeps 1-e+e/C on the true class). 0 where it is not known (floor_known says which)."""
        if self.task.floor is not None:
            return self.task.floor
        eps = self.hparams.get("label_smoothing")
        c = self.n_classes
        if not c or not isinstance(eps, (int, float)) or not 0 < eps < 1:
            return 0.0
        hi, lo = 1 - eps + eps / c, eps / c
        return float(-(hi * math.log(hi)) - (c - 1) * lo * math.log(lo))

    def relative(self, level: float) -> float | None:
        """How far `level` still is from the floor, as a fraction of the reference's distance:
        1 = no progress from chance, 0 = at the lowest reachable loss."""
        ref = self.reference_loss
        if ref is None:
            return None
        span = ref - self.loss_floor
        return (level - self.loss_floor) / span if span > 0 else None

    def no_progress(self, rel: float | None) -> bool:
        """Whether a relative level means the run made little progress: more than progress_frac of
        the way to a known floor still to go; with an unknown floor (a language model, a
        regression), less than progress_min_drop of the reference gained: a level there says
        nothing by itself, only how far the loss came does."""
        if rel is None:
            return False
        if self.floor_known:
            return rel > self.th.progress_frac
        return rel > 1 - self.th.progress_min_drop

    def progress_evidence(self) -> dict:
        """The threshold no_progress compared with, for a finding's evidence."""
        if self.floor_known:
            return {"progress_frac": self.th.progress_frac}
        return {"progress_min_drop": self.th.progress_min_drop}

    @property
    def progress_limit(self) -> float:
        """The relative level above which no_progress holds."""
        return self.th.progress_frac if self.floor_known else 1 - self.th.progress_min_drop

    @cached_property
    def little_progress(self) -> tuple[float, float] | None:
        """(final smoothed loss, its relative level) when a finite run of a minimised loss ended
        having made little progress (no_progress); None otherwise (or too little data)."""
        if not self.enough_loss or self.first_nonfinite is not None or not self.minimised:
            return None
        ref = self.reference_loss
        if ref is None or ref <= 0:
            return None
        end = float(self.smooth.iloc[-1])
        rel = self.relative(end)
        if not self.no_progress(rel):
            return None
        return end, rel

    @cached_property
    def still_falling(self) -> float:
        """Drop of the smoothed loss over the last third of the run, as a fraction of the distance
        from chance (reference) to the lowest reachable loss; 0 when flat or rising."""
        sm = self.smooth
        if len(sm) < 3:
            return 0.0
        third = float(sm.iloc[int(len(sm) * 2 / 3)])
        end = float(sm.iloc[-1])
        ref = self.reference_loss
        span = (ref - self.loss_floor) if ref is not None else 0.0
        return max(0.0, (third - end) / span) if span > 0 else 0.0

    def level_text(self, level: float) -> str:
        """'0.41x of the way from the lowest reachable loss to ln(C) = 2.3' style description."""
        rel = self.relative(level)
        if rel is None:
            return fmt(level)
        what = f"ln(C) = {fmt(self.reference_loss)}" if self.chance_loss else f"the initial loss {fmt(self.reference_loss)}"
        if self.loss_floor > 0:
            return (f"{fmt(rel, 2)} of the way from the lowest reachable loss {fmt(self.loss_floor)} (label "
                    f"smoothing) to {what}")
        return f"{fmt(rel, 2)}x {what}"

    def tail(self, s: pd.Series, frac: float | None = None) -> pd.Series:
        """The trailing `frac` of a series (at least one value)."""
        frac = self.th.tail_frac if frac is None else frac
        return s.iloc[-max(1, int(math.ceil(len(s) * frac))):]

    # -- splits --------------------------------------------------------------------------------
    @cached_property
    def eval_split(self) -> str | None:
        """'val' if recorded, else another split with a loss (e.g. 'test'), else None."""
        if len(self.run.series("val/loss").dropna()) or len(self.run.series("val/accuracy").dropna()):
            return "val"
        for tag in self.run.scalar_tags():
            fam, name, _ = T.parse(tag)
            if name == "loss" and fam not in ("train", "lr", "sys", "act", "grad", "weight", "update_ratio"):
                return fam
        return None

    def split_series(self, split: str | None, name: str) -> pd.Series:
        if split is None:
            return pd.Series(dtype=float)
        return self.run.series(T.split_metric(split, name)).dropna()

    # -- layers --------------------------------------------------------------------------------
    def ordered(self, names, *, param: bool) -> list[str]:
        """Names in network order (runstore.layers)."""
        return self.layers.model.ordered(names, param=param)

    @cached_property
    def scalar_tags(self) -> list[str]:
        return self.run.scalar_tags()

    def names(self, family: str, stat: str | None = None, *, param: bool = False) -> list[str]:
        return self.ordered(T.names(self.scalar_tags, family, stat), param=param)

    def is_layer_weight(self, param: str) -> bool:
        """A weight matrix/kernel of a layer (not a bias, normalization scale or embedding)."""
        return self.layers.model.is_layer_weight(param)

    @cached_property
    def weight_params(self) -> list[str]:
        """Layer weights that have gradient statistics, in network order (runstore.layers)."""
        return self.layers.weight_layers

    def frame(self, tag_of, names: list[str]) -> pd.DataFrame:
        """Columns = names, index = step, values of tag_of(name) (outer-joined on steps)."""
        cols = {n: self.run.series(tag_of(n)) for n in names}
        cols = {n: s for n, s in cols.items() if len(s)}
        if not cols:
            return pd.DataFrame()
        df = pd.concat(cols, axis=1)
        return df.sort_index()

    @cached_property
    def grad_abs_mean(self) -> pd.DataFrame:
        return self.frame(lambda p: T.grad(p, "abs_mean"), self.weight_params)

    @cached_property
    def grad_norms(self) -> pd.DataFrame:
        names = self.names("grad", "norm", param=True)
        return self.frame(lambda p: T.grad(p, "norm"), names)


def fmt(x: float | None, digits: int = 3) -> str:
    """Compact number for messages: 0.0123, 1.2e-05, 2.3e+03, nan."""
    if x is None:
        return "n/a"
    x = float(x)
    if not math.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    if 1e-3 <= abs(x) < 1e4:
        return f"{x:.{digits}g}"
    return f"{x:.{max(1, digits - 1)}e}"


def pct(x: float) -> str:
    return f"{100 * float(x):.0f}%"


def layer_list(names, limit: int = 4) -> str:
    """'a', 'a and b', 'a, b and c', 'a, b, c, d and 2 more'."""
    names = list(names)
    if len(names) > limit:
        return ", ".join(names[:limit]) + f" and {len(names) - limit} more"
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]

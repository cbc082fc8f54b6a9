"""What the Train page's form is made of, derived from playground.config.FIELDS: which widget each
field gets, the grid of a log-scale slider, and the devices offered. No Streamlit here."""

from __future__ import annotations

import math
from dataclasses import dataclass

from playground.config import FIELDS, MAX_DEPTH, WORKLOAD_MODELS, Config, FieldSpec

# Form tabs, in FIELDS' group order, with the titles a person reads.
GROUP_TITLES = {"data": "Data", "model": "Model", "optimizer": "Optimizer", "schedule": "Schedule",
                "regularization": "Regularization", "run": "Run"}
# Learning rate and regularization strength are searched on a log scale (CS231n, "Hyperparameter
# optimization"): the fields FIELDS marks `log`, plus the penalty strengths, get log sliders.
LOG_EXTRA = ("weight_decay", "l1")
MANTISSAS = (1, 2, 3, 5)
LOG_DECADES = 8  # decades a log slider spans up to its upper bound (lr: 1e-6 .. 10)
# Steps of the +/- buttons of plain number inputs.
STEPS = {"momentum": 0.01, "beta1": 0.01, "beta2": 0.001, "dropout": 0.05, "label_smoothing": 0.05,
         "gamma": 0.05, "forget_bias": 0.5, "grad_clip": 0.5}

SELECT, TOGGLE, LOG_SLIDER, INTEGER, NUMBER = "select", "toggle", "log_slider", "integer", "number"


@dataclass(frozen=True)
class Widget:
    """How the form shows one config field."""

    spec: FieldSpec
    kind: str  # select | toggle | log_slider | integer | number
    step: float | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def label(self) -> str:
        """The field name as a label, e.g. "weight decay"."""
        return LABELS.get(self.spec.name, self.spec.name.replace("_", " "))

    @property
    def help(self) -> str:
        """The field's help plus its allowed values."""
        return f"{self.spec.help} Allowed: {self.spec.describe()}. Config field `{self.spec.name}`."


LABELS = {"lr": "learning rate", "l1": "L1 strength", "normalize_inputs": "normalize inputs",
          "batch_norm": "batch norm", "grad_clip": "gradient clipping (norm)", "train_subset": "training subset",
          "class_weighted": "class-weighted loss", "beta1": "beta1", "beta2": "beta2"}


def widget_for(spec: FieldSpec) -> Widget:
    """The widget kind of one field: choices -> selectbox, bool -> toggle, lr-like floats -> log
    slider with typed entry, other numbers -> number inputs."""
    if spec.choices is not None:
        return Widget(spec, SELECT)
    if spec.type is bool:
        return Widget(spec, TOGGLE)
    if spec.type is float and (spec.log or spec.name in LOG_EXTRA):
        return Widget(spec, LOG_SLIDER)
    if spec.type is int:
        return Widget(spec, INTEGER, step=1)
    return Widget(spec, NUMBER, step=STEPS.get(spec.name, 0.1))


def form_widgets() -> dict[str, list[Widget]]:
    """Every config field's widget, grouped by FIELDS group, in FIELDS order."""
    out: dict[str, list[Widget]] = {}
    for spec in FIELDS.values():
        out.setdefault(spec.group, []).append(widget_for(spec))
    return out


def log_grid(spec: FieldSpec) -> list[float]:
    """Slider stops 1, 2, 3, 5 per decade up to the field's upper bound, with 0 first when the
    field allows 0 (0 = off for penalties)."""
    hi = float(spec.hi if spec.hi is not None else 1.0)
    top = math.floor(math.log10(hi))
    values = []
    for e in range(top - LOG_DECADES + 1, top + 1):
        for m in MANTISSAS:
            v = float(f"{m}e{e}")  # exact decimal, so 3e-05 is the same float everywhere
            if v <= hi and (spec.lo is None or v > spec.lo or (v == spec.lo and not spec.lo_open)):
                values.append(v)
    if spec.lo == 0 and not spec.lo_open:
        values.insert(0, 0.0)
    return values


def snap(value, grid: list[float]) -> float:
    """The grid stop nearest to `value` on a log scale (0 snaps to 0 when the grid has it)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return grid[0]
    if not math.isfinite(v) or v <= 0:
        return 0.0 if 0.0 in grid else grid[0]
    positive = [g for g in grid if g > 0]
    return min(positive, key=lambda g: abs(math.log10(g) - math.log10(v)))


def fmt_stop(v: float) -> str:
    """A slider stop as written in code: 0, 0.001, 3e-05."""
    return "0" if v == 0 else f"{v:g}"


def model_options(workload: str) -> tuple[str, ...]:
    """Model families the workload supports (the first is its default)."""
    return WORKLOAD_MODELS.get(workload, WORKLOAD_MODELS[Config().workload])


def max_depth(model: str) -> int:
    return MAX_DEPTH.get(model, FIELDS["depth"].hi)


def device_options(present: list[str] | None) -> list[str]:
    """Devices to offer: auto, then cuda / mps only when present, then cpu (always)."""
    present = present or []
    return ["auto"] + [d for d in ("cuda", "mps") if d in present] + ["cpu"]


def coerce(widget: Widget, value):
    """A widget's value as the config field's type (number inputs may hand back 3.0 for an int
    field); values that cannot be converted are passed on for Config to reject by name."""
    spec = widget.spec
    if spec.type is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if spec.type is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def steps_summary(config: Config) -> str:
    """E.g. "450 optimizer steps: 10 epochs of 45 batches of 32"."""
    total = config.total_steps()
    per_epoch = total // max(1, config.epochs)
    return (f"{total:,} optimizer steps: {config.epochs:,} epoch{'s' if config.epochs != 1 else ''} of "
            f"{per_epoch:,} batch{'es' if per_epoch != 1 else ''} of {config.batch_size}")

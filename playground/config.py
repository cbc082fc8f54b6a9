"""The playground's one training configuration: a validated, JSON-serialisable dataclass plus a
metadata table (`FIELDS`) from which a UI can build its widgets.

Torch-free on purpose: the dashboard imports this module to build the Train page. Only the check
that a "cuda" or "mps" device is present imports torch, and only when it is asked for.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and what it accepts."""


# -- workloads --------------------------------------------------------------------------------
# Model families each workload can train, the first being the one a bare `--workload` gets.
WORKLOAD_MODELS = {
    "digits": ("mlp", "cnn"),
    "spirals": ("mlp",),
    "sequence": ("lstm", "gru"),
}
# (train, validation) examples per workload. playground/data.py builds exactly these sizes
# (a test checks it), so train_subset can be validated here without loading any data.
WORKLOAD_SIZES = {
    "digits": (1437, 360),
    "spirals": (1500, 600),
    "sequence": (3000, 1000),
}
# Depth limits per model: an 8x8 digit survives three 2x2 poolings, stacked RNNs beyond four
# layers only make the samples slow.
MAX_DEPTH = {"mlp": 32, "cnn": 3, "lstm": 4, "gru": 4}

WORKLOADS = tuple(WORKLOAD_MODELS)
MODELS = ("mlp", "cnn", "lstm", "gru")
ACTIVATIONS = ("relu", "leaky_relu", "prelu", "elu", "gelu", "tanh", "sigmoid")
INITS = ("default", "zeros", "small_normal", "large_normal", "xavier_uniform", "xavier_normal",
         "kaiming", "orthogonal")
OPTIMIZERS = ("sgd", "momentum", "rmsprop", "adam", "adamw")
SCHEDULES = ("constant", "step", "exponential", "cosine", "plateau", "warmup")
DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass(frozen=True)
class FieldSpec:
    """How one config field may be set: its type, allowed values and a sentence of help."""

    name: str
    type: type
    group: str
    help: str
    choices: tuple | None = None
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False  # True: lo itself is not allowed (lr > 0)
    hi_open: bool = False  # True: hi itself is not allowed (dropout < 1)
    log: bool = False  # a slider for it should be log-scaled

    def describe(self) -> str:
        """The allowed values in words, e.g. "a number in (0, 10]" or "one of sgd, adam"."""
        if self.choices is not None:
            return "one of " + ", ".join(map(str, self.choices))
        if self.type is bool:
            return "true or false"
        kind = "an integer" if self.type is int else "a number"
        if self.lo is None and self.hi is None:
            return kind
        left = "(" if self.lo_open else "["
        right = ")" if self.hi_open else "]"
        return f"{kind} in {left}{_fmt(self.lo)}, {_fmt(self.hi)}{right}"


def _fmt(x) -> str:
    return "-inf" if x is None else (str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}")


def _f(name, type_, group, help_, **kw) -> FieldSpec:
    return FieldSpec(name=name, type=type_, group=group, help=help_, **kw)


# The metadata table. Order = the order a form should show them in.
FIELDS: dict[str, FieldSpec] = {s.name: s for s in [
    # data
    _f("workload", str, "data", "Dataset + task: 8x8 handwritten digits, 2-D spirals, or a sequence "
       "recall task that needs memory over at least 15 time steps.", choices=WORKLOADS),
    _f("normalize_inputs", bool, "data", "Standardise each input feature with the training set's mean "
       "and standard deviation."),
    _f("shuffle", bool, "data", "Reshuffle the training set every epoch (off: the same batches in the "
       "same order every epoch)."),
    _f("train_subset", int, "data", "Train on only this many training examples (0 = all); a small "
       "subset provokes overfitting.", lo=0, hi=max(n for n, _ in WORKLOAD_SIZES.values())),
    _f("class_weighted", bool, "data", "Weight the loss of each class by the inverse of its frequency in "
       "the training set."),
    # model
    _f("model", str, "model", "Model family: mlp or cnn for digits, mlp for spirals, lstm or gru for "
       "sequence.", choices=MODELS),
    _f("depth", int, "model", "Hidden layers (mlp), conv blocks (cnn, at most 3) or stacked recurrent "
       "layers (lstm/gru, at most 4).", lo=1, hi=32),
    _f("width", int, "model", "Units per hidden layer, channels of the first conv block (doubled in "
       "each later block), or recurrent hidden size.", lo=1, hi=1024, log=True),
    _f("activation", str, "model", "Non-linearity after each hidden layer of an mlp or cnn (lstm/gru "
       "use their own gates).", choices=ACTIVATIONS),
    _f("batch_norm", bool, "model", "Batch normalisation before each hidden activation (mlp and cnn "
       "only)."),
    _f("dropout", float, "model", "Probability of zeroing a hidden unit during training (0 = off).",
       lo=0.0, hi=1.0, hi_open=True),
    _f("init", str, "model", "Weight initialisation of linear, conv and recurrent layers; 'default' "
       "keeps PyTorch's.", choices=INITS),
    _f("forget_bias", float, "model", "Initial bias of the LSTM forget gate (Jozefowicz et al. 2015 "
       "recommend 1); lstm only.", lo=-10.0, hi=10.0),
    # optimizer
    _f("optimizer", str, "optimizer", "sgd (plain), momentum (SGD with momentum), rmsprop, adam or "
       "adamw (Adam with decoupled weight decay).", choices=OPTIMIZERS),
    _f("lr", float, "optimizer", "Learning rate (peak learning rate when a schedule is used).",
       lo=0.0, hi=10.0, lo_open=True, log=True),
    _f("momentum", float, "optimizer", "Momentum of the 'momentum' optimizer.", lo=0.0, hi=1.0,
       hi_open=True),
    _f("beta1", float, "optimizer", "Adam/AdamW decay rate of the first moment.", lo=0.0, hi=1.0,
       hi_open=True),
    _f("beta2", float, "optimizer", "Adam/AdamW decay rate of the second moment; RMSProp's smoothing "
       "constant.", lo=0.0, hi=1.0, hi_open=True),
    _f("batch_size", int, "optimizer", "Examples per optimizer step.", lo=1, hi=4096, log=True),
    _f("epochs", int, "optimizer", "Passes over the training set.", lo=1, hi=10000, log=True),
    # schedule
    _f("schedule", str, "schedule", "Learning-rate schedule: constant, step decay, exponential decay, "
       "cosine annealing to 0, reduce-on-plateau of validation loss, or linear warmup then constant.",
       choices=SCHEDULES),
    _f("warmup_steps", int, "schedule", "Steps of linear warmup from 0 to lr, before any schedule "
       "(0 = none; 'warmup' needs > 0).", lo=0, hi=1_000_000),
    _f("step_size", int, "schedule", "step: decay every this many steps; exponential: steps per "
       "factor of gamma; plateau: steps without a better validation loss before decaying.",
       lo=1, hi=1_000_000, log=True),
    _f("gamma", float, "schedule", "Factor the learning rate is multiplied by at each decay.",
       lo=0.0, hi=1.0, lo_open=True),
    # regularisation
    _f("weight_decay", float, "regularization", "L2 weight decay (decoupled for adamw).", lo=0.0,
       hi=1.0),
    _f("l1", float, "regularization", "Strength of an L1 penalty on weights, added to the loss.",
       lo=0.0, hi=1.0),
    _f("grad_clip", float, "regularization", "Clip the global gradient norm to this value (0 = off).",
       lo=0.0, hi=1e6),
    _f("label_smoothing", float, "regularization", "Label smoothing of the cross-entropy targets.",
       lo=0.0, hi=1.0, hi_open=True),
    # run
    _f("eval_every", int, "run", "Evaluate on the validation set every this many steps (and at the "
       "end).", lo=1, hi=1_000_000, log=True),
    _f("probe_every", int, "run", "Record layer statistics and histograms every this many steps.",
       lo=1, hi=1_000_000, log=True),
    _f("seed", int, "run", "Random seed for initialisation, shuffling and dropout; the same seed "
       "gives the same run on CPU.", lo=0, hi=2**31 - 1),
    _f("device", str, "run", "auto picks cuda, then mps, then cpu.", choices=DEVICES),
]}


@dataclass(frozen=True)
class Config:
    """Every knob of a playground training run. Defaults train a healthy digits MLP in seconds."""

    workload: str = "digits"
    model: str = "mlp"
    depth: int = 2
    width: int = 64
    activation: str = "relu"
    batch_norm: bool = False
    dropout: float = 0.0
    init: str = "default"  # PyTorch's default (Kaiming-uniform with a=sqrt(5)) is a sane start
    forget_bias: float = 1.0  # Jozefowicz et al. 2015: a forget bias of 1 helps LSTMs remember early
    optimizer: str = "adam"  # forgiving of the learning rate, so the default run is healthy
    lr: float = 1e-3  # Kingma & Ba 2015's default for Adam
    momentum: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.999
    weight_decay: float = 0.0
    l1: float = 0.0
    schedule: str = "constant"
    warmup_steps: int = 0
    step_size: int = 100
    gamma: float = 0.5  # halving, the common "divide by 2 when validation stalls" rule
    grad_clip: float = 0.0
    label_smoothing: float = 0.0
    normalize_inputs: bool = True
    shuffle: bool = True
    class_weighted: bool = False
    train_subset: int = 0
    batch_size: int = 64
    epochs: int = 10
    eval_every: int = 20
    seed: int = 0
    device: str = "auto"
    probe_every: int = 10  # every 10th step keeps the probes' cost to a few percent

    # -- validation ---------------------------------------------------------------------------
    def __post_init__(self):
        # Coerce harmless JSON/CLI forms (an int for a float field) so the frozen config always
        # holds the declared types; wrong types and ranges are left to validate().
        for name, spec in FIELDS.items():
            value = getattr(self, name)
            if spec.type is float and isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, name, float(value))

    def validate(self, *, check_device: bool = True) -> "Config":
        """Raise ConfigError naming the first invalid field and its allowed values; return self.

        check_device=False skips the check that a cuda/mps device is present (which imports
        torch), for callers that must stay torch-free.
        """
        for name, spec in FIELDS.items():
            _check_field(spec, getattr(self, name))
        models = WORKLOAD_MODELS[self.workload]
        if self.model not in models:
            raise ConfigError(f"model: {self.model!r} is not available for workload {self.workload!r}; "
                              f"choose one of {', '.join(models)}.")
        if self.depth > MAX_DEPTH[self.model]:
            raise ConfigError(f"depth: {self.depth} is too deep for model {self.model!r}; allowed "
                              f"range is [1, {MAX_DEPTH[self.model]}].")
        if self.batch_norm and self.model in ("lstm", "gru"):
            raise ConfigError(f"batch_norm: batch normalisation is not available for model {self.model!r} "
                              f"(mlp and cnn only); set batch_norm to false.")
        n_train = WORKLOAD_SIZES[self.workload][0]
        if self.train_subset > n_train:
            raise ConfigError(f"train_subset: {self.train_subset} is more than the {n_train} training "
                              f"examples of workload {self.workload!r}; allowed range is [0, {n_train}] "
                              f"(0 = all).")
        if self.schedule == "warmup" and self.warmup_steps == 0:
            raise ConfigError("warmup_steps: schedule 'warmup' needs warmup_steps > 0; allowed range is "
                              "[1, 1000000].")
        if check_device:
            check_device_present(self.device)
        return self

    # -- conversion ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain dict of all fields, in FIELDS order (JSON-ready)."""
        return {name: getattr(self, name) for name in FIELDS}

    def to_json(self, *, indent: int | None = 2) -> str:
        """The config as a JSON object."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict, *, validate: bool = True, check_device: bool = True) -> "Config":
        """Build a config from a dict; missing keys keep their defaults, unknown keys are rejected."""
        if not isinstance(data, dict):
            raise ConfigError(f"a config must be a JSON object of field: value pairs, got {type(data).__name__}.")
        _reject_unknown(data)
        cfg = cls(**data)
        return cfg.validate(check_device=check_device) if validate else cfg

    @classmethod
    def from_json(cls, text: str, **kw) -> "Config":
        """Parse a JSON object (as written by to_json) into a validated config."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"the config is not valid JSON: {e}.") from None
        return cls.from_dict(data, **kw)

    @classmethod
    def load(cls, path: str | os.PathLike, **kw) -> "Config":
        """Read a JSON config file."""
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise ConfigError(f"cannot read config file {path}: {e.strerror or e}.") from None
        try:
            return cls.from_json(text, **kw)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None

    def save(self, path: str | os.PathLike) -> None:
        """Write the config as JSON."""
        Path(path).write_text(self.to_json() + "\n")

    def replace(self, *, validate: bool = True, check_device: bool = True, **changes) -> "Config":
        """A copy with `changes` applied (e.g. a Finding.fix dict), validated."""
        _reject_unknown(changes)
        cfg = dataclasses.replace(self, **changes)
        return cfg.validate(check_device=check_device) if validate else cfg

    def total_steps(self) -> int:
        """Optimizer steps the run will take: epochs x batches per epoch (the last batch may be short)."""
        n = self.train_subset or WORKLOAD_SIZES[self.workload][0]
        return self.epochs * math.ceil(n / self.batch_size)


def defaults_for(workload: str) -> dict:
    """Field values that make a bare `workload` choice valid (its first model family)."""
    if workload not in WORKLOAD_MODELS:
        raise ConfigError(f"workload: {workload!r} is not one of {', '.join(WORKLOADS)}.")
    return {"workload": workload, "model": WORKLOAD_MODELS[workload][0]}


def _reject_unknown(data: dict) -> None:
    unknown = [k for k in data if k not in FIELDS]
    if unknown:
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(str(k), list(FIELDS), n=1)
            hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ConfigError(f"unknown config field(s): {', '.join(hints)}. Known fields: {', '.join(FIELDS)}.")


def _check_field(spec: FieldSpec, value) -> None:
    name = spec.name
    if spec.type is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: expected true or false, got {value!r}.")
        return
    if spec.type is str:
        if value not in spec.choices:
            close = difflib.get_close_matches(str(value), spec.choices, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{name}: {value!r} is not allowed{hint}; expected {spec.describe()}.")
        return
    ok_type = (isinstance(value, int) if spec.type is int else isinstance(value, (int, float)))
    if isinstance(value, bool) or not ok_type:
        raise ConfigError(f"{name}: expected {spec.describe()}, got {value!r}.")
    if spec.type is float and not math.isfinite(value):
        raise ConfigError(f"{name}: {value!r} is not a finite number; expected {spec.describe()}.")
    too_low = spec.lo is not None and (value <= spec.lo if spec.lo_open else value < spec.lo)
    too_high = spec.hi is not None and (value >= spec.hi if spec.hi_open else value > spec.hi)
    if too_low or too_high:
        raise ConfigError(f"{name}: {value!r} is out of range; expected {spec.describe()}.")


def available_devices() -> list[str]:
    """Devices this machine can train on ("cpu" always). Imports torch."""
    import torch  # deferred: this module must stay importable without torch

    found = ["cpu"]
    if torch.cuda.is_available():
        found.insert(0, "cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.insert(0, "mps")
    return found


def check_device_present(device: str) -> None:
    """ConfigError if `device` is cuda or mps and this machine has none (imports torch only then)."""
    if device in ("auto", "cpu"):
        return
    present = available_devices()
    if device not in present:
        raise ConfigError(f"device: {device!r} is not present on this machine; available: "
                          f"{', '.join(['auto'] + present)}.")


def resolve_device(device: str) -> str:
    """The concrete device "auto" stands for here (cuda, then mps, then cpu). Imports torch."""
    if device != "auto":
        check_device_present(device)
        return device
    return available_devices()[0]

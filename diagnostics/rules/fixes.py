"""Concrete playground config changes (Finding.fix) computed from a run's hyperparameters.

Field names are the playground vocabulary of docs/architecture.md. Each helper returns {} when the
change does not apply (e.g. the learning rate is unknown), so a fix is never a guess of a value.
"""

from __future__ import annotations

import math

from ..view import RunView

RELU_FRIENDLY = ("relu", "leaky_relu", "prelu", "elu", "gelu")
BOUNDED = ("tanh", "sigmoid")
BAD_INITS = ("zeros", "small_normal", "large_normal")
# Weight decay worth lowering when a model underfits: an L2 term (SGD, Adam), or AdamW's decoupled decay.
HEAVY_L2_DECAY = 1e-2
HEAVY_DECOUPLED_DECAY = 0.3


def round_sig(x: float, digits: int = 2) -> float:
    """Round to a few significant digits so a proposed lr reads like one a person would type."""
    if x == 0 or not math.isfinite(x):
        return x
    return round(x, -int(math.floor(math.log10(abs(x)))) + digits - 1)


def lr_times(v: RunView, factor: float) -> dict:
    """{"lr": lr * factor}, or {} when the learning rate is unknown."""
    return {"lr": round_sig(v.lr * factor)} if v.lr else {}


def grad_clip(v: RunView, value: float = 1.0) -> dict:
    """Turn on gradient-norm clipping unless it already clips at or below `value`."""
    current = v.hparam("grad_clip")
    if isinstance(current, (int, float)) and 0 < current <= value:
        return {}
    return {"grad_clip": value}


def good_init_for(activation: str | None) -> str:
    """He (Kaiming) init for ReLU-like activations, Glorot (Xavier) for bounded ones."""
    return "xavier_uniform" if activation in BOUNDED else "kaiming"


def relu_with_he(v: RunView) -> dict:
    """Replace a saturating activation by ReLU with He init (He et al., 2015)."""
    return {"activation": "relu", "init": "kaiming"}


def better_init(v: RunView) -> dict:
    """A sound init for the run's activation, when the current one is a known bad choice."""
    init = v.hparam("init")
    if init in BAD_INITS:
        return {"init": good_init_for(v.hparam("activation"))}
    return {}


def batch_norm_on(v: RunView) -> dict:
    return {"batch_norm": True} if v.hparam("batch_norm") is False else {}


def normalize_inputs_on(v: RunView) -> dict:
    return {"normalize_inputs": True} if v.hparam("normalize_inputs") is False else {}


def more_dropout(v: RunView) -> dict:
    d = v.hparam("dropout")
    d = float(d) if isinstance(d, (int, float)) else 0.0
    target = 0.3 if d < 0.3 else min(0.5, round(d + 0.2, 2))
    return {"dropout": target} if target > d else {}


def more_weight_decay(v: RunView) -> dict:
    wd = v.hparam("weight_decay")
    if not isinstance(wd, (int, float)):
        return {}
    return {"weight_decay": 1e-4 if wd <= 0 else round_sig(wd * 10)}


def less_regularization(v: RunView) -> dict:
    """Undo heavy regularization that keeps a model from fitting its training data."""
    fix = {}
    d = v.hparam("dropout")
    if isinstance(d, (int, float)) and d >= 0.5:
        fix["dropout"] = 0.1
    wd = v.hparam("weight_decay")
    # AdamW's decoupled decay shrinks a weight by lr x wd per step, far less than an L2 term of the
    # same value does through the gradient: its 0.01 default (0.1 in nanoGPT) is not heavy.
    heavy = HEAVY_DECOUPLED_DECAY if v.weight_decay[1] else HEAVY_L2_DECAY
    if isinstance(wd, (int, float)) and wd >= heavy:
        fix["weight_decay"] = 1e-4
    ls = v.hparam("label_smoothing")
    if isinstance(ls, (int, float)) and ls >= 0.3:
        fix["label_smoothing"] = 0.05
    l1 = v.hparam("l1")
    if isinstance(l1, (int, float)) and l1 >= 1e-3:
        fix["l1"] = 0.0
    return fix


def more_capacity(v: RunView) -> dict:
    fix = {}
    width = v.hparam("width")
    if isinstance(width, int) and width < 64:
        fix["width"] = max(64, width * 4)
    depth = v.hparam("depth")
    if isinstance(depth, int) and depth < 2:
        fix["depth"] = 2
    return fix

"""The layer model of a run: which modules and parameters it recorded, in network order, what kind
each parameter is (layer weight, bias, normalization, embedding), and how to label them.

The one place that answers "is this a layer weight?" and "which layer comes first?": the rules
(diagnostics) and the charts (dashboard) both ask a `LayerModel`, so a chart can never list a
layer in another order or count a parameter differently from the advice about it.

Module order and types come from run.json's `model.modules` (written by probes from
`model.named_modules()`); runs without it (TensorBoard logs) keep their recording order and fall
back to names ("bn1", "norm", "embed").
"""

from __future__ import annotations

import math
import re
from functools import cached_property

from . import tags as T

# Parameter kinds.
WEIGHT, BIAS, NORM, EMBEDDING, OTHER = "weight", "bias", "norm", "embedding", "other"

# Normalization layers scale activations by design, and embeddings get sparse, row-wise gradients:
# the magnitudes of their parameters mean something else than a weight matrix's, so they are left
# out of gradient-flow and update comparisons between layers.
_NORM_TYPE = re.compile(r"Norm", re.IGNORECASE)
_EMBED_TYPE = re.compile(r"Embedding", re.IGNORECASE)
# Name fallbacks for runs that do not describe their modules (TensorBoard logs).
_NORM_NAME = re.compile(r"(^|[._])(bn|norm|ln|layernorm|batchnorm)\d*([._]|$)", re.IGNORECASE)
_EMBED_NAME = re.compile(r"(^|[._])(embed\w*|emb|wte|wpe)\d*([._]|$)", re.IGNORECASE)

# Module types whose outputs can be "dead" (exactly zero for every input of a batch).
RELU_TYPES = frozenset({"ReLU", "ReLU6", "RReLU", "Threshold"})


def base_module(name: str) -> str:
    """'layers.1#2' -> 'layers.1' (the later calls of a module used several times per forward)."""
    return name.split("#", 1)[0]


def call_index(name: str) -> int:
    """'relu#3' -> 3; 1 for a module's first (or only) call."""
    _, _, k = name.partition("#")
    return int(k) if k.isdigit() else 1


def _modules(meta) -> list[dict]:
    model = meta.get("model") if isinstance(meta, dict) else None
    mods = model.get("modules") if isinstance(model, dict) else None
    if not isinstance(mods, list):
        return []
    return [m for m in mods if isinstance(m, dict) and isinstance(m.get("name"), str)]


class LayerModel:
    """Order, type and kind of the modules and parameters of one run (from its run.json)."""

    def __init__(self, meta: dict | None):
        mods = _modules(meta or {})
        self._names = [m["name"] for m in mods]
        self.order = {n: i for i, n in enumerate(self._names)}
        self.types = {m["name"]: str(m.get("type") or "") for m in mods}

    @classmethod
    def of(cls, run) -> "LayerModel":
        """The layer model of a runstore.Run (or anything with `.meta`)."""
        return cls(getattr(run, "meta", None))

    # -- modules -------------------------------------------------------------------------------
    def owner(self, name: str, *, param: bool) -> str:
        """The module a name belongs to: a parameter's module ('fc.weight' -> 'fc'), a module call's
        module ('relu#2' -> 'relu'); walks up to the nearest module run.json lists."""
        module = name.rpartition(".")[0] if param else base_module(name)
        while module and module not in self.order and "." in module:
            module = module.rpartition(".")[0]
        return module

    def module_type(self, name: str, *, param: bool = False) -> str | None:
        """'Conv2d', 'ReLU', ... of the module (or a parameter's module); None when not described."""
        t = self.types.get(self.owner(name, param=param))
        return t or None

    def label(self, name: str, *, param: bool = False) -> str:
        """'1 (Conv2d)', 'features.0.weight (Conv2d)': names of nn.Sequential children read as
        numbers alone, so the type goes with them."""
        t = self.module_type(name, param=param)
        return f"{name} ({t})" if t else name

    def can_die(self, module: str) -> bool:
        """Whether a module's outputs can be dead units (ReLU-like); by name when undescribed."""
        t = self.module_type(module)
        return t in RELU_TYPES if t is not None else "relu" in base_module(module).lower()

    def ordered(self, names, *, param: bool = False) -> list[str]:
        """Names in network order (run.json's module order, then call order); names it does not
        describe keep their recorded order, after the described ones."""
        names = list(names)
        if not self.order:
            return names
        pos = {n: i for i, n in enumerate(names)}

        def key(n):
            return (self.order.get(self.owner(n, param=param), math.inf), call_index(n) if not param else 1, pos[n])

        return sorted(names, key=key)

    # -- parameters ----------------------------------------------------------------------------
    def kind(self, param: str) -> str:
        """WEIGHT (a weight matrix/kernel a signal passes through), BIAS, NORM (normalization
        scale or shift), EMBEDDING, or OTHER (e.g. a free-standing positional table)."""
        leaf = param.rpartition(".")[2]
        t = self.module_type(param, param=True)
        if t is not None:
            if _NORM_TYPE.search(t):
                return NORM
            if _EMBED_TYPE.search(t):
                return EMBEDDING
        elif _NORM_NAME.search(param):
            return NORM
        elif _EMBED_NAME.search(param):
            return EMBEDDING
        if "bias" in leaf:
            return BIAS
        if "weight" in leaf:
            return WEIGHT
        return OTHER

    def is_bias(self, param: str) -> bool:
        return self.kind(param) == BIAS

    def is_layer_weight(self, param: str) -> bool:
        return self.kind(param) == WEIGHT

    def feeds_norm(self, param: str) -> bool:
        """Whether the parameter's layer is directly followed by a normalization layer. Such weights
        are scale-invariant: their gradient grows as their norm shrinks."""
        module = self.owner(param, param=True)
        i = self.order.get(module)
        if i is None or i + 1 >= len(self._names):
            return False
        return bool(_NORM_TYPE.search(self.types.get(self._names[i + 1], "")))


class RunLayers:
    """The layer model applied to what one run recorded (its tags), in network order."""

    def __init__(self, run):
        self.run = run
        self.model = LayerModel.of(run)

    @cached_property
    def _scalar_tags(self) -> list[str]:
        return list(self.run.scalar_tags())

    def _names(self, family: str, stat: str | None = None, *, hist: bool = False, param: bool) -> list[str]:
        seen = self._scalar_tags + (list(self.run.hist_tags()) if hist else [])
        return self.model.ordered(T.names(seen, family, stat), param=param)

    @cached_property
    def activation_modules(self) -> list[str]:
        """Modules with activation statistics or histograms."""
        return self._names("act", hist=True, param=False)

    @cached_property
    def grad_params(self) -> list[str]:
        """Parameters with gradient statistics or histograms."""
        return self._names("grad", hist=True, param=True)

    @cached_property
    def update_params(self) -> list[str]:
        """Parameters with update-to-weight ratios."""
        return self._names("update_ratio", param=True)

    @cached_property
    def weight_layers(self) -> list[str]:
        """Layer weights (WEIGHT kind) with gradient statistics: the layers a signal passes through."""
        return [p for p in self.grad_params if self.model.is_layer_weight(p)]

    @cached_property
    def update_weights(self) -> list[str]:
        """Layer weights with update-to-weight ratios."""
        return [p for p in self.update_params if self.model.is_layer_weight(p)]

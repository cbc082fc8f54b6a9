"""Which layers and parameters a run recorded, in network order (input side first)."""

from __future__ import annotations

from runstore import tags

# Normalisation layers scale activations by design; their weights are left out of the
# first-to-last-layer gradient ratio, which is about the weight matrices signals pass through.
_NORM_TYPES = ("BatchNorm", "LayerNorm", "GroupNorm", "InstanceNorm", "RMSNorm", "LocalResponseNorm")


def _module_order(meta: dict) -> dict[str, int]:
    mods = ((meta or {}).get("model") or {}).get("modules") or []
    return {m.get("name"): i for i, m in enumerate(mods) if isinstance(m, dict)}


def _module_types(meta: dict) -> dict[str, str]:
    mods = ((meta or {}).get("model") or {}).get("modules") or []
    return {m.get("name"): str(m.get("type", "")) for m in mods if isinstance(m, dict)}


def _order_key(order: dict[str, int], name: str, fallback: int):
    base = name.split("#", 1)[0]
    owner = base
    while owner not in order and "." in owner:
        owner = owner.rsplit(".", 1)[0]
    call = int(name.split("#", 1)[1]) if "#" in name and name.split("#", 1)[1].isdigit() else 1
    return (order.get(owner, len(order) + fallback), call, fallback)


def ordered(names: list[str], meta: dict) -> list[str]:
    """`names` (modules or parameters) sorted by their module's position in run.json's model
    description; names it does not list keep their recorded order, after the listed ones."""
    order = _module_order(meta)
    if not order:
        return list(names)
    pos = {n: i for i, n in enumerate(names)}
    return sorted(names, key=lambda n: _order_key(order, n, pos[n]))


def activation_modules(run) -> list[str]:
    """Modules with activation statistics, in network order."""
    return ordered(tags.names(run.scalar_tags() + run.hist_tags(), "act"), run.meta)


def grad_params(run) -> list[str]:
    """Parameters with gradient statistics, in network order."""
    return ordered(tags.names(run.scalar_tags() + run.hist_tags(), "grad"), run.meta)


def update_params(run) -> list[str]:
    """Parameters with update-to-weight ratios, in network order."""
    return ordered(tags.names(run.scalar_tags(), "update_ratio"), run.meta)


def is_bias(param: str) -> bool:
    """True for bias vectors (their scale says little about the layer's health)."""
    return param.rsplit(".", 1)[-1].startswith("bias")


def weight_layers(run) -> list[str]:
    """Weight parameters of the layers a signal passes through: not biases, not norm layers."""
    types = _module_types(run.meta)
    out = []
    for p in grad_params(run):
        if is_bias(p):
            continue
        owner = p.rsplit(".", 1)[0] if "." in p else p
        if any(t in types.get(owner, "") for t in _NORM_TYPES):
            continue
        out.append(p)
    return out


def default_pick(names: list[str], k: int = 8) -> list[str]:
    """At most k names evenly spread from first to last, so a deep net's picker starts readable."""
    if len(names) <= k:
        return list(names)
    idx = sorted({round(i * (len(names) - 1) / (k - 1)) for i in range(k)})
    return [names[i] for i in idx]

"""Plain-data descriptions of a model and an optimizer for run.json."""

from __future__ import annotations

import torch
import torch.nn as nn

# Prefixes that wrappers add to every name: DistributedDataParallel and DataParallel ("module."),
# torch.compile ("_orig_mod."). Stripped so a wrapped model's tags match the unwrapped one's.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def clean_name(name: str) -> str:
    """Module/parameter name without wrapper prefixes; the root module is "model"."""
    changed = True
    while changed:
        changed = False
        for p in WRAPPER_PREFIXES:
            if name.startswith(p):
                name, changed = name[len(p):], True
    if name in ("", "module", "_orig_mod"):
        return "model"
    return name


def model_summary(model: nn.Module) -> dict:
    modules, owner = [], {}  # owner: id of a parameter -> the name it is recorded under
    for name, m in model.named_modules():
        # A parameter shared by two modules (a language model's output layer tied to its input
        # embedding) is counted at the first, the name its gradient and weight are recorded under;
        # the second names it in "tied", so per-module counts add up to n_params.
        own, tied = 0, []
        for pname, p in m.named_parameters(recurse=False):
            if id(p) in owner:
                tied.append(owner[id(p)])
            else:
                owner[id(p)] = clean_name(f"{name}.{pname}" if name else pname)
                own += p.numel()
        if own or tied or not list(m.children()):
            modules.append({"name": clean_name(name), "type": type(m).__name__, "params": own}
                           | ({"tied": tied} if tied else {}))
    params = list(model.parameters())
    return {
        "class": type(model).__name__,
        "n_params": sum(p.numel() for p in params),
        "n_trainable": sum(p.numel() for p in params if p.requires_grad),
        "modules": modules,
    }


def _plain(v):
    if isinstance(v, torch.Tensor):
        return v.item() if v.numel() == 1 else v.tolist()
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    return v if isinstance(v, (int, float, str, bool)) or v is None else repr(v)


def optimizer_summary(optimizer) -> dict | None:
    if optimizer is None:
        return None
    groups = []
    for g in optimizer.param_groups:
        groups.append({k: _plain(v) for k, v in g.items() if k != "params"} | {"n_params": len(g["params"])})
    return {"class": type(optimizer).__name__, "param_groups": groups}


def device_of(model: nn.Module) -> str:
    for p in model.parameters():
        return str(p.device)
    for b in model.buffers():
        return str(b.device)
    return "cpu"

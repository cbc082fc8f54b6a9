"""What the optimizer hooks need to know about the parameters they record, worked out once.

A sampled optimizer step records every parameter's gradient, weight and update. Looking up names,
building tags, grouping by device and making numpy views of CPU weights cost as much per step as
the arithmetic on a small model (benchmarks/overhead.py's MLP: ~0.15 ms of its 2.4 ms step), and
the answer only changes when the set of parameters with gradients changes or a parameter gets new
storage or layout (model.to(), p.data = ...). So the recorder keeps a plan per set and checks
each parameter's storage, shape, strides and dtype.
"""

from __future__ import annotations

import torch

from runstore import tags
from . import parameters as P
from .arrays import as_numpy, group_by_device


def layout_of(p: torch.Tensor) -> tuple:
    """What a cached view of p depends on: its storage address, shape, strides and dtype."""
    return p.data_ptr(), p.shape, p.stride(), p.dtype


class DeviceGroup:
    """The parameters of one plan that live on one device, with their tags."""

    def __init__(self, named: list[tuple[str, torch.Tensor]]):
        names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.cpu = self.params[0].is_cpu
        self.grad_tags = P.grad_tags(names)
        self.grad_hist_tags = tuple(tags.grad(n) for n in names)
        self.update_tags = P.update_tags(names)
        self.weight_tags = P.weight_tags(names)
        self.weight_hist_tags = tuple(tags.weight(n) for n in names)
        # Flat numpy views of contiguous float32 CPU weights stay valid while each parameter keeps
        # its storage and layout (layout_of). Anything else (other dtypes, channels_last conv
        # weights) is converted or flattened into a copy, which would go stale, so that is done
        # afresh on every use.
        self._layout = [layout_of(p) for p in self.params]
        self._views = ([as_numpy(p).reshape(-1) for p in self.params]
                       if self.cpu and all(p.dtype == torch.float32 and p.is_contiguous() for p in self.params)
                       else None)
        self.copy: list[torch.Tensor] | None = None  # the weights before the step being recorded
        self.copy_np: list | None = None
        self.copy_bytes = sum(p.numel() * p.element_size() for p in self.params)

    def weights_np(self) -> list:
        """Flat float32 numpy arrays of the current CPU weights. Checked again after the step: an
        optimizer may give a parameter new storage (p.data = ...) inside step()."""
        if self._views is not None and [layout_of(p) for p in self.params] == self._layout:
            return self._views
        return [as_numpy(p).reshape(-1) for p in self.params]

    def snapshot(self) -> None:
        """Copy the weights (into the same buffers as last time, when there is one)."""
        with torch.no_grad():  # the parameters require grad; the copy must not join the graph
            if self.copy is None:
                self.copy = torch._foreach_clone(self.params)
                self.copy_np = ([as_numpy(c).reshape(-1) for c in self.copy]
                                if self._views is not None else None)
            else:
                torch._foreach_copy_(self.copy, self.params)

    def old_np(self) -> list:
        """The snapshot as flat float32 numpy arrays (views when the weights have them)."""
        if self.copy_np is not None:
            return self.copy_np
        return [as_numpy(c).reshape(-1) for c in self.copy]  # fresh copies: update_stats may write them


class Plan:
    """The parameters that had gradients at one optimizer step, grouped by device."""

    def __init__(self, named: list[tuple[str, torch.Tensor]]):
        self._layout = [layout_of(p) for _, p in named]
        self.groups = [DeviceGroup(items) for items in group_by_device(named, lambda it: it[1])]

    def matches(self, params: list[torch.Tensor]) -> bool:
        """Whether every parameter still has the storage and layout it had when the plan was made.
        A cached numpy view keeps the old storage alive, so new storage cannot reuse its address."""
        return [layout_of(p) for p in params] == self._layout

    def release_copies(self) -> None:
        for g in self.groups:
            g.copy = g.copy_np = None

    @property
    def copy_bytes(self) -> int:
        return sum(g.copy_bytes for g in self.groups)


# The copy of the weights taken before each sampled optimizer step is kept between sampled steps
# when it is this small (allocating it afresh costs page faults every time); a larger model gets
# the memory back in between.
KEEP_WEIGHT_COPY_BYTES = 64 << 20


class Plans:
    """The recorder's plans, one per set of parameters with gradients, of which only the one in
    use holds a weight copy."""

    def __init__(self):
        self.plans: dict[tuple, Plan] = {}  # ids of the parameters -> Plan
        self._last: Plan | None = None

    def get(self, params: list[torch.Tensor], named) -> Plan:
        """The cached plan for these parameters; named() gives their names when a new one has to
        be made."""
        key = tuple(map(id, params))
        plan = self.plans.get(key)
        if plan is None or not plan.matches(params):
            if len(self.plans) > 8:  # the set keeps changing (e.g. layers frozen and thawed)
                self.plans.clear()
            plan = self.plans[key] = Plan(named())
        if plan is not self._last:
            # One weight copy at a time, as for a single plan: when the set of parameters with
            # gradients changes from step to step (e.g. mixture-of-experts routing), cached plans
            # would otherwise each keep a copy of their weights.
            if self._last is not None:
                self._last.release_copies()
            self._last = plan
        return plan

    def after_step(self, plan: Plan, next_sampled: bool) -> None:
        if not next_sampled and plan.copy_bytes > KEEP_WEIGHT_COPY_BYTES:
            plan.release_copies()  # a large model: give the memory back until the next sampled step

    def clear(self) -> None:
        """Forget every plan (and the weight copies they hold)."""
        self.plans.clear()
        self._last = None

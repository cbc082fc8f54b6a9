"""Optimizers and learning-rate schedules of the playground.

The schedule is a plain function of the step (plus the validation history for reduce-on-plateau)
that sets each param group's lr before the step, so it is deterministic and easy to read.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import Config


def build_optimizer(cfg: Config, model: nn.Module) -> torch.optim.Optimizer:
    """The optimizer of `cfg` over all trainable parameters of `model`."""
    params = [p for p in model.parameters() if p.requires_grad]
    wd = cfg.weight_decay
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, weight_decay=wd)
    if cfg.optimizer == "momentum":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=wd)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, alpha=cfg.beta2, weight_decay=wd)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=wd)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=wd)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")


class Schedule:
    """Learning rate per step: optional linear warmup, then the configured schedule."""

    def __init__(self, cfg: Config, total_steps: int):
        self.cfg = cfg
        self.total = max(1, total_steps)
        self.plateau_factor = 1.0
        self._best_val = math.inf
        self._best_step = 0

    def lr_at(self, step: int) -> float:
        """Learning rate for optimizer step `step` (0-based)."""
        c = self.cfg
        if c.warmup_steps and step < c.warmup_steps:
            # Linear warmup (Goyal et al. 2017) starting above 0 so the first step moves.
            return c.lr * (step + 1) / c.warmup_steps
        t = step - c.warmup_steps  # steps since the end of warmup
        if c.schedule == "step":
            return c.lr * c.gamma ** (t // c.step_size)
        if c.schedule == "exponential":
            return c.lr * c.gamma ** (t / c.step_size)
        if c.schedule == "cosine":
            span = max(1, self.total - c.warmup_steps)
            return 0.5 * c.lr * (1.0 + math.cos(math.pi * min(t, span) / span))
        if c.schedule == "plateau":
            return c.lr * self.plateau_factor
        return c.lr  # constant, warmup

    def observe_val(self, step: int, val_loss: float) -> bool:
        """Feed a validation loss (reduce-on-plateau); True if the learning rate was just reduced."""
        if self.cfg.schedule != "plateau":
            return False
        if val_loss < self._best_val * (1 - 1e-4):  # same relative threshold as torch's default
            self._best_val, self._best_step = val_loss, step
            return False
        if step - self._best_step >= self.cfg.step_size:
            self.plateau_factor *= self.cfg.gamma
            self._best_step = step  # wait another step_size steps before the next cut
            return True
        return False

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        """Set every param group's lr for `step`; returns it."""
        lr = self.lr_at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr

"""The playground's training loop: one config in, one recorded run directory out."""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

import probes
from runstore import schema

from . import data as data_mod
from . import models, optim
from .config import Config, resolve_device

# After this many consecutive non-finite losses the weights are NaN/inf and nothing more can be
# learnt: the run stops early as "failed" (diverged) instead of recording thousands of NaNs.
MAX_NONFINITE_STEPS = 5


@dataclass
class Progress:
    """What a progress callback gets after every optimizer step."""

    step: int  # optimizer steps done (1-based)
    total: int  # steps planned
    epoch: int  # 1-based
    loss: float  # this step's training loss
    val_loss: float | None  # last validation loss, if evaluated yet
    val_accuracy: float | None
    elapsed_s: float

    @property
    def eta_s(self) -> float:
        """Seconds left at the average pace so far."""
        return self.elapsed_s / self.step * (self.total - self.step) if self.step else math.nan


class Diverged(RuntimeError):
    """The loss stayed non-finite: training cannot recover, so it stops early."""


class _StopRequested(Exception):
    """Raised inside the loop when `stop` asks for the run to end."""


def _should_stop(stop) -> bool:
    if stop is None:
        return False
    if hasattr(stop, "is_set"):  # threading.Event / multiprocessing.Event
        return stop.is_set()
    return bool(stop())


def _l1_penalty(model: nn.Module) -> torch.Tensor:
    # Weights only (matrices and conv kernels); biases and BN scales are not penalised, as usual
    # for L1/L2 penalties.
    return sum(p.abs().sum() for p in model.parameters() if p.ndim > 1)


def train(config: Config, run_dir: str | os.PathLike, *, meta: dict | None = None,
          progress: Callable[[Progress], None] | None = None, stop=None, overwrite: bool = False) -> str:
    """Train `config` and record it into `run_dir` through probes; return the final status.

    meta: extra run.json fields (name, description, parent, ...). progress: called with a Progress
    after every step. stop: a threading.Event or a callable; when it is set / returns True the run
    ends at the next step with status "stopped" and keeps everything recorded. A loss that stays
    non-finite for MAX_NONFINITE_STEPS steps ends the run as "failed" with the reason in run.json's
    error field. KeyboardInterrupt also stops the run ("stopped"). Other exceptions mark the run
    "failed" and are re-raised.
    """
    config.validate()
    device = torch.device(resolve_device(config.device))
    torch.manual_seed(config.seed)
    data = data_mod.load(config)
    model = models.build(config, data).to(device)
    optimizer = optim.build_optimizer(config, model)
    total = config.total_steps()
    schedule = optim.Schedule(config, total)
    weight = data.class_weights().to(device) if config.class_weighted else None
    criterion = nn.CrossEntropyLoss(weight=weight, label_smoothing=config.label_smoothing)

    x_tr, y_tr = data.x_train.to(device), data.y_train.to(device)
    x_va, y_va = data.x_val.to(device), data.y_val.to(device)
    # Shuffling has its own generator so the order depends only on the seed, not on how many
    # random numbers initialisation or dropout drew.
    gen = torch.Generator().manual_seed(config.seed)

    run_meta = {"description": "", "workload": config.workload, "parent": None,
                "total_steps": total, "train_examples": data.n_train, **(meta or {})}
    rec = probes.attach(model, optimizer, run_dir=run_dir, hparams=config.to_dict(),
                        every=config.probe_every, meta=run_meta, overwrite=overwrite)

    def evaluate() -> tuple[float, float]:
        model.eval()
        with torch.no_grad():
            logits = model(x_va)
            loss = criterion(logits, y_va)
        model.train()
        acc = (logits.argmax(1) == y_va).float().mean().item()
        rec.record_eval(loss=loss, logits=logits, targets=y_va)
        schedule.observe_val(rec.step, loss.item())
        return loss.item(), acc

    status, error = schema.FINISHED, None
    t0 = time.monotonic()
    try:
        model.train()
        val_loss, val_acc = evaluate()  # step 0: the untrained model, a baseline for every curve
        step, bad_run = 0, 0
        for epoch in range(1, config.epochs + 1):
            n = len(y_tr)
            order = torch.randperm(n, generator=gen) if config.shuffle else torch.arange(n)
            for start in range(0, n, config.batch_size):
                if _should_stop(stop):
                    raise _StopRequested
                idx = order[start:start + config.batch_size].to(device)
                x, y = x_tr[idx], y_tr[idx]
                schedule.apply(optimizer, step)
                logits = model(x)
                loss = criterion(logits, y)
                objective = loss
                extra = {}
                if config.l1 > 0:
                    penalty = _l1_penalty(model)
                    objective = loss + config.l1 * penalty
                    extra["l1_penalty"] = penalty.detach()
                optimizer.zero_grad(set_to_none=True)
                objective.backward()
                # Total gradient norm before clipping, every step: the per-parameter norms the
                # probes record are taken after clipping, on sampled steps only.
                max_norm = config.grad_clip if config.grad_clip > 0 else math.inf
                extra["grad_norm"] = nn.utils.clip_grad_norm_(model.parameters(), max_norm)
                optimizer.step()
                rec.record_step(loss, logits=logits, targets=y, **extra)
                step += 1
                loss_value = loss.item()  # a sync point on GPU; negligible for models this small
                bad_run = 0 if math.isfinite(loss_value) else bad_run + 1
                if bad_run >= MAX_NONFINITE_STEPS:
                    raise Diverged(f"Training diverged: the loss was {loss_value} for {bad_run} consecutive "
                                   f"steps (steps {step - bad_run + 1}-{step}), so the run stopped early at "
                                   f"step {step} of {total}. Lower the learning rate, or clip gradients.")
                if step % config.eval_every == 0 or step == total:
                    val_loss, val_acc = evaluate()
                if progress is not None:
                    progress(Progress(step, total, epoch, loss_value, val_loss, val_acc, time.monotonic() - t0))
    except (_StopRequested, KeyboardInterrupt):
        status, error = schema.STOPPED, f"stopped on request at step {rec.step} of {total}"
    except Diverged as e:
        status, error = schema.FAILED, str(e)
    except BaseException as e:
        rec.close(schema.FAILED, error=f"{type(e).__name__}: {e}")
        raise
    rec.close(status, error=error)
    return status


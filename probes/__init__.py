"""Cheap training probes for any PyTorch loop.

    recorder = probes.attach(model, optimizer, run_dir="runs/exp1", hparams={"lr": 0.1})
    for x, y in loader:
        logits = model(x); loss = loss_fn(logits, y)
        optimizer.zero_grad(); loss.backward(); optimizer.step()
        recorder.record_step(loss, logits=logits, targets=y)
    recorder.record_eval(loss=val_loss, logits=val_logits, targets=val_y)
    recorder.close()
"""

from __future__ import annotations

import os

import torch

from .options import ProbeOptions, check_run_dir
from .recorder import Recorder

__all__ = ["attach", "Recorder", "NullRecorder", "ProbeOptions", "unwrap_optimizer"]


class NullRecorder:
    """What non-zero ranks get under torch.distributed: same methods, records nothing, costs nothing."""

    run_dir = None
    closed = False

    def __init__(self):
        self.step = 0

    def record_step(self, loss, **kwargs) -> None:
        self.step += 1

    def record_eval(self, loss=None, **kwargs) -> None:
        pass

    def mark_forward_done(self) -> None:
        pass

    def close(self, status=None, **kwargs) -> None:
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def unwrap_optimizer(optimizer):
    """The torch optimizer inside a framework's wrapper (Accelerate's AcceleratedOptimizer,
    Lightning's LightningOptimizer): the wrapper's step() calls the inner one's, whose step hooks
    are the ones that fire. Anything else is returned as it is."""
    for _ in range(4):  # wrappers of wrappers, never a cycle
        inner = getattr(optimizer, "optimizer", None) or getattr(optimizer, "_optimizer", None)
        if not isinstance(inner, torch.optim.Optimizer) or inner is optimizer:
            break
        optimizer = inner
    return optimizer


def _rank() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def attach(model, optimizer=None, *, run_dir: str | os.PathLike, hparams: dict | None = None,
           **options) -> Recorder | NullRecorder:
    """Attach probes to `model` (and `optimizer`) and start recording into `run_dir`.

    Options (keyword-only) are the fields of ProbeOptions: every, hist_bins, hist_sample,
    record_histograms, modules, exclude, flush_steps, flush_secs, tensorboard, all_ranks,
    overwrite, meta. Returns a Recorder, usable as a context manager.
    """
    run_dir = check_run_dir(run_dir)  # before the rank<r> subfolder, which would hide an empty name
    optimizer = unwrap_optimizer(optimizer)
    opts = ProbeOptions.from_kwargs(options)
    rank, world = _rank()
    if world > 1:
        if rank != 0 and not opts.all_ranks:
            return NullRecorder()
        if opts.all_ranks:
            run_dir = os.path.join(os.fspath(run_dir), f"rank{rank}")
        opts = ProbeOptions(**{**options, "meta": {**opts.meta, "rank": rank, "world_size": world}})
    return Recorder(model, optimizer, run_dir=run_dir, hparams=hparams, options=opts)

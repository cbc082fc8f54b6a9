"""PyTorch Lightning: a Callback that records a fit with the probes.

    from probes.integrations.lightning import ProbesCallback
    trainer = lightning.Trainer(max_epochs=3, callbacks=[ProbesCallback(run_dir="runs/exp1")])
    trainer.fit(model, train_loader, val_loader)

What is recorded, and when (hooks of Lightning 2.x):

- on_fit_start: probes.attach(the LightningModule, its first optimizer). Activation hooks, the
  optimizer's step hooks (gradients, weights, update ratios, learning rate) as in a plain loop.
- The gradients are the ones the optimizer applies: accumulated over `accumulate_grad_batches`,
  unscaled under 16-bit mixed precision, and after Lightning's gradient clipping. In Lightning the
  forward and backward passes run inside `optimizer.step(closure)`, after the optimizer's pre-step
  hook; so the callback runs the closure first, from a pre-step hook of its own registered ahead
  of the probes' (see _ClosureFirst), and the optimizer then steps without it.
- on_train_batch_end, once per optimizer step: the loss (the mean over the accumulated batches of
  what training_step returned), and the logits and targets of the batch, from training_step's
  outputs (`logits=`, `targets=`: a key or a function).
- on_validation_batch_end / on_validation_end: the validation loss (as logged, e.g.
  self.log("val_loss", ...), else the mean of validation_step's losses), other logged val_*
  metrics, and confidence, accuracy and calibration from validation_step's logits.
- on_fit_end closes the run (finished); on_exception marks it failed (stopped on Ctrl-C).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable

import torch

try:
    import lightning.pytorch as pl
except ImportError:  # the older standalone package
    import pytorch_lightning as pl

import probes
from probes import logits as L
from runstore import schema
from .common import EVAL_LOGITS_LIMIT, EvalLogits, check_options, next_is_sampled, one_number, plain_hparams, with_meta

# Validation metrics logged under these names are the validation loss.
VAL_LOSS_KEYS = ("val_loss", "val/loss", "valid_loss", "validation_loss", "loss/val")
# Where a batch's targets are looked for when the outputs do not hold them.
TARGET_KEYS = ("targets", "labels", "label", "y", "target")

Extractor = str | Callable[[Any, Any], Any] | None


class _ClosureFirst:
    """An optimizer pre-step hook that evaluates Lightning's closure (forward, backward, clipping)
    before the optimizer's other pre-step hooks run, and then steps the optimizer without it (a
    torch optimizer only calls the closure to get the loss, once, before updating): the probes'
    pre-step hook then sees this step's gradients, exactly as the update uses them, as in a plain
    loop. The one difference: optimizer.step(closure) returns None instead of the loss, which
    Lightning's automatic optimization does not use. Optimizers that call the closure more than
    once per step (LBFGS; SAM-like ones need run_closure_first=False) are left alone: the probes
    then read their gradients after the step."""

    def __call__(self, optimizer, args, kwargs):
        closure = kwargs.get("closure") if "closure" in kwargs else (args[0] if args else None)
        if closure is None:
            return None
        with torch.enable_grad():  # as the torch optimizers call it
            closure()
        if "closure" in kwargs:
            return args, {k: v for k, v in kwargs.items() if k != "closure"}
        return args[1:], kwargs


class ProbesCallback(pl.Callback):
    """Records a Lightning fit into `run_dir` (see the module's docstring for what and when).

    logits: where training_step's and validation_step's outputs hold the logits: a key of the
        returned dict (default "logits"), or a function (outputs, batch) -> logits or (logits,
        targets); None records no logit statistics.
    targets: a key, or a function (outputs, batch) -> targets; by default the outputs' "targets"
        or "labels", else the batch's second element (x, y) or its "labels" entry, when its shape
        fits the logits.
    ignore_index: a class index that counts in no statistic besides the negative ones (e.g. a
        padding token id); see Recorder.record_step.
    hparams: extra hyperparameters for run.json, besides the module's save_hyperparameters() and
        the Trainer's settings.
    run_closure_first: see _ClosureFirst; None = yes, unless the optimizer is LBFGS.
    Other keywords are probes.attach's options (every, modules, exclude, ...).
    """

    def __init__(self, run_dir, *, logits: Extractor = "logits", targets: Extractor = None,
                 ignore_index: int | None = None, hparams: dict | None = None,
                 eval_logits_limit: int = EVAL_LOGITS_LIMIT, run_closure_first: bool | None = None, **options):
        for name, value in (("logits", logits), ("targets", targets)):
            if value is not None and not isinstance(value, str) and not callable(value):
                raise TypeError(f"{name} must be a key of training_step's outputs, a function (outputs, batch) "
                                f"or None; got {type(value).__name__}")
        L.check(torch.zeros(1, 2), None, ignore_index)  # checks ignore_index alone
        self.run_dir, self.options = check_options(run_dir, options)
        self.logits, self.targets, self.ignore_index = logits, targets, ignore_index
        self.hparams = dict(hparams or {})
        self.run_closure_first = run_closure_first
        self.recorder = None
        self._eval = EvalLogits(eval_logits_limit)
        self._handles = []
        self._loss_sum = None
        self._last_global_step = 0
        self._val_losses: list = []

    # -- start and end -----------------------------------------------------------------------
    def on_fit_start(self, trainer, pl_module) -> None:
        if self.recorder is not None:
            warnings.warn(f"probes: this ProbesCallback already recorded a run into {self.run_dir}; a second fit() "
                          f"is not recorded (give it a new ProbesCallback with another run_dir)", RuntimeWarning)
            return
        optimizer = trainer.optimizers[0] if trainer.optimizers else None
        if optimizer is not None:
            optimizer = probes.unwrap_optimizer(optimizer)
            first = self.run_closure_first
            if first is None:
                first = not isinstance(optimizer, torch.optim.LBFGS)
            if first:
                self._handles.append(optimizer.register_step_pre_hook(_ClosureFirst()))
        steps = trainer.estimated_stepping_batches
        hparams = plain_hparams({
            "max_epochs": trainer.max_epochs, "max_steps": trainer.max_steps,
            "accumulate_grad_batches": trainer.accumulate_grad_batches, "precision": str(trainer.precision),
            "gradient_clip_val": trainer.gradient_clip_val,
            "gradient_clip_algorithm": trainer.gradient_clip_algorithm,
            **dict(getattr(pl_module, "hparams", {}) or {}), **self.hparams})
        options = with_meta(self.options, integration="lightning",
                            total_steps=int(steps) if isinstance(steps, (int, float)) and math.isfinite(steps) else None)
        self._last_global_step = trainer.global_step
        try:
            self.recorder = probes.attach(pl_module, optimizer, run_dir=self.run_dir, hparams=hparams, **options)
        except BaseException:
            self._close(schema.FAILED)  # removes the closure hook; there is no run to mark
            raise

    def on_fit_end(self, trainer, pl_module) -> None:
        self._close(schema.FINISHED)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if isinstance(exception, KeyboardInterrupt):
            self._close(schema.STOPPED, error="interrupted (KeyboardInterrupt)")
        else:
            self._close(schema.FAILED, error=f"{type(exception).__name__}: {exception}")

    def _close(self, status: str, error: str | None = None) -> None:
        while self._handles:
            self._handles.pop().remove()
        if self.recorder is not None:
            self.recorder.close(status, error=error)

    # -- training ----------------------------------------------------------------------------
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        rec = self.recorder
        if rec is None or rec.closed:
            return
        # Lightning calls training_step, not the module: the module's own end-of-forward hook that
        # keeps later micro-batches out of the activation statistics never fires.
        rec.mark_forward_done()
        loss = _loss_of(outputs)
        if loss is not None:
            # With accumulation Lightning divides each batch's loss by the number of batches, so
            # their sum is the step's mean loss.
            self._loss_sum = loss if self._loss_sum is None else self._loss_sum + loss
        if trainer.global_step == self._last_global_step:
            return  # still accumulating (or the batch was skipped): no optimizer step yet
        self._last_global_step = trainer.global_step
        loss, self._loss_sum = self._loss_sum, None
        if loss is None:
            raise ValueError("ProbesCallback records each step's loss from training_step's return value: return "
                             "the loss, or a dict with 'loss' (and 'logits' for confidence and accuracy)")
        logits = targets = None
        if next_is_sampled(rec):
            logits, targets = self._logits_targets(outputs, batch)
        rec.record_step(loss, logits=logits, targets=targets, ignore_index=self.ignore_index)

    # -- validation --------------------------------------------------------------------------
    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self.recorder is None or self.recorder.closed or trainer.sanity_checking:
            return
        loss = _loss_of(outputs)
        logits, targets = self._logits_targets(outputs, batch)
        if loss is not None:
            n = 1 if logits is None else max(logits.numel() // (logits.shape[-1] if logits.ndim > 1 else 1), 1)
            self._val_losses.append((loss, n))
        if logits is not None:
            self._eval.add(logits, targets)

    def on_validation_end(self, trainer, pl_module) -> None:
        if self.recorder is None or self.recorder.closed or trainer.sanity_checking:
            self._eval.clear()
            self._val_losses = []
            return
        metrics = {}
        for key, value in trainer.callback_metrics.items():
            v = one_number(value)
            name = _val_name(key)
            if v is not None and name is not None:
                metrics[name] = v
        loss = next((one_number(trainer.callback_metrics[k]) for k in VAL_LOSS_KEYS if k in trainer.callback_metrics),
                    None)
        if loss is None and self._val_losses:  # not logged: the mean over the batches, weighted by predictions
            total = sum(n for _, n in self._val_losses)
            loss = sum(v * n for v, n in self._val_losses) / total
        metrics.pop("loss", None)
        self._val_losses = []
        logits, targets = self._eval.take()
        if loss is None and logits is None and not metrics:
            return
        self.recorder.record_eval(loss, logits=logits, targets=targets, ignore_index=self.ignore_index, **metrics)

    # -- where the logits are ----------------------------------------------------------------
    def _logits_targets(self, outputs, batch):
        """(logits, targets) of a step's outputs and batch, as the callback was told to find them."""
        if self.logits is None or outputs is None:
            return None, None
        targets = None
        if callable(self.logits):
            got = self.logits(outputs, batch)
            logits, targets = got if isinstance(got, tuple) and len(got) == 2 else (got, None)
        elif isinstance(outputs, dict):
            logits = outputs.get(self.logits)
        else:
            return None, None
        if logits is None:
            return None, None
        logits = L.logits_of(logits)
        if targets is None:
            if callable(self.targets):
                targets = self.targets(outputs, batch)
            elif isinstance(self.targets, str):
                targets = outputs.get(self.targets) if isinstance(outputs, dict) else None
            else:
                return logits, _guess_targets(logits, outputs, batch)
        return logits, targets


def _loss_of(outputs):
    """The loss in what training_step / validation_step returned: the tensor, or its 'loss'."""
    if isinstance(outputs, dict):
        outputs = outputs.get("loss")
    return one_number(outputs)


def _guess_targets(logits, outputs, batch):
    """The targets by their usual names, or the second element of an (x, y) batch; only when their
    shape fits the logits (else no accuracy, rather than an error in someone's fit)."""
    found = []
    if isinstance(outputs, dict):
        found += [outputs[k] for k in TARGET_KEYS if k in outputs]
    if isinstance(batch, dict):
        found += [batch[k] for k in TARGET_KEYS if k in batch]
    elif isinstance(batch, (tuple, list)) and len(batch) == 2:
        found.append(batch[1])
    for t in found:
        if isinstance(t, torch.Tensor):
            try:
                L.check(logits, t)
            except (TypeError, ValueError):
                continue
            return t
    return None


def _val_name(key: str) -> str | None:
    """'acc' for a logged 'val_acc' or 'val/acc'; None for anything not a validation metric."""
    for prefix in ("val_", "val/", "valid_", "validation_"):
        if key.startswith(prefix) and len(key) > len(prefix):
            return key[len(prefix):].replace("/", "_")
    return None

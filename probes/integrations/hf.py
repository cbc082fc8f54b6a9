"""Hugging Face Transformers: a TrainerCallback that records a Trainer run with the probes.

    from probes.integrations.hf import ProbesCallback
    trainer = Trainer(model=model, args=args, train_dataset=..., callbacks=[ProbesCallback(run_dir="runs/exp1")])
    trainer.train()

What is recorded, and when:

- on_train_begin: probes.attach(the model, the torch optimizer inside Accelerate's wrapper), with
  the TrainingArguments as hyperparameters and state.max_steps as the run's total steps.
- The optimizer's own step hooks, as in a plain loop: the Trainer calls optimizer.step() once per
  update, after accumulating `gradient_accumulation_steps` batches and clipping to
  `max_grad_norm`, with fp16 gradients unscaled; so the gradients recorded are the ones applied.
  An update the fp16 GradScaler skipped is an event.
- A forward hook on the model, per micro-batch: the loss the model returned (what the Trainer
  trains on), and on sampled steps the logits and `labels` of the step's first micro-batch. The
  step's loss is the Trainer's: the mean over the micro-batches, or their sum when the Trainer
  normalised each by the tokens of the whole accumulated batch (num_items_in_batch).
- on_step_end: one record_step per optimizer step, with per-token confidence, entropy and accuracy
  for a language model (labels shifted as the model's loss shifts them; -100 ignored).
- on_log: the Trainer's grad_norm (before clipping) as train/grad_norm, at its logging steps. A step
  the Trainer is about to log (control.should_log at on_step_end) is recorded there, norm included,
  so that the norm does not cost a flush of its own (record_eval flushes): at logging_steps=1 that
  would be one flush per step.
- on_prediction_step / on_evaluate: the evaluation's metrics (eval_loss as val/loss, eval_* as
  val/*) and confidence, accuracy and calibration from the evaluation's logits.
- on_train_end closes the run. The Trainer has no exception event: a run that raises is closed at
  interpreter exit, marked failed with the exception.

The loss comes from the model's output (outputs.loss or outputs[0], as the Trainer reads it). With
`compute_loss_func` or `label_smoothing_factor` the Trainer computes the loss outside the model;
then the callback cannot see it, and it closes the run as failed with that reason at the first step
instead of recording made-up numbers (training goes on).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import torch
from transformers import TrainerCallback

import probes
from probes import logits as L
from runstore import schema
from .common import (EVAL_LOGITS_LIMIT, EvalLogits, causal_shift, check_options, next_is_sampled, one_number,
                     plain_hparams, with_meta)

try:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    CAUSAL_LM_CLASSES = frozenset(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
except ImportError:  # a release that moved it: fall back on the naming convention
    CAUSAL_LM_CLASSES = frozenset()

# Metrics of an evaluation that describe its speed, not the model.
SPEED_METRICS = ("_runtime", "_samples_per_second", "_steps_per_second", "_model_preparation_time", "_jit_compilation_time")
NO_LOSS = ("the model returned no loss: the Trainer computes it outside the model (compute_loss_func or "
           "label_smoothing_factor), where ProbesCallback cannot see it. Let the model compute the loss from "
           "`labels`, or record the run with probes.attach in your own loop.")


def is_causal_lm(model) -> bool:
    """Whether the model's loss predicts token t+1 at position t (labels shifted inside the model)."""
    name = type(model).__name__
    return name in CAUSAL_LM_CLASSES or name.endswith("ForCausalLM") or name.endswith("LMHeadModel")


class ProbesCallback(TrainerCallback):
    """Records a Trainer run into `run_dir` (see the module's docstring for what and when).

    ignore_index: the label that counts in no statistic (the Trainer's -100 by default; any
        negative label is ignored too).
    shift_labels: whether the logits at position t are scored against labels[t + 1]; None = yes
        for causal language models (is_causal_lm), as their loss does it.
    hparams: extra hyperparameters for run.json, besides the TrainingArguments.
    eval_logits_limit: how many logit values of an evaluation are kept for its confidence,
        accuracy and calibration (common.EVAL_LOGITS_LIMIT).
    Other keywords are probes.attach's options (every, modules, exclude, ...).
    """

    def __init__(self, run_dir, *, ignore_index: int | None = -100, shift_labels: bool | None = None,
                 hparams: dict | None = None, eval_logits_limit: int = EVAL_LOGITS_LIMIT, **options):
        L.check(torch.zeros(1, 2), None, ignore_index)  # checks ignore_index alone
        if shift_labels is not None and not isinstance(shift_labels, bool):
            raise TypeError(f"shift_labels must be True, False or None (auto), got {shift_labels!r}")
        self.run_dir, self.options = check_options(run_dir, options)
        self.ignore_index, self.shift_labels = ignore_index, shift_labels
        self.hparams = dict(hparams or {})
        self.recorder = None
        self._hook = None
        self._shift, self._sum_scale = False, 1
        self._eval = EvalLogits(eval_logits_limit)
        self._pending_eval = None  # (logits, labels) of the evaluation batch whose step is not over
        self._pending_step = None  # (loss, logits, labels) of a step recorded when the Trainer logs it
        self._clear_step()

    def _clear_step(self) -> None:
        self._loss_sum, self._loss_count, self._summed = None, 0, False
        self._step_logits = None

    # -- start and end -----------------------------------------------------------------------
    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        if self.recorder is not None:
            warnings.warn(f"probes: this ProbesCallback already recorded a run into {self.run_dir}; a second train() "
                          f"is not recorded (give it a new ProbesCallback with another run_dir)", RuntimeWarning)
            return
        config = getattr(model, "config", None)
        hparams = plain_hparams({
            **args.to_sanitized_dict(),
            "model_type": getattr(config, "model_type", None), "vocab_size": getattr(config, "vocab_size", None),
            **self.hparams})
        self._shift = is_causal_lm(model) if self.shift_labels is None else self.shift_labels
        # With average_tokens_across_devices the token count is global and the Trainer multiplies
        # each process's loss by the number of processes; the model's output is before that.
        self._sum_scale = args.world_size if getattr(args, "average_tokens_across_devices", False) else 1
        # A causal language model is declared as one, so that the rules judge its loss as a language
        # model's (diagnostics.task); the user's own meta={"task": ...} wins.
        options = with_meta(self.options, integration="transformers",
                            total_steps=int(state.max_steps) if state.max_steps and state.max_steps > 0 else None,
                            task="language_model" if is_causal_lm(model) else None)
        self.recorder = probes.attach(model, optimizer, run_dir=self.run_dir, hparams=hparams, **options)
        self._hook = model.register_forward_hook(self._on_forward, with_kwargs=True)

    def on_train_end(self, args, state, control, **kwargs):
        self._record_pending()
        self._close(schema.FINISHED)

    def _close(self, status: str, error: str | None = None) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if self.recorder is not None:
            self.recorder.close(status, error=error)

    # -- what the model computed -------------------------------------------------------------
    def _on_forward(self, module, args, kwargs, output):
        rec = self.recorder
        if rec is None or rec.closed:
            return
        labels = kwargs.get("labels")
        if not (module.training and torch.is_grad_enabled()):  # an evaluation batch, kept when its step ends
            self._pending_eval = self._logits_labels(output, labels)
            return
        loss = _model_loss(output)
        if loss is not None:
            self._loss_sum = loss if self._loss_sum is None else self._loss_sum + loss
            self._loss_count += 1
            # The Trainer passes num_items_in_batch when the loss of each micro-batch is already
            # divided by the tokens of the whole accumulated batch: the step's loss is their sum.
            self._summed = kwargs.get("num_items_in_batch") is not None
        if self._step_logits is None and next_is_sampled(rec):
            self._step_logits = self._logits_labels(output, labels)

    def _logits_labels(self, output, labels):
        try:
            logits = L.logits_of(output)
        except ValueError:
            return None
        if not isinstance(logits, torch.Tensor):
            return None
        logits = logits.detach()
        labels = labels.detach() if isinstance(labels, torch.Tensor) else None
        if self._shift:
            logits, labels = causal_shift(logits, labels)
        try:
            L.check(logits, labels)
        except (TypeError, ValueError):  # labels of another shape (e.g. a span): no accuracy
            labels = None
        return logits, labels

    # -- one record per optimizer step -------------------------------------------------------
    def on_step_end(self, args, state, control, **kwargs):
        rec = self.recorder
        if rec is None or rec.closed:
            self._clear_step()
            return
        if self._loss_sum is None:
            self._clear_step()
            self._close(schema.FAILED, error=f"probes stopped recording: {NO_LOSS}")
            warnings.warn(f"probes: {NO_LOSS}", RuntimeWarning, stacklevel=2)
            return
        loss = self._loss_sum
        if self._summed:
            loss = loss * self._sum_scale if self._sum_scale != 1 else loss
        elif self._loss_count > 1:  # a tensor op per step costs ~10 us on a CPU: none without accumulation
            loss = loss / self._loss_count
        logits, labels = self._step_logits or (None, None)
        self._clear_step()
        if control.should_log:  # DefaultFlowCallback, which runs first, decided: on_log comes next
            self._pending_step = (loss, logits, labels)
        else:
            rec.record_step(loss, logits=logits, targets=labels, ignore_index=self.ignore_index)

    def _record_pending(self, **scalars) -> None:
        """Record the step held for on_log (if any); also called by every event that could come
        between on_step_end and on_log, so that nothing is recorded out of order or lost."""
        pending, self._pending_step = self._pending_step, None
        rec = self.recorder
        if pending is not None and rec is not None and not rec.closed:
            loss, logits, labels = pending
            rec.record_step(loss, logits=logits, targets=labels, ignore_index=self.ignore_index, **scalars)

    def on_step_begin(self, args, state, control, **kwargs):
        self._record_pending()

    def on_log(self, args, state, control, logs=None, **kwargs):
        # The Trainer measures the total gradient norm on every update but only hands it out here;
        # it is the last step's, so it is stored at that step.
        norm = one_number((logs or {}).get("grad_norm"))
        if self._pending_step is not None:
            self._record_pending(**({"grad_norm": norm} if norm is not None else {}))
            return
        rec = self.recorder
        if rec is not None and not rec.closed and norm is not None and rec.step == state.global_step:
            rec.record_eval(split="train", grad_norm=norm)  # a log the Trainer's flow did not announce

    # -- evaluation --------------------------------------------------------------------------
    def on_prediction_step(self, args, state, control, **kwargs):
        pending, self._pending_eval = self._pending_eval, None
        if pending is not None and self.recorder is not None and not self.recorder.closed:
            self._eval.add(*pending)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self._record_pending()
        rec = self.recorder
        logits, labels = self._eval.take()
        if rec is None or rec.closed:
            return
        metrics = dict(metrics or {})
        loss = one_number(metrics.pop("eval_loss", None))
        scalars = {}
        for key, value in metrics.items():
            v = one_number(value)
            if v is not None and key.startswith("eval_") and not key.endswith(SPEED_METRICS):
                scalars[key[len("eval_"):].replace("/", "_")] = v
        if loss is None and logits is None and not scalars:
            return
        rec.record_eval(loss, logits=logits, targets=labels, ignore_index=self.ignore_index, **scalars)

    def on_predict(self, args, state, control, metrics=None, **kwargs):
        self._eval.clear()  # trainer.predict(): not an evaluation of the run


def _model_loss(output):
    """The loss in a model's output, where the Trainer looks for it: outputs["loss"] or outputs[0]."""
    if isinstance(output, Mapping):
        return one_number(output.get("loss"))
    if isinstance(output, (tuple, list)) and output:
        return one_number(output[0])
    return None

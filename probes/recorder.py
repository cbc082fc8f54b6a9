"""The Recorder: hooks on a user's model and optimizer, and when each statistic family (activations,
parameters, logits, histograms) is recorded into the flush buffer; periodic flushes to the writer
thread. The statistics themselves live in the family modules."""

from __future__ import annotations

import atexit
import sys
import time
import uuid
import weakref

import numpy as np
import torch
import torch.nn as nn

from runstore import Batch, RunWriter, schema, tags
from . import activations as A
from . import logits as L
from . import parameters as P
from .arrays import as_numpy, quiet
from .histograms import StepHistograms, fixed_numpy
from .hooks import HookSet
from .options import ProbeOptions, check_run_dir
from .param_plan import Plan, Plans
from .sink import FlushBuffer, TensorBoardMirror, WriterThread
from .summary import clean_name, device_of, model_summary, optimizer_summary

_LOGIT_STATS = frozenset(tags.LOGIT_STATS)
_NONE = frozenset()
_ZERO, _ONE = np.zeros(1), np.ones(1)  # the range of a confidence histogram (never written to)
_LR_TAGS = tuple(tags.lr(i) for i in range(16))


class Recorder:
    """Records one training run. Create it with probes.attach(); call record_step() once per
    optimizer step and record_eval() after each evaluation; close() (or leave the `with` block)."""

    def __init__(self, model: nn.Module, optimizer, *, run_dir, hparams: dict | None, options: ProbeOptions):
        if not isinstance(model, nn.Module):
            raise TypeError(f"probes.attach needs a torch.nn.Module as model, got {type(model).__name__}")
        if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer or None, got {type(optimizer).__name__}")
        if hparams is not None and not isinstance(hparams, dict):
            raise TypeError(f"hparams must be a dict, got {type(hparams).__name__}")
        run_dir = check_run_dir(run_dir)
        tb_writer = TensorBoardMirror.writer_class() if options.tensorboard else None  # before any folder exists
        self.options = opts = options
        self.step = 0  # optimizer steps recorded so far; step k's numbers are stored at step k
        self._closed = False
        self._model_ref = weakref.ref(model)
        self._opt_ref = weakref.ref(optimizer) if optimizer is not None else None
        self._compiled = hasattr(model, "_orig_mod")
        self._param_names = {id(p): clean_name(n) for n, p in model.named_parameters()}
        self._watched = A.select([(clean_name(n), m) for n, m in model.named_modules()], opts.modules, opts.exclude)

        meta = {
            "run_id": uuid.uuid4().hex[:12],
            "name": None,
            "description": "",
            "hparams": hparams or {},
            "model": model_summary(model),
            "optimizer": optimizer_summary(optimizer),
            "device": device_of(model),
            "torch_version": torch.__version__,
            "probes": opts.describe(),
            "watched_modules": [n for n, _ in self._watched],
            **opts.meta,
        }
        writer = RunWriter(run_dir, meta, overwrite=opts.overwrite)
        if not writer.meta.get("name"):
            writer.update_meta(name=writer.run_dir.name)
        self.run_dir = writer.run_dir
        tb = TensorBoardMirror(self.run_dir / schema.TB_DIR, tb_writer) if tb_writer is not None else None
        self._sink = WriterThread(writer, tb)

        self._buf = FlushBuffer()  # everything recorded since the last flush
        self._hists = StepHistograms(opts.hist_bins, opts.hist_sample)  # binned at the end of each step
        self._tag_cache: dict = {}  # tag tuples are built once per layer, not on every call
        self._layer_info: dict = {}  # (module, ndim) -> activations.layer_info
        self._plans = Plans()  # param_plan.Plan per set of parameters with gradients
        self._meta_known = {"n_classes": opts.meta["n_classes"]} if "n_classes" in opts.meta else {}
        self._last_flush_step, self._last_flush_time = 0, time.monotonic()
        self._loss_state = {"nonfinite_seen": False}

        self._persistent = HookSet()
        self._act_hooks = HookSet()
        self._sampling = False
        self._calls: dict[str, int] = {}
        self._over_cap: dict[str, int] = {}  # modules called more than A.MAX_CALLS times in this forward
        self._capped: set[str] = set()       # ... whose coverage event was written (once per module)
        self._forward_done = False
        self._opt_calls = self._opt_calls_seen = 0
        self._closure_noted = self._pending_closure = False
        self._pending: Plan | None = None  # between the optimizer's pre- and post-step hooks
        if optimizer is not None:
            self._persistent.add(optimizer.register_step_pre_hook(self._on_opt_pre))
            self._persistent.add(optimizer.register_step_post_hook(self._on_opt_post))
        if self._compiled and self._watched:
            self._event(0, "warning", "torch.compile'd model: activation hooks are off (they would force "
                        "recompiles); gradients, weights and update ratios are recorded.")
            self._watched = []
        note = A.coverage_note(model, self._watched)
        if note:
            self._event(0, "coverage", note)
        self._arm(1)
        atexit.register(_close_at_exit, weakref.ref(self))

    # -- sampling: activation hooks live only during sampled steps -------------------------
    def _is_sampled(self, step: int) -> bool:
        return (step - 1) % self.options.every == 0

    def _arm(self, step: int) -> None:
        self._sampling = self._is_sampled(step)
        if not self._sampling or not self._watched:
            self._act_hooks.remove()
            return
        self._calls, self._forward_done = {}, False
        if len(self._act_hooks):  # still registered from the previous step, which was sampled too
            return
        model = self._model_ref()
        if model is None:
            return
        self._act_hooks.add(model.register_forward_pre_hook(self._on_root_pre))
        for name, m in self._watched:
            self._act_hooks.add(m.register_forward_hook(self._make_act_hook(name)))
        # Registered last, so it runs after the root's own activation hook (if the root is watched).
        self._act_hooks.add(model.register_forward_hook(self._on_root_done))

    def _on_root_pre(self, module, args):
        self._calls = {}

    def _on_root_done(self, module, args, output):
        # Only the first forward pass with autograd on is recorded: with gradient accumulation the
        # later micro-batches look the same, and evaluation passes run without grad.
        if torch.is_grad_enabled():
            self._forward_done = True
            for name, n in self._over_cap.items():
                if name not in self._capped:
                    self._capped.add(name)
                    self._event(self.step + 1, "coverage", A.capped_message(name, n))
            self._over_cap.clear()

    def mark_forward_done(self) -> None:
        """The step's first forward pass is over: for frameworks whose forward is not a call of
        the model (Lightning calls training_step), so that later passes in the same step (gradient
        accumulation) are left out as they are after model(x) returns."""
        self._on_root_done(None, None, None)

    def _make_act_hook(self, name: str):
        first_tags = self._act_tags(name, 1)

        def hook(module, args, output):
            if self._forward_done or not torch.is_grad_enabled():
                return
            try:
                if type(output) is torch.Tensor:  # the common case, without first_tensor's search
                    x = output if output.is_floating_point() else None
                else:
                    x = A.first_tensor(output)
                if x is None or x.numel() == 0:
                    return
                calls = self._calls
                n = calls[name] = calls.get(name, 0) + 1
                if n > A.MAX_CALLS:  # a module in a Python loop: keep its tags bounded (coverage event)
                    self._over_cap[name] = max(n, self._over_cap.get(name, 0))
                    return
                stat_tags, hist_tag = first_tags if n == 1 else self._act_tags(name, n)
                step = self.step + 1
                # Reduced now, not later: an in-place op (ReLU(inplace=True)) may overwrite x next.
                if x.is_cpu:
                    x = as_numpy(x)
                    info = self._layer_info.get((module, x.ndim))
                    if info is None:
                        info = self._layer_info[(module, x.ndim)] = A.layer_info(module, x.ndim)
                    with quiet():
                        self._buf.scalars(stat_tags, step, A.stats_numpy(module, x, info))
                    if self.options.record_histograms:
                        self._hists.add_numpy(hist_tag, x)
                else:
                    self._buf.device_scalars(stat_tags, step, A.stats_torch(module, x))
                    if self.options.record_histograms:
                        self._hists.add_torch(hist_tag, x)
            except Exception as e:  # a probe must never break the user's forward pass
                self._event(self.step + 1, "warning", f"activation probe on {name} failed: {e!r}")
        return hook

    def _act_tags(self, name: str, call: int) -> tuple[tuple, str]:
        key = name if call == 1 else (name, call)
        got = self._tag_cache.get(key)
        if got is None:
            got = self._tag_cache[key] = A.stat_tags(name, call)
        return got

    # -- optimizer hooks ---------------------------------------------------------------------
    def _opt_names(self, optimizer, params: list[torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
        """Names of the optimizer's parameters; one that is not in the model is named by position."""
        wanted, out = {id(p) for p in params}, []
        for gi, g in enumerate(optimizer.param_groups):
            for pi, p in enumerate(g["params"]):
                if id(p) in wanted:
                    out.append((self._param_names.get(id(p)) or f"group{gi}.param{pi}", p))
        return out

    def _on_opt_pre(self, optimizer, args, kwargs):
        self._opt_calls += 1
        # A closure optimizer (LBFGS) computes its gradients inside step(): what p.grad holds now is
        # the previous step's last closure (nothing at step 1). Its gradients are read after the step.
        closure = callable(kwargs.get("closure")) or any(callable(a) and a is not optimizer for a in args)
        if closure and not self._closure_noted:
            self._closure_noted = True
            self._event(self.step + 1, "coverage", P.CLOSURE_NOTE.format(name=type(optimizer).__name__))
        self._pending_closure = closure
        if not self._sampling:
            return
        try:
            params = [p for g in optimizer.param_groups for p in g["params"]
                      if (p.requires_grad if closure else p.grad is not None)]
            plan = self._plans.get(params, lambda: self._opt_names(optimizer, params))
            if not closure:
                self._record_grads(plan, self.step + 1)
            for group in plan.groups:  # to measure this step's update once the optimizer has applied it
                group.snapshot()
            self._pending = plan
        except Exception as e:
            self._plans.clear()
            self._event(self.step + 1, "warning", f"gradient probe failed: {e!r}")

    def _on_opt_post(self, optimizer, args, kwargs):
        if not self._sampling or self._pending is None:
            return
        plan, self._pending = self._pending, None
        step = self.step + 1
        hists = self.options.record_histograms
        try:
            if self._pending_closure and all(p.grad is not None for g in plan.groups for p in g.params):
                self._record_grads(plan, step)  # the gradient of the step's last closure evaluation
            buf = self._buf
            for group in plan.groups:
                if group.cpu:
                    now = group.weights_np()
                    with quiet():  # exploding weights overflow float32 squares
                        ratios, weights = P.update_stats_numpy(group.old_np(), now)
                    buf.scalars(group.update_tags, step, ratios)
                    buf.scalars(group.weight_tags, step, weights)
                else:
                    now = [p.detach() for p in group.params]
                    ratios, weights = P.update_stats_torch(group.copy, now)
                    buf.device_scalars(group.update_tags, step, ratios)
                    buf.device_scalars(group.weight_tags, step, weights)
                if hists:
                    self._hists.add_all(group.weight_hist_tags, now, cpu=group.cpu)
        except Exception as e:
            self._event(step, "warning", f"update-ratio probe failed: {e!r}")
        self._plans.after_step(plan, next_sampled=self._is_sampled(step + 1))

    def _record_grads(self, plan: Plan, step: int) -> None:
        hists = self.options.record_histograms
        for group in plan.groups:
            if group.cpu:
                grads = [as_numpy(p.grad).reshape(-1) for p in group.params]
                with quiet():  # exploding gradients overflow float32 squares
                    self._buf.scalars(group.grad_tags, step, P.grad_stats_numpy(grads))
            else:
                grads = [p.grad.detach() for p in group.params]
                self._buf.device_scalars(group.grad_tags, step, P.grad_stats_torch(grads))
            if hists:
                self._hists.add_all(group.grad_hist_tags, grads, cpu=group.cpu)

    # -- the user's calls --------------------------------------------------------------------
    def _check_open(self, what: str) -> None:
        if self._closed:
            raise RuntimeError(f"{what} was called after close(): the run in {self.run_dir} is already "
                               f"closed. Attach a new recorder (probes.attach) to record another run.")

    def record_step(self, loss, *, logits=None, targets=None, ignore_index: int | None = None, **scalars) -> None:
        """Record one optimizer step: its loss (a tensor on any device, or a float), optionally the
        logits (and targets) of the batch, and any extra named scalars.

        logits are class scores (batch, classes) or (batch, ..., classes), e.g. a language model's
        (batch, tokens, vocabulary), or binary logits (batch,) or (batch, 1); what a model returned
        works too: a dict or Hugging Face ModelOutput with "logits", or (logits, loss). targets are
        one class index per prediction, or probabilities of the logits' shape. Positions whose target
        is negative (-100, cross_entropy's default ignore_index) or equal to `ignore_index` (e.g. a
        padding token id) count in no statistic. A causal language model predicts token t+1 at
        position t: pass the targets aligned with the logits (labels[:, 1:] for logits[:, :-1]) when
        the loss shifts them. A bad argument raises TypeError or ValueError and records nothing: the
        step is not counted."""
        self._check_open("record_step()")
        # Every argument is checked before anything is recorded, so a bad call leaves no trace.
        values = [(tags.TRAIN_LOSS, _number("loss", loss))]
        for name, value in scalars.items():
            values.append((tags.split_metric("train", name), _number(name, value)))
        if logits is not None or targets is not None:
            logits = _check_logits(logits, targets, ignore_index)
        opt = self._opt_ref() if self._opt_ref is not None else None
        if opt is not None:
            for gi, g in enumerate(opt.param_groups):
                tag = _LR_TAGS[gi] if gi < len(_LR_TAGS) else tags.lr(gi)
                values.append((tag, _number(tag, g["lr"])))
        self.step = step = self.step + 1
        self._add_values(step, values)
        self._buf.scalars((tags.WALL_TIME,), step, (time.time(),))
        if opt is not None:
            if self._opt_calls == self._opt_calls_seen:
                self._event(step, "skipped_step", "the optimizer did not step (e.g. GradScaler found inf/NaN "
                            "gradients and skipped the update)")
            self._opt_calls_seen = self._opt_calls
        if self._sampling:
            try:
                if logits is not None:
                    self._record_logits("train", step, logits, targets, explicit=scalars, calibration=False,
                                        ignore_index=ignore_index)
                if opt is None:  # without an optimizer, gradients are read here instead of pre-step
                    model = self._model_ref()
                    if model is not None:
                        named = [(clean_name(n), p) for n, p in model.named_parameters() if p.grad is not None]
                        self._record_grads(self._plans.get([p for _, p in named], lambda: named), step)
            except Exception as e:
                self._event(step, "warning", f"step probe failed: {e!r}")
            self._hists.bin_into(self._buf, step)
        self._pending = None
        self._maybe_flush(step)
        self._arm(step + 1)

    def record_eval(self, loss=None, *, logits=None, targets=None, split: str = "val", ignore_index: int | None = None,
                    **scalars) -> None:
        """Record an evaluation at the current step: loss, optionally logits/targets (for confidence,
        accuracy and a calibration table; ignored positions as in record_step), and any extra named
        scalars (e.g. accuracy=0.93). A bad argument raises TypeError or ValueError and records
        nothing."""
        self._check_open("record_eval()")
        if not isinstance(split, str) or not split or "/" in split:
            raise ValueError(f"split must be a name without '/', such as 'val' or 'test'; got {split!r}")
        values = [] if loss is None else [(tags.split_metric(split, "loss"), _number("loss", loss))]
        for name, value in scalars.items():
            values.append((tags.split_metric(split, name), _number(name, value)))
        if logits is not None or targets is not None:
            logits = _check_logits(logits, targets, ignore_index)
        step = self.step
        self._add_values(step, values)
        if logits is not None:
            try:
                self._record_logits(split, step, logits, targets, explicit=scalars, calibration=True,
                                    ignore_index=ignore_index)
            except Exception as e:  # the arguments were checked: this is the probe's failure, not the user's
                self._event(step, "warning", f"evaluation probe failed: {e!r}")
        self._flush()  # evaluations are rare and people watch for them: show them at once

    def _record_logits(self, split, step, logits, targets, *, explicit, calibration, ignore_index=None) -> None:
        buf = self._buf
        if "n_classes" not in self._meta_known:  # lets the rules compare the first loss with ln(classes)
            self._meta_known["n_classes"] = buf.meta["n_classes"] = L.n_classes(logits)
        bins, hist = self.options.hist_bins, self.options.record_histograms or calibration
        conf_tags = (tags.split_metric(split, "confidence"),)
        if logits.is_cpu:
            with quiet():
                conf, stats, correct, _ = L.stats_numpy(logits, targets, ignore_index)
                keep, keep_tags = self._logit_tags(split, explicit, correct is not None)
                buf.scalars(keep_tags, step, [stats[i] for i in keep])
                if hist:
                    buf.hists(conf_tags, step, _ZERO, _ONE, fixed_numpy(conf, bins, 0.0, 1.0)[None])
                if calibration and correct is not None:
                    sums = L.calibration_sums_numpy(conf, correct, L.CALIBRATION_BINS)
                    buf.table(tags.calibration(split), step, sums, L.calibration_table)
            return
        conf, stats, correct, valid = L.stats_torch(logits, targets, ignore_index)
        keep, keep_tags = self._logit_tags(split, explicit, correct is not None)
        buf.device_scalars(keep_tags, step, torch.stack([stats[i] for i in keep]))  # views: no host copy
        if hist:
            buf.device_hists(conf_tags, step, L.confidence_counts_torch(conf, valid, bins), 0.0, 1.0)
        if calibration and correct is not None:
            sums = L.calibration_sums_torch(conf, correct, L.CALIBRATION_BINS, valid)
            buf.device_table(tags.calibration(split), step, sums, L.calibration_table)

    def _logit_tags(self, split: str, explicit: dict, has_targets: bool) -> tuple[list[int], tuple]:
        key = ("logits", split, frozenset(explicit) & _LOGIT_STATS if explicit else _NONE, has_targets)
        got = self._tag_cache.get(key)
        if got is None:
            got = self._tag_cache[key] = L.kept_stats(split, explicit, has_targets)
        return got

    def _add_values(self, step: int, values: list) -> None:
        """Values checked by _number: floats, or one-element tensors on a device."""
        buf = self._buf
        for tag, v in values:
            if type(v) is float:
                buf.scalars((tag,), step, (v,))
            else:  # read at the next flush, so the GPU is not waited on here
                buf.device_scalars((tag,), step, v)

    def _event(self, step, kind: str, message: str) -> None:
        self._buf.event(step, kind, message)

    # -- flushing ----------------------------------------------------------------------------
    def _maybe_flush(self, step: int) -> None:
        if (step - self._last_flush_step >= self.options.flush_steps
                or time.monotonic() - self._last_flush_time >= self.options.flush_secs):
            self._flush()

    def _flush(self) -> None:
        """Hand everything buffered to the writer thread. Device values start their copy to the host
        here (one transfer per device); on CUDA the training thread does not wait for it."""
        buf, self._buf = self._buf, FlushBuffer()
        self._last_flush_step, self._last_flush_time = self.step, time.monotonic()
        buf.start_copy()
        last_step, state = self.step, self._loss_state

        def job():
            batch = buf.to_batch()
            _note_nonfinite_loss(batch, state)
            return batch, last_step
        self._sink.submit(job)

    # -- closing -----------------------------------------------------------------------------
    def close(self, status: str | None = None, *, error: str | None = None) -> None:
        """Flush everything, remove every hook and mark the run finished (or `status`). Idempotent.

        If the probes could not write (a full disk), training went on: the run is marked failed
        with the reason where run.json can still be written, a RuntimeWarning says so, and
        close() does not raise; `write_error` holds the first error."""
        if self._closed:
            return
        status = status or schema.FINISHED
        if status not in schema.STATUSES or status == schema.RUNNING:
            raise ValueError(f"status must be one of finished, failed, stopped; got {status!r}")
        if error is not None and not isinstance(error, str):
            raise TypeError(f"error must be a message (str) or None, got {type(error).__name__}")
        self._closed = True
        try:
            self._act_hooks.remove()
            self._persistent.remove()
            self._plans.clear()  # they hold the weight copies
            self._flush()
        finally:  # whatever happened above, the writer thread ends and the run's status is written
            self._sink.close(status, error=error, last_step=self.step)

    @property
    def write_error(self) -> BaseException | None:
        """The first error that kept the probes from writing to the run directory, or None."""
        return self._sink.error

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        elif issubclass(exc_type, KeyboardInterrupt):
            self.close(schema.STOPPED, error="interrupted (KeyboardInterrupt)")
        else:
            self.close(schema.FAILED, error=f"{exc_type.__name__}: {exc}")
        return False

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self):
        return f"Recorder(run_dir={str(self.run_dir)!r}, step={self.step}, closed={self._closed})"


def _note_nonfinite_loss(batch: Batch, state: dict) -> None:
    """On the writer thread: a nonfinite_loss event at the first step whose training loss is NaN
    or infinite (once per run)."""
    loss = batch.scalars.get(tags.TRAIN_LOSS)
    if loss is not None and not state["nonfinite_seen"]:
        bad = ~np.isfinite(loss[1])
        if bad.any():
            state["nonfinite_seen"] = True
            i = int(np.argmax(bad))
            batch.events.append((int(loss[0][i]), time.time(), "nonfinite_loss",
                                 f"training loss became {loss[1][i]} at step {int(loss[0][i])}"))


def _number(what: str, value):
    """value as a float, or as a one-element tensor kept on its device (not waited for); a
    TypeError or ValueError saying what was expected otherwise. Nothing is recorded here."""
    if type(value) is float:  # the common cases first: they are on every step's path
        return value
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{what} must be a single number (a 0-d or 1-element tensor), got a tensor of "
                             f"shape {tuple(value.shape)}")
        if not value.is_cpu:
            if value.is_complex():
                raise TypeError(f"{what} must be a real number, got a complex tensor")
            return value.detach().reshape(1)
        value = value.item()
    elif isinstance(value, np.ndarray):
        if value.size != 1:
            raise ValueError(f"{what} must be a single number, got an array of shape {value.shape}")
        value = value.item()
    if isinstance(value, (str, bytes)):  # float("1.5") would accept text
        raise TypeError(f"{what} must be a number or a one-element tensor, got {type(value).__name__} {value!r:.60}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{what} must be a number or a one-element tensor, got {type(value).__name__}") from None


def _check_logits(logits, targets, ignore_index=None):
    """The logits tensor (L.logits_of: model outputs are accepted), once its shape and the targets'
    are checked."""
    if logits is None:
        raise ValueError("targets were passed without logits: accuracy needs both (pass logits=...)")
    logits = L.logits_of(logits)
    L.check(logits, targets, ignore_index)
    return logits


def _close_at_exit(ref) -> None:
    rec = ref()
    if rec is None or rec.closed:
        return
    exc = getattr(sys, "last_value", None)  # set by the interpreter for an uncaught exception
    if exc is None:
        rec.close(schema.FINISHED)
    elif isinstance(exc, KeyboardInterrupt):
        rec.close(schema.STOPPED, error="interrupted (KeyboardInterrupt)")
    else:
        rec.close(schema.FAILED, error=f"{type(exc).__name__}: {exc}")

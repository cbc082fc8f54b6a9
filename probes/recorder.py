"""The Recorder: hooks on a user's model and optimizer, device-side buffers, periodic flushes."""

from __future__ import annotations

import atexit
import math
import sys
import time
import uuid
import weakref
from collections import defaultdict

import numpy as np
import torch
import torch.nn as nn

from runstore import Batch, RunWriter, schema, tags
from . import cpu_stats as C
from . import reductions as R
from .hooks import HookSet
from .options import ProbeOptions
from .param_plan import Plan
from .sink import TensorBoardMirror, WriterThread
from .summary import clean_name, device_of, model_summary, optimizer_summary

# Reliability diagrams use 15 equal-width confidence bins, as in Guo et al. 2017 ("On Calibration
# of Modern Neural Networks"), which introduced the expected calibration error in this form.
CALIBRATION_BINS = 15
# What logits_stats returns, in order.
_LOGIT_STATS = ("confidence", "entropy", "accuracy")
_LOGIT_STATS_SET = frozenset(_LOGIT_STATS)
_NONE = frozenset()
_ZERO, _ONE = np.zeros(1), np.ones(1)  # the range of a confidence histogram (never written to)
_LR_TAGS = tuple(tags.lr(i) for i in range(16))
# The copy of the weights taken before each sampled optimizer step is kept between sampled steps
# when it is this small (allocating it afresh costs page faults every time); a larger model gets
# the memory back in between.
KEEP_WEIGHT_COPY_BYTES = 64 << 20


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
        self.options = opts = options
        self.step = 0  # optimizer steps recorded so far; step k's numbers are stored at step k
        self._closed = False
        self._model_ref = weakref.ref(model)
        self._opt_ref = weakref.ref(optimizer) if optimizer is not None else None
        self._compiled = hasattr(model, "_orig_mod")
        self._param_names = {id(p): clean_name(n) for n, p in model.named_parameters()}
        self._watched = self._select_modules(model)

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
        tb = TensorBoardMirror(self.run_dir / schema.TB_DIR) if opts.tensorboard else None
        self._sink = WriterThread(writer, tb)

        # Buffers until the next flush. Values from a GPU stay on it (in _dev) until a flush copies
        # them to the host in one go; values from the CPU are plain numbers already (see cpu_stats).
        self._dev: list[tuple[str, tuple, int, torch.Tensor]] = []  # (kind, tags, step, tensor)
        self._rows: list[tuple[tuple, int, list]] = []  # (tags, step, one float per tag)
        self._host_hists: list[tuple] = []  # (tags, step, lo (k,), hi (k,), counts (k, bins))
        self._host_tables: list[tuple] = []  # (tag, step, calibration sums (3, bins))
        self._events: list[tuple] = []
        self._hist_queue: list[tuple] = []  # (tag, step, device sample) waiting to be binned
        self._np_queue: list[tuple] = []  # (tag, step, numpy sample) waiting to be binned
        self._binner = C.HistogramBinner(opts.hist_bins)
        self._tag_cache: dict = {}  # tag tuples are built once per layer, not on every call
        self._layer_info: dict = {}  # (module, ndim) -> cpu_stats.layer_info
        self._plans: dict[tuple, Plan] = {}  # ids of the parameters with gradients -> param_plan.Plan
        self._last_plan: Plan | None = None  # the only plan that may hold a weight copy
        self._meta_known = {"n_classes": opts.meta["n_classes"]} if "n_classes" in opts.meta else {}
        self._meta_pending: dict = {}
        self._last_flush_step, self._last_flush_time = 0, time.monotonic()
        self._loss_state = {"nonfinite_seen": False}

        self._persistent = HookSet()
        self._act_hooks = HookSet()
        self._sampling = False
        self._calls: dict[str, int] = {}
        self._forward_done = False
        self._opt_calls = self._opt_calls_seen = 0
        self._pending: Plan | None = None  # between the optimizer's pre- and post-step hooks
        if optimizer is not None:
            self._persistent.add(optimizer.register_step_pre_hook(self._on_opt_pre))
            self._persistent.add(optimizer.register_step_post_hook(self._on_opt_post))
        if self._compiled and self._watched:
            self._event(0, "warning", "torch.compile'd model: activation hooks are off (they would force "
                        "recompiles); gradients, weights and update ratios are recorded.")
            self._watched = []
        self._arm(1)
        atexit.register(_close_at_exit, weakref.ref(self))

    # -- module selection ------------------------------------------------------------------
    def _select_modules(self, model: nn.Module) -> list[tuple[str, nn.Module]]:
        sel = self.options.modules
        named = [(clean_name(n), m) for n, m in model.named_modules()]
        if sel is None:
            out = [(n, m) for n, m in named
                   if isinstance(m, R.ACTIVATION_TYPES) or next(m.parameters(recurse=False), None) is not None]
        elif callable(sel):
            out = [(n, m) for n, m in named if sel(n, m)]
        else:
            known = {n for n, _ in named}
            missing = [s for s in sel if s not in known]
            if missing:
                raise ValueError(f"modules {missing} are not in the model; its modules are: {sorted(known)}")
            out = [(n, m) for n, m in named if n in set(sel)]
        excl = set(self.options.exclude)
        seen, result = set(), []
        for n, m in out:  # a module registered under two names is watched once
            if n not in excl and id(m) not in seen:
                seen.add(id(m))
                result.append((n, m))
        return result

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

    def _make_act_hook(self, name: str):
        first_tags = self._act_tags(name, 1)

        def hook(module, args, output):
            if self._forward_done or not torch.is_grad_enabled():
                return
            try:
                if type(output) is torch.Tensor:  # the common case, without first_tensor's search
                    x = output if output.is_floating_point() else None
                else:
                    x = R.first_tensor(output)
                if x is None or x.numel() == 0:
                    return
                calls = self._calls
                n = calls[name] = calls.get(name, 0) + 1
                stat_tags, hist_tag = first_tags if n == 1 else self._act_tags(name, n)
                step = self.step + 1
                # Reduced now, not later: an in-place op (ReLU(inplace=True)) may overwrite x next.
                if x.is_cpu:
                    x = C.as_numpy(x)
                    info = self._layer_info.get((module, x.ndim))
                    if info is None:
                        info = self._layer_info[(module, x.ndim)] = C.layer_info(module, x.ndim)
                    with np.errstate(all="ignore"):
                        self._rows.append((stat_tags, step, C.activation_stats(module, x, info)))
                    if self.options.record_histograms:
                        self._np_queue.append((hist_tag, step, C.hist_sample(x, self.options.hist_sample)))
                else:
                    self._dev.append(("vec", stat_tags, step, R.activation_stats(module, x)))
                    if self.options.record_histograms:
                        self._hist_queue.append((hist_tag, step, R.hist_sample(x, self.options.hist_sample)))
            except Exception as e:  # a probe must never break the user's forward pass
                self._event(self.step + 1, "warning", f"activation probe on {name} failed: {e!r}")
        return hook

    def _act_tags(self, name: str, call: int) -> tuple[tuple, str]:
        key = name if call == 1 else (name, call)
        got = self._tag_cache.get(key)
        if got is None:
            tag_name = name if call == 1 else f"{name}#{call}"
            got = self._tag_cache[key] = (tuple(tags.act(tag_name, s) for s in tags.ACT_STATS), tags.act(tag_name))
        return got

    def _queue_samples(self, hist_tags: tuple, step: int, xs: list, *, cpu: bool) -> None:
        """Queue a histogram sample (a copy) of each non-empty x for binning at the end of the step:
        flat numpy arrays of CPU tensors (cpu_stats) or tensors on one device (reductions)."""
        k = self.options.hist_sample
        if cpu:
            self._np_queue.extend([(t, step, C.hist_sample(x, k)) for t, x in zip(hist_tags, xs) if x.size])
        else:
            self._hist_queue.extend([(t, step, R.hist_sample(x, k)) for t, x in zip(hist_tags, xs) if x.numel()])

    def _bin_queued_hists(self) -> None:
        """Bin every histogram sampled during this step in one batched pass per device."""
        queue, self._hist_queue = self._hist_queue, []
        for items in R.group_by_device(queue, lambda it: it[2]):
            counts, lo, hi = R.batched_histograms([it[2] for it in items], self.options.hist_bins)
            self._dev.append(("hists", tuple((it[0], it[1]) for it in items), 0,
                              torch.cat([counts.reshape(-1), lo.float(), hi.float()])))
        queue, self._np_queue = self._np_queue, []
        if queue:
            with np.errstate(all="ignore"):
                counts, lo, hi = self._binner([it[2] for it in queue])
            hist_tags = tuple(it[0] for it in queue)
            self._host_hists.append((hist_tags, queue[0][1], lo, hi, counts))

    # -- optimizer hooks ---------------------------------------------------------------------
    def _plan(self, params: list[torch.Tensor], named) -> Plan:
        """The cached plan for these parameters (see param_plan); named() gives their names when a
        new one has to be made."""
        key = tuple(map(id, params))
        plan = self._plans.get(key)
        if plan is None or not plan.matches(params):
            if len(self._plans) > 8:  # the set keeps changing (e.g. layers frozen and thawed)
                self._plans.clear()
            plan = self._plans[key] = Plan(named())
        if plan is not self._last_plan:
            # One weight copy at a time, as for a single plan: when the set of parameters with
            # gradients changes from step to step (e.g. mixture-of-experts routing), cached plans
            # would otherwise each keep a copy of their weights.
            if self._last_plan is not None:
                self._last_plan.release_copies()
            self._last_plan = plan
        return plan

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
        if not self._sampling:
            return
        try:
            params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
            plan = self._plan(params, lambda: self._opt_names(optimizer, params))
            self._record_grads(plan, self.step + 1)
            for group in plan.groups:  # to measure this step's update once the optimizer has applied it
                group.snapshot()
            self._pending = plan
        except Exception as e:
            self._plans.clear()
            self._last_plan = None
            self._event(self.step + 1, "warning", f"gradient probe failed: {e!r}")

    def _on_opt_post(self, optimizer, args, kwargs):
        if not self._sampling or self._pending is None:
            return
        plan, self._pending = self._pending, None
        step = self.step + 1
        hists = self.options.record_histograms
        try:
            for group in plan.groups:
                if group.cpu:
                    now = group.weights_np()
                    with np.errstate(all="ignore"):  # exploding weights overflow float32 squares
                        ratios, norms = C.update_stats(group.old_np(), now)
                    self._rows.append((group.update_tags, step, ratios))
                    self._rows.append((group.weight_tags, step, norms))
                    if hists:
                        self._queue_samples(group.weight_hist_tags, step, now, cpu=True)
                    continue
                old, now = group.copy, [p.detach() for p in group.params]
                w_old = torch.stack(torch._foreach_norm(old)).float()
                torch._foreach_sub_(old, now)  # the copy becomes -(this step's update)
                dw = torch.stack(torch._foreach_norm(old)).float()
                # Undefined for a parameter that was exactly zero (e.g. zero-initialised biases).
                ratio = torch.where(w_old > 0, dw / w_old.clamp_min(torch.finfo(torch.float32).tiny),
                                    torch.full_like(w_old, float("nan")))
                self._dev.append(("vec", group.update_tags, step, ratio))
                self._dev.append(("vec", group.weight_tags, step, torch.stack(torch._foreach_norm(now)).float()))
                if hists:
                    self._queue_samples(group.weight_hist_tags, step, now, cpu=False)
        except Exception as e:
            self._event(step, "warning", f"update-ratio probe failed: {e!r}")
        if not self._is_sampled(step + 1) and plan.copy_bytes > KEEP_WEIGHT_COPY_BYTES:
            plan.release_copies()  # a large model: give the memory back until the next sampled step

    def _record_grads(self, plan: Plan, step: int) -> None:
        hists = self.options.record_histograms
        for group in plan.groups:
            if group.cpu:
                grads = [C.as_numpy(p.grad).reshape(-1) for p in group.params]
                with np.errstate(all="ignore"):  # exploding gradients overflow float32 squares
                    self._rows.append((group.grad_tags, step, C.param_stats(grads)))
                if hists:
                    self._queue_samples(group.grad_hist_tags, step, grads, cpu=True)
            else:
                grads = [p.grad.detach() for p in group.params]
                self._dev.append(("vec", group.grad_tags, step, R.param_stats(grads).reshape(-1)))
                if hists:
                    self._queue_samples(group.grad_hist_tags, step, grads, cpu=False)

    # -- the user's calls --------------------------------------------------------------------
    def _check_open(self, what: str) -> None:
        if self._closed:
            raise RuntimeError(f"{what} was called after close(): the run in {self.run_dir} is already "
                               f"closed. Attach a new recorder (probes.attach) to record another run.")

    def record_step(self, loss, *, logits=None, targets=None, **scalars) -> None:
        """Record one optimizer step: its loss (a tensor on any device, or a float), optionally the
        logits (and targets) of the batch, and any extra named scalars."""
        self._check_open("record_step()")
        self.step = step = self.step + 1
        self._add_value(tags.TRAIN_LOSS, step, loss)
        self._rows.append(((tags.WALL_TIME,), step, (time.time(),)))
        for name, value in scalars.items():
            self._add_value(tags.split_metric("train", name), step, value)
        opt = self._opt_ref() if self._opt_ref is not None else None
        if opt is not None:
            for gi, g in enumerate(opt.param_groups):
                self._add_value(_LR_TAGS[gi] if gi < len(_LR_TAGS) else tags.lr(gi), step, g["lr"])
            if self._opt_calls == self._opt_calls_seen:
                self._event(step, "skipped_step", "the optimizer did not step (e.g. GradScaler found inf/NaN "
                            "gradients and skipped the update)")
            self._opt_calls_seen = self._opt_calls
        if self._sampling:
            try:
                if logits is not None:
                    self._record_logits("train", step, logits, targets, explicit=scalars, calibration=False)
                if opt is None:  # without an optimizer, gradients are read here instead of pre-step
                    model = self._model_ref()
                    if model is not None:
                        named = [(clean_name(n), p) for n, p in model.named_parameters() if p.grad is not None]
                        self._record_grads(self._plan([p for _, p in named], lambda: named), step)
            except Exception as e:
                self._event(step, "warning", f"step probe failed: {e!r}")
        if self._hist_queue or self._np_queue:
            self._bin_queued_hists()
        self._pending = None
        self._maybe_flush(step)
        self._arm(step + 1)

    def record_eval(self, loss=None, *, logits=None, targets=None, split: str = "val", **scalars) -> None:
        """Record an evaluation at the current step: loss, optionally logits/targets (for confidence,
        accuracy and a calibration table), and any extra named scalars (e.g. accuracy=0.93)."""
        self._check_open("record_eval()")
        if not isinstance(split, str) or not split or "/" in split:
            raise ValueError(f"split must be a name without '/', such as 'val' or 'test'; got {split!r}")
        step = self.step
        if loss is not None:
            self._add_value(tags.split_metric(split, "loss"), step, loss)
        for name, value in scalars.items():
            self._add_value(tags.split_metric(split, name), step, value)
        if logits is not None:
            self._record_logits(split, step, logits, targets, explicit=scalars, calibration=True)
        self._flush()  # evaluations are rare and people watch for them: show them at once

    def _record_logits(self, split, step, logits, targets, *, explicit, calibration) -> None:
        if not isinstance(logits, torch.Tensor) or logits.ndim < 1 or logits.shape[-1] < 2:
            raise ValueError("logits must be a tensor of class scores with the classes on the last dimension")
        if "n_classes" not in self._meta_known:  # lets the rules compare the first loss with ln(classes)
            self._meta_known["n_classes"] = self._meta_pending["n_classes"] = int(logits.shape[-1])
        bins = self.options.hist_bins
        conf_tag = tags.split_metric(split, "confidence")
        if logits.is_cpu:
            with np.errstate(all="ignore"):
                conf, vec, correct = C.logits_stats(logits, targets)
                keep, keep_tags = self._logit_tags(split, explicit, correct is not None)
                self._rows.append((keep_tags, step, [vec[i] for i in keep]))
                if self.options.record_histograms or calibration:
                    self._host_hists.append(((conf_tag,), step, _ZERO, _ONE, C.fixed_histogram(conf, bins, 0.0, 1.0)[None]))
                if calibration and correct is not None:
                    self._host_tables.append((tags.calibration(split), step,
                                              C.calibration_sums(conf, correct, CALIBRATION_BINS)))
            return
        conf, vec, correct = R.logits_stats(logits, targets)
        keep, keep_tags = self._logit_tags(split, explicit, correct is not None)
        self._dev.append(("vec", keep_tags, step, torch.stack([vec[i] for i in keep])))  # views: no host copy
        if self.options.record_histograms or calibration:
            counts = R.fixed_histogram(conf, bins, 0.0, 1.0)
            self._dev.append(("hists", ((conf_tag, step),), step,
                              torch.cat([counts, torch.linspace(0.0, 1.0, 2, device=counts.device)])))
        if calibration and correct is not None:
            self._dev.append(("calib", (tags.calibration(split),), step,
                              R.calibration_sums(conf, correct, CALIBRATION_BINS).reshape(-1)))

    def _logit_tags(self, split: str, explicit: dict, has_targets: bool) -> tuple[list[int], tuple]:
        """Which of [confidence, entropy, accuracy] to record (not those the caller passed
        explicitly, no accuracy without targets), and their tags."""
        key = ("logits", split, frozenset(explicit) & _LOGIT_STATS_SET if explicit else _NONE, has_targets)
        got = self._tag_cache.get(key)
        if got is None:
            keep = [i for i, n in enumerate(_LOGIT_STATS) if n not in explicit and (has_targets or n != "accuracy")]
            got = self._tag_cache[key] = (keep, tuple(tags.split_metric(split, _LOGIT_STATS[i]) for i in keep))
        return got

    def _add_value(self, tag: str, step: int, value) -> None:
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise ValueError(f"{tag} must be a single number (a 0-d or 1-element tensor), got shape "
                                 f"{tuple(value.shape)}")
            if not value.is_cpu:  # read at the next flush, so the GPU is not waited on here
                self._dev.append(("vec", (tag,), step, value.detach().reshape(1)))
                return
            value = value.item()
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"{tag} must be a number or a tensor, got {type(value).__name__}") from None
        self._rows.append(((tag,), step, (v,)))

    def _event(self, step, kind: str, message: str) -> None:
        self._events.append((step, time.time(), kind, message))

    # -- flushing ----------------------------------------------------------------------------
    def _maybe_flush(self, step: int) -> None:
        if (step - self._last_flush_step >= self.options.flush_steps
                or time.monotonic() - self._last_flush_time >= self.options.flush_secs):
            self._flush()

    def _flush(self) -> None:
        """Copy buffered device values to the host in one transfer per device and hand them to the
        writer thread. On CUDA the copy is asynchronous: the training thread does not wait for it."""
        dev, events = self._dev, self._events
        host = (self._rows, self._host_hists, self._host_tables)
        self._dev, self._events, self._rows, self._host_hists, self._host_tables = [], [], [], [], []
        self._last_flush_step, self._last_flush_time = self.step, time.monotonic()
        layout, transfers = [], []
        for items in R.group_by_device(dev, lambda it: it[3]):
            flat = torch.cat([t.reshape(-1).float() for _, _, _, t in items])
            ready = None
            if flat.device.type == "cuda":
                flat = flat.to("cpu", non_blocking=True)  # lands in pinned memory; no wait here
                ready = torch.cuda.Event()
                ready.record()
            elif flat.device.type != "cpu":
                flat = flat.cpu()  # other accelerators (mps, xpu): a plain copy
            layout.append([(k, tg, s, t.numel()) for k, tg, s, t in items])
            transfers.append((flat, ready))
        meta, self._meta_pending = self._meta_pending, {}
        last_step, bins, state = self.step, self.options.hist_bins, self._loss_state

        def job():
            batch = _build_batch(layout, transfers, host, events, bins, state)
            batch.meta.update(meta)
            return batch, last_step
        self._sink.submit(job)

    # -- closing -----------------------------------------------------------------------------
    def close(self, status: str | None = None, *, error: str | None = None) -> None:
        """Flush everything, remove every hook and mark the run finished (or `status`). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._act_hooks.remove()
        self._persistent.remove()
        self._plans.clear()  # they hold the weight copies
        self._last_plan = None
        status = status or schema.FINISHED
        if status not in schema.STATUSES or status == schema.RUNNING:
            raise ValueError(f"status must be one of finished, failed, stopped; got {status!r}")
        self._flush()
        extra = {"error": error} if error else {}
        self._sink.close(status, last_step=self.step, **extra)
        if self._sink.error is not None:
            raise RuntimeError(f"probes could not write all data to {self.run_dir}: {self._sink.error!r}")

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


def _build_batch(layout, transfers, host, events, bins, state) -> Batch:
    """Runs on the writer thread: turn the flat host arrays and the host rows back into tagged
    scalars, histograms and calibration tables. Rows with the same tags (the same layer at many
    steps) become one 2-D array, so the work per value is numpy's, not Python's."""
    rows, host_hists, host_tables = host
    groups: dict[tuple, tuple[list, list]] = {}  # tags -> (steps, rows of values)
    hists: dict[str, tuple[list, list, list, list]] = defaultdict(lambda: ([], [], [], []))
    hgroups: dict[tuple, tuple[list, list, list, list]] = {}  # tags -> (steps, lo rows, hi rows, counts)
    batch = Batch(events=list(events))
    for items, (flat, ready) in zip(layout, transfers):
        if ready is not None:
            ready.synchronize()  # waits on the writer thread, never on the training thread
        arr = flat.numpy().astype(np.float64)
        off = 0
        for kind, tg, step, n in items:
            chunk = arr[off:off + n]
            off += n
            if kind == "vec":
                g = groups.setdefault(tg, ([], []))
                g[0].append(step), g[1].append(chunk)
            elif kind == "hists":  # n histograms: counts (n*bins), then n lows, then n highs
                k = len(tg)
                counts = chunk[:-2 * k].reshape(k, -1)
                for i, (t, s) in enumerate(tg):
                    h = hists[t]
                    h[0].append(s), h[1].append(chunk[-2 * k + i]), h[2].append(chunk[-k + i]), h[3].append(counts[i])
            elif kind == "calib":
                batch.tables.append((tg[0], step, _calibration_table(chunk.reshape(3, -1))))
    for tg, step, values in rows:
        g = groups.setdefault(tg, ([], []))
        g[0].append(step), g[1].append(values)
    for tg, step, lo, hi, counts in host_hists:
        g = hgroups.setdefault(tg, ([], [], [], []))
        g[0].append(step), g[1].append(lo), g[2].append(hi), g[3].append(counts)
    for t, s, sums in host_tables:
        batch.tables.append((t, s, _calibration_table(sums)))
    columns: dict[str, list] = defaultdict(list)  # tag -> [(steps, values), ...]
    for tg, (steps, values) in groups.items():
        table = np.asarray(values, np.float64).reshape(len(steps), len(tg))
        steps = np.asarray(steps, np.int64)
        for j, t in enumerate(tg):
            columns[t].append((steps, table[:, j]))
    for t, parts in columns.items():
        steps = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
        vals = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
        order = np.argsort(steps, kind="stable")
        batch.scalars[t] = (steps[order], np.ascontiguousarray(vals[order]))
    hcolumns: dict[str, list] = defaultdict(list)  # tag -> [(steps, lo, hi, counts), ...]
    for t, (steps, lo, hi, counts) in hists.items():  # from devices: one histogram per entry
        hcolumns[t].append((np.asarray(steps, np.int64), np.asarray(lo, np.float64), np.asarray(hi, np.float64),
                            np.stack(counts)))
    for tg, (steps, lo, hi, counts) in hgroups.items():  # from the CPU: one (k, bins) block per step
        steps, lo, hi, counts = np.asarray(steps, np.int64), np.stack(lo), np.stack(hi), np.stack(counts)
        for j, t in enumerate(tg):
            hcolumns[t].append((steps, lo[:, j], hi[:, j], counts[:, j]))
    for t, parts in hcolumns.items():
        steps, lo, hi, counts = (np.concatenate(x) for x in zip(*parts)) if len(parts) > 1 else parts[0]
        order = np.argsort(steps, kind="stable")
        batch.hists[t] = (steps[order], lo[order].astype(np.float64), hi[order].astype(np.float64),
                          np.ascontiguousarray(counts[order], dtype=np.float64))
    loss = batch.scalars.get(tags.TRAIN_LOSS)
    if loss is not None and not state["nonfinite_seen"]:
        bad = ~np.isfinite(loss[1])
        if bad.any():
            state["nonfinite_seen"] = True
            i = int(np.argmax(bad))
            batch.events.append((int(loss[0][i]), time.time(), "nonfinite_loss",
                                 f"training loss became {loss[1][i]} at step {int(loss[0][i])}"))
    return batch


def _calibration_table(sums: np.ndarray) -> dict:
    count, conf_sum, correct = sums
    bins = len(count)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.where(count > 0, conf_sum / count, np.nan)
        acc = np.where(count > 0, correct / count, np.nan)
    total = count.sum()
    ece = float(np.nansum(count * np.abs(acc - conf)) / total) if total else math.nan
    edges = np.linspace(0, 1, bins + 1)
    return {"bin_lo": edges[:-1].tolist(), "bin_hi": edges[1:].tolist(), "count": count.tolist(),
            "confidence": conf.tolist(), "accuracy": acc.tolist(), "ece": ece, "n": float(total)}


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

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
from . import reductions as R
from .hooks import HookSet
from .options import ProbeOptions
from .sink import TensorBoardMirror, WriterThread
from .summary import clean_name, device_of, model_summary, optimizer_summary

# Reliability diagrams use 15 equal-width confidence bins, as in Guo et al. 2017 ("On Calibration
# of Modern Neural Networks"), which introduced the expected calibration error in this form.
CALIBRATION_BINS = 15


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

        # Buffers: device tensors wait here until a flush copies them to the host in one go.
        self._dev: list[tuple[str, tuple, int, torch.Tensor]] = []  # (kind, tags, step, tensor)
        self._host = defaultdict(lambda: ([], []))  # tag -> (steps, values) of plain floats
        self._events: list[tuple] = []
        self._hist_queue: list[tuple] = []  # (tag, step, sample) waiting to be binned
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
        self._before: dict | None = None
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
            return
        self._calls, self._forward_done = {}, False
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
        def hook(module, args, output):
            if self._forward_done or not torch.is_grad_enabled():
                return
            try:
                x = R.first_tensor(output)
                if x is None or x.numel() == 0:
                    return
                n = self._calls.get(name, 0) + 1
                self._calls[name] = n
                tag_name = name if n == 1 else f"{name}#{n}"
                step = self.step + 1
                # Reduced now, not later: an in-place op (ReLU(inplace=True)) may overwrite x next.
                self._add_vector(tuple(tags.act(tag_name, s) for s in tags.ACT_STATS), step,
                                 R.activation_stats(module, x))
                if self.options.record_histograms:
                    self._add_hist(tags.act(tag_name), step, x.detach())
            except Exception as e:  # a probe must never break the user's forward pass
                self._event(self.step + 1, "warning", f"activation probe on {name} failed: {e!r}")
        return hook

    def _add_hist(self, tag: str, step: int, x: torch.Tensor) -> None:
        if x.numel():
            self._hist_queue.append((tag, step, R.hist_sample(x, self.options.hist_sample)))

    def _bin_queued_hists(self) -> None:
        """Bin every histogram sampled during this step in one batched pass per device."""
        queue, self._hist_queue = self._hist_queue, []
        for items in _group_by_device(queue, key=lambda it: it[2].device):
            counts, lo, hi = R.batched_histograms([it[2] for it in items], self.options.hist_bins)
            self._dev.append(("hists", tuple((it[0], it[1]) for it in items), 0,
                              torch.cat([counts.reshape(-1), lo.float(), hi.float()])))

    # -- optimizer hooks ---------------------------------------------------------------------
    def _opt_params(self, optimizer) -> list[tuple[str, torch.Tensor]]:
        out = []
        for gi, g in enumerate(optimizer.param_groups):
            for pi, p in enumerate(g["params"]):
                out.append((self._param_names.get(id(p)) or f"group{gi}.param{pi}", p))
        return out

    def _on_opt_pre(self, optimizer, args, kwargs):
        self._opt_calls += 1
        if not self._sampling:
            return
        try:
            named = [(n, p) for n, p in self._opt_params(optimizer) if p.grad is not None]
            self._record_grads(named, self.step + 1)
            # Copies of the weights, to measure this step's update once the optimizer has applied it.
            self._before = {id(p): (n, p, p.detach().clone()) for n, p in named}
        except Exception as e:
            self._event(self.step + 1, "warning", f"gradient probe failed: {e!r}")

    def _on_opt_post(self, optimizer, args, kwargs):
        if not self._sampling or self._before is None:
            return
        before, self._before = self._before, None
        step = self.step + 1
        try:
            for dev_items in _group_by_device(list(before.values()), key=lambda it: it[1].device):
                names = [n for n, _, _ in dev_items]
                now = [p.detach() for _, p, _ in dev_items]
                old = [b for _, _, b in dev_items]
                dn = torch.stack(torch._foreach_norm(torch._foreach_sub(now, old))).float()
                wn = torch.stack(torch._foreach_norm(old)).float()
                # Undefined for a parameter that was exactly zero (e.g. zero-initialised biases).
                ratio = torch.where(wn > 0, dn / wn.clamp_min(torch.finfo(torch.float32).tiny),
                                    torch.full_like(wn, float("nan")))
                self._dev.append(("vec", tuple(tags.update_ratio(n) for n in names), step, ratio))
                self._dev.append(("vec", tuple(tags.weight(n, "norm") for n in names), step,
                                  torch.stack(torch._foreach_norm(now)).float()))
                if self.options.record_histograms:
                    for n, w in zip(names, now):
                        self._add_hist(tags.weight(n), step, w)
        except Exception as e:
            self._event(step, "warning", f"update-ratio probe failed: {e!r}")

    def _record_grads(self, named: list[tuple[str, torch.Tensor]], step: int) -> None:
        for items in _group_by_device(named, key=lambda it: it[1].device):
            grads = [p.grad.detach() for _, p in items]
            st = R.param_stats(grads)  # (n, 3)
            tag_list = tuple(tags.grad(n, s) for n, _ in items for s in tags.GRAD_STATS)
            self._dev.append(("vec", tag_list, step, st.reshape(-1)))
            if self.options.record_histograms:
                for (n, _), g in zip(items, grads):
                    self._add_hist(tags.grad(n), step, g)

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
        self._host[tags.WALL_TIME][0].append(step)
        self._host[tags.WALL_TIME][1].append(time.time())
        for name, value in scalars.items():
            self._add_value(tags.split_metric("train", name), step, value)
        opt = self._opt_ref() if self._opt_ref is not None else None
        if opt is not None:
            for gi, g in enumerate(opt.param_groups):
                self._add_value(tags.lr(gi), step, g["lr"])
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
                        self._record_grads([(clean_name(n), p) for n, p in model.named_parameters()
                                            if p.grad is not None], step)
            except Exception as e:
                self._event(step, "warning", f"step probe failed: {e!r}")
        if self._hist_queue:
            self._bin_queued_hists()
        self._act_hooks.remove()
        self._before = None
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
        conf, vec, correct = R.logits_stats(logits, targets)
        names = ["confidence", "entropy", "accuracy"]
        keep = [i for i, n in enumerate(names) if n not in explicit and not (n == "accuracy" and correct is None)]
        self._dev.append(("vec", tuple(tags.split_metric(split, names[i]) for i in keep), step,
                          torch.stack([vec[i] for i in keep])))  # views, not a list index: no host copy
        if self.options.record_histograms or calibration:
            counts = R.fixed_histogram(conf, self.options.hist_bins, 0.0, 1.0)
            self._dev.append(("hists", ((tags.split_metric(split, "confidence"), step),), step,
                              torch.cat([counts, torch.linspace(0.0, 1.0, 2, device=counts.device)])))
        if calibration and correct is not None:
            self._dev.append(("calib", (tags.calibration(split),), step,
                              R.calibration_sums(conf, correct, CALIBRATION_BINS).reshape(-1)))

    def _add_vector(self, tag_list: tuple, step: int, values) -> None:
        """Values of several tags at one step: a device tensor is buffered, floats go straight to
        the host buffer."""
        if isinstance(values, torch.Tensor):
            self._dev.append(("vec", tag_list, step, values))
        else:
            for tag, v in zip(tag_list, values):
                self._host[tag][0].append(step)
                self._host[tag][1].append(v)

    def _add_value(self, tag: str, step: int, value) -> None:
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise ValueError(f"{tag} must be a single number (a 0-d or 1-element tensor), got shape "
                                 f"{tuple(value.shape)}")
            self._dev.append(("vec", (tag,), step, value.detach().reshape(1)))
        else:
            try:
                v = float(value)
            except (TypeError, ValueError):
                raise TypeError(f"{tag} must be a number or a tensor, got {type(value).__name__}") from None
            self._host[tag][0].append(step)
            self._host[tag][1].append(v)

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
        dev, host, events = self._dev, self._host, self._events
        self._dev, self._host, self._events = [], defaultdict(lambda: ([], [])), []
        self._last_flush_step, self._last_flush_time = self.step, time.monotonic()
        layout, transfers = [], []
        for items in _group_by_device(dev, key=lambda it: it[3].device):
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
        host = {k: (list(v[0]), list(v[1])) for k, v in host.items()}
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


def _group_by_device(items, key):
    groups: dict = {}
    for it in items:
        groups.setdefault(key(it), []).append(it)
    return list(groups.values())


def _build_batch(layout, transfers, host, events, bins, state) -> Batch:
    """Runs on the writer thread: turn flat host arrays back into tagged scalars, histograms and
    calibration tables."""
    sc: dict[str, tuple[list, list]] = defaultdict(lambda: ([], []))
    hists: dict[str, tuple[list, list, list, list]] = defaultdict(lambda: ([], [], [], []))
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
                for t, v in zip(tg, chunk):
                    sc[t][0].append(step)
                    sc[t][1].append(v)
            elif kind == "hists":  # n histograms: counts (n*bins), then n lows, then n highs
                k = len(tg)
                counts = chunk[:-2 * k].reshape(k, -1)
                for i, (t, s) in enumerate(tg):
                    h = hists[t]
                    h[0].append(s), h[1].append(chunk[-2 * k + i]), h[2].append(chunk[-k + i]), h[3].append(counts[i])
            elif kind == "calib":
                batch.tables.append((tg[0], step, _calibration_table(chunk.reshape(3, -1))))
    for t, (steps, vals) in host.items():
        sc[t][0].extend(steps)
        sc[t][1].extend(vals)
    for t, (steps, vals) in sc.items():
        order = np.argsort(np.asarray(steps), kind="stable")
        batch.scalars[t] = (np.asarray(steps, np.int64)[order], np.asarray(vals, np.float64)[order])
    for t, (steps, lo, hi, counts) in hists.items():
        batch.hists[t] = (np.asarray(steps, np.int64), np.asarray(lo), np.asarray(hi), np.stack(counts))
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

"""The Lightning and Hugging Face Trainer workloads of benchmarks/overhead.py (opt-in:
`--workloads lightning,trainer`).

A framework runs a whole fit from one call, so each variant's fit runs in a thread of its own and
the fits take turns, --chunk steps at a time, handing a baton on (only the holder runs): a slow
spell of a shared machine hits every variant alike, as in the plain-loop harness. Each round runs
one fit per variant, and each variant is compared with the bare fit of the same round (median over
rounds). A turn is timed from taking the baton to handing it on, by a callback present in every
variant; the first turn (the Trainer's setup, first allocations) is not counted. As in the
plain-loop harness, a recorder's writer thread finishes its queue before its turn ends, and the
2 s flush timer is off, so flushes come every 200 steps as in an uninterrupted fit.

Variants, at the probes' default cadence (every 50 steps) and at every step:
- bare: the fit as it is, no logger (logger=False; the Trainer's report_to=[] and no logging).
- probes: the framework's ProbesCallback (probes.integrations), at its defaults or every=1.
- Lightning's grad_norm: lightning.pytorch.utilities.grad_norm logged with self.log_dict from
  on_before_optimizer_step, as Lightning's docs show it, every 50 steps or every step.
- Trainer logging: logging_steps=50 or 1 (the loss and gradient norm it logs; its console printer
  removed, so that the cost is the Trainer's own bookkeeping, not a terminal).
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

BATCH, FEATURES, CLASSES, N_BATCHES = 128, 64, 10, 8


def mlp():  # the MLP of benchmarks/overhead.py
    return nn.Sequential(nn.Linear(FEATURES, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                         nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, CLASSES))


def _data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(BATCH * N_BATCHES, FEATURES, generator=g), torch.randint(0, CLASSES, (BATCH * N_BATCHES,), generator=g)


class Baton:
    """Whose turn it is among fits running in threads."""

    def __init__(self, order: list[str]):
        self.order, self.done = list(order), set()
        self.turn = order[0]
        self.cond = threading.Condition()

    def wait(self, who: str) -> None:
        with self.cond:
            self.cond.wait_for(lambda: self.turn == who)

    def hand_on(self, who: str, finished: bool = False) -> None:
        with self.cond:
            if finished:
                self.done.add(who)
            left = [v for v in self.order if v not in self.done]
            if left:
                i = self.order.index(who)
                self.turn = next(v for v in self.order[i + 1:] + self.order[:i + 1] if v in left)
            self.cond.notify_all()


class _Clock:
    """Time and steps of one fit's turns (after its first), handing the baton on every `chunk`
    steps."""

    def __init__(self, who: str, baton: Baton, chunk: int, device: str):
        self.who, self.baton, self.chunk, self.device = who, baton, chunk, device
        self.steps = self.timed_steps = 0
        self.seconds = 0.0
        self.started = None
        self.recorder = None  # a callback's recorder: its writer thread finishes within the turn

    def begin(self) -> None:
        self.baton.wait(self.who)
        self.started = time.perf_counter()

    def _end_turn(self, finished: bool) -> None:
        if self.recorder is not None and getattr(self.recorder, "_sink", None) is not None:
            self.recorder._sink.drain()
        if self.device == "cuda":
            torch.cuda.synchronize()
        n = self.steps % self.chunk or self.chunk
        if self.steps > self.chunk:  # the first turn holds the setup: not counted
            self.seconds += time.perf_counter() - self.started
            self.timed_steps += n
        self.baton.hand_on(self.who, finished)

    def tick(self) -> None:
        self.steps += 1
        if self.steps % self.chunk == 0:
            self._end_turn(False)
            self.begin()

    def finish(self) -> None:
        if self.steps % self.chunk:
            self._end_turn(True)
        else:
            self.baton.hand_on(self.who, True)

    def per_step(self) -> float:
        return self.seconds / max(self.timed_steps, 1)


# -- Lightning --------------------------------------------------------------------------------
LIGHTNING_VARIANTS = {"bare": "bare fit", "probes:default": "ProbesCallback, defaults (every 50)",
                      "probes:1": "ProbesCallback, every step", "grad_norm:50": "Lightning grad_norm, every 50 steps",
                      "grad_norm:1": "Lightning grad_norm, every step"}


def _lightning_fit(variant: str, steps: int, device: str, run_dir: Path, clock: _Clock) -> None:
    import lightning.pytorch as pl
    from lightning.pytorch.utilities import grad_norm

    from probes.integrations.lightning import ProbesCallback

    kind, _, arg = variant.partition(":")

    class Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.net = mlp()

        def training_step(self, batch, batch_idx):
            x, y = batch
            logits = self.net(x)
            return {"loss": F.cross_entropy(logits, y), "logits": logits}

        def on_before_optimizer_step(self, optimizer):
            if kind == "grad_norm" and self.global_step % int(arg) == 0:
                self.log_dict(grad_norm(self, norm_type=2))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01, momentum=0.9)

    class Timer(pl.Callback):
        def on_fit_start(self, trainer, module):
            clock.recorder = probes_callback.recorder if probes_callback else None

        def on_train_batch_end(self, *args):
            clock.tick()

    probes_callback = ProbesCallback(run_dir, **_probe_options(arg)) if kind == "probes" else None
    callbacks = [probes_callback, Timer()] if probes_callback else [Timer()]
    x, y = _data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=BATCH)
    trainer = pl.Trainer(max_steps=steps, accelerator="gpu" if device == "cuda" else "cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, callbacks=callbacks)
    trainer.fit(Module(), loader)


# -- Hugging Face Trainer ----------------------------------------------------------------------
TRAINER_VARIANTS = {"bare": "bare Trainer, no logging", "probes:default": "ProbesCallback, defaults (every 50)",
                    "probes:1": "ProbesCallback, every step", "logging:50": "Trainer logging_steps=50",
                    "logging:1": "Trainer logging_steps=1"}


class _Classifier(nn.Module):
    """The MLP the way the Trainer calls a model: keyword inputs, a loss in the output."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = mlp()

    def forward(self, x, labels=None):
        logits = self.net(x)
        return {"loss": F.cross_entropy(logits, labels), "logits": logits}


class _Rows(torch.utils.data.Dataset):
    def __init__(self):
        self.x, self.y = _data()

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "labels": self.y[i]}


def _trainer_fit(variant: str, steps: int, device: str, run_dir: Path, clock: _Clock) -> None:
    import transformers
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from probes.integrations.hf import ProbesCallback

    kind, _, arg = variant.partition(":")

    class Timer(transformers.TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            clock.recorder = probes_callback.recorder if probes_callback else None

        def on_step_end(self, args, state, control, **kwargs):
            clock.tick()

    probes_callback = ProbesCallback(run_dir, **_probe_options(arg)) if kind == "probes" else None
    callbacks = [probes_callback, Timer()] if probes_callback else [Timer()]
    args = transformers.TrainingArguments(
        output_dir=str(run_dir) + "-out", max_steps=steps, per_device_train_batch_size=BATCH, learning_rate=0.01,
        optim="sgd", lr_scheduler_type="constant", report_to=[], save_strategy="no", disable_tqdm=True,
        logging_strategy="steps" if kind == "logging" else "no", logging_steps=int(arg) if kind == "logging" else 500,
        use_cpu=device == "cpu", dataloader_num_workers=0)
    trainer = transformers.Trainer(model=_Classifier(), args=args, train_dataset=_Rows(), callbacks=callbacks)
    for printer in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(printer)
    trainer.train()


FITS = {"lightning": (_lightning_fit, LIGHTNING_VARIANTS), "trainer": (_trainer_fit, TRAINER_VARIANTS)}


def _probe_options(arg: str) -> dict:
    every = {} if arg == "default" else {"every": int(arg)}
    return {**every, "flush_secs": 1e9}  # see the module's docstring


def _round(workload: str, steps: int, chunk: int, device: str, tmp: Path, order: list[str]) -> dict[str, float]:
    """One fit per variant, taking turns; seconds per step of each."""
    fit, _ = FITS[workload]
    baton = Baton(order)
    clocks = {v: _Clock(v, baton, chunk, device) for v in order}
    errors = []

    def run(v):
        clock = clocks[v]
        try:
            clock.begin()
            fit(v, steps, device, tmp / f"{workload}-{v.replace(':', '_')}-{time.time_ns()}", clock)
        except BaseException as e:  # noqa: BLE001 - reported below, after the baton moved on
            errors.append((v, e))
        finally:
            clock.finish()

    threads = [threading.Thread(target=run, args=(v,), name=f"fit-{v}") for v in order]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{workload} fit {errors[0][0]} failed") from errors[0][1]
    return {v: c.per_step() for v, c in clocks.items()}


def measure(workload: str, steps: int, rounds: int, chunk: int, device: str, tmp: Path) -> dict[str, list[float]]:
    """Seconds per step of each variant's fit in each round."""
    variants = list(FITS[workload][1])
    _round(workload, 2 * chunk, chunk, device, tmp, ["bare"])  # imports, first allocations
    times = {v: [] for v in variants}
    for rnd in range(rounds):
        got = _round(workload, steps, chunk, device, tmp, random.Random(rnd).sample(variants, len(variants)))
        for v in variants:
            times[v].append(got[v])
    return times


def report(workload: str, steps: int, rounds: int, chunk: int, device: str, tmp: Path) -> None:
    times = measure(workload, steps, rounds, chunk, device, tmp)
    labels = FITS[workload][1]
    ratio = {v: statistics.median(a / b for a, b in zip(t, times["bare"])) for v, t in times.items()}
    med = {v: statistics.median(t) for v, t in times.items()}
    print(f"\n{workload} (MLP, batch {BATCH}, {steps} steps per fit, {rounds} rounds): bare step = "
          f"{med['bare'] * 1e3:.3f} ms")
    print(f"{'variant':38s} {'ms/step':>9s} {'x bare':>8s} {'overhead':>9s}")
    for v in labels:
        print(f"{labels[v]:38s} {med[v] * 1e3:9.3f} {ratio[v]:8.2f} {ratio[v] - 1:9.1%}")

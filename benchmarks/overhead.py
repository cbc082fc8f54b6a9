"""Overhead of probes vs a bare loop vs the usual do-it-yourself TensorBoard loop.

Runs every variant side by side in one process, interleaved over several rounds (so drift in
machine load hits all of them alike), and prints each one's median time per step and its median
ratio to the bare loop of the same round. Usage: python benchmarks/overhead.py [--steps 200] [--rounds 5] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import probes  # noqa: E402


def mlp():
    return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                         nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))


def cnn():
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(32 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, 10))


WORKLOADS = {"mlp": (mlp, (128, 64)), "cnn": (cnn, (64, 1, 28, 28))}


class DIYTensorBoard:
    """What people write by hand: forward hooks + SummaryWriter.add_histogram on activations,
    gradients and weights, plus the same scalars, every `every` steps."""

    def __init__(self, model, logdir, every):
        from torch.utils.tensorboard import SummaryWriter
        self.w, self.every, self.model, self.step = SummaryWriter(logdir), every, model, 0
        self.handles = [m.register_forward_hook(self._hook(n)) for n, m in model.named_modules()
                        if n and not list(m.children())]

    def _hook(self, name):
        def hook(mod, inp, out):
            if self.step % self.every == 0 and torch.is_grad_enabled():
                o = out.detach()
                self.w.add_histogram(f"act/{name}", o, self.step)
                self.w.add_scalar(f"act/{name}/mean", o.mean().item(), self.step)
                self.w.add_scalar(f"act/{name}/std", o.std().item(), self.step)
                self.w.add_scalar(f"act/{name}/frac_zero", (o == 0).float().mean().item(), self.step)
        return hook

    def before_step(self):
        if self.step % self.every == 0:
            self.old = {n: p.detach().clone() for n, p in self.model.named_parameters()}
            for n, p in self.model.named_parameters():
                self.w.add_histogram(f"grad/{n}", p.grad, self.step)
                self.w.add_scalar(f"grad/{n}/norm", p.grad.norm().item(), self.step)

    def after_step(self, loss):
        if self.step % self.every == 0:
            for n, p in self.model.named_parameters():
                self.w.add_histogram(f"weight/{n}", p, self.step)
                self.w.add_scalar(f"update_ratio/{n}", ((p - self.old[n]).norm() / p.norm()).item(), self.step)
        self.w.add_scalar("train/loss", loss.item(), self.step)
        self.step += 1

    def close(self):
        for h in self.handles:
            h.remove()
        self.w.close()


def run_variant(variant: str, workload: str, steps: int, device: str, tmp: Path) -> float:
    """Seconds per step of one variant (after a short warm-up)."""
    torch.manual_seed(0)
    build, shape = WORKLOADS[workload]
    model = build().to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    xs = torch.randn(8, *shape, device=device)
    ys = torch.randint(0, 10, (8, shape[0]), device=device)
    rec = diy = None
    kind, _, arg = variant.partition(":")
    if kind == "probes":
        opts = {} if arg == "default" else {"every": int(arg)}
        rec = probes.attach(model, opt, run_dir=tmp / f"{variant}-{time.time_ns()}".replace(":", "_"), **opts)
    elif kind == "diy_tb":
        diy = DIYTensorBoard(model, str(tmp / f"tb-{time.time_ns()}"), int(arg))
    warmup = 10
    for i in range(steps + warmup):
        if i == warmup:
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        x, y = xs[i % 8], ys[i % 8]
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if diy:
            diy.before_step()
        opt.step()
        if rec:
            rec.record_step(loss, logits=logits, targets=y)
        if diy:
            diy.after_step(loss)
    if device == "cuda":
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / steps
    if rec:
        rec.close()
    if diy:
        diy.close()
    return dt


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--workloads", default="mlp,cnn")
    ap.add_argument("--diy-steps", type=int, default=None,
                    help="steps for the slow DIY-TensorBoard variants (default: steps/4)")
    args = ap.parse_args(argv)
    variants = ["bare", "probes:default", "probes:1", "probes:10", "probes:50", "diy_tb:1", "diy_tb:10", "diy_tb:50"]
    labels = {"bare": "bare loop", "probes:default": "probes, default settings",
              "probes:1": "probes, everything every step", "probes:10": "probes, every 10 steps",
              "probes:50": "probes, every 50 steps", "diy_tb:1": "DIY TensorBoard, every step",
              "diy_tb:10": "DIY TensorBoard, every 10 steps", "diy_tb:50": "DIY TensorBoard, every 50 steps"}
    print(f"device={args.device} torch={torch.__version__} threads={torch.get_num_threads()} "
          f"steps={args.steps} rounds={args.rounds} default every={probes.ProbeOptions().every}")
    with tempfile.TemporaryDirectory() as tmp:
        for wl in args.workloads.split(","):
            times = {v: [] for v in variants}
            for _ in range(args.rounds):
                for v in variants:
                    # DIY TensorBoard every step is ~50x slower: fewer steps keep the run short.
                    n = (args.diy_steps or max(args.steps // 4, 20)) if v == "diy_tb:1" else args.steps
                    times[v].append(run_variant(v, wl, n, args.device, Path(tmp)))
            med = {v: statistics.median(t) for v, t in times.items()}
            # Each variant against the bare loop of the same round, then the median over rounds:
            # a slow spell of a shared machine then moves both sides of a ratio together.
            ratio = {v: statistics.median(a / b for a, b in zip(times[v], times["bare"])) for v in variants}
            print(f"\n{wl}: bare step = {med['bare'] * 1e3:.3f} ms")
            print(f"{'variant':34s} {'ms/step':>9s} {'x bare':>8s} {'overhead':>9s}")
            for v in variants:
                print(f"{labels[v]:34s} {med[v] * 1e3:9.3f} {ratio[v]:8.2f} {ratio[v] - 1:9.1%}")
            print("same cadence, DIY-TB overhead / probes overhead:")
            for c in ("1", "10", "50"):
                po = ratio[f"probes:{c}"] - 1
                diy = ratio[f"diy_tb:{c}"] - 1
                if po < 0.01:  # below the run-to-run noise: a ratio would be meaningless
                    print(f"  every {c:>2s} steps: DIY TensorBoard +{diy:.0%}, probes within noise of the bare loop")
                else:
                    print(f"  every {c:>2s} steps: {diy / po:8.1f}x less overhead with probes")


if __name__ == "__main__":
    main()

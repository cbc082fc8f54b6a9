"""Overhead of probes vs a bare loop vs the usual do-it-yourself TensorBoard loop.

Runs every variant side by side in one process: each has its own model, and within a round they
take turns, --chunk steps at a time, so drift in machine load hits all of them alike. The probes
variants and the DIY TensorBoard variants form two groups, each with its own bare loop (the DIY
loop's after-effects need a pause after each of its turns). Prints each variant's median time per
step and the median over rounds of its ratio to the bare loop of the same round.
Usage: python benchmarks/overhead.py [--steps 200] [--rounds 7] [--chunk 25] [--device cpu|cuda]
The framework workloads are opt-in: --workloads lightning,trainer (benchmarks/overhead_frameworks.py:
a whole fit per variant and round, the callbacks against Lightning's grad_norm logging and the
Trainer's logging_steps).
"""

from __future__ import annotations

import argparse
import random
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


class Variant:
    """One variant's own model, optimizer, data and recorder (or DIY writer), so that every variant
    can run a few steps at a time in turn."""

    def __init__(self, variant: str, workload: str, device: str, tmp: Path):
        torch.manual_seed(0)
        build, shape = WORKLOADS[workload]
        self.device, self.i = device, 0
        self.model = build().to(device)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)
        self.xs = torch.randn(8, *shape, device=device)
        self.ys = torch.randint(0, 10, (8, shape[0]), device=device)
        self.rec = self.diy = None
        kind, _, arg = variant.partition(":")
        if kind == "probes":
            # Turns stretch wall time: without this, the 2 s flush timer would flush every turn, far
            # more often than in a real run of these loops, where flush_steps (200) comes first.
            opts = {"flush_secs": 1e9} if arg == "default" else {"every": int(arg), "flush_secs": 1e9}
            self.rec = probes.attach(self.model, self.opt, run_dir=tmp / f"{variant}-{time.time_ns()}".replace(":", "_"),
                                     **opts)
        elif kind == "diy_tb":
            self.diy = DIYTensorBoard(self.model, str(tmp / f"tb-{time.time_ns()}"), int(arg))

    def run(self, steps: int) -> float:
        """Seconds taken by the next `steps` training steps."""
        model, opt, rec, diy = self.model, self.opt, self.rec, self.diy
        if self.device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for i in range(self.i, self.i + steps):
            x, y = self.xs[i % 8], self.ys[i % 8]
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
        # Background writer threads finish this variant's work now, charged to it, not the next one.
        if rec:
            rec._sink.drain()
        if diy:
            diy.w.flush()
        if self.device == "cuda":
            torch.cuda.synchronize()
        self.i += steps
        return time.perf_counter() - t0

    def close(self):
        if self.rec:
            self.rec.close()
        if self.diy:
            self.diy.close()


def measure(variants: list[str], workload: str, steps: int, rounds: int, chunk: int, device: str, tmp: Path,
            slow_steps: int, settle: float = 0.15) -> dict[str, list[float]]:
    """Seconds per step of each variant in each round. Within a round the variants take turns, a
    chunk of steps at a time, so a slow spell of a shared machine hits all of them alike."""
    runners = {v: Variant(v, workload, device, tmp) for v in variants}
    try:
        for r in runners.values():
            r.run(10)  # warm-up: first-call allocations, the recorder's caches
        times = {v: [] for v in variants}
        want = {v: slow_steps if v == "diy_tb:1" else steps for v in variants}  # steps per round
        for rnd in range(rounds):
            total = dict.fromkeys(variants, 0.0)
            done = dict.fromkeys(variants, 0)
            order = random.Random(rnd).sample(variants, len(variants))  # no variant always follows the same one
            while any(done[v] < want[v] for v in variants):
                for v in order:
                    n = min(max(chunk * want[v] // steps, 1), want[v] - done[v])
                    if n > 0:
                        total[v] += runners[v].run(n)
                        done[v] += n
                        # Untimed pause: OpenBLAS worker threads busy-wait ~0.1 s after a threaded
                        # numpy call (the DIY loop makes many) and would slow whichever variant ran
                        # next; measured, a bare loop after a DIY turn ran 1.7x slower.
                        if settle:
                            time.sleep(settle)
            for v in variants:
                times[v].append(total[v] / done[v])
        return times
    finally:
        for r in runners.values():
            r.close()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--workloads", default="mlp,cnn", help="mlp, cnn; opt-in: lightning, trainer")
    ap.add_argument("--chunk", type=int, default=25, help="steps a variant runs before the next one takes its turn")
    ap.add_argument("--settle", type=float, default=0.15, help="untimed seconds after each DIY TensorBoard turn")
    ap.add_argument("--diy-steps", type=int, default=None,
                    help="steps for the slow DIY-TensorBoard variants (default: steps/4)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: torch's choice); 1 steadies timings on a busy machine")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    # Two groups, each with its own bare loop: probes variants take quick turns with nothing in
    # between; DIY TensorBoard variants need the untimed pause after each turn (see measure).
    probe_group = ["bare", "probes:default", "probes:1", "probes:10", "probes:50"]
    diy_group = ["bare", "diy_tb:1", "diy_tb:10", "diy_tb:50"]
    variants = probe_group + diy_group[1:]
    labels = {"bare": "bare loop", "probes:default": "probes, default settings",
              "probes:1": "probes, everything every step", "probes:10": "probes, every 10 steps",
              "probes:50": "probes, every 50 steps", "diy_tb:1": "DIY TensorBoard, every step",
              "diy_tb:10": "DIY TensorBoard, every 10 steps", "diy_tb:50": "DIY TensorBoard, every 50 steps"}
    print(f"device={args.device} torch={torch.__version__} threads={torch.get_num_threads()} "
          f"steps={args.steps} rounds={args.rounds} chunk={args.chunk} default every={probes.ProbeOptions().every}")
    with tempfile.TemporaryDirectory() as tmp:
        for wl in args.workloads.split(","):
            if wl in ("lightning", "trainer"):  # whole fits: their own harness
                import overhead_frameworks
                overhead_frameworks.report(wl, args.steps, args.rounds, args.chunk, args.device, Path(tmp))
                continue
            times, ratio = {}, {}
            # DIY TensorBoard every step is ~50x slower: fewer steps keep the run short.
            for group, settle in ((probe_group, 0.0), (diy_group, args.settle)):
                t = measure(group, wl, args.steps, args.rounds, args.chunk, args.device, Path(tmp),
                            args.diy_steps or max(args.steps // 4, 20), settle)
                # Each variant against the bare loop of the same round, then the median over
                # rounds: a slow spell of a shared machine then moves both sides of a ratio together.
                for v in group:
                    if v not in times:  # the probes group's bare loop is the one reported
                        times[v] = t[v]
                        ratio[v] = statistics.median(a / b for a, b in zip(t[v], t["bare"]))
            med = {v: statistics.median(t) for v, t in times.items()}
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

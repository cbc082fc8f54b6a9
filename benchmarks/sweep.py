"""Does the diagnosis pruner find a good configuration sooner? Four pruner settings side by side
on the same trials, as sweep.trainer runs them (one trial = one recorded playground run):

    (a) none        every trial runs to its end
    (b) median      Optuna's MedianPruner (its defaults: 5 startup trials, no warm-up)
    (c) diagnosis   sweep.DiagnosisPruner (default settings)
    (d) both        diagnosis OR median

The sampler is sweep's TrialSeededSampler (random search): with the same sampler seed, trial N
has the same config under every setting, so the settings differ only in where they stop trials.
Each setting gets the same compute budget, --trials full trials' worth of optimizer steps, and
runs trials until it is spent (a pruning setting fits more trials in). The settings take turns
one trial at a time, so a slow spell of the machine hits all of them alike.

Per setting and sampler seed it measures: the compute (optimizer steps, and seconds of wall time
including data loading, recording and the pruner's own checks) until a trial first reaches
--target validation accuracy; the best final validation accuracy within the budget; how many
trials reached the target within the budget, and the share of the budget's steps spent on trials
that never reach it; how many trials were pruned, and how many of those were false prunes:
trials that, trained to the end, reach the target (known from the unpruned setting, or trained
to the end afterwards to find out).
Prints the median and range over seeds, and each setting's median ratio to (b).

Usage: python benchmarks/sweep.py [--seeds 2] [--trials 10] [--epochs 20] [--target 0.97]
       [--space coarse|default] [--workload digits] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import optuna  # noqa: E402

from playground.config import Config  # noqa: E402
from runstore import load_run, tags  # noqa: E402
from sweep.pruner import DiagnosisPruner, make_pruner  # noqa: E402
from sweep.records import RUN_DIR  # noqa: E402
from sweep.space import default_space, parse_space, trial_config  # noqa: E402
from sweep.spec import SweepSpec  # noqa: E402
from sweep.study import TrialSeededSampler  # noqa: E402
from sweep.trainer import PlaygroundObjective  # noqa: E402

ARMS = ("none", "median", "diagnosis", "both")
# The broad first stage of a coarse-to-fine search (the tuning notes: start wide, on log scales):
# learning rates over five decades, deep and shallow nets, bounded and unbounded activations,
# the usual initialisations. Many of its trials are broken in ways the diagnostics name.
SPACES = {
    "coarse": "lr=1e-4:3\noptimizer=sgd,momentum,adam\nactivation=relu,tanh,sigmoid\n"
              "init=default,kaiming,xavier_uniform,large_normal\nbatch_norm=false,true\ndepth=1:8\nwidth=16:256",
    "default": None,
}
LABELS = {"none": "(a) no pruning", "median": "(b) MedianPruner", "diagnosis": "(c) diagnosis",
          "both": "(d) diagnosis OR median"}


def _pruner_of(pruner):
    """The DiagnosisPruner inside a sweep pruner (for its check statistics), or None."""
    if isinstance(pruner, DiagnosisPruner):
        return pruner
    inner = getattr(pruner, "_diagnosis", None)
    return inner if isinstance(inner, DiagnosisPruner) and inner.rules else None


class Arm:
    """One pruner setting under one sampler seed: its study and what its trials cost."""

    def __init__(self, name: str, spec: SweepSpec, seed: int, root: Path, budget_steps: int, max_trials: int):
        self.name, self.spec = name, spec
        self.pruner = make_pruner(name)
        self.study = optuna.create_study(direction="maximize", sampler=TrialSeededSampler(seed), pruner=self.pruner,
                                         study_name=f"{name}-{seed}")
        self.objective = PlaygroundObjective(spec, root / name)
        self.budget_steps, self.max_trials = budget_steps, max_trials
        self.trials: list[dict] = []
        self.steps = 0
        self.seconds = 0.0

    @property
    def active(self) -> bool:
        return self.steps < self.budget_steps and len(self.trials) < self.max_trials

    def run_one(self, target: float) -> None:
        t0 = time.time()
        self.study.optimize(self.objective, n_trials=1, catch=(Exception,), gc_after_trial=False)
        took = time.time() - t0
        t = self.study.trials[-1]
        run = load_run(t.user_attrs[RUN_DIR])
        acc = run.series(tags.split_metric("val", "accuracy")).dropna()
        steps = max(0, run.last_step)
        reached = acc[acc >= target]
        reach_step = int(reached.index[0]) if len(reached) else None
        wall = run.series(tags.WALL_TIME).dropna()
        reach_s = None
        if reach_step is not None:
            # time into the trial when it reached the target: its wall clock at that step, from the
            # trial's start (so data loading and recording count, as they do for the user).
            reach_s = float(wall[wall.index <= reach_step].iloc[-1] - t0) if len(wall) else took
        self.trials.append({
            "number": t.number, "state": t.state.name.lower(), "value": t.value, "params": t.params,
            "steps": steps, "seconds": took, "reach_step": reach_step, "reach_s": reach_s,
            "pruned": t.user_attrs.get("pruned"), "start_steps": self.steps, "start_s": self.seconds,
        })
        self.steps += steps
        self.seconds += took

    def to_target(self) -> tuple[int | None, float | None]:
        """Compute spent until the first trial reached the target: (steps, seconds)."""
        for t in self.trials:
            if t["reach_step"] is not None and t["start_steps"] < self.budget_steps:
                return t["start_steps"] + t["reach_step"], t["start_s"] + t["reach_s"]
        return None, None

    def best_within_budget(self) -> float | None:
        values = [t["value"] for t in self.trials if t["state"] == "complete" and t["value"] is not None
                  and t["start_steps"] + t["steps"] <= self.budget_steps]
        return max(values) if values else None


def reaches_target(spec: SweepSpec, params: dict, target: float, root: Path, cache: dict) -> bool:
    """Whether the trial with these params, trained to its end without pruning, reaches `target`."""
    key = json.dumps(params, sort_keys=True)
    if key not in cache:
        from playground.loop import train

        run_dir = root / f"verify-{len(cache)}"
        train(trial_config(spec.base, params), run_dir)
        acc = load_run(run_dir).series(tags.split_metric("val", "accuracy")).dropna()
        cache[key] = bool((acc >= target).any())
    return cache[key]


def run_seed(seed: int, spec: SweepSpec, args, root: Path) -> dict:
    total = spec.base.total_steps()
    budget = args.trials * total
    arms = {name: Arm(name, spec, seed, root / f"seed{seed}", budget, args.trials * args.max_factor) for name in ARMS}
    order = list(arms.values())
    rounds = 0
    while any(a.active for a in order):
        # Each round starts with the next setting, so none always runs right after another.
        for a in order[rounds % len(order):] + order[:rounds % len(order)]:
            if a.active:
                a.run_one(args.target)
        rounds += 1
    # Truth for false prunes: trial N has the same config in every setting.
    truth = {t["number"]: t["reach_step"] is not None for t in arms["none"].trials}
    verify: dict = {}
    out = {}
    for name, a in arms.items():
        false = 0
        pruned = [t for t in a.trials if t["state"] == "pruned"]
        for t in pruned:
            ok = truth.get(t["number"])
            if ok is None:
                ok = reaches_target(spec, t["params"], args.target, root / f"seed{seed}", verify)
            if ok and t["reach_step"] is None:  # pruned before it got there
                false += 1
        steps, secs = a.to_target()
        diag = _pruner_of(a.pruner)
        within = [t for t in a.trials if t["start_steps"] < budget]
        wasted = sum(t["steps"] for t in within if t["reach_step"] is None)
        out[name] = {"steps_to_target": steps, "seconds_to_target": secs, "best": a.best_within_budget(),
                     "wasted_share": wasted / max(1, sum(t["steps"] for t in within)),
                     "reached": sum(1 for t in within if t["reach_step"] is not None),
                     "trials": len(a.trials), "pruned": len(pruned), "false_prunes": false,
                     "pruned_by": _by(pruned), "checks": diag.stats.checks if diag else 0,
                     "check_seconds": diag.stats.seconds if diag else 0.0, "steps_used": a.steps,
                     "seconds_used": a.seconds, "trial_log": a.trials}
    return out


def _by(pruned) -> dict:
    counts: dict = {}
    for t in pruned:
        r = t["pruned"] or {}
        key = r.get("trigger") or r.get("by") or "?"
        counts[key] = counts.get(key, 0) + 1
    return counts


def _median_range(values, fmt) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "never"
    missing = len(values) - len(vals)
    text = f"{fmt(statistics.median(vals))} [{fmt(min(vals))}-{fmt(max(vals))}]"
    return text + (f" ({missing} never)" if missing else "")


def report(results: list[dict], args, spec: SweepSpec) -> str:
    total = spec.base.total_steps()
    lines = [f"workload {spec.base.workload}/{spec.base.model}, {spec.base.epochs} epochs ({total} steps per full "
             f"trial), budget {args.trials} full trials, target val accuracy {args.target}, "
             f"{len(results)} sampler seed(s)", "",
             "| setting | steps to target | seconds to target | steps vs (b) | seconds vs (b) | best acc in budget "
             "| trials reaching target | steps on trials that never do | trials | pruned | false prunes |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name in ARMS:
        per = [r[name] for r in results]
        ratios_steps, ratios_s = [], []
        for r in results:
            b, x = r["median"], r[name]
            if b["steps_to_target"] and x["steps_to_target"] is not None:
                ratios_steps.append(x["steps_to_target"] / b["steps_to_target"])
                ratios_s.append(x["seconds_to_target"] / b["seconds_to_target"])
        lines.append("| " + " | ".join([
            LABELS[name],
            _median_range([p["steps_to_target"] for p in per], lambda v: f"{v:,.0f}"),
            _median_range([p["seconds_to_target"] for p in per], lambda v: f"{v:.1f}"),
            f"{statistics.median(ratios_steps):.2f}" if ratios_steps else "-",
            f"{statistics.median(ratios_s):.2f}" if ratios_s else "-",
            _median_range([p["best"] for p in per], lambda v: f"{v:.3f}"),
            str(sum(p["reached"] for p in per)),
            _median_range([p["wasted_share"] for p in per], lambda v: f"{100 * v:.0f}%"),
            str(sum(p["trials"] for p in per)),
            str(sum(p["pruned"] for p in per)),
            str(sum(p["false_prunes"] for p in per)),
        ]) + " |")
    lines.append("")
    for name in ("median", "diagnosis", "both"):
        by: dict = {}
        for r in results:
            for k, v in r[name]["pruned_by"].items():
                by[k] = by.get(k, 0) + v
        checks = sum(r[name]["checks"] for r in results)
        secs = sum(r[name]["check_seconds"] for r in results)
        used = sum(r[name]["seconds_used"] for r in results)
        extra = (f"; diagnosis checks: {checks}, {secs:.1f} s = {100 * secs / used:.0f}% of its wall time"
                 if checks else "")
        lines.append(f"{LABELS[name]} pruned by: " + (", ".join(f"{k} {v}" for k, v in sorted(by.items())) or "-")
                     + extra)
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=2, help="sampler seeds 0..N-1")
    ap.add_argument("--trials", type=int, default=10, help="budget: this many full trials' worth of steps per setting")
    ap.add_argument("--max-factor", type=int, default=3, help="at most trials x this many trials per setting")
    ap.add_argument("--workload", default="digits", choices=("digits", "spirals", "sequence"))
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--target", type=float, default=0.97, help="validation accuracy to reach")
    ap.add_argument("--space", default="coarse", choices=tuple(SPACES),
                    help="coarse (default): the broad first stage of a coarse-to-fine search, where many trials "
                         "are broken; default: sweep.default_space, the narrower space a sweep gets by default")
    ap.add_argument("--out", help="write every trial's numbers as JSON here")
    args = ap.parse_args()
    torch_threads = os.environ.get("OMP_NUM_THREADS")
    base = Config(workload=args.workload, epochs=args.epochs, device="cpu")
    space = default_space(base) if args.space == "default" else parse_space(SPACES[args.space])
    spec = SweepSpec(base=base, space=space, n_trials=args.trials).validate()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    results = []
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="sweep-bench-") as tmp:
        # Untimed warm-up: importing torch and loading the workload's data once, so the first
        # measured trial does not pay for it.
        from playground.loop import train

        train(base.replace(epochs=1), Path(tmp) / "warmup")
        for seed in range(args.seeds):
            results.append(run_seed(seed, spec, args, Path(tmp)))
            print(f"seed {seed} done ({time.time() - t0:.0f} s)", file=sys.stderr)
    print(report(results, args, spec))
    print("\nsearch space: " + "; ".join(p.text() for p in spec.space))
    print(f"OMP_NUM_THREADS={torch_threads or 'unset'}; total {time.time() - t0:.0f} s")
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "results": results}, indent=1, default=str))


if __name__ == "__main__":
    main()

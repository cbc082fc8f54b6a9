"""Does the diagnosis pruner find a good configuration sooner? Four pruner settings side by side
on the same trials of a wide, coarse random search (the first stage of coarse-to-fine, where most
random configurations are broken and only a minority reaches the target):

    (a) none        every trial runs to its end
    (b) median      Optuna's MedianPruner (its defaults: 5 startup trials, no warm-up)
    (c) diagnosis   sweep.DiagnosisPruner (default settings)
    (d) both        diagnosis OR median

and, as bounds (hindsight from the full recordings, not pruners a sweep could run):

    oracle diagnosis   prunes, at its first report, every trial whose full (unpruned) recording
                       ends with a critical finding of diagnostics.advise (a "diagnosable" trial:
                       what a diagnosis could in principle know about it), unless it reaches the
                       target (that would be a false prune); every other trial runs to its end.
                       The best any diagnosis pruner without false prunes can do on trials that
                       the diagnosis at their end calls broken.
    (e) oracle OR median
    oracle: diagnosable or ends below 50%
                       also prunes the trials that end below 50% accuracy without a critical
                       finding (as if a diagnosis recognised every broken trial)
    perfect hindsight  prunes, at its first report, every trial that never reaches the target
                       (the room there is, whoever judges)

How. The sampler is sweep's TrialSeededSampler (random search): with the same sampler seed, trial
N has the same config under every setting, and the playground trains a config the same way every
time (CPU, one thread, seeded), so a pruner changes only where a trial stops. Every config is
therefore trained once, to its end, as sweep.trainer trains a trial (one recorded playground run),
and each setting is an ordinary Optuna study with its real pruner that replays the trials: it
reports each evaluation's validation accuracy at its optimizer step, and the diagnosis pruner
(sweep.replay.ReplayPruner) judges the recording exactly as far as it had been written at that
step, with the run's own recorded time as the clock of its overhead limit. A pruned trial costs
the steps (and seconds) up to its prune. Full training of every config also gives the truth for
false prunes directly: a pruned trial whose config, trained to the end, reaches the target.

Each setting gets the same compute budget, --trials full trials' worth of optimizer steps, and
draws trials until it is spent (a pruning setting fits more trials in). Compute is counted in
optimizer steps (deterministic, independent of the machine's load) and in seconds (the trial's
recorded wall time up to where it stopped, data loading and recording included, plus the
pruner's own judging, measured as it ran).

Per setting and sampler seed: steps and seconds until a trial first reaches --target validation
accuracy; the best final validation accuracy within the budget; trials reaching the target; the
share of the budget spent on trials that never reach it; trials pruned, and false prunes.
Printed: the median and range over seeds, each setting's median ratio to (b), and what the
search space looks like unpruned (how many trials reach the target, how many are broken).

Usage: python benchmarks/sweep.py [--seeds 5] [--trials 30] [--epochs 20] [--target 0.97]
       [--space coarse|default] [--jobs 2] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import optuna  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

import diagnostics  # noqa: E402
from playground.config import Config  # noqa: E402
from runstore import load_run, schema, tags  # noqa: E402
from sweep.pruner import CRITICAL, HOPELESS_RULES, DiagnosisPruner, make_pruner  # noqa: E402
from sweep.records import PRUNED, RUN_DIR, TOTAL_STEPS  # noqa: E402
from sweep.replay import Recording, ReplayPruner, report_steps  # noqa: E402
from sweep.space import default_space, parse_space, trial_config  # noqa: E402
from sweep.spec import SweepSpec  # noqa: E402
from sweep.study import TrialSeededSampler  # noqa: E402

ARMS = ("none", "median", "diagnosis", "both")  # the pruners a sweep can run
BOUNDS = ("oracle", "oracle_both", "oracle_broken", "perfect")  # hindsight from the full recordings
# The broad first stage of a coarse-to-fine search (the tuning notes: start wide, on log scales):
# learning rates over five decades, deep and shallow nets, bounded and unbounded activations,
# initialisations that work and ones that do not (zeros, too small, too large), batch norm on and
# off. Most random draws of such a space are broken; a minority reaches the target.
SPACES = {
    "coarse": "lr=1e-4:10\noptimizer=sgd,momentum,adam\nactivation=relu,tanh,sigmoid\n"
              "init=default,kaiming,xavier_uniform,zeros,small_normal,large_normal\nbatch_norm=false,true\n"
              "depth=1:8\nwidth=16:256",
    "default": None,
}
LABELS = {"none": "(a) no pruning", "median": "(b) MedianPruner", "diagnosis": "(c) diagnosis",
          "both": "(d) diagnosis OR median", "oracle": "oracle diagnosis", "oracle_both": "(e) oracle OR median",
          "oracle_broken": "oracle: diagnosable or ends below 50%", "perfect": "perfect hindsight"}
VAL_ACC = tags.split_metric("val", "accuracy")


class Trained:
    """One config trained to its end: what a sweep trial of it reports, and its time line."""

    def __init__(self, run_dir: Path, started: float, target: float):
        run = load_run(run_dir)
        self.run_dir = str(run_dir)
        self.recording = Recording(run)
        self.status = run.status
        self.last_step = max(0, run.last_step)
        self.total = run.meta.get("total_steps")
        acc = run.series(VAL_ACC)
        finite = acc[[math.isfinite(v) for v in acc.to_numpy()]]
        # What the trial reports: each evaluation after step 0 and before the end (sweep.trainer).
        report_at = set(report_steps(run))
        self.reports = [(int(s), float(v)) for s, v in finite.items() if int(s) in report_at]
        self.value = float(acc.iloc[-1]) if len(acc) else math.nan  # the last evaluation's value
        reached = finite[finite >= target]
        self.reach_step = int(reached.index[0]) if len(reached) else None
        wall = run.series(tags.WALL_TIME).dropna()
        self._wall_steps = wall.index.to_numpy()
        self._wall = wall.to_numpy() - started
        # The judgement at its end, on the whole recording (end-of-run verdicts included): the most
        # a diagnosis could know about this config. Diagnosable: a critical finding there.
        self.critical = [f.rule for f in diagnostics.advise(run) if f.severity == CRITICAL]
        self.diagnosable = bool(self.critical)

    def clock(self, step: int) -> float:
        """Seconds from the start of training (the call, data loading included) to `step`."""
        import numpy as np

        i = int(np.searchsorted(self._wall_steps, step, side="right")) - 1
        return float(self._wall[max(0, i)]) if len(self._wall) else 0.0


class Pool:
    """The configs of one sampler seed, each trained once to its end when a setting first draws it."""

    def __init__(self, spec: SweepSpec, root: Path, target: float):
        self.spec, self.root, self.target = spec, root, target
        self.by_params: dict[str, Trained] = {}
        self.by_dir: dict[str, Trained] = {}
        self.recordings: dict = {}  # run_dir -> Recording, shared with the settings' ReplayPruners
        self.train_seconds = 0.0

    def get(self, params: dict) -> Trained:
        key = json.dumps(params, sort_keys=True)
        if key not in self.by_params:
            from playground.loop import train

            run_dir = self.root / f"config-{len(self.by_params):04d}"
            started = time.time()
            train(trial_config(self.spec.base, params), run_dir)
            self.train_seconds += time.time() - started
            trained = Trained(run_dir, started, self.target)
            self.by_params[key] = self.by_dir[trained.run_dir] = trained
            self.recordings[trained.run_dir] = trained.recording
        return self.by_params[key]

    def clock(self, run_dir: str, step: int) -> float:
        return self.by_dir[run_dir].clock(step)


class HindsightPruner(optuna.pruners.BasePruner):
    """A bound, not a pruner a sweep could run: prunes a trial at its first report when `hopeless`
    (a predicate on the trial's fully trained config) says so, else asks `wrapped` (if any). It
    knows how the trial ends because the pool trained every config to its end."""

    def __init__(self, pool: Pool, hopeless, by: str, wrapped=None):
        self.pool, self.hopeless, self.by, self.wrapped = pool, hopeless, by, wrapped

    def prune(self, study, trial) -> bool:
        run = self.pool.by_dir.get(trial.user_attrs.get(RUN_DIR))
        if run is not None and self.hopeless(run):
            study._storage.set_trial_user_attr(trial._trial_id, PRUNED, {"by": self.by, "step": trial.last_step})
            return True
        return self.wrapped is not None and self.wrapped.prune(study, trial)


def oracle_diagnosable(run: Trained) -> bool:
    """Diagnosable (a critical finding at the end of its full recording) and not reaching the
    target: what a diagnosis pruner without false prunes could at best prune."""
    return run.diagnosable and run.reach_step is None


def oracle_broken(run: Trained) -> bool:
    """A wider bound: also the trials that end below 50% accuracy without a critical finding (the
    diagnostics' blind spot), as if a diagnosis recognised every broken trial."""
    return run.reach_step is None and (run.diagnosable or not run.value >= 0.5)


def arm_pruner(name: str, pool: Pool):
    """The pruner of a setting; the diagnosis reads the pool's recordings as they were at each step."""
    if name == "oracle":
        return HindsightPruner(pool, oracle_diagnosable, "oracle")
    if name == "oracle_both":
        return HindsightPruner(pool, oracle_diagnosable, "oracle", make_pruner("median"))
    if name == "oracle_broken":
        return HindsightPruner(pool, oracle_broken, "oracle_broken")
    if name == "perfect":
        return HindsightPruner(pool, lambda run: run.reach_step is None, "perfect")
    if name in ("diagnosis", "both"):
        median = make_pruner("median").pruner if name == "both" else None
        return ReplayPruner(median, recordings=pool.recordings, clock=pool.clock)
    return make_pruner(name)


def _diagnosis_of(pruner) -> DiagnosisPruner | None:
    return pruner if isinstance(pruner, DiagnosisPruner) and pruner.rules else None


def replay_arm(name: str, seed: int, spec: SweepSpec, pool: Pool, budget: int, max_trials: int) -> dict:
    """Run one setting's study over the pool's trials until its budget of steps is spent."""
    pruner = arm_pruner(name, pool)
    diag = _diagnosis_of(pruner)
    study = optuna.create_study(direction="maximize", sampler=TrialSeededSampler(seed), pruner=pruner,
                                study_name=f"{name}-{seed}")
    trials, steps, seconds = [], 0, 0.0
    while steps < budget and len(trials) < max_trials:
        trial = study.ask()
        params = {p.name: p.suggest(trial) for p in spec.space}
        run = pool.get(params)
        trial.set_user_attr(RUN_DIR, run.run_dir)
        trial.set_user_attr(TOTAL_STEPS, run.total)
        judged = diag.stats.seconds if diag else 0.0
        stop_at = None
        for step, value in run.reports:
            trial.report(value, step)
            if trial.should_prune():
                stop_at = step
                break
        judged = (diag.stats.seconds if diag else 0.0) - judged
        if stop_at is not None:
            state, used = "pruned", stop_at
            study.tell(trial, state=TrialState.PRUNED)
        elif run.status != schema.FINISHED or not math.isfinite(run.value):
            state, used = "failed", run.last_step  # diverged: the playground stopped it
            study.tell(trial, state=TrialState.FAIL)
        else:
            state, used = "complete", run.last_step
            study.tell(trial, run.value)
        reach = run.reach_step if run.reach_step is not None and run.reach_step <= used else None
        frozen = study.trials[-1]
        trials.append({"number": trial.number, "state": state, "params": params, "steps": used,
                       "seconds": run.clock(used) + judged, "judge_s": judged,
                       "value": run.value if state == "complete" else None, "final_value": run.value,
                       "reach_step": reach, "reaches_when_trained": run.reach_step is not None,
                       "reach_s": run.clock(reach) + judged if reach is not None else None,
                       "pruned": frozen.user_attrs.get("pruned"), "start_steps": steps, "start_s": seconds,
                       "diagnosable": run.diagnosable, "critical": run.critical,
                       "first_report": run.reports[0][0] if run.reports else None})
        steps += used
        seconds += trials[-1]["seconds"]
    return summarize(trials, budget, diag)


def summarize(trials: list[dict], budget: int, diag) -> dict:
    steps_to = secs_to = None
    for t in trials:
        if t["reach_step"] is not None:
            steps_to, secs_to = t["start_steps"] + t["reach_step"], t["start_s"] + t["reach_s"]
            break
    within = [t for t in trials if t["start_steps"] < budget]
    best = [t["value"] for t in within if t["value"] is not None and t["start_steps"] + t["steps"] <= budget]
    pruned = [t for t in trials if t["state"] == "pruned"]
    wasted = sum(t["steps"] for t in within if t["reach_step"] is None)
    wasted_diag = sum(t["steps"] for t in within if t["reach_step"] is None and t["diagnosable"])
    total_within = max(1, sum(t["steps"] for t in within))
    return {"steps_to_target": steps_to, "seconds_to_target": secs_to, "best": max(best) if best else None,
            "reached": sum(1 for t in within if t["reach_step"] is not None),
            "wasted_share": wasted / total_within,
            # the compute on trials that never reach the target, split: diagnosable (broken: a
            # critical finding at their end) and not (healthy but not good enough)
            "wasted_diag_share": wasted_diag / total_within,
            "wasted_healthy_share": (wasted - wasted_diag) / total_within,
            "false_prunes_diagnosable": sum(1 for t in pruned if t["reaches_when_trained"] and t["diagnosable"]),
            "pruned_diagnosable": sum(1 for t in pruned if t["diagnosable"]),
            "all_prune_steps": [t["steps"] for t in pruned],
            "pruned_at_first_report": sum(1 for t in pruned if t["steps"] == t["first_report"]),
            "trials": len(trials), "pruned": len(pruned),
            "false_prunes": sum(1 for t in pruned if t["reaches_when_trained"]),
            "pruned_by": _by(pruned), "prune_steps": [t["steps"] for t in pruned if (t["pruned"] or {}).get("by")
                                                       == "diagnosis"],
            "checks": diag.stats.checks if diag else 0, "check_seconds": diag.stats.seconds if diag else 0.0,
            "spared": diag.stats.spared if diag else 0, "skipped": diag.stats.skipped if diag else 0,
            "steps_used": sum(t["steps"] for t in trials), "seconds_used": sum(t["seconds"] for t in trials),
            "trial_log": trials}


def _by(pruned) -> dict:
    counts: dict = {}
    for t in pruned:
        r = t["pruned"] or {}
        key = r.get("trigger") if r.get("by") == "diagnosis" else r.get("by") or "?"
        counts[key] = counts.get(key, 0) + 1
    return counts


def run_seed(seed: int, spec_json: dict, args) -> dict:
    """Every setting for one sampler seed (a process of its own when --jobs > 1)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    spec = SweepSpec.from_dict(spec_json)
    from playground.loop import train

    with tempfile.TemporaryDirectory(prefix=f"sweep-bench-{seed}-") as tmp:
        # Untimed warm-up: importing torch and loading the workload's data once, so the first
        # trained config does not pay for it.
        train(spec.base.replace(epochs=1), Path(tmp) / "warmup")
        pool = Pool(spec, Path(tmp), args.target)
        total = spec.base.total_steps()
        budget = args.trials * total
        out = {name: replay_arm(name, seed, spec, pool, budget, args.trials * args.max_factor)
               for name in ARMS + BOUNDS}
        # Equal compute: the steps every setting spent (a pruning setting may stop at its trial cap
        # before its budget is used); each setting's best among the trials that ended within them.
        # The bounds are held to the same compute but do not set it (they may stop far below it).
        equal = min(out[name]["steps_used"] for name in ARMS)
        for name in ARMS + BOUNDS:
            done = [t["value"] for t in out[name]["trial_log"]
                    if t["value"] is not None and t["start_steps"] + t["steps"] <= equal]
            out[name]["best_equal"] = max(done) if done else None
            out[name]["equal_steps"] = equal
        configs = list(pool.by_params.values())
        out["space"] = {"configs": len(configs), "reach": sum(1 for c in configs if c.reach_step is not None),
                        "below_half": sum(1 for c in configs if not (c.value >= 0.5)),
                        "diverged": sum(1 for c in configs if c.status == schema.FAILED),
                        "diagnosable": sum(1 for c in configs if c.diagnosable),
                        "diagnosable_reach": sum(1 for c in configs if c.diagnosable and c.reach_step is not None),
                        "diagnosable_hopeless_rule": sum(1 for c in configs if set(c.critical) & set(HOPELESS_RULES)),
                        "critical_rules": _count(r for c in configs for r in set(c.critical)),
                        "healthy_miss_values": [c.value for c in configs
                                                if not c.diagnosable and c.reach_step is None],
                        "diagnosable_miss_values": [c.value for c in configs
                                                    if c.diagnosable and c.reach_step is None],
                        "train_seconds": pool.train_seconds}
    return out


def _count(items) -> dict:
    counts: dict = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
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
    sp = [r["space"] for r in results]
    lines = [f"workload {spec.base.workload}/{spec.base.model}, {spec.base.epochs} epochs ({total} steps per full "
             f"trial), budget {args.trials} full trials ({args.trials * total:,} steps) per setting, target val "
             f"accuracy {args.target}, {len(results)} sampler seeds",
             f"the space unpruned: of {sum(s['configs'] for s in sp)} configs trained to the end, "
             f"{sum(s['reach'] for s in sp)} reach the target, {sum(s['below_half'] for s in sp)} end below 50% "
             f"({sum(s['diverged'] for s in sp)} diverged)", "",
             "| setting | steps to target | steps vs (b) | seconds to target | seconds vs (b) | best acc at equal "
             "compute | trials reaching target | compute on trials that never do | that compute: diagnosable / healthy "
             "| trials | pruned | false prunes |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name in ARMS + BOUNDS:
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
            f"{statistics.median(ratios_steps):.2f}" if ratios_steps else "-",
            _median_range([p["seconds_to_target"] for p in per], lambda v: f"{v:.1f}"),
            f"{statistics.median(ratios_s):.2f}" if ratios_s else "-",
            _median_range([p["best_equal"] for p in per], lambda v: f"{v:.3f}"),
            str(sum(p["reached"] for p in per)),
            _median_range([p["wasted_share"] for p in per], lambda v: f"{100 * v:.0f}%"),
            f"{100 * statistics.median(p['wasted_diag_share'] for p in per):.0f}% / "
            f"{100 * statistics.median(p['wasted_healthy_share'] for p in per):.0f}%",
            str(sum(p["trials"] for p in per)),
            str(sum(p["pruned"] for p in per)),
            str(sum(p["false_prunes"] for p in per)),
        ]) + " |")
    lines.append("")
    lines.append("equal compute per seed (the steps every setting spent): " + ", ".join(
        f"{r['none']['equal_steps']:,}" for r in results))
    lines.append("steps to target per seed: " + "; ".join(
        f"{LABELS[n]} " + ", ".join(str(r[n]["steps_to_target"]) for r in results) for n in ARMS + BOUNDS))
    lines += _diagnosable_lines(results, total)
    for name in ARMS[1:] + BOUNDS:
        by: dict = {}
        for r in results:
            for k, v in r[name]["pruned_by"].items():
                by[k] = by.get(k, 0) + v
        extra = ""
        checks = sum(r[name]["checks"] for r in results)
        if checks:
            secs = sum(r[name]["check_seconds"] for r in results)
            used = sum(r[name]["seconds_used"] for r in results)
            at = [s for r in results for s in r[name]["prune_steps"]]
            extra = (f"; diagnosis prunes at step {_median_range(at, lambda v: f'{v:.0f}')} of {total}; "
                     f"checks {checks} ({secs:.1f} s = {100 * secs / max(used, 1e-9):.0f}% of the setting's seconds), "
                     f"spared above the median {sum(r[name]['spared'] for r in results)}, "
                     f"skipped for overhead {sum(r[name]['skipped'] for r in results)}")
        lines.append(f"{LABELS[name]} pruned by: " + (", ".join(f"{k} {v}" for k, v in sorted(by.items())) or "-")
                     + extra)
    return "\n".join(lines)


def _diagnosable_lines(results: list[dict], total: int) -> list[str]:
    """What the bound rests on: which configs a diagnosis could call broken at their end, what the
    others end at, and where the MedianPruner and the diagnosis prune."""
    sp = [r["space"] for r in results]
    configs = sum(s["configs"] for s in sp)
    rules: dict = {}
    for s in sp:
        for k, v in s["critical_rules"].items():
            rules[k] = rules.get(k, 0) + v
    healthy = [v for s in sp for v in s["healthy_miss_values"]]
    broken = [v for s in sp for v in s["diagnosable_miss_values"]]
    acc = lambda v: f"{v:.3f}"  # noqa: E731
    lines = [
        f"diagnosable (a critical finding at the end of the full recording): {sum(s['diagnosable'] for s in sp)} of "
        f"{configs} configs ({sum(s['diagnosable_hopeless_rule'] for s in sp)} with a critical finding of "
        f"HOPELESS_RULES), {sum(s['diagnosable_reach'] for s in sp)} of them reach the target; critical rules: "
        + ", ".join(f"{k} {v}" for k, v in sorted(rules.items(), key=lambda kv: -kv[1])),
        f"configs that never reach the target: {len(broken)} diagnosable (final val acc "
        f"{_median_range(broken, acc)}), {len(healthy)} healthy but not good enough (final val acc "
        f"{_median_range(healthy, acc)}; {sum(1 for v in healthy if v >= 0.9)} of them at 0.9 or more)",
    ]
    for name in ("median", "diagnosis", "both"):
        per = [r[name] for r in results]
        pruned = sum(p["pruned"] for p in per)
        at = [s for p in per for s in p["all_prune_steps"]]
        false = sum(p["false_prunes"] for p in per)
        false_diag = sum(p["false_prunes_diagnosable"] for p in per)
        lines.append(
            f"{LABELS[name]}: {pruned} pruned at step {_median_range(at, lambda v: f'{v:.0f}') if at else '-'} "
            f"of {total}, "
            f"{sum(p['pruned_at_first_report'] for p in per)} of them at their first report; "
            f"{sum(p['pruned_diagnosable'] for p in per)} of the pruned are diagnosable, "
            f"{pruned - sum(p['pruned_diagnosable'] for p in per)} healthy at their end; false prunes {false}: "
            f"{false_diag} diagnosable, {false - false_diag} healthy")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=5, help="sampler seeds 0..N-1")
    ap.add_argument("--trials", type=int, default=30,
                    help="budget: this many full trials' worth of steps per setting")
    ap.add_argument("--max-factor", type=int, default=3, help="at most trials x this many trials per setting")
    ap.add_argument("--workload", default="digits", choices=("digits", "spirals", "sequence"))
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--target", type=float, default=0.97, help="validation accuracy to reach")
    ap.add_argument("--space", default="coarse", choices=tuple(SPACES),
                    help="coarse (default): the broad first stage of a coarse-to-fine search, where most trials "
                         "are broken; default: sweep.default_space, the narrower space a sweep gets by default")
    ap.add_argument("--jobs", type=int, default=2, help="seeds trained in parallel (one process each)")
    ap.add_argument("--out", help="write every trial's numbers as JSON here")
    args = ap.parse_args()
    base = Config(workload=args.workload, epochs=args.epochs, device="cpu")
    space = default_space(base) if args.space == "default" else parse_space(SPACES[args.space])
    spec = SweepSpec(base=base, space=space, n_trials=args.trials).validate()
    t0 = time.time()
    seeds = list(range(args.seeds))
    if args.jobs > 1:
        with ProcessPoolExecutor(max_workers=args.jobs) as ex:
            results = list(ex.map(run_seed, seeds, [spec.to_dict()] * len(seeds), [args] * len(seeds)))
    else:
        results = [run_seed(s, spec.to_dict(), args) for s in seeds]
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "results": results}, indent=1, default=str))
    print(report(results, args, spec))
    print("\nsearch space: " + "; ".join(p.text() for p in spec.space))
    print(f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS') or 'unset'}, {args.jobs} seed(s) at a time; "
          f"total {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()

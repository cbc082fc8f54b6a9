"""How the advice holds on real-shaped programs: train every program of benchmarks/corpus/ (healthy
and faulty variants, deterministic on CPU, seconds each), judge each run, and print per fault class
the recall, how often the root cause is ranked first, the false alarms on healthy runs and the
findings per faulty run.

    python benchmarks/advice_corpus.py                       # this checkout
    git worktree add /tmp/before 28e6f17
    python benchmarks/advice_corpus.py --code /tmp/before     # the same programs, older probes + rules

--code names the checkout whose probes record the runs and whose diagnostics judge them (the
programs always come from this checkout). A run counts as detected when its expected root cause is
a warning or critical finding; "first" when it is the first such finding; a false alarm is any
warning or critical finding on a healthy run. "Findings" counts the warning and critical findings
of a faulty run; "problems" counts those not marked as a consequence of another
(evidence['likely_caused_by']): what a user has to look into.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
sys.path.insert(0, str(HERE.parent))
from runstore import schema  # noqa: E402  (this checkout's: only the run-dir file name)


@dataclass(frozen=True)
class Case:
    program: str
    variant: str
    expect: str | None = None  # the root cause the advice should lead with; None = healthy

    @property
    def id(self) -> str:
        return f"{self.program}.{self.variant}"


CASES = [
    Case("char_gpt", "healthy"), Case("char_gpt", "lr_high", "lr_too_high"), Case("char_gpt", "lr_x30", "lr_too_high"),
    Case("makemore_mlp", "healthy"), Case("makemore_mlp", "overfit", "overfitting"),
    Case("word_lstm", "healthy"), Case("word_lstm", "no_clip", "exploding_gradients"),
    Case("word_lstm", "overfit", "overfitting"),
    Case("vae", "healthy"), Case("vae", "healthy_mean"), Case("vae", "lr_low", "lr_too_low"),
    Case("resnet", "healthy"), Case("resnet", "healthy_high_lr"), Case("resnet", "lr_low", "lr_too_low"),
    Case("dcgan", "healthy"), Case("dcgan", "unbalanced"),
    Case("lbfgs_seq", "healthy"), Case("lbfgs_seq", "lr_high", "lr_too_high"),
    Case("mnist_functional", "healthy"), Case("mnist_functional", "lr_high", "lr_too_high"),
    Case("classifier_bugs", "healthy"), Case("classifier_bugs", "healthy_sgd"),
    Case("classifier_bugs", "forgot_zero_grad", "grad_not_zeroed"),
    Case("classifier_bugs", "softmax_then_ce", "probabilities_as_logits"),
    Case("classifier_bugs", "class_sorted", "unshuffled_data"),
    Case("classifier_bugs", "unnormalized", "unnormalized_inputs"),
    Case("classifier_bugs", "heavy_weight_decay", "over_regularization"),
    Case("classifier_bugs", "frozen", "frozen_parameters"),
    Case("classifier_bugs", "nan_batch", "nan_loss"),
    Case("classifier_bugs", "healthy_schedule"), Case("classifier_bugs", "schedule_per_batch", "lr_schedule_too_fast"),
    Case("classifier_bugs", "shuffled_labels", "mismatched_labels"),
    Case("lm_bugs", "healthy"), Case("lm_bugs", "healthy_onecycle"),
    Case("lm_bugs", "prefetched_targets", "mismatched_targets"),
]

# Judged in a separate interpreter on the --code checkout, so an older diagnostics can judge too.
JUDGE = """
import json, sys
import diagnostics
out = []
for f in diagnostics.advise(diagnostics.load_run(sys.argv[1])):
    out.append({"rule": f.rule, "severity": f.severity, "caused_by": list(f.evidence.get("likely_caused_by") or [])})
print(json.dumps(out))
"""


def _env(code: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(code), OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    env.pop("PYTHONSTARTUP", None)
    return env


def run_case(case: Case, code: Path, root: Path, seed: int, reuse: bool) -> dict:
    run_dir = root / case.id
    t0 = time.perf_counter()
    env = _env(code)
    if not (reuse and (run_dir / schema.META_FILE).exists()):
        if run_dir.exists():
            import shutil
            shutil.rmtree(run_dir)
        p = subprocess.run([sys.executable, str(CORPUS / f"{case.program}.py"), "--run-dir", str(run_dir),
                            "--variant", case.variant, "--seed", str(seed)], env=env, capture_output=True, text=True)
        if p.returncode != 0:
            return {"id": case.id, "error": p.stderr.strip().splitlines()[-1:] or ["failed"], "seconds": 0.0}
    secs = time.perf_counter() - t0
    # cwd=code: `python -c` puts the working directory first on sys.path, ahead of PYTHONPATH.
    p = subprocess.run([sys.executable, "-c", JUDGE, str(run_dir)], env=env, capture_output=True, text=True,
                       cwd=str(code))
    if p.returncode != 0:
        return {"id": case.id, "error": p.stderr.strip().splitlines()[-1:] or ["judge failed"], "seconds": secs}
    return {"id": case.id, "findings": json.loads(p.stdout), "seconds": secs}


def alarms(result: dict) -> list[dict]:
    return [f for f in result.get("findings", []) if f["severity"] in ("warning", "critical")]


def score(results: dict[str, dict]) -> dict:
    classes: dict[str, dict] = {}
    for case in CASES:
        r = results[case.id]
        warn = alarms(r)
        key = case.expect or "healthy"
        c = classes.setdefault(key, {"runs": 0, "detected": 0, "first": 0, "findings": 0, "problems": 0,
                                     "false_alarms": 0})
        c["runs"] += 1
        if case.expect is None:
            c["false_alarms"] += bool(warn)
            continue
        c["detected"] += any(f["rule"] == case.expect for f in warn)
        c["first"] += bool(warn) and warn[0]["rule"] == case.expect
        c["findings"] += len(warn)
        c["problems"] += sum(not f["caused_by"] for f in warn)
    return classes


def table(classes: dict) -> str:
    lines = ["| class | runs | detected | root cause first | findings per run | problems per run |",
             "| --- | --- | --- | --- | --- | --- |"]
    faulty = {k: c for k, c in classes.items() if k != "healthy"}
    for k, c in faulty.items():
        n = c["runs"]
        lines.append(f"| {k} | {n} | {c['detected']}/{n} | {c['first']}/{n} | {c['findings'] / n:.1f} | "
                     f"{c['problems'] / n:.1f} |")
    n = sum(c["runs"] for c in faulty.values())
    tot = {k: sum(c[k] for c in faulty.values()) for k in ("detected", "first", "findings", "problems")}
    lines.append(f"| **all faults** | {n} | {tot['detected']}/{n} | {tot['first']}/{n} | {tot['findings'] / n:.1f} | "
                 f"{tot['problems'] / n:.1f} |")
    h = classes.get("healthy", {"runs": 0, "false_alarms": 0})
    lines.append(f"| **healthy (false alarms)** | {h['runs']} | {h['false_alarms']}/{h['runs']} with a warning | - | - | - |")
    return "\n".join(lines)


def describe(results: dict[str, dict]) -> str:
    lines = []
    for case in CASES:
        r = results[case.id]
        if "error" in r:
            lines.append(f"{case.id:34s} ERROR {r['error']}")
            continue
        shown = " ".join(f"{f['rule']}({f['severity'][0]}{'<-' + ','.join(f['caused_by']) if f['caused_by'] else ''})"
                         for f in alarms(r)) or "-"
        info = ",".join(f["rule"] for f in r["findings"] if f["severity"] == "info")
        lines.append(f"{case.id:34s} {r['seconds']:5.1f}s expect={case.expect or 'healthy':24s} {shown}"
                     + (f"  [info: {info}]" if info else ""))
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--code", default=str(HERE.parent), help="checkout whose probes and diagnostics are used")
    ap.add_argument("--runs", default=None, help="folder for the recorded runs (default: a temporary folder)")
    ap.add_argument("--reuse", action="store_true", help="judge runs already recorded in --runs instead of training")
    ap.add_argument("--jobs", type=int, default=1, help="programs trained at once (default 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write the per-run findings to this file")
    ap.add_argument("only", nargs="*", help="case ids or prefixes to run (default: all)")
    args = ap.parse_args()
    code = Path(args.code).resolve()
    root = Path(args.runs or tempfile.mkdtemp(prefix="advice-corpus-")).resolve()
    root.mkdir(parents=True, exist_ok=True)
    global CASES
    if args.only:
        CASES = [c for c in CASES if any(c.id.startswith(p) for p in args.only)]
    t0 = time.perf_counter()
    results = {}
    with cf.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futs = {pool.submit(run_case, c, code, root, args.seed, args.reuse): c for c in CASES}
        for fut in cf.as_completed(futs):
            r = fut.result()
            results[r["id"]] = r
    print(f"code: {code}  runs: {root}  seed: {args.seed}")
    print(describe(results))
    print()
    print(table(score(results)))
    print(f"\n{time.perf_counter() - t0:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

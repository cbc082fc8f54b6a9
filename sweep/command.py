"""`python -m playground sweep ...`: what the Sweep page does, from the command line.

    python -m playground sweep --study lr-search --n-trials 30 --workers 2 --workload digits --epochs 10
    python -m playground sweep --study lr-search --status
    python -m playground sweep --study lr-search --stop
    python -m playground sweep --study lr-fine --narrow-from lr-search --n-trials 20
    python -m playground sweep --study lr-search --rerun-best 40

The parser lives in playground/cli.py (it shares the config flags); this module runs it.
Exit codes: 0 done, 1 nothing completed or the sweep was stopped, 2 invalid arguments.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from dataclasses import replace

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
MONITOR_POLL_S = 1.0


def _err(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USAGE


def storage_url(args) -> str:
    from .storage import default_url
    from .worker import STORAGE_ENV

    return args.storage or os.environ.get(STORAGE_ENV) or default_url(args.runs_dir)


def run(args, base_config, fields_given: bool) -> int:
    """Run the parsed `sweep` subcommand. base_config(): the Config the flags describe (raises
    playground ConfigError); fields_given: whether any config flag or --config was given."""
    if importlib.util.find_spec("optuna") is None:
        return _err("sweeps need Optuna: pip install 'traindiag[sweep]' (or pip install 'optuna>=3.5').")
    from .spec import SpecError, check_study_name
    from .storage import StorageError
    from .study import StudyError

    url = storage_url(args)
    try:
        if args.worker:
            from .worker import worker_main

            return worker_main(url, check_study_name(args.study), args.runs_dir, worker_index=args.worker_index)
        if not args.study:
            return _list(url)
        check_study_name(args.study)
        if args.status:
            return _status(url, args.study)
        if args.stop:
            return _stop(url, args.study)
        if args.rerun_best is not None:
            return _rerun_best(url, args)
        return _sweep(url, args, base_config, fields_given)
    except (SpecError, StudyError, StorageError) as e:
        return _err(str(e))


def _list(url: str) -> int:
    from .storage import redact
    from .study import study_names

    names = study_names(url)
    if not names:
        print(f"no studies in {redact(url)} yet; start one with --study NAME")
    for n in names:
        print(n)
    return EXIT_OK


def _status(url: str, name: str) -> int:
    from .study import load, progress, trial_rows

    study, spec = load(url, name)
    rows = trial_rows(study)
    print(table(rows, spec))
    p = progress(study, spec, rows)
    print(summary_line(p, spec))
    return EXIT_OK


def _stop(url: str, name: str) -> int:
    from .study import load, request_stop

    study, _ = load(url, name)
    request_stop(study)
    print(f"asked every worker of {name!r} to stop: running trials end at their next step.", file=sys.stderr)
    return EXIT_OK


def _spec_from_args(args, base_config):
    from playground.config import ConfigError

    from .space import SpaceError, default_space, parse_space
    from .spec import SpecError, SweepSpec

    try:
        base = base_config()
        space = parse_space(args.param) if args.param else default_space(base)
    except (ConfigError, SpaceError) as e:
        raise SpecError(str(e)) from None
    return SweepSpec(base=base, space=space, n_trials=args.n_trials or 20, objective=args.objective or "val_accuracy",
                     pruner=args.pruner or "diagnosis", sampler=args.sampler or "random",
                     seed=args.sampler_seed if args.sampler_seed is not None else 0).validate()


def _sweep(url: str, args, base_config, fields_given: bool) -> int:
    from .spec import SpecError
    from .storage import redact
    from .study import clear_stop, create_study, load, load_spec, narrowed, study_names

    if not 1 <= args.workers <= 64:
        return _err(f"--workers must be from 1 to 64, got {args.workers}.")
    exists = args.study in study_names(url)
    spec_flags = fields_given or args.param or args.pruner or args.sampler or args.objective \
        or args.sampler_seed is not None
    if args.narrow_from:
        if exists:
            return _err(f"study {args.study!r} already exists; --narrow-from creates a new study, so give a new name.")
        source, source_spec = load(url, args.narrow_from)
        spec = narrowed(source, source_spec, n_trials=args.n_trials, top_fraction=args.top)
        study = create_study(url, args.study, spec)
        print(f"narrowed {args.narrow_from!r} around its best trials:", file=sys.stderr)
        for note in spec.notes:
            print(f"  {note}", file=sys.stderr)
    elif exists:
        study, _ = load(url, args.study)
        spec = load_spec(study)
        if spec_flags:
            wanted = _spec_from_args(args, base_config)
            if replace(wanted, n_trials=spec.n_trials, parent=spec.parent, notes=spec.notes) != spec:
                raise SpecError(f"study {args.study!r} already exists with other settings; to resume it, leave out "
                                f"the search and config flags (only --n-trials may change), or choose a new --study.")
        if args.n_trials and args.n_trials != spec.n_trials:
            spec = spec.with_budget(args.n_trials)
            study = create_study(url, args.study, spec, resume=True)
        print(f"resuming study {args.study!r} ({redact(url)})", file=sys.stderr)
    else:
        spec = _spec_from_args(args, base_config)
        study = create_study(url, args.study, spec)
        print(f"created study {args.study!r} in {redact(url)}", file=sys.stderr)
    clear_stop(study)
    return _run_workers(url, args, study, spec)


def _run_workers(url: str, args, study, spec) -> int:
    from jobs import cpu_cores

    from . import records
    from .bar import SweepBar
    from .study import load, progress, trial_rows
    from .study import budget_left
    from .worker import WORKERS_LOG, spawn, terminate

    if budget_left(study, spec) <= 0:
        print(f"the study already has its {spec.n_trials} trials; raise --n-trials to run more.", file=sys.stderr)
        print(table(trial_rows(study), spec))
        return EXIT_OK
    threads = max(1, cpu_cores() // args.workers)
    log = records.study_dir(args.runs_dir, args.study) / WORKERS_LOG
    procs = spawn(url, args.study, args.runs_dir, args.workers, threads=threads)
    print(f"{args.workers} worker{'s' if args.workers > 1 else ''} started ({threads} thread"
          f"{'s' if threads > 1 else ''} each); trials record into {records.study_dir(args.runs_dir, args.study)}; "
          f"log: {log}", file=sys.stderr)
    bar = None if args.quiet else SweepBar(spec.objective)
    interrupted = False
    try:
        while any(p.poll() is None for p in procs):
            if bar is not None:
                bar(progress(study, spec))
            time.sleep(MONITOR_POLL_S)
    except KeyboardInterrupt:
        interrupted = True
        if bar is not None:
            bar.finish()
        print("stopping the workers of this machine (their running trials end at the next step)...", file=sys.stderr)
        terminate(procs)
    study, _ = load(url, args.study)
    rows = trial_rows(study)
    p = progress(study, spec, rows)
    if bar is not None:
        bar(p)
        bar.finish()
    print(table(rows, spec))
    print(summary_line(p, spec))
    codes = [p_.returncode for p_ in procs if p_.returncode not in (0, None, -15)]
    if codes:
        print(f"{len(codes)} worker(s) exited with an error; see {log}", file=sys.stderr)
    return EXIT_OK if p.best is not None and not interrupted and not codes else EXIT_FAILED


def _rerun_best(url: str, args) -> int:
    from jobs import new_run_dir
    from playground.progress import ProgressBar
    from runstore import read_meta

    from . import records
    from .study import load, rerun_best

    study, spec = load(url, args.study)
    epochs = args.rerun_best if args.rerun_best > 0 else None
    config, best = rerun_best(study, spec, epochs=epochs)
    folder = records.study_dir(args.runs_dir, args.study)
    run_dir = new_run_dir(folder, f"best-trial-{best.number}-{config.epochs}-epochs")
    from playground.loop import train

    print(f"rerunning trial {best.number} ({spec.objective} {best.value:.4g}) with {config.epochs} epochs "
          f"into {run_dir}", file=sys.stderr)
    meta = {"name": f"{args.study} best (#{best.number}) x{config.epochs} epochs",
            "description": f"Best trial {best.number} of sweep {args.study} rerun with {config.epochs} epochs.",
            "parent": best.run_dir}
    bar = None if args.quiet else ProgressBar()
    try:
        status = train(config, run_dir, meta=meta, progress=bar)
    finally:
        if bar:
            bar.finish()
    print(f"{status}: {run_dir}", file=sys.stderr)
    error = read_meta(run_dir).get("error")
    if error:
        print(error, file=sys.stderr)
    return EXIT_FAILED if status == "failed" else EXIT_OK


# -- text output -----------------------------------------------------------------------------------
def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def table(rows, spec) -> str:
    """The trials as a plain-text table: number, state, value, steps, params, reason."""
    names = [p.name for p in spec.space]
    head = ["#", "state", spec.objective, "step"] + names + ["why"]
    lines = [head]
    for r in rows:
        if r.state in ("running", "pruned", "stopped") and r.last_step is not None and r.total_steps:
            step = f"{r.last_step}/{r.total_steps}"
        else:
            step = str(r.total_steps) if r.total_steps else "-"
        lines.append([str(r.number), r.state, _fmt(r.value), step] + [_fmt(r.params.get(n)) for n in names]
                     + [r.reason[:90]])
    widths = [max(len(row[i]) for row in lines) for i in range(len(head) - 1)]
    out = []
    for row in lines:
        out.append("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])
    return "\n".join(out)


def summary_line(p, spec) -> str:
    parts = [f"{p.finished}/{p.n_trials} trials"] + [f"{p.counts[k]} {k}" for k in ("running", "pruned", "failed", "stopped")
                                                     if p.counts.get(k)]
    best = (f"best {spec.objective} {p.best.value:.4g}: trial {p.best.number} ({p.best.run_dir})"
            if p.best is not None else "no completed trial yet")
    return ", ".join(parts) + ". " + best + (" The sweep was stopped." if p.stop_requested else "")

"""Command line: `python -m playground train ...`, `python -m playground sweep ...` and
`python -m playground make-samples`.

Exit codes: 0 finished or stopped on request, 1 failed (diverged or crashed), 2 invalid arguments.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from .config import FIELDS, WORKLOAD_MODELS, Config, ConfigError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _parse_bool(text: str) -> bool:
    t = text.strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("training configuration (defaults: playground.Config; see FIELDS)")
    for name, spec in FIELDS.items():
        flags = [f"--{name.replace('_', '-')}"] + ([f"--{name}"] if "_" in name else [])
        default = getattr(Config(), name)
        default = str(default).lower() if isinstance(default, bool) else default
        helptext = f"{spec.help} Allowed: {spec.describe()}. Default: {default}."
        helptext = helptext.replace("%", "%%")
        if spec.type is bool:
            group.add_argument(*flags, dest=name, type=_parse_bool, nargs="?", const=True, default=None,
                               metavar="BOOL", help=helptext)
            group.add_argument(f"--no-{name.replace('_', '-')}", dest=name, action="store_false",
                               help=argparse.SUPPRESS)
        else:
            metavar = "{" + ",".join(spec.choices) + "}" if spec.choices else spec.type.__name__.upper()
            group.add_argument(*flags, dest=name, type=spec.type, default=None, metavar=metavar, help=helptext)


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of `python -m playground`."""
    parser = argparse.ArgumentParser(prog="python -m playground",
                                     description="Train built-in workloads with probes attached, or regenerate "
                                                 "the bundled sample runs.")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train one built-in workload into a run directory",
                       description="Train a built-in workload and record it into --run-dir. Ctrl-C or SIGTERM "
                                   "stops cleanly: the run is marked 'stopped' and keeps what it recorded.")
    t.add_argument("--run-dir", required=True, help="directory to record the run into (created)")
    t.add_argument("--config", metavar="FILE", help="JSON file of config fields; flags override it")
    t.add_argument("--name", help="run name shown in the dashboard (default: the directory name)")
    t.add_argument("--description", help="one line describing the run")
    t.add_argument("--parent", help="run directory this run was rerun from")
    t.add_argument("--overwrite", action="store_true", help="replace a run already in --run-dir")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_config_flags(t)

    _add_sweep_parser(sub)

    s = sub.add_parser("make-samples", help="regenerate the bundled sample runs",
                       description="Retrain every sample run (or those named by --only) into --out, replacing "
                                   "what is there. Deterministic: the same code gives the same numbers.")
    s.add_argument("--only", nargs="+", metavar="NAME", help="regenerate only these samples")
    s.add_argument("--out", default=None, help="directory of the samples (default: sample_runs/ of this repository)")
    s.add_argument("--list", action="store_true", help="list the samples and their descriptions, train nothing")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def _add_sweep_parser(sub) -> None:
    w = sub.add_parser(
        "sweep", help="search hyperparameters with Optuna, pruning trials the diagnostics find hopeless",
        description="Create (or resume) an Optuna study over the playground's config fields and train its trials "
                    "with --workers processes, each trial an ordinary recorded run in RUNS_DIR/STUDY/trial-NNNN. "
                    "The study lives in --storage (default: a SQLite file RUNS_DIR/sweeps.db), so workers on "
                    "other machines join it with the same --storage and --study. Needs: pip install "
                    "'traindiag[sweep]'. See docs/sweeps.md.")
    w.add_argument("--study", help="study name (also the folder of its trial runs); without it, list the studies")
    w.add_argument("--storage", metavar="URL", help="Optuna storage URL, e.g. sqlite:///sweeps.db or "
                   "postgresql://user@host/db (default: $TRAINDIAG_SWEEP_STORAGE, else RUNS_DIR/sweeps.db)")
    w.add_argument("--runs-dir", default="runs", help="folder the trials are recorded under (default: runs)")
    w.add_argument("--n-trials", type=int, metavar="N", help="trials in all, over every worker (default 20; on "
                   "resume, a new budget)")
    w.add_argument("--workers", type=int, default=1, metavar="K", help="worker processes on this machine (default 1)")
    w.add_argument("--param", action="append", metavar="FIELD=LOW:HIGH[:log|:lin] | FIELD=A,B,...",
                   help="a searched field, repeatable, e.g. --param lr=1e-4:1 --param optimizer=sgd,adam "
                        "(default: lr, weight_decay, optimizer, activation, batch_norm, depth, width)")
    w.add_argument("--objective", choices=("val_accuracy", "val_loss"),
                   help="what a trial returns: the last validation accuracy (maximised, default) or loss")
    w.add_argument("--pruner", choices=("diagnosis", "both", "median", "none"),
                   help="diagnosis (default): prune trials a critical finding makes hopeless; both: diagnosis or "
                        "Optuna's MedianPruner; median; none")
    w.add_argument("--sampler", choices=("random", "tpe"), help="random search (default; trial N draws the same "
                   "config for the same --sampler-seed) or Optuna's TPE")
    w.add_argument("--sampler-seed", type=int, metavar="S", help="seed of the sampler (default 0)")
    w.add_argument("--narrow-from", metavar="STUDY", help="coarse to fine: create --study searching the region of "
                   "the best trials of STUDY")
    w.add_argument("--top", type=float, default=0.25, metavar="FRACTION",
                   help="with --narrow-from: the share of best trials whose region is kept (default 0.25)")
    w.add_argument("--status", action="store_true", help="print the study's trials and exit")
    w.add_argument("--stop", action="store_true", help="ask every worker of the study (any machine) to stop")
    w.add_argument("--rerun-best", type=int, nargs="?", const=0, metavar="EPOCHS",
                   help="train the best trial's config again with EPOCHS epochs (default: twice its epochs), "
                        "linked to the trial's run")
    w.add_argument("--config", metavar="FILE", help="JSON file of base config fields; flags override it")
    w.add_argument("--quiet", action="store_true", help="no progress bar")
    w.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    w.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    _add_config_flags(w)


def config_from_args(args: argparse.Namespace) -> Config:
    """Config file (if any), then flags on top; a bare --workload brings its own default model."""
    base = Config.load(args.config, validate=False) if args.config else Config()
    changes = {name: getattr(args, name) for name in FIELDS if getattr(args, name) is not None}
    workload = changes.get("workload", base.workload)
    if "model" not in changes and base.model not in WORKLOAD_MODELS.get(workload, (base.model,)):
        changes["model"] = WORKLOAD_MODELS[workload][0]
    return base.replace(**changes)


class _SignalStop:
    """SIGINT/SIGTERM set an event that the training loop polls; a second SIGINT interrupts at once."""

    def __init__(self):
        self.event = threading.Event()
        self.signal_name: str | None = None
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.event.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the user insists: leave the current step now
        self.signal_name = signal.Signals(signum).name
        self.event.set()

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False


def _train(args) -> int:
    try:
        config = config_from_args(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    from runstore import RunExistsError, is_run_dir, read_meta

    if is_run_dir(args.run_dir) and not args.overwrite:
        # Checked before torch is imported, so the mistake is reported at once.
        print(f"error: {args.run_dir} already holds a run; choose another --run-dir or add --overwrite",
              file=sys.stderr)
        return EXIT_USAGE
    from .loop import train  # deferred: --help and config errors need no torch
    from .progress import ProgressBar

    meta = {k: v for k, v in (("name", args.name), ("description", args.description), ("parent", args.parent))
            if v is not None}
    bar = None if args.quiet else ProgressBar()
    with _SignalStop() as stopper:
        try:
            status = train(config, args.run_dir, meta=meta, progress=bar, stop=stopper.event,
                           overwrite=args.overwrite)
        except RunExistsError as e:
            print(f"error: {e} (add --overwrite)", file=sys.stderr)
            return EXIT_USAGE
        except Exception as e:  # the run is already marked failed with this error
            if bar:
                bar.finish()
            print(f"failed: {type(e).__name__}: {e}", file=sys.stderr)
            return EXIT_FAILED
        finally:
            if bar:
                bar.finish()
    meta = read_meta(args.run_dir)
    why = f" ({stopper.signal_name})" if stopper.signal_name and status == "stopped" else ""
    print(f"{status}{why}: {args.run_dir}", file=sys.stderr)
    if meta.get("error"):
        print(meta["error"], file=sys.stderr)
    return EXIT_FAILED if status == "failed" else EXIT_OK


def _make_samples(args) -> int:
    from . import samples

    if args.list:
        for s in samples.SAMPLES.values():
            print(f"{s.name:24s} {s.description}")
        return EXIT_OK
    try:
        chosen = samples.select(args.only)
    except KeyError as e:
        print(f"error: {e.args[0]}", file=sys.stderr)
        return EXIT_USAGE
    out = Path(args.out) if args.out else samples.SAMPLE_DIR
    with _SignalStop() as stopper:
        timings = samples.make(chosen, out, quiet=args.quiet, stop=stopper.event)
    print(samples.timing_table(timings, out))
    return EXIT_OK if not stopper.event.is_set() else EXIT_FAILED


def _sweep(args) -> int:
    from sweep.command import run  # deferred: the other commands need no Optuna

    given = bool(args.config) or any(getattr(args, name) is not None for name in FIELDS)
    return run(args, lambda: config_from_args(args), given)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m playground`."""
    args = build_parser().parse_args(argv)
    if args.command == "train":
        return _train(args)
    if args.command == "sweep":
        return _sweep(args)
    return _make_samples(args)

"""Command line: python -m diagnostics advise RUN_DIR [--json] [--fail-on warning|critical] [--verdicts].

Exit status: 0 when no finding reaches --fail-on, 1 when one does, 2 when the run cannot be read
(or holds no recorded numbers) or the arguments are wrong, 3 when the diagnostics themselves failed
(a bug: one line on stderr, the traceback only with TRAINDIAG_DEBUG=1). Colour only when stdout is a
terminal and NO_COLOR is unset. The `traindiag-advise RUN_DIR` script is the same without the
`advise` word.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import textwrap

from runstore import RunReadError

from . import verdicts as V
from .engine import Judgement, judge
from .finding import SEVERITIES, SEVERITY_RANK, Finding
from .grouping import group
from .loading import load_run
from .thresholds import Thresholds

EXIT_OK, EXIT_FINDINGS, EXIT_UNREADABLE, EXIT_INTERNAL = 0, 1, 2, 3
_COLORS = {"critical": "\033[1;31m", "warning": "\033[33m", "info": "\033[36m"}
_DIM, _BOLD, _RESET = "\033[2m", "\033[1m", "\033[0m"


def _parser(prog: str = "python -m diagnostics", *, subcommand: bool = True) -> argparse.ArgumentParser:
    description = "Training diagnostics for recorded runs."
    p = argparse.ArgumentParser(prog=prog, description=description)
    if subcommand:
        sub = p.add_subparsers(dest="command", required=True)
        a = sub.add_parser("advise", help="print findings for one run (run directory or TensorBoard log directory)")
    else:  # traindiag-advise RUN_DIR: the script is the advise command itself
        a = p
    a.add_argument("run_dir", help="run directory written by probes, or a TensorBoard log directory")
    a.add_argument("--json", action="store_true", help="print a JSON list of findings instead of a table")
    a.add_argument("--fail-on", choices=("warning", "critical"), default=None,
                   help="exit with status 1 if any finding is at least this severe")
    a.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="override a threshold (see diagnostics.Thresholds), e.g. --set dead_warn=0.5")
    a.add_argument("--no-color", action="store_true", help="never colour the table")
    a.add_argument("--verdicts", action="store_true",
                   help="also print the per-layer verdict tables the findings were drawn from")
    return p


def _use_color(stream, disabled: bool) -> bool:
    return not disabled and "NO_COLOR" not in os.environ and hasattr(stream, "isatty") and stream.isatty()


def _steps(f: Finding) -> str:
    if not f.steps:
        return "-"
    a, b = f.steps
    return str(a) if a == b else f"{a}-{b}"


def _layers(f: Finding, limit: int = 3) -> str:
    if not f.layers:
        return "-"
    shown = ", ".join(f.layers[:limit])
    return shown + (f" +{len(f.layers) - limit}" if len(f.layers) > limit else "")


def _details(f: Finding, head: str, wrap: textwrap.TextWrapper, c) -> list[str]:
    lines = [head]
    lines += wrap.wrap(f.message)
    lines += wrap.wrap("Try: " + f.advice)
    if f.fix:
        lines += wrap.wrap("Config change: " + ", ".join(f"{k}={v}" for k, v in f.fix.items()))
    if f.layers:
        lines += wrap.wrap("Layers: " + ", ".join(f.layers))
    lines.append(c(_DIM, f"{wrap.initial_indent}See: {f.chart} page" + (f" ({', '.join(f.tags[:4])})" if f.tags else "")))
    return lines


def render_table(findings: list[Finding], run, *, color: bool, width: int | None = None) -> str:
    """Human-readable report: a summary table with each problem's consequences indented under its
    root cause (diagnostics.grouping), then each problem in detail, its consequences with it, then
    the notes (info findings)."""
    width = width or max(60, min(120, shutil.get_terminal_size((100, 24)).columns))
    c = (lambda code, s: f"{code}{s}{_RESET}") if color else (lambda code, s: s)
    steps = getattr(run, "last_step", -1)
    lines = [c(_BOLD, f"Run {run.meta.get('name') or run.path.name}") +
             f"  ({run.path})  status: {run.status}" + (f"  last step: {steps}" if steps >= 0 else "")]
    if not findings:
        lines.append("No findings: nothing in this run trips a rule.")
        return "\n".join(lines) + "\n"
    problems, notes = group(findings)
    counts = {s: sum(f.severity == s for f in findings) for s in reversed(SEVERITIES)}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    if problems:
        summary = (f"{len(problems)} independent problem{'s' * (len(problems) != 1)} "
                   f"({summary})")
    lines.append(summary)
    ordered = [(f, depth) for p in problems for f, depth in [(p.root, 0)] + [(x, 1) for x in p.consequences]]
    ordered += [(f, 0) for f in notes]
    rows = [("SEVERITY", "RULE", "STEPS", "LAYERS", "TITLE")]
    rows += [(f.severity.upper(), ("  - " if depth else "") + f.rule, _steps(f), _layers(f), f.title)
             for f, depth in ordered]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines.append("")
    for i, r in enumerate(rows):
        cells = [r[j].ljust(widths[j]) for j in range(4)] + [r[4]]
        text = "  ".join(cells)
        if i == 0:
            lines.append(c(_DIM, text))
        else:
            sev = ordered[i - 1][0].severity
            lines.append(c(_COLORS[sev], cells[0]) + "  " + "  ".join(cells[1:]))
    wrap = textwrap.TextWrapper(width=width, initial_indent="    ", subsequent_indent="    ")
    inner = textwrap.TextWrapper(width=width, initial_indent="        ", subsequent_indent="        ")
    for n, p in enumerate(problems, 1):
        f = p.root
        lines.append("")
        lines += _details(f, c(_COLORS[f.severity], f"{n}. [{f.severity}] {f.rule}") + f": {f.title}", wrap, c)
        if p.consequences:
            lines.append(f"    Likely consequences of this problem ({len(p.consequences)}):")
            for k, x in enumerate(p.consequences, 1):
                lines += _details(x, c(_COLORS[x.severity], f"    {n}.{k} [{x.severity}] {x.rule}") + f": {x.title}",
                                  inner, c)
    for f in notes:
        lines.append("")
        lines += _details(f, c(_COLORS[f.severity], f"Note [{f.severity}] {f.rule}") + f": {f.title}", wrap, c)
    return "\n".join(lines) + "\n"


def render_verdicts(judgement: Judgement) -> str:
    """The per-layer verdict tables (diagnostics.verdicts): what the dashboard pages show."""
    from .view import fmt

    lines = []
    for q in V.QUANTITIES:
        rows = judgement.layer_verdicts(q)
        if not rows:
            continue
        stats = list(dict.fromkeys(r.statistic for r in rows if r.verdict != V.NO_GRADIENT))
        lines += ["", f"Verdicts on {q}" + (f" ({'; '.join(stats)})" if stats else "") + ":"]
        width = max(len(r.name) for r in rows)
        for r in rows:
            since = f"  since step {r.since}" if r.since is not None else ""
            lines.append(f"    {r.name.ljust(width)}  {fmt(r.value):>9}  steps {r.steps[0]}-{r.steps[1]}  "
                         f"{r.verdict}{since}")
    return "\n".join(lines) + ("\n" if lines else "")


def _overrides(pairs: list[str]) -> dict:
    out = {}
    for item in pairs:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set needs NAME=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def main(argv: list[str] | None = None, *, prog: str = "python -m diagnostics", subcommand: bool = True) -> int:
    """Entry point of `python -m diagnostics`."""
    args = _parser(prog, subcommand=subcommand).parse_args(argv)
    try:
        return _advise(args)
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001 - a bug must not read as "findings" (1) or dump a traceback
        if os.environ.get("TRAINDIAG_DEBUG"):
            raise
        print(f"internal error: the diagnostics failed on {args.run_dir}: {type(e).__name__}: {e} "
              f"(set TRAINDIAG_DEBUG=1 for the traceback, and please report it)", file=sys.stderr)
        return EXIT_INTERNAL


def advise_script(argv: list[str] | None = None) -> int:
    """Entry point of the `traindiag-advise RUN_DIR` console script."""
    return main(argv, prog="traindiag-advise", subcommand=False)


def _advise(args) -> int:
    try:
        config = Thresholds().with_overrides(_overrides(args.set))
    except (KeyError, ValueError) as e:
        print(f"error: {e.args[0] if e.args else e}", file=sys.stderr)
        return EXIT_UNREADABLE
    try:
        run = load_run(args.run_dir)
    except (RunReadError, OSError) as e:
        print(f"error: cannot read {args.run_dir}: {e}", file=sys.stderr)
        return EXIT_UNREADABLE
    if not run.scalar_tags():
        detail = f" ({'; '.join(run.warnings)})" if run.warnings else ""
        print(f"error: cannot read {args.run_dir}: it holds no recorded numbers{detail}", file=sys.stderr)
        return EXIT_UNREADABLE
    judgement = judge(run, config)
    findings = judgement.findings
    for w in run.warnings:
        print(f"warning: {w}", file=sys.stderr)
    if args.json:
        print(json.dumps([f.to_dict() for f in findings], indent=2))
    else:
        sys.stdout.write(render_table(findings, run, color=_use_color(sys.stdout, args.no_color)))
        if args.verdicts:
            sys.stdout.write(render_verdicts(judgement))
    if args.fail_on and any(f.rank >= SEVERITY_RANK[args.fail_on] for f in findings):
        return EXIT_FINDINGS
    return EXIT_OK

"""advise(run) -> ranked findings: runs every registered rule and ranks what they found."""

from __future__ import annotations

from dataclasses import dataclass, field

from .finding import Finding
from .ranking import rank
from .rules import RULES
from .thresholds import Thresholds
from .verdicts import QUANTITIES, LayerVerdict
from .view import RunView


def _read_warnings(run) -> list[Finding]:
    """Problems met while reading the run (damaged chunks, missing files) as an info finding."""
    warnings = list(getattr(run, "warnings", []) or [])
    if not warnings:
        return []
    return [Finding(
        rule="partial_run", severity="info", title="Run read only in part",
        message="Some of the run could not be read, so the advice covers only what was: " + " | ".join(warnings),
        advice="Findings may be missing. If the run is still being written, ask again later.",
        evidence={"warnings": warnings}, chart="overview",
    )]


@dataclass(frozen=True)
class Judgement:
    """Everything the diagnostics decided about one run: the ranked findings and the per-layer
    verdicts they were drawn from, with the thresholds used. Pages show this, never their own."""

    findings: list[Finding]
    verdicts: dict[str, list[LayerVerdict]] = field(default_factory=dict)
    thresholds: Thresholds = field(default_factory=Thresholds)
    view: RunView | None = None  # derived series the rules read (e.g. the smoothed loss)

    def layer_verdicts(self, quantity: str) -> list[LayerVerdict]:
        return self.verdicts.get(quantity, [])


def judge(run, config: Thresholds | None = None) -> Judgement:
    """Run every rule on a loaded run and keep the per-layer verdicts next to the findings."""
    th = config if config is not None else Thresholds()
    if not isinstance(th, Thresholds):
        raise TypeError(f"config must be a diagnostics.Thresholds, got {type(th).__name__}")
    view = RunView(run, th)
    findings = _findings(run, view)
    verdicts = {}
    for q in QUANTITIES:
        try:
            verdicts[q] = view.verdicts(q)
        except Exception:  # noqa: BLE001 - odd data in one table must not hide the findings
            verdicts[q] = []
    return Judgement(findings=findings, verdicts=verdicts, thresholds=th, view=view)


def advise(run, config: Thresholds | None = None) -> list[Finding]:
    """Run every rule on a loaded run (runstore.Run or diagnostics.load_run result) and return the
    findings, most severe and most likely root cause first. `config` overrides thresholds."""
    return judge(run, config).findings


def _findings(run, view: RunView) -> list[Finding]:
    findings = _read_warnings(run)
    for rule in RULES:
        try:
            findings.extend(rule(view))
        except Exception as e:  # one rule tripping over odd data must not hide the others' advice
            findings.append(Finding(
                rule="rule_failed", severity="info", title=f"Rule {rule.__name__} could not run",
                message=f"{rule.__name__} failed on this run: {type(e).__name__}: {e}",
                advice="The other findings are unaffected. Please report this with the run directory.",
                evidence={"failed_rule": rule.__name__, "error": f"{type(e).__name__}: {e}"}, chart="overview",
            ))
    # The first recorded step is before any update, except with a closure optimizer (LBFGS), whose
    # gradients are read after its step (probes' coverage note): then nothing is known to predate it.
    loss = view.loss
    before_update = len(loss) and not view.closure_optimizer
    return rank(findings, int(loss.index[0]) if before_update else None)

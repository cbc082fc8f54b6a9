"""coverage (info): what the probes could not see in this run, from their "coverage" events: a
model whose activations are functions (no module to hook), a closure optimizer whose gradients are
read after its step, a module called in a loop whose later calls were not recorded. Rules that need
what is missing say nothing rather than something wrong; this finding says why."""

from __future__ import annotations

from runstore import tags as T

from ..finding import Finding
from ..view import RunView

COVERAGE_EVENT = "coverage"  # the event kind probes write (probes/recorder.py)
SHOWN = 6


def coverage(v: RunView) -> list[Finding]:
    events = v.run.events
    if not len(events):
        return []
    cov = events[events["kind"].astype(str) == COVERAGE_EVENT]
    if not len(cov):
        return []
    items = [{"step": int(r.step) if r.step == r.step else None, "message": str(r.message)[:400]}
             for r in cov.itertuples()]
    shown = items[:SHOWN]
    more = f" ({len(items) - SHOWN} more in the evidence)" if len(items) > SHOWN else ""
    msg = "The probes could not record everything in this run: " + " | ".join(x["message"] for x in shown) + more
    steps = [x["step"] for x in items if x["step"] is not None]
    return [Finding(
        rule="coverage", severity="info", title="What the probes could not see", message=msg,
        advice=("Findings that need the missing statistics are not given rather than guessed; each note says how to "
                "record them."),
        evidence={"events": items}, steps=(min(steps), max(steps)) if steps else None, chart="overview",
        tags=(T.TRAIN_LOSS,),
    )]

"""The Finding record every rule returns (the contract in docs/architecture.md)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

SEVERITIES = ("info", "warning", "critical")
SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}

# Dashboard pages a finding can point at (Finding.chart).
CHARTS = ("overview", "activations", "gradients", "updates", "predictions")

# How Finding.evidence is laid out, so every number a card quotes can be found there with its step
# (tests/test_findings_evidence.py checks this on every sample run):
# - a measured value `k` has its step in `k_step` (one step) or `k_steps` ([first, last]: the span an
#   average, a median or a count covers); keys ending in `_step` are steps themselves;
# - thresholds keep the names of diagnostics.Thresholds fields; limits computed from them end in
#   `_limit`;
# - per-layer values are the rows of diagnostics.verdicts in `verdicts` (LayerVerdict fields, steps
#   as a list): the same rows the pages show;
# - the keys below describe the run or the advice itself, not a measurement at a step.
CONSTANT_EVIDENCE = frozenset({
    "lr",                  # the configured learning rate
    "label_smoothing",     # the configured label smoothing
    "n_classes",           # classes of the task
    "reference_loss",      # ln(C), or the initial loss when C is unknown: what "no progress" means
    "expected_loss",       # ln(C) for bad_init_loss
    "loss_floor",          # lowest reachable loss (label smoothing), 0 without
    "uniform",             # 1 / C: the confidence of a uniform guess
    "label_smoothing_cap",  # top probability label smoothing trains towards
    "smooth_window",       # steps of the rolling median the rules read the train loss through (RunView.window)
    "saturation_band",     # what the probes count as saturated: within this fraction of a bound
    "lr_factor",           # the factor the fix applies to the learning rate
    "lr_divisor",          # ... said as a divisor
    "layers_judged",       # rows in the verdict table the finding read
    "total_steps",         # planned steps of a live run
    "weight_decay",        # the configured weight decay
    "dropout",             # the configured dropout
    "softmax_cap",         # e / (e + C - 1): the top probability a softmax over scores in [0, 1] reaches
    "softmax_loss_floor",  # ln(e + C - 1) - 1: the cross-entropy such scores cannot go below
    "total_params",        # parameters of the model (run.json model.n_params)
    "frozen_params",       # ... of which never train
    "frozen_share",        # ... as a share
    "probe_every",         # the probes' sampling cadence of layer statistics
})


@dataclass(frozen=True)
class Finding:
    """One diagnosis: what was observed (with numbers), what to try, and where to see it."""

    rule: str
    severity: str
    title: str
    message: str
    advice: str
    evidence: dict = field(default_factory=dict)
    steps: tuple[int, int] | None = None
    layers: tuple[str, ...] = ()
    fix: dict = field(default_factory=dict)
    chart: str = "overview"
    tags: tuple[str, ...] = ()

    def __post_init__(self):
        if self.severity not in SEVERITY_RANK:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")
        if self.chart not in CHARTS:
            raise ValueError(f"chart must be one of {CHARTS}, got {self.chart!r}")

    @property
    def rank(self) -> int:
        """0 for info, 1 for warning, 2 for critical."""
        return SEVERITY_RANK[self.severity]

    def to_dict(self) -> dict:
        """JSON-ready dict: tuples become lists, NaN/Inf become the strings 'nan'/'inf'/'-inf'."""
        return _json_ready(asdict(self))


def _json_ready(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    if isinstance(obj, dict):
        return {str(k): _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_ready(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return _json_ready(obj.item())
    return obj

"""The Finding record every rule returns (the contract in docs/architecture.md)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

SEVERITIES = ("info", "warning", "critical")
SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}

# Dashboard pages a finding can point at (Finding.chart).
CHARTS = ("overview", "activations", "gradients", "updates", "predictions")


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

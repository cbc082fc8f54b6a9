"""Lines drawn on the charts, taken from diagnostics.Thresholds so the charts and the advice
agree; fallback values (the same numbers, same sources) if diagnostics cannot be imported."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChartThresholds:
    """Reference values the Gradients and Updates pages draw."""

    # Update-to-weight ratio ||dw||/||w|| per step. Target: the project's tuning notes ("about 1% of
    # the parameter, not 50% or 0.001%"); reference: CS231n "Neural Networks 3" ("somewhere around
    # 1e-3"); the advice fires outside [update_low, update_high].
    update_target: float = 1e-2
    update_reference: float = 1e-3
    update_low: float = 1e-4
    update_high: float = 0.1
    # First-layer / last-layer gradient norm: below vanish, the input side barely learns; above
    # explode, it is swamped (AUTOTRAINER, Zhang et al., ICSE 2021: < 1e-3 and > 70).
    grad_ratio_vanish: float = 1e-3
    grad_ratio_explode: float = 70.0


def chart_thresholds() -> ChartThresholds:
    """The values from diagnostics.Thresholds when available."""
    try:
        from diagnostics import Thresholds  # noqa: PLC0415
    except Exception:  # noqa: BLE001 - charts must work without the rules package
        return ChartThresholds()
    th = Thresholds()
    base = ChartThresholds()
    return ChartThresholds(
        update_target=getattr(th, "update_ratio_guide_notes", base.update_target),
        update_reference=getattr(th, "update_ratio_guide_cs231n", base.update_reference),
        update_low=getattr(th, "update_ratio_low", base.update_low),
        update_high=getattr(th, "update_ratio_high", base.update_high),
        grad_ratio_vanish=getattr(th, "vanish_ratio", base.grad_ratio_vanish),
        grad_ratio_explode=getattr(th, "explode_ratio", base.grad_ratio_explode),
    )

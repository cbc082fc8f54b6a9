"""Order findings so the likely root cause comes first.

Some findings are the usual consequences of others found in the same run: a too-high learning rate
kills ReLUs, blows up gradients and ends in NaN; saturated sigmoids make gradients vanish, which
stalls the loss. When both a cause and its consequence are present, the consequence is marked as
such (evidence['likely_caused_by']) and placed after its cause, and the cause takes the highest
severity among its consequences (the learning rate that produced a NaN is a critical problem).
"""

from __future__ import annotations

from dataclasses import replace

from .finding import SEVERITIES, Finding

# cause -> consequences it commonly produces (only applied when both are found in one run).
CAUSES: dict[str, tuple[str, ...]] = {
    "lr_too_high": ("nan_loss", "exploding_gradients", "dead_relu", "saturation", "loss_plateau", "underfitting",
                    "low_confidence", "overconfidence", "vanishing_gradients", "no_gradient"),
    "bad_init_loss": ("exploding_gradients", "saturation", "vanishing_gradients", "dead_relu", "nan_loss",
                      "overconfidence", "loss_plateau", "underfitting", "no_gradient"),
    # One layer's gradient blowing up makes the others small beside it (vanishing is relative).
    "exploding_gradients": ("nan_loss", "vanishing_gradients"),
    "dead_relu": ("no_gradient", "vanishing_gradients", "loss_plateau", "underfitting", "low_confidence",
                  "lr_too_low"),
    # Exactly zero gradients: dead units or an all-zero init upstream; nothing learns after them.
    "no_gradient": ("loss_plateau", "underfitting", "low_confidence", "lr_too_low"),
    "saturation": ("vanishing_gradients", "loss_plateau", "underfitting", "low_confidence", "lr_too_low"),
    "vanishing_gradients": ("loss_plateau", "underfitting", "low_confidence", "lr_too_low"),
    # A network that barely moved from its init keeps the init's confidence: random logits give a
    # max probability above 1/C while the accuracy sits at chance, a gap that is no miscalibration.
    "lr_too_low": ("loss_plateau", "underfitting", "low_confidence", "overconfidence"),
    "overfitting": ("overconfidence",),
    # The bugs of real programs (rules/bugs.py) and what they bring about.
    "grad_not_zeroed": ("lr_too_high", "exploding_gradients", "dead_relu", "no_gradient", "nan_loss", "saturation",
                        "overconfidence", "overfitting", "underfitting", "loss_plateau", "low_confidence",
                        "vanishing_gradients"),
    "probabilities_as_logits": ("underfitting", "loss_plateau", "low_confidence", "vanishing_gradients", "lr_too_low"),
    # A step size that suits standardized inputs is too large for raw ones.
    "unnormalized_inputs": ("bad_init_loss", "lr_too_high", "exploding_gradients", "dead_relu", "saturation",
                            "no_gradient", "nan_loss", "overconfidence", "underfitting", "loss_plateau",
                            "low_confidence"),
    "over_regularization": ("underfitting", "loss_plateau", "low_confidence", "lr_too_low", "vanishing_gradients"),
    "frozen_parameters": ("underfitting", "loss_plateau", "low_confidence", "lr_too_low"),
    "unshuffled_data": ("overfitting", "loss_plateau", "underfitting", "low_confidence", "overconfidence"),
    # A learning rate that collapsed early stalls the loss; its updates then read too small.
    "lr_schedule_too_fast": ("lr_too_low", "loss_plateau", "underfitting", "low_confidence", "vanishing_gradients"),
    # Labels that do not belong to the inputs: memorising them is overfitting, nothing else is learned.
    "mismatched_labels": ("overfitting", "underfitting", "loss_plateau", "low_confidence", "overconfidence"),
    "underfitting": ("loss_plateau", "low_confidence"),
    "loss_plateau": ("low_confidence",),
}

# Tie-break among unrelated findings of equal severity: more specific, more actionable first.
PRIORITY = ("grad_not_zeroed", "probabilities_as_logits", "unnormalized_inputs", "frozen_parameters",
            "over_regularization", "unshuffled_data", "mismatched_labels", "lr_schedule_too_fast", "lr_too_high", "bad_init_loss", "exploding_gradients", "dead_relu", "saturation", "no_gradient",
            "vanishing_gradients",
            "lr_too_low", "overfitting", "underfitting", "loss_plateau", "overconfidence", "low_confidence",
            "nan_loss", "mismatched_targets")


# Causes that act through the updates: they cannot explain a symptom already there before the first
# update (at the run's first recorded step: a gradient, a dead or saturated layer of the init).
UPDATE_CAUSES = ("lr_too_high", "lr_too_low")
# Findings whose first step is when the symptom was first seen (not the span a verdict covers, as
# for underfitting or a plateau): at the run's first recorded step it predates every update.
ONSET_RULES = ("exploding_gradients", "dead_relu", "saturation", "no_gradient", "vanishing_gradients", "nan_loss")


def _causes_of(rule: str, present: set[str], pre_update: frozenset = frozenset()) -> list[str]:
    """Present findings that directly explain `rule`."""
    return [c for c, effects in CAUSES.items() if rule in effects and c in present and c != rule
            and not (rule in pre_update and c in UPDATE_CAUSES)]


def _depth(rule: str, present: set[str], pre: frozenset = frozenset(), seen: frozenset = frozenset()) -> int:
    causes = [c for c in _causes_of(rule, present, pre) if c not in seen]
    if not causes:
        return 0
    return 1 + max(_depth(c, present, pre, seen | {rule}) for c in causes)


def _effects(rule: str, present: set[str], pre: frozenset = frozenset(), seen: frozenset = frozenset()) -> set[str]:
    """Present findings that `rule` explains, directly or through a chain."""
    out = set()
    for e in CAUSES.get(rule, ()):
        if e in present and e not in seen and not (e in pre and rule in UPDATE_CAUSES):
            out |= {e} | _effects(e, present, pre, seen | {rule, e})
    return out


def rank(findings: list[Finding], first_step: int | None = None) -> list[Finding]:
    """Mark consequences, lift causes to their consequences' severity, sort root causes first.
    `first_step` is the run's first recorded step: a finding that starts there was present before
    any update, so no update-driven cause (UPDATE_CAUSES) explains it."""
    # Info findings describe, they do not explain anything, so only warnings and worse take part.
    acting = {f.rule for f in findings if f.rank >= 1}
    pre = frozenset(f.rule for f in findings if first_step is not None and f.rule in ONSET_RULES and f.steps
                    and f.steps[0] <= first_step)
    rank_of = {f.rule: f.rank for f in findings}
    out = []
    for f in findings:
        if f.rank >= 1:
            causes = _causes_of(f.rule, acting, pre)
            if causes:
                ev = dict(f.evidence)
                ev["likely_caused_by"] = causes
                note = f" Likely a consequence of {' and '.join(causes)} (see that finding first)."
                f = replace(f, evidence=ev, message=f.message + note)
            top = max([f.rank] + [rank_of[e] for e in _effects(f.rule, acting, pre)])
            if top > f.rank:
                f = replace(f, severity=SEVERITIES[top])
        out.append(f)
    order = {r: i for i, r in enumerate(PRIORITY)}
    return sorted(out, key=lambda f: (-f.rank, _depth(f.rule, acting, pre), order.get(f.rule, len(order)), f.rule))

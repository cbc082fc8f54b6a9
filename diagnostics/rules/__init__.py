"""The rule registry: each rule is a pure function RunView -> list[Finding], one module per family."""

from __future__ import annotations

from .activations import dead_relu, saturation
from .coverage import coverage
from .bugs import (frozen_parameters, grad_not_zeroed, over_regularization, probabilities_as_logits,
                   unnormalized_inputs, unshuffled_data)
from .generalization import overfitting, underfitting
from .labels import mismatched_labels, mismatched_targets
from .gradients import exploding_gradients, no_gradient, vanishing_gradients
from .learning_rate import lr_too_high, lr_too_low
from .loss import bad_init_loss, live_run, loss_plateau, nan_loss, short_run
from .predictions import low_confidence, overconfidence
from .schedule import lr_schedule_too_fast
from .task import task_context

# Order here is only the order of evaluation; advise() ranks the results.
RULES = (
    short_run, live_run, task_context, coverage, nan_loss, lr_too_high, lr_too_low, loss_plateau, bad_init_loss,
    overfitting, underfitting, dead_relu, saturation, no_gradient, vanishing_gradients, exploding_gradients,
    overconfidence, low_confidence,
    grad_not_zeroed, probabilities_as_logits, unnormalized_inputs, over_regularization, frozen_parameters,
    unshuffled_data, lr_schedule_too_fast, mismatched_labels, mismatched_targets,
)

RULE_IDS = tuple(r.__name__ for r in RULES)

__all__ = ["RULES", "RULE_IDS"]

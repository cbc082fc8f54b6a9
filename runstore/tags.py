"""The one tag scheme shared by probes (writer), diagnostics (rules) and the dashboard (charts).

Every recorded number lives under a hierarchical tag, TensorBoard style. Building tags through
these helpers (never by hand-formatting strings elsewhere) keeps the writer, the rules and the
charts in agreement.

    train/loss                     loss of each optimizer step
    train/<name>                   extra scalars given to record_step (e.g. train/accuracy)
    train/confidence               mean softmax max-probability of the step's logits
    train/entropy                  mean predictive entropy (nats) of the step's logits
    train/accuracy                 argmax accuracy when targets are given (and not passed explicitly)
    train/cross_entropy            cross-entropy of the step's logits against its targets (nats)
    <split>/loss, <split>/<name>   the same for record_eval (split defaults to "val")
    lr/group<i>                    learning rate of param group i at that step
    sys/wall_time                  host wall-clock seconds at record_step (for time axes and ETA)
    train/<stat>, <split>/<stat>   statistics of the logits, stat in LOGIT_STATS
    act/<module>/<stat>            activation statistics, stat in ACT_STATS
    grad/<param>/<stat>            gradient statistics, stat in GRAD_STATS
    weight/<param>/<stat>          weight statistics, stat in WEIGHT_STATS (the L2 norm)
    update_ratio/<param>           ||w_after - w_before|| / ||w_before|| for one optimizer step

Histogram tags use the same paths: act/<module>, grad/<param>, weight/<param>,
<split>/confidence (softmax max-probability). Calibration tables are stored under
<split>/calibration.

A module or parameter name is its dotted name in model.named_modules()/named_parameters();
the root module is called "model". When one module runs several times in one forward pass
(a shared ReLU), its second call is "<module>#2", the third "<module>#3", and so on.
"""

from __future__ import annotations

# The statistics recorded per module, parameter or batch of logits: the one list of their names.
# The probes compute them by these names (probes/activations.py, parameters.py, logits.py), in
# this order, and the charts and rules read them by the same names.
ACT_STATS = ("mean", "std", "frac_zero", "frac_dead", "frac_saturated", "nonfinite")
# What each statistic measures, in a few words with its unit: the title a chart gives it.
STAT_TITLES = {
    "mean": "mean",
    "std": "std",
    "frac_zero": "zeros (fraction)",
    "frac_dead": "dead units (fraction)",
    "frac_saturated": "saturated (fraction)",
    "nonfinite": "non-finite (count)",
    "norm": "L2 norm",
    "abs_mean": "mean |value|",
    "confidence": "confidence (mean max-probability)",
    "entropy": "entropy (nats)",
    "accuracy": "accuracy (fraction correct)",
    "cross_entropy": "cross-entropy of the logits vs the targets (nats)",
}
GRAD_STATS = ("norm", "abs_mean", "nonfinite")
WEIGHT_STATS = ("norm",)
# cross_entropy is recomputed from the logits and targets passed with the loss (NaN without
# targets): a passed loss far below it means the targets are not the batch's (diagnostics).
LOGIT_STATS = ("confidence", "entropy", "accuracy", "cross_entropy")
# The logit statistics that need targets: not recorded when none are given.
TARGET_STATS = ("accuracy", "cross_entropy")

TRAIN_LOSS = "train/loss"
WALL_TIME = "sys/wall_time"


def split_metric(split: str, name: str) -> str:
    """`<split>/<name>`, e.g. val/loss, train/accuracy."""
    return f"{split}/{name}"


def lr(group: int) -> str:
    """Learning rate of param group `group`."""
    return f"lr/group{group}"


def act(module: str, stat: str | None = None) -> str:
    """Activation tag; without `stat` it is the histogram tag."""
    return f"act/{module}" if stat is None else f"act/{module}/{stat}"


def grad(param: str, stat: str | None = None) -> str:
    """Gradient tag; without `stat` it is the histogram tag."""
    return f"grad/{param}" if stat is None else f"grad/{param}/{stat}"


def weight(param: str, stat: str | None = None) -> str:
    """Weight tag; without `stat` it is the histogram tag."""
    return f"weight/{param}" if stat is None else f"weight/{param}/{stat}"


def update_ratio(param: str) -> str:
    """Update-to-weight ratio tag of one parameter."""
    return f"update_ratio/{param}"


def stat_tags(tag, names, stats) -> tuple[str, ...]:
    """tag(name, stat) for every stat and name, stat by stat: the layout of the probes' rows of
    values (e.g. stat_tags(grad, ["fc.weight", "fc.bias"], GRAD_STATS) starts with both norms)."""
    return tuple(tag(n, s) for s in stats for n in names)


def calibration(split: str) -> str:
    """Calibration table tag of an evaluation split."""
    return f"{split}/calibration"


def parse(tag: str) -> tuple[str, str, str | None]:
    """Split a tag into (family, name, stat).

    >>> parse("act/layers.0/frac_dead")
    ('act', 'layers.0', 'frac_dead')
    >>> parse("update_ratio/fc.weight")
    ('update_ratio', 'fc.weight', None)
    >>> parse("val/loss")
    ('val', 'loss', None)
    """
    family, _, rest = tag.partition("/")
    if family in ("act", "grad", "weight"):
        name, _, stat = rest.rpartition("/")
        if not name:  # histogram tag: no stat part
            return family, stat, None
        return family, name, stat
    return family, rest, None


def names(tags, family: str, stat: str | None = None) -> list[str]:
    """Distinct module/param names of `family` among `tags`, in first-seen order."""
    seen: dict[str, None] = {}
    for t in tags:
        fam, name, st = parse(t)
        if fam == family and (stat is None or st == stat):
            seen.setdefault(name, None)
    return list(seen)

"""Rerun with a fix: apply a diagnostics Finding's `fix` (or any {field: value} dict) to a run's
hyperparameters and get a validated playground Config plus a sentence saying exactly what changed
("lr 0.5 -> 0.05").

What to change is the rules' decision alone (Finding.fix, filled by diagnostics/rules/fixes.py);
this module only applies it. No Streamlit and no torch here, so all of it is tested directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from playground.config import FIELDS, WORKLOADS, Config, ConfigError

RECURRENT = ("lstm", "gru")


class FixError(ValueError):
    """A run cannot be rerun with this change; the message says why in the user's terms."""


def fmt_value(name: str, value) -> str:
    """A config value as a person would type it: 0.05, 1e-04, on/off, "0 (off)" for switches."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        if value == 0 and name in ("grad_clip",):
            return "0 (off)"
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}" if 1e-3 <= abs(value) < 1e5 or value == 0 else f"{value:.3g}"
    if value == 0 and name in ("train_subset",):
        return "0 (all)"
    return str(value)


@dataclass(frozen=True)
class Change:
    """One config field changed from `old` to `new`."""

    field: str
    old: object
    new: object

    def text(self) -> str:
        """E.g. "lr 0.5 -> 0.05"."""
        return f"{self.field} {fmt_value(self.field, self.old)} -> {fmt_value(self.field, self.new)}"


@dataclass(frozen=True)
class AppliedFix:
    """The config after a fix, what changed, and the parts of the fix that were left out (and why)."""

    config: Config
    changes: tuple[Change, ...]
    skipped: tuple[str, ...] = ()

    @property
    def sentence(self) -> str:
        """E.g. "lr 0.5 -> 0.05, grad_clip 0 (off) -> 1"; "" when nothing changes."""
        return ", ".join(c.text() for c in self.changes)

    @property
    def changed(self) -> bool:
        return bool(self.changes)


def changes_between(old: Config | dict, new: Config) -> list[Change]:
    """Fields whose value differs between `old` (a config or a run's hparams) and `new`, in form order."""
    before = old.to_dict() if isinstance(old, Config) else dict(old or {})
    after = new.to_dict()
    out = []
    for name in FIELDS:
        a, b = before.get(name, getattr(Config(), name)), after[name]
        if not _same(a, b):
            out.append(Change(name, a, b))
    return out


def _same(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or a == b and type(a) is type(b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
    return a == b


def rerunnable(hparams) -> bool:
    """True if a run with these recorded hyperparameters can be rerun (the playground trained it)."""
    try:
        config_from_hparams(hparams)
    except FixError:
        return False
    return True


def config_from_hparams(hparams, *, devices: list[str] | None = None) -> tuple[Config, list[str]]:
    """A run's recorded hyperparameters as a validated playground Config, plus notes on what had to
    be adjusted (fields this version does not know, a GPU that is not present here).

    Raises FixError when the run was not trained by the playground or its values are invalid.
    """
    if not isinstance(hparams, dict) or not hparams:
        raise FixError("This run has no recorded hyperparameters, so it cannot be rerun from the dashboard.")
    if hparams.get("workload") not in WORKLOADS:
        raise FixError("This run was not trained by the playground (its hyperparameters name no built-in "
                       f"workload: {', '.join(WORKLOADS)}), so it cannot be rerun from the dashboard.")
    notes = []
    unknown = sorted(k for k in hparams if k not in FIELDS)
    if unknown:
        notes.append(f"Ignored recorded field(s) the playground does not know: {', '.join(unknown)}.")
    data = {k: v for k, v in hparams.items() if k in FIELDS}
    if devices is not None and data.get("device") in ("cuda", "mps") and data["device"] not in devices:
        notes.append(f"The run trained on {data['device']}, which this machine does not have; device set to auto.")
        data["device"] = "auto"
    try:
        return Config.from_dict(data, validate=True, check_device=False), notes
    except (ConfigError, TypeError) as e:
        raise FixError(f"The run's recorded hyperparameters are not a valid playground config: {e}") from None


def _not_applicable(name: str, value, config: Config) -> str | None:
    """Why a fix entry would do nothing (or be invalid) for this model, or None if it applies."""
    if config.model in RECURRENT:
        if name == "batch_norm" and value:
            return f"batch_norm: not available for {config.model} (mlp and cnn only)"
        if name == "activation":
            return f"activation: {config.model} uses its own gate non-linearities"
    if name == "forget_bias" and config.model != "lstm":
        return f"forget_bias: only used by lstm, not {config.model}"
    if name == "momentum" and config.optimizer != "momentum":
        return f"momentum: only used by the momentum optimizer, not {config.optimizer}"
    return None


def apply_fix(base: Config | dict, fix, *, devices: list[str] | None = None) -> AppliedFix:
    """Apply a Finding's `fix` or a plain {field: value} dict to `base` (a Config or a run's
    hparams). Entries that change nothing or do not apply to the model are left out and listed in
    `skipped`; a finding without a fix changes nothing. Raises FixError when the result is not a
    valid config."""
    config = base if isinstance(base, Config) else config_from_hparams(base, devices=devices)[0]
    changes = dict(fix if isinstance(fix, dict) else (getattr(fix, "fix", None) or {}))
    unknown = [k for k in changes if k not in FIELDS]
    if unknown:
        raise FixError(f"The advice names setting(s) the playground does not have: {', '.join(map(str, unknown))}.")
    kept, skipped = {}, []
    for name, value in changes.items():
        why = _not_applicable(name, value, config)
        if why:
            skipped.append(why)
        elif _same(getattr(config, name), value):
            skipped.append(f"{name}: already {fmt_value(name, value)}")
        else:
            kept[name] = value
    try:
        new = config.replace(validate=True, check_device=False, **kept)
    except (ConfigError, TypeError) as e:
        raise FixError(f"The advised change cannot be applied: {e}") from None
    return AppliedFix(config=new, changes=tuple(changes_between(config, new)), skipped=tuple(skipped))

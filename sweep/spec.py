"""What a sweep is: the base config, the search space, the budget, the objective, the pruner and
the sampler. Stored with the study (one user attribute, `SPEC_ATTR`), so a worker on any machine
joins a study with nothing but the storage URL and the study name."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from playground.config import Config, ConfigError

from .space import Space, SpaceError, space_from_json, space_to_json, validate_space

SPEC_ATTR = "traindiag_sweep"
# The objective: what a trial returns, read from the playground's evaluations, and its direction.
OBJECTIVES = {"val_accuracy": "maximize", "val_loss": "minimize"}
OBJECTIVE_WORDS = {"val_accuracy": "validation accuracy", "val_loss": "validation loss"}
# Pruners by name: none; Optuna's MedianPruner; the diagnosis pruner; both (diagnosis OR median).
PRUNERS = ("diagnosis", "both", "median", "none")
PRUNER_WORDS = {"diagnosis": "diagnosis (prune a trial a critical finding makes hopeless)",
                "both": "diagnosis or median (either one prunes)",
                "median": "Optuna's MedianPruner (below the median of earlier trials at the same step)",
                "none": "no pruning (every trial runs to its end)"}
# Samplers: random search (the tuning notes' method; the same seed gives every trial number the
# same config, however many workers draw them) or Optuna's TPE.
SAMPLERS = ("random", "tpe")
MAX_TRIALS = 100_000
# A study name is also the name of the folder its trials are recorded in, so it is kept to
# characters every file system takes and that cannot climb out of the runs folder.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class SpecError(ValueError):
    """A sweep setting is invalid; the message says which and what it accepts."""


def check_study_name(name) -> str:
    """`name` if it can name a study and its folder (letters, digits, '.', '_', '-'; up to 64,
    starting with a letter or digit); SpecError otherwise."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise SpecError(f"study name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a "
                        f"letter or digit (it also names the folder the trials are recorded in).")
    return name


@dataclass(frozen=True)
class SweepSpec:
    """A sweep's settings. `base` is the Config every trial starts from; `space` says which fields
    vary; `n_trials` is the budget over all workers."""

    base: Config
    space: Space
    n_trials: int = 20
    objective: str = "val_accuracy"
    pruner: str = "diagnosis"
    sampler: str = "random"
    seed: int = 0
    parent: str | None = None  # the study this one narrows (coarse to fine)
    notes: tuple = field(default=())  # what narrowing changed, in words

    @property
    def direction(self) -> str:
        return OBJECTIVES[self.objective]

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"

    def validate(self) -> "SweepSpec":
        """Raise SpecError naming the first invalid setting; return self."""
        if not isinstance(self.base, Config):
            raise SpecError(f"base must be a playground Config, got {type(self.base).__name__}.")
        try:
            self.base.validate(check_device=False)
            validate_space(self.space, self.base)
        except (ConfigError, SpaceError) as e:
            raise SpecError(str(e)) from None
        if isinstance(self.n_trials, bool) or not isinstance(self.n_trials, int) or not 1 <= self.n_trials <= MAX_TRIALS:
            raise SpecError(f"n_trials must be a whole number from 1 to {MAX_TRIALS:,}, got {self.n_trials!r}.")
        for name, value, allowed in (("objective", self.objective, tuple(OBJECTIVES)),
                                     ("pruner", self.pruner, PRUNERS), ("sampler", self.sampler, SAMPLERS)):
            if value not in allowed:
                raise SpecError(f"{name} must be one of {', '.join(allowed)}, got {value!r}.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2 ** 31:
            raise SpecError(f"seed must be a whole number from 0 to 2^31-1, got {self.seed!r}.")
        return self

    def with_budget(self, n_trials: int) -> "SweepSpec":
        return replace(self, n_trials=n_trials).validate()

    def to_dict(self) -> dict:
        return {"base": self.base.to_dict(), "space": space_to_json(self.space), "n_trials": self.n_trials,
                "objective": self.objective, "pruner": self.pruner, "sampler": self.sampler, "seed": self.seed,
                "parent": self.parent, "notes": list(self.notes)}

    @classmethod
    def from_dict(cls, data) -> "SweepSpec":
        """The spec stored with a study (validated); SpecError when it is not one."""
        if not isinstance(data, dict):
            raise SpecError("this study has no sweep settings: it was not created by `python -m playground sweep` "
                            "or the Sweep page.")
        try:
            base = Config.from_dict(data.get("base") or {}, validate=False)
            space = space_from_json(data.get("space"))
        except (ConfigError, SpaceError, TypeError) as e:
            raise SpecError(f"the study's sweep settings are damaged: {e}") from None
        spec = cls(base=base, space=space, n_trials=data.get("n_trials"), objective=data.get("objective"),
                   pruner=data.get("pruner"), sampler=data.get("sampler"), seed=data.get("seed"),
                   parent=data.get("parent") if isinstance(data.get("parent"), str) else None,
                   notes=tuple(str(n) for n in data.get("notes") or ()))
        return spec.validate()
